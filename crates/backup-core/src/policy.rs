//! What a backup job does besides the backup, as the platform configures it: how long backups
//! are kept, and whom to tell how a run went. Read from [`Settings`] like every datastore's
//! configuration, so that a CronJob's variables mean the same to every backup binary and to a
//! service that links the libraries.

use datastores::{ConfigError, Secret, Settings};

use crate::retention::Retention;

/// Days a database that a restore replaced is kept before prune drops it, unless
/// `RETENTION_REPLACED_DAYS` says otherwise (see [`replaced_days`]).
pub const DEFAULT_REPLACED_DAYS: u32 = 7;

/// How backups are kept and whom a backup job tells: the variables every backup CronJob sets.
#[derive(Debug)]
pub struct Policy {
    /// How many days, weeks and months of backups prune keeps.
    pub retention: Retention,
    /// Whether a backup job prunes after a successful backup (`--no-prune` turns it off).
    pub prune_after_backup: bool,
    /// Whom a backup job tells how it went.
    pub notifications: Notifications,
}

/// Where a backup job reports its run. Each channel is `None` when not configured, and
/// `Some(Err(..))` when its setting cannot be read (a `_FILE` that cannot be read, or a variable
/// set both ways): a job then reports that channel's notice as not sent, naming the variable,
/// and carries on. Both addresses are secrets (a webhook's path is its token; a Pushgateway
/// address may hold `user:password@`): their `Debug` shows neither, and messages about them
/// name only the host.
#[derive(Debug, Default)]
pub struct Notifications {
    /// A Slack incoming webhook (or anything that takes `{"text": ...}`): told of every backup,
    /// good or failed.
    pub slack: Option<Result<Secret, ConfigError>>,
    /// A Prometheus Pushgateway: gets the run of every backup job.
    pub pushgateway: Option<Result<Secret, ConfigError>>,
}

impl Policy {
    /// Reads the retention (see [`Retention::from_settings`]) and the notifications (see
    /// [`Notifications::from_settings`], which never fails). Pruning after a backup is on.
    ///
    /// ```rust
    /// use backup_core::{Policy, Retention};
    /// use datastores::{Settings, Source};
    ///
    /// let settings = Settings::new().layer(
    ///     Source::Environment,
    ///     [("RETENTION_DAYS", "7"), ("SLACK_WEBHOOK", "https://hooks.example.com/services/T0/B0/hook-token")],
    /// );
    /// let policy = Policy::from_settings(&settings)?;
    /// assert_eq!(policy.retention, Retention { daily: 7, weekly: 12, monthly: 12 });
    /// assert!(policy.prune_after_backup && policy.notifications.pushgateway.is_none());
    /// assert!(matches!(policy.notifications.slack, Some(Ok(_))));
    /// // The webhook is a secret: `Debug` does not show it.
    /// assert!(!format!("{policy:?}").contains("hook-token"));
    ///
    /// // A malformed retention is an error naming the variable.
    /// let bad = Settings::new().layer(Source::Environment, [("RETENTION_WEEKS", "twelve")]);
    /// assert!(Policy::from_settings(&bad).unwrap_err().to_string().contains("RETENTION_WEEKS"));
    ///
    /// // A notification setting that cannot be read is kept for the job to report.
    /// let unread = Settings::new().layer(Source::Environment, [("SLACK_WEBHOOK_FILE", "/nonexistent/hook")]);
    /// let slack = Policy::from_settings(&unread)?.notifications.slack;
    /// assert!(slack.unwrap().unwrap_err().to_string().contains("SLACK_WEBHOOK_FILE"));
    /// # Ok::<(), datastores::ConfigError>(())
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<Policy, ConfigError> {
        Ok(Policy {
            retention: Retention::from_settings(settings)?,
            prune_after_backup: true,
            notifications: Notifications::from_settings(settings),
        })
    }
}

impl Retention {
    /// Reads `RETENTION_DAYS`, `RETENTION_WEEKS` and `RETENTION_MONTHS`; each one unset keeps the
    /// seed's value (30 days, 12 weeks, 12 months).
    pub fn from_settings(settings: &Settings) -> Result<Retention, ConfigError> {
        let defaults = Retention::default();
        Ok(Retention {
            daily: whole_number(settings, "RETENTION_DAYS")?.unwrap_or(defaults.daily),
            weekly: whole_number(settings, "RETENTION_WEEKS")?.unwrap_or(defaults.weekly),
            monthly: whole_number(settings, "RETENTION_MONTHS")?.unwrap_or(defaults.monthly),
        })
    }
}

impl Notifications {
    /// Reads `SLACK_WEBHOOK` and `PUSHGATEWAY_URL` (or their `_FILE` variants, as a Kubernetes
    /// Secret mounts them). Never fails: a setting that cannot be read is kept as that
    /// channel's error, and addresses are checked when a notice is sent, so that neither an
    /// unreadable nor a malformed one stops a backup or a prune.
    pub fn from_settings(settings: &Settings) -> Notifications {
        let channel = |name: &str| settings.get(name).map(|v| v.map(|v| Secret::new(v.text))).transpose();
        Notifications { slack: channel("SLACK_WEBHOOK"), pushgateway: channel("PUSHGATEWAY_URL") }
    }
}

