//! A backup job as a CronJob runs it, written once for every datastore: the backup, then the
//! prune its [`Policy`] asks for, then the notices. A datastore brings its steps by implementing
//! [`BackupJob`]; [`backup_and_prune`] fixes their order and what each outcome means:
//!
//! - a failed backup is never followed by a prune;
//! - a failed prune does not make the backup fail: it is reported beside it;
//! - a notice that cannot be sent (Slack, the Pushgateway), or whose setting cannot be read, is
//!   reported, and changes nothing else.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datastores::ConfigError;
use datastores::push::{JobRun, PushError};

use crate::Error;
use crate::manifest::BackupManifest;
use crate::notify::{job_run, slack};
use crate::ops::{PruneReport, Stores};
use crate::policy::{Notifications, Policy};
use crate::retention::Retention;

/// How long each notice may take.
pub const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

/// One datastore's side of a backup job: the steps [`backup_and_prune`] runs, and the words of
/// its notices. Implemented by `pg-backup` and `mongo-backup` for their own options.
#[allow(async_fn_in_trait)]
pub trait BackupJob {
    /// The manifest a backup writes.
    type Manifest: BackupManifest;
    /// What the datastore's steps fail with.
    type Error: std::error::Error;
    /// What the backup reports while it runs.
    type Progress;
    /// The job pushed to the Pushgateway: `pg_backup`, `mongo_backup`.
    const JOB: &'static str;

    /// What is backed up (a database, a backup name): the `instance` of the push.
    fn instance(&self) -> &str;

    /// Where backups go, and where prune looks.
    fn stores(&self) -> &Stores;

    /// Takes the backup, calling `progress` as it goes.
    async fn backup(&self, progress: &mut (dyn FnMut(Self::Progress) + Send)) -> Result<Self::Manifest, Self::Error>;

    /// Deletes this job's own backups that `retention` does not keep at `now`, and what
    /// interrupted backups left.
    async fn prune(&self, retention: Retention, now: DateTime<Utc>) -> Result<PruneReport, Self::Error>;

    /// The notice of a good backup, stored in `destination` (`<folder> and s3://...`).
    fn succeeded(&self, manifest: &Self::Manifest, destination: &str) -> String;

    /// The notice of a failed backup, which ran `seconds`.
    fn failed(&self, error: &Self::Error, seconds: f64) -> String;
}

/// What a backup job did: each of its three parts, each with its own outcome.
#[derive(Debug)]
pub struct BackupRun<M, E> {
    /// The backup, as the datastore's backup step returned it.
    pub backup: Result<M, E>,
    /// How long the backup took.
    pub duration: Duration,
    /// The prune that followed a good backup; `None` when the backup failed or the policy
    /// skips it.
    pub prune: Option<Result<PruneReport, E>>,
    /// The notices of the run, sent after the backup and the prune.
    pub notices: Notices,
}

/// The notices of a run; each `None` when not configured. A notice that failed never fails
/// the backup.
#[derive(Debug, Default)]
pub struct Notices {
    /// The Slack message.
    pub slack: Option<Result<(), NoticeError>>,
    /// The push of the run to the Pushgateway.
    pub pushgateway: Option<Result<(), NoticeError>>,
}

/// Why a notice was not sent. No message names more of an address than its host, nor the
/// value of a setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoticeError {
    /// The channel's setting cannot be read (a `_FILE` that cannot be read, or a variable set
    /// both ways), so nothing was sent: the message names the variable and its causes.
    #[error("{0}")]
    Setting(String),
    /// The Slack webhook is not an http(s) URL, could not be reached, or refused the message.
    #[error(transparent)]
    Slack(Error),
    /// The Pushgateway address is not an http(s) URL, could not be reached, or refused the run.
    #[error(transparent)]
    Push(PushError),
}

impl Notices {
    /// One line per notice that was not sent, for a warning. Neither names more of its address
    /// than the host.
    pub fn failures(&self) -> Vec<String> {
        let slack = self.slack.as_ref().and_then(|r| r.as_ref().err()).map(|e| format!("notification not sent: {e}"));
        let push = self.pushgateway.as_ref().and_then(|r| r.as_ref().err()).map(|e| format!("metrics not pushed: {e}"));
        slack.into_iter().chain(push).collect()
    }
}

