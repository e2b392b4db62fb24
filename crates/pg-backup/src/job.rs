//! The backup job a CronJob runs, in one call: [`backup_and_prune`].

use backup_core::{BackupJob, Policy, PruneReport, Retention, Stores, human_bytes};
use chrono::{DateTime, Utc};
use datastores::PostgresConfig;

use crate::Error;
use crate::backup::{BackupOptions, BackupProgress, backup};
use crate::manifest::Manifest;
use crate::ops::{Cluster, prune};

/// What [`backup_and_prune`] did: the backup, the prune after it, the notices.
pub type BackupRun = backup_core::BackupRun<Manifest, Error>;

/// A backup job of one database into the stores of its [`BackupOptions`].
#[derive(Debug)]
struct Job<'a> {
    pg: &'a PostgresConfig,
    options: &'a BackupOptions,
    stores: Stores,
}

impl BackupJob for Job<'_> {
    type Manifest = Manifest;
    type Error = Error;
    type Progress = BackupProgress;
    const JOB: &'static str = "pg_backup";

    fn instance(&self) -> &str {
        &self.pg.dbname
    }

    fn stores(&self) -> &Stores {
        &self.stores
    }

    async fn backup(&self, progress: &mut (dyn FnMut(BackupProgress) + Send)) -> Result<Manifest, Error> {
        backup(self.pg, self.options, progress).await
    }

    async fn prune(&self, retention: Retention, now: DateTime<Utc>) -> Result<PruneReport, Error> {
        let cluster = Cluster::of(self.pg).await?;
        prune(&self.stores, &cluster, retention, now, false).await
    }

    fn succeeded(&self, m: &Manifest, destination: &str) -> String {
        format!(
            ":white_check_mark: backup of {} succeeded: {} ({}), {:.1} s, to {destination}",
            m.database,
            m.id,
            human_bytes(m.size_bytes),
            m.duration_seconds
        )
    }

    fn failed(&self, error: &Error, seconds: f64) -> String {
        let why = match error {
            // Where it is complete is said elsewhere; the notice says what failed.
            Error::Incomplete { failures, .. } => failures.join("; "),
            other => other.to_string(),
        };
        format!(":x: backup of {} failed after {seconds:.1} s: {why}", self.pg.dbname)
    }
}

/// The whole run of a backup job: backs `pg`'s database up with `options`, then, when the
/// backup succeeded and `policy` asks for it, prunes the backups of this cluster and database
/// in the same stores by `policy.retention`, then tells `policy.notifications` how it went
/// (Slack; the Pushgateway job `pg_backup`, `instance` the database, with
/// `pg_backup_size_bytes` after a good backup).
///
/// Nothing here fails as a whole: the report holds each part's outcome. A backup complete in
/// some destinations only is [`Error::Incomplete`], with its manifest; it is not pruned after.
/// A failed prune or notice leaves the backup good.
///
/// ```rust,no_run
/// use std::path::PathBuf;
///
/// use datastores::{PostgresConfig, Settings, Source};
/// use pg_backup::{BackupOptions, Compression, Format, Policy, Tier, Tools};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = Settings::new().layer(
///     Source::Environment,
///     [("POSTGRES_HOST", "db.internal"), ("POSTGRES_DB", "recommend"), ("RETENTION_DAYS", "14")],
/// );
/// let pg = PostgresConfig::from_settings(&settings)?;
/// let policy = Policy::from_settings(&settings)?;
/// let options = BackupOptions {
///     format: Format::Custom,
///     compression: Compression::Zstd(3),
///     jobs: 2,
///     tier: Tier::for_date(chrono::Utc::now().date_naive()),
///     local_dir: Some(PathBuf::from("/var/backups/postgres")),
///     s3: None,
///     tools: Tools::default(),
///     exact_counts: false,
///     part_size: 8 << 20,
/// };
/// let run = pg_backup::backup_and_prune(&pg, &options, &policy, &mut |_progress| {}).await;
/// let manifest = run.backup?;
/// match &run.prune {
///     Some(Ok(report)) => println!("{} is stored; pruned {:?}", manifest.id, report.deleted),
///     Some(Err(e)) => eprintln!("{} is stored, but the prune failed: {e}", manifest.id),
///     None => {}
/// }
/// for unsent in run.notices.failures() {
///     eprintln!("warning: {unsent}");
/// }
/// # Ok(())
/// # }
/// ```
pub async fn backup_and_prune(
    pg: &PostgresConfig,
    options: &BackupOptions,
    policy: &Policy,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) -> BackupRun {
    let stores = Stores { local_dir: options.local_dir.clone(), s3: options.s3.clone() };
    backup_core::backup_and_prune(&Job { pg, options, stores }, policy, progress).await
}
