//! A backup job as a CronJob runs it, written once for every datastore: the backup, then the
//! prune its [`Policy`] asks for, then the notices. A datastore brings its steps by implementing
//! [`BackupJob`]; [`backup_and_prune`] fixes their order and what each outcome means:
//!
//! - a failed backup is never followed by a prune;
//! - a failed prune does not make the backup fail: it is reported beside it;
//! - a notice that cannot be sent (Slack, the Pushgateway) is reported, and changes nothing else.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
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
    pub slack: Option<Result<(), Error>>,
    /// The push of the run to the Pushgateway.
    pub pushgateway: Option<Result<(), PushError>>,
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
/// both at once.
pub async fn notify(notifications: &Notifications, text: &str, run: &JobRun) -> Notices {
    let slack = async {
        match &notifications.slack {
            Some(hook) => Some(slack(hook, text).await),
            None => None,
        }
    };
    let pushgateway = async {
        match &notifications.pushgateway {
            Some(gateway) => Some(datastores::push::push(gateway, run, NOTICE_TIMEOUT).await),
            None => None,
        }
    };
    let (slack, pushgateway) = tokio::join!(slack, pushgateway);
    Notices { slack, pushgateway }
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
            slack: Some(datastores::Secret::new(format!("http://127.0.0.1:{port}/services/T0/B0/hook-token-42"))),
            pushgateway: Some(datastores::Secret::new(format!("http://jobs:push-pass-42@127.0.0.1:{port}"))),
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
}
