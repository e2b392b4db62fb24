//! Glue shared by the backup binaries (`pg-backup`, `mongo-backup`): the stores from settings,
//! sizes for people, the progress display, and what a backup job's report says on stderr.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use backup_core::{Notices, Notifications, Stores};
use datastores::{Datastore, S3Config, Settings};

/// The local folder (`--backup-dir`, else BACKUP_DIR) and the bucket (when any S3 setting is set).
pub fn stores(settings: &Settings, backup_dir: Option<&PathBuf>) -> anyhow::Result<Stores> {
    let local_dir = match backup_dir {
        Some(dir) => Some(dir.clone()),
        None => settings.get("BACKUP_DIR")?.map(|v| PathBuf::from(v.text)),
    };
    let s3 = if datastores::triggers(Datastore::S3).iter().any(|n| settings.is_set(n)) {
        Some(S3Config::from_settings(settings)?)
    } else {
        None
    };
    Ok(Stores { local_dir, s3 })
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    crate::print(&(serde_json::to_string_pretty(value)? + "\n"))?;
    Ok(())
}

/// `12.3 MiB`.
pub use backup_core::human_bytes as human;

/// Progress of a running backup: a spinner on a terminal, a log line every 10 s otherwise.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    began: Instant,
    last_log: Instant,
    what: String,
}

impl Progress {
    /// Progress of the backup of `what` (a database, a backup's name), starting now.
    pub fn new(what: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} written ({bytes_per_sec}, {elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_message(format!("backing up {what}"));
            bar
        });
        Progress { bar, began: Instant::now(), last_log: Instant::now(), what: what.to_owned() }
    }

    /// `stored_bytes` are stored so far.
    pub fn stored(&mut self, stored_bytes: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(stored_bytes),
            None if self.last_log.elapsed().as_secs() >= 10 => {
                self.last_log = Instant::now();
                let mib = stored_bytes as f64 / 1_048_576.0;
                let rate = format!("{:.1} MiB/s", mib / self.began.elapsed().as_secs_f64().max(0.001));
                tracing::info!(target: "progress", backup = %self.what, written_mib = format!("{mib:.1}"), rate, "backup in progress");
            }
            None => {}
        }
    }

    /// The backup ended: clears the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Warns, on stderr, of each notice of a run that could not be sent; they never change the
/// outcome of the run.
pub fn warn_unsent(notices: &Notices) {
    for failure in notices.failures() {
        eprintln!("warning: {failure}");
    }
}

/// Ends the report of a backup job whose backup and prune ended with `outcome`: warns of each of
/// its `notices` that was not sent (see [`warn_unsent`]), none of which changes `outcome`. One
/// exception keeps what the backup binaries have always done: when all else succeeded, a Slack
/// webhook whose setting cannot be read (`SLACK_WEBHOOK_FILE` unreadable, or set beside
/// `SLACK_WEBHOOK`) is the run's error, naming the variable, so that the run exits 2 with its
/// backup taken and an alert on failed CronJobs hears of it.
pub fn report_notices(
    outcome: anyhow::Result<()>,
    notices: Notices,
    notifications: Notifications,
) -> anyhow::Result<()> {
    let unreadable_hook = match notifications.slack {
        Some(Err(e)) if outcome.is_ok() => Some(e),
        _ => None,
    };
    // Said once, as the error.
    let notices = Notices { slack: notices.slack.filter(|_| unreadable_hook.is_none()), ..notices };
    warn_unsent(&notices);
    match unreadable_hook {
        Some(e) => Err(anyhow::Error::new(e).context("the backup is complete, but Slack was not told")),
        None => outcome,
    }
}

/// The prune that followed a good backup: what it removed, on stderr, or its failure as the
/// run's error.
pub fn report_prune<E: std::fmt::Display>(prune: Option<Result<backup_core::PruneReport, E>>) -> anyhow::Result<()> {
    let Some(pruned) = prune else { return Ok(()) };
    let report = pruned.map_err(|e| anyhow!("the backup is complete, but pruning failed: {e}"))?;
    for deleted in &report.deleted {
        eprintln!("pruned {deleted}");
    }
    for removed in report.stale_partials.iter().chain(&report.stale_uploads) {
        eprintln!("removed the leftover of an interrupted backup: {removed}");
    }
    Ok(())
}

/// `prune`'s report as a table, for both backup binaries: `unit` names what a cluster is
/// (`cluster`, `deployment`).
pub fn prune_text(report: &backup_core::PruneReport, unit: &str, grace_days: Option<u32>) -> String {
    let verb = if report.dry_run { "Would delete" } else { "Deleted" };
    let mut text = String::new();
    for deleted in &report.deleted {
        text.push_str(&format!("{verb} {deleted}\n"));
    }
    for removed in report.stale_partials.iter().chain(&report.stale_uploads) {
        text.push_str(&format!("Removed the leftover of an interrupted backup: {removed}\n"));
    }
    for database in &report.replaced_databases {
        let verb = if report.dry_run { "Would drop" } else { "Dropped" };
        let days = grace_days.map(|d| format!(" more than {d} days ago")).unwrap_or_default();
        text.push_str(&format!("{verb} {database}, replaced by a restore{days}\n"));
    }
    if !report.other_clusters.is_empty() {
        text.push_str(&format!(
            "Left alone: {} backup(s) of the same name in another {unit}\n",
            report.other_clusters.len()
        ));
    }
    if !report.unidentified.is_empty() {
        text.push_str(&format!(
            "Left alone: {} backup(s) whose manifest names no {unit} (an older version): {}\n",
            report.unidentified.len(),
            report.unidentified.join(", ")
        ));
    }
    for note in &report.notes {
        text.push_str(&format!("Note: {note}\n"));
    }
    text.push_str(&format!("{verb} {} backup(s); keeping {}\n", report.deleted.len(), report.kept.len()));
    text
}