/// Runs a backup job: the backup, then (when it succeeded and `policy` says so) the prune by
/// `policy.retention`, then the notices: `text` to Slack and the run (job [`BackupJob::JOB`],
/// `instance`, with the size of a good backup) to the Pushgateway.
pub async fn backup_and_prune<J: BackupJob>(
    job: &J,
    policy: &Policy,
    progress: &mut (dyn FnMut(J::Progress) + Send),
) -> BackupRun<J::Manifest, J::Error> {
    let started = Instant::now();
    let backup = job.backup(progress).await;
    let duration = started.elapsed();
    let prune = match &backup {
        Ok(_) if policy.prune_after_backup => Some(job.prune(policy.retention, Utc::now()).await),
        _ => None,
    };
    let text = match &backup {
        Ok(manifest) => job.succeeded(manifest, &destination(job.stores())),
        Err(e) => job.failed(e, duration.as_secs_f64()),
    };
    let size = backup.as_ref().map(|m| m.size_bytes()).unwrap_or(0);
    let run = job_run(J::JOB, job.instance(), backup.is_ok(), duration, size);
    let notices = notify(&policy.notifications, &text, &run).await;
    BackupRun { backup, duration, prune, notices }
}

/// Sends `text` to Slack and `run` to the Pushgateway, those of `notifications` that are set,
/// both at once. A channel whose setting cannot be read is a notice not sent.
pub async fn notify(notifications: &Notifications, text: &str, run: &JobRun) -> Notices {
    let slack = async {
        match &notifications.slack {
            Some(Ok(hook)) => Some(slack(hook, text).await.map_err(NoticeError::Slack)),
            Some(Err(e)) => Some(Err(unreadable(e))),
            None => None,
        }
    };
    let (slack, pushgateway) = tokio::join!(slack, pushed(notifications, run));
    Notices { slack, pushgateway }
}

/// Pushes `run` to the Pushgateway of `notifications`, when one is set, and tells Slack
/// nothing: the notices of a job that reports only its run (a prune, a verification, a check).
///
/// ```rust
/// use std::time::Duration;
///
/// use backup_core::Notifications;
/// use datastores::push::JobRun;
/// use datastores::{Settings, Source};
///
/// # async fn run() {
/// let settings = Settings::new().layer(Source::Environment, [("PUSHGATEWAY_URL_FILE", "/nonexistent/url")]);
/// let run = JobRun::new("pg_backup_prune", true, Duration::from_secs(2)).label("instance", "recommend");
/// let notices = backup_core::push_run(&Notifications::from_settings(&settings), &run).await;
/// // Nothing was pushed; the warning names the variable.
/// assert!(notices.failures()[0].contains("PUSHGATEWAY_URL_FILE"));
/// # }
/// ```
pub async fn push_run(notifications: &Notifications, run: &JobRun) -> Notices {
    Notices { slack: None, pushgateway: pushed(notifications, run).await }
}

/// The push of `run` to the Pushgateway of `notifications`, if one is set.
async fn pushed(notifications: &Notifications, run: &JobRun) -> Option<Result<(), NoticeError>> {
    match &notifications.pushgateway {
        Some(Ok(gateway)) => {
            Some(datastores::push::push(gateway, run, NOTICE_TIMEOUT).await.map_err(NoticeError::Push))
        }
        Some(Err(e)) => Some(Err(unreadable(e))),
        None => None,
    }
}

/// A channel whose setting cannot be read: the error names the variable, never its value.
fn unreadable(error: &ConfigError) -> NoticeError {
    NoticeError::Setting(datastores::error_chain(error))
}