/// Reads `RETENTION_REPLACED_DAYS`: for how many days PostgreSQL's prune keeps a database that a
/// restore replaced and kept; [`DEFAULT_REPLACED_DAYS`] when unset.
///
/// ```rust
/// use datastores::{Settings, Source};
///
/// assert_eq!(backup_core::replaced_days(&Settings::new())?, backup_core::DEFAULT_REPLACED_DAYS);
/// let settings = Settings::new().layer(Source::Environment, [("RETENTION_REPLACED_DAYS", "0")]);
/// assert_eq!(backup_core::replaced_days(&settings)?, 0);
/// # Ok::<(), datastores::ConfigError>(())
/// ```
pub fn replaced_days(settings: &Settings) -> Result<u32, ConfigError> {
    Ok(whole_number(settings, "RETENTION_REPLACED_DAYS")?.unwrap_or(DEFAULT_REPLACED_DAYS))
}

/// A whole number of days, weeks or months.
fn whole_number(settings: &Settings, name: &str) -> Result<Option<u32>, ConfigError> {
    settings.get_parsed(name, |text| match text.trim().parse::<u64>() {
        Ok(n) => u32::try_from(n).map_err(|_| format!("{n} is too large")),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use datastores::Source;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn defaults_are_the_seeds_policy() {
        let policy = Policy::from_settings(&env(&[])).unwrap();
        assert_eq!(policy.retention, Retention { daily: 30, weekly: 12, monthly: 12 });
        assert_eq!(replaced_days(&env(&[])).unwrap(), 7);
        assert!(policy.prune_after_backup);
        assert!(policy.notifications.slack.is_none() && policy.notifications.pushgateway.is_none());
    }

    #[test]
    fn variables_set_each_part() {
        let settings = env(&[
            ("RETENTION_DAYS", "7"),
            ("RETENTION_MONTHS", " 24 "),
            ("RETENTION_REPLACED_DAYS", "0"),
            ("SLACK_WEBHOOK", "https://hooks.example.com/services/T0/B0/token-1"),
        ]);
        let policy = Policy::from_settings(&settings).unwrap();
        assert_eq!(policy.retention, Retention { daily: 7, weekly: 12, monthly: 24 });
        assert_eq!(replaced_days(&settings).unwrap(), 0);
        let hook = policy.notifications.slack.as_ref().and_then(|r| r.as_ref().ok()).map(Secret::expose);
        assert_eq!(hook, Some("https://hooks.example.com/services/T0/B0/token-1"));
        assert!(policy.notifications.pushgateway.is_none());
    }

    #[test]
    fn secrets_come_from_files_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pushgateway");
        std::fs::write(&path, "http://jobs:gateway-pass-1234@push.example.com:9091\n").unwrap();
        let settings = env(&[
            ("PUSHGATEWAY_URL_FILE", path.to_str().unwrap()),
            ("SLACK_WEBHOOK", "https://hooks.example.com/services/T0/B0/token-5678"),
        ]);
        let policy = Policy::from_settings(&settings).unwrap();
        let gateway = policy.notifications.pushgateway.as_ref().and_then(|r| r.as_ref().ok()).map(Secret::expose);
        assert_eq!(gateway, Some("http://jobs:gateway-pass-1234@push.example.com:9091"));
        let shown = format!("{policy:?}");
        assert!(!shown.contains("gateway-pass-1234") && !shown.contains("token-5678"), "{shown}");
    }

    #[test]
    fn errors_name_the_variable_at_fault() {
        for (vars, names) in [
            (&[("RETENTION_DAYS", "thirty")][..], &["environment variable RETENTION_DAYS", "\"thirty\""][..]),
            (&[("RETENTION_WEEKS", "-1")][..], &["RETENTION_WEEKS", "not a whole number"][..]),
            (&[("RETENTION_MONTHS", "99999999999")][..], &["RETENTION_MONTHS", "too large"][..]),
        ] {
            let err = Policy::from_settings(&env(vars)).unwrap_err().to_string();
            for name in names {
                assert!(err.contains(name), "{vars:?}: {err}");
            }
        }
        // Only PostgreSQL's prune reads it: a backup job's policy does not.
        let settings = env(&[("RETENTION_REPLACED_DAYS", "7d")]);
        assert!(replaced_days(&settings).unwrap_err().to_string().contains("RETENTION_REPLACED_DAYS"));
        assert!(Policy::from_settings(&settings).is_ok());
    }

    #[test]
    fn unreadable_notification_settings_are_kept_per_channel() {
        let policy = Policy::from_settings(&env(&[
            ("SLACK_WEBHOOK_FILE", "/nonexistent/hook"),
            ("PUSHGATEWAY_URL", "http://a:secret-pw@gw:9091"),
            ("PUSHGATEWAY_URL_FILE", "/x"),
            ("RETENTION_DAYS", "3"),
        ]))
        .unwrap();
        assert_eq!(policy.retention.daily, 3);
        let slack = policy.notifications.slack.unwrap().unwrap_err().to_string();
        assert!(slack.contains("SLACK_WEBHOOK_FILE") && slack.contains("/nonexistent/hook"), "{slack}");
        let gateway = policy.notifications.pushgateway.unwrap().unwrap_err().to_string();
        assert!(gateway.contains("PUSHGATEWAY_URL ") && gateway.contains("PUSHGATEWAY_URL_FILE"), "{gateway}");
        assert!(!gateway.contains("secret-pw"), "{gateway}");
    }
}
