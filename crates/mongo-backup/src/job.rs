//! The backup job a CronJob runs, in one call: [`backup_and_prune`].

use backup_core::{BackupJob, Error, Policy, PruneReport, Retention, Stores, human_bytes};
use chrono::{DateTime, Utc};
use datastores::MongoConfig;

use crate::backup::{BackupOptions, BackupProgress, backup, backup_name};
use crate::manifest::Manifest;
use crate::ops::{Deployment, prune};

/// What [`backup_and_prune`] did: the backup, the prune after it, the notices.
pub type BackupRun = backup_core::BackupRun<Manifest, Error>;

/// A backup job of the databases of its [`BackupOptions`], into their stores.
#[derive(Debug)]
struct Job<'a> {
    mongo: &'a MongoConfig,
    options: &'a BackupOptions,
    name: String,
    stores: Stores,
}

impl BackupJob for Job<'_> {
    type Manifest = Manifest;
    type Error = Error;
    type Progress = BackupProgress;
    const JOB: &'static str = "mongo_backup";

    fn instance(&self) -> &str {
        &self.name
    }

    fn stores(&self) -> &Stores {
        &self.stores
    }

    async fn backup(&self, progress: &mut (dyn FnMut(BackupProgress) + Send)) -> Result<Manifest, Error> {
        backup(self.mongo, self.options, progress).await
    }

    async fn prune(&self, retention: Retention, now: DateTime<Utc>) -> Result<PruneReport, Error> {
        let deployment = Deployment::of(self.mongo, &self.name).await?;
        prune(&self.stores, &deployment, retention, now, false).await
    }

    fn succeeded(&self, m: &Manifest, destination: &str) -> String {
        format!(
            ":white_check_mark: MongoDB backup {} succeeded: {} collections, {} documents ({}), {:.1} s, to {destination}",
            m.id,
            m.collections.len(),
            m.documents(),
            human_bytes(m.size_bytes),
            m.duration_seconds
        )
    }

    fn failed(&self, error: &Error, seconds: f64) -> String {
        format!(":x: MongoDB backup of {} failed after {seconds:.1} s: {error}", self.name)
    }
}

/// The whole run of a backup job: backs up the databases of `options` (the name of the backup
/// is [`backup_name`] of them), then, when the backup succeeded and `policy` asks for it, prunes
/// the backups of that name and deployment in the same stores by `policy.retention`, then tells
/// `policy.notifications` how it went (Slack; the Pushgateway job `mongo_backup`, `instance` the
/// backup's name, with `mongo_backup_size_bytes` after a good backup).
///
/// Nothing here fails as a whole: the report holds each part's outcome. A failed prune or
/// notice leaves the backup good.
///
/// ```rust,no_run
/// use std::path::PathBuf;
///
/// use backup_core::{Compression, Tier};
/// use datastores::{MongoConfig, S3Config, Settings, Source};
/// use mongo_backup::{BackupOptions, Policy};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = Settings::new().layer(
///     Source::Environment,
///     [
///         ("MONGODB_URI", "mongodb://mongo-0.internal:27017/?replicaSet=rs0"),
///         ("S3_BUCKET", "platform-backups"),
///         ("S3_PREFIX", "mongodb"),
///         ("RETENTION_WEEKS", "8"),
///     ],
/// );
/// let mongo = MongoConfig::from_settings(&settings)?;
/// let policy = Policy::from_settings(&settings)?;
/// let options = BackupOptions {
///     databases: vec!["recommend".into()],
///     compression: Compression::Zstd(3),
///     tier: Tier::for_date(chrono::Utc::now().date_naive()),
///     local_dir: Some(PathBuf::from("/var/backups/mongodb")),
///     s3: Some(S3Config::from_settings(&settings)?),
///     part_size: 8 << 20,
/// };
/// let run = mongo_backup::backup_and_prune(&mongo, &options, &policy, &mut |_progress| {}).await;
/// let manifest = run.backup?;
/// println!("{}: {} documents", manifest.id, manifest.documents());
/// if let Some(Err(e)) = &run.prune {
///     eprintln!("the backup is stored, but the prune failed: {e}");
/// }
/// for unsent in run.notices.failures() {
///     eprintln!("warning: {unsent}");
/// }
/// # Ok(())
/// # }
/// ```
pub async fn backup_and_prune(
    mongo: &MongoConfig,
    options: &BackupOptions,
    policy: &Policy,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) -> BackupRun {
    let stores = Stores { local_dir: options.local_dir.clone(), s3: options.s3.clone() };
    let job = Job { mongo, options, name: backup_name(&options.databases), stores };
    backup_core::backup_and_prune(&job, policy, progress).await
}