/// Where backups go, for messages: `<folder> and s3://<bucket>/<prefix>`.
fn destination(stores: &Stores) -> String {
    [stores.local_dir.as_ref().map(|d| d.display().to_string()), stores.s3.as_ref().map(|s| s.to_string())]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A size for people: `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(0), "0.0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
    }

    #[tokio::test]
    async fn unreachable_notices_are_failures_that_name_only_the_host() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let notifications = Notifications {
            slack: Some(Ok(datastores::Secret::new(format!("http://127.0.0.1:{port}/services/T0/B0/hook-token-42")))),
            pushgateway: Some(Ok(datastores::Secret::new(format!("http://jobs:push-pass-42@127.0.0.1:{port}")))),
        };
        let run = job_run("pg_backup", "recommend", true, Duration::from_secs(1), 10);
        let notices = notify(&notifications, "hello", &run).await;
        let failures = notices.failures();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].starts_with("notification not sent: ") && failures[0].contains("127.0.0.1"),
            "{failures:?}"
        );
        assert!(failures[1].starts_with("metrics not pushed: ") && failures[1].contains("127.0.0.1"), "{failures:?}");
        let shown = format!("{failures:?} {notices:?}");
        assert!(!shown.contains("hook-token-42") && !shown.contains("push-pass-42"), "{shown}");

        let none = notify(&Notifications::default(), "hello", &run).await;
        assert!(none.slack.is_none() && none.pushgateway.is_none() && none.failures().is_empty());
    }

    /// A manifest with nothing but what the job reads.
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct FakeManifest {
        id: String,
        size_bytes: u64,
    }

    impl BackupManifest for FakeManifest {
        const DATASTORE: &'static str = "fake";
        fn id(&self) -> &str {
            &self.id
        }
        fn tier(&self) -> crate::Tier {
            crate::Tier::Daily
        }
        fn artifact(&self) -> &str {
            &self.id
        }
        fn files(&self) -> &[crate::FileEntry] {
            &[]
        }
        fn sha256(&self) -> &str {
            ""
        }
        fn size_bytes(&self) -> u64 {
            self.size_bytes
        }
        fn finished_at(&self) -> DateTime<Utc> {
            DateTime::UNIX_EPOCH
        }
        fn verification(&self) -> Option<&crate::Verification> {
            None
        }
        fn set_verification(&mut self, _: crate::Verification) {}
    }

    /// A job whose backup and prune succeed or fail as told, counting the prunes it runs.
    struct FakeJob {
        backup_fails: bool,
        prune_fails: bool,
        prunes: std::sync::atomic::AtomicUsize,
        stores: Stores,
    }

    impl FakeJob {
        fn new(backup_fails: bool, prune_fails: bool) -> FakeJob {
            FakeJob { backup_fails, prune_fails, prunes: Default::default(), stores: Stores::default() }
        }

        fn prunes(&self) -> usize {
            self.prunes.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl BackupJob for FakeJob {
        type Manifest = FakeManifest;
        type Error = Error;
        type Progress = ();
        const JOB: &'static str = "fake_backup";

        fn instance(&self) -> &str {
            "fake"
        }

        fn stores(&self) -> &Stores {
            &self.stores
        }

        async fn backup(&self, progress: &mut (dyn FnMut(()) + Send)) -> Result<FakeManifest, Error> {
            progress(());
            if self.backup_fails {
                return Err(Error::Tool("the dump failed".into()));
            }
            Ok(FakeManifest { id: "fake_20260101T000000Z".into(), size_bytes: 42 })
        }

        async fn prune(&self, _: Retention, _: DateTime<Utc>) -> Result<PruneReport, Error> {
            self.prunes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.prune_fails {
                return Err(Error::S3 { context: "listing daily/".into(), message: "access denied".into() });
            }
            Ok(PruneReport { deleted: vec!["local: fake_20250101T000000Z".into()], ..PruneReport::default() })
        }

        fn succeeded(&self, manifest: &FakeManifest, _: &str) -> String {
            format!("backup {} succeeded", manifest.id)
        }

        fn failed(&self, error: &Error, _: f64) -> String {
            format!("backup failed: {error}")
        }
    }

    fn policy(notifications: Notifications) -> Policy {
        Policy { retention: Retention::default(), prune_after_backup: true, notifications }
    }

    /// Slack and a Pushgateway on a port nobody listens on.
    fn unreachable() -> Notifications {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Notifications {
            slack: Some(Ok(datastores::Secret::new(format!("http://127.0.0.1:{port}/services/T0/B0/hook-token-7")))),
            pushgateway: Some(Ok(datastores::Secret::new(format!("http://127.0.0.1:{port}")))),
        }
    }

    #[tokio::test]
    async fn a_good_backup_stays_good_when_no_notice_is_sent() {
        let job = FakeJob::new(false, false);
        let mut calls = 0;
        let run = backup_and_prune(&job, &policy(unreachable()), &mut |()| calls += 1).await;
        assert_eq!(calls, 1);
        assert_eq!(run.backup.unwrap().id, "fake_20260101T000000Z");
        assert_eq!(run.prune.unwrap().unwrap().deleted, ["local: fake_20250101T000000Z"]);
        assert_eq!(job.prunes(), 1);
        assert!(matches!(run.notices.slack, Some(Err(NoticeError::Slack(_)))), "{:?}", run.notices);
        assert!(matches!(run.notices.pushgateway, Some(Err(NoticeError::Push(_)))), "{:?}", run.notices);
        assert_eq!(run.notices.failures().len(), 2);
    }

    #[tokio::test]
    async fn unreadable_notification_settings_stop_neither_the_backup_nor_the_prune() {
        let settings = datastores::Settings::new().layer(
            datastores::Source::Environment,
            [
                ("SLACK_WEBHOOK_FILE", "/nonexistent/slack-hook"),
                ("PUSHGATEWAY_URL", "http://jobs:push-pass-9@127.0.0.1:1"),
                ("PUSHGATEWAY_URL_FILE", "/nonexistent/pushgateway"),
            ],
        );
        let job = FakeJob::new(false, false);
        let run = backup_and_prune(&job, &policy(Notifications::from_settings(&settings)), &mut |()| {}).await;
        assert!(run.backup.is_ok() && matches!(run.prune, Some(Ok(_))) && job.prunes() == 1, "{run:?}");
        let failures = run.notices.failures();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].starts_with("notification not sent: ") && failures[0].contains("SLACK_WEBHOOK_FILE"));
        assert!(failures[1].starts_with("metrics not pushed: ") && failures[1].contains("PUSHGATEWAY_URL_FILE"));
        assert!(!failures[1].contains("push-pass-9"), "{failures:?}");
        assert!(matches!(run.notices.slack, Some(Err(NoticeError::Setting(_)))));
    }

    #[tokio::test]
    async fn a_failed_backup_is_never_pruned_and_is_told() {
        let job = FakeJob::new(true, false);
        let run = backup_and_prune(&job, &policy(unreachable()), &mut |()| {}).await;
        assert_eq!(run.backup.unwrap_err().to_string(), "the dump failed");
        assert!(run.prune.is_none());
        assert_eq!(job.prunes(), 0);
        assert_eq!(run.notices.failures().len(), 2, "{:?}", run.notices);
    }

    #[tokio::test]
    async fn a_failed_prune_leaves_the_backup_good_and_is_reported() {
        let job = FakeJob::new(false, true);
        let run = backup_and_prune(&job, &policy(Notifications::default()), &mut |()| {}).await;
        assert!(run.backup.is_ok(), "{run:?}");
        let pruned = run.prune.unwrap().unwrap_err().to_string();
        assert_eq!(pruned, "S3 listing daily/: access denied");
        assert!(run.notices.slack.is_none() && run.notices.pushgateway.is_none());
    }

    #[tokio::test]
    async fn a_policy_without_prune_does_not_prune() {
        let job = FakeJob::new(false, false);
        let mut policy = policy(Notifications::default());
        policy.prune_after_backup = false;
        let run = backup_and_prune(&job, &policy, &mut |()| {}).await;
        assert!(run.backup.is_ok() && run.prune.is_none() && job.prunes() == 0, "{run:?}");
    }

    #[tokio::test]
    async fn a_push_alone_tells_slack_nothing() {
        let run = job_run("fake_prune", "fake", true, Duration::from_secs(1), 0);
        let notices = push_run(&unreachable(), &run).await;
        assert!(notices.slack.is_none() && matches!(notices.pushgateway, Some(Err(NoticeError::Push(_)))));
        assert!(push_run(&Notifications::default(), &run).await.failures().is_empty());
    }
}
