//! How the platform's Jobs report their runs: a [`JobRun`] pushed to a Prometheus Pushgateway.
//!
//! Every Job and CronJob (`pg-backup backup`, `recommend-db cleanup`, `vector-admin maintain`,
//! `datastores check`, ...) describes its run as a [`JobRun`] and [`push`]es it with POST to
//! `{gateway}/metrics/job/{job}[/{label}/{value}...]`: the group of the job and its grouping
//! labels (an `instance`, such as the database a backup is of). Each run sends
//!
//! | series | value |
//! |---|---|
//! | `dbkit_job_success` | 1 if the run succeeded, 0 if it failed |
//! | `dbkit_job_duration_seconds` | how long the run took |
//! | `dbkit_job_last_run_timestamp_seconds` | when the run ended (Unix time) |
//! | `dbkit_job_last_success_timestamp_seconds` | when the run ended; sent by a successful run only |
//!
//! and the job's own figures, gauges or counters (whose names end in `_total`), named
//! `<job>_<what>`: `pg_backup_size_bytes`, `recommend_db_cleanup_rows_removed`, ... The names
//! `dbkit_job_*` belong to the series above.
//!
//! POST replaces only the series of the names it sends, in its group alone. A failed run leaves
//! out the last-success series, so the group keeps the time of the last good run, and an alert
//! on `time() - dbkit_job_last_success_timestamp_seconds` fires however often the job fails. A
//! figure a run leaves out keeps its earlier value in the same way.
//!
//! The text is rendered by `metrics-exporter-prometheus` from a recorder of this push alone.
//! The Pushgateway's address may hold `user:password@`: they are sent as basic auth, and no
//! error names more of the address than its host and port. This module never reads the
//! environment nor prints: the caller decides where the address comes from and what a failure
//! means (for the binaries, a warning that does not change the exit status).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::Secret;

/// The prefix of the series every run sends.
pub const PREFIX: &str = "dbkit_job_";
/// 1 if the run succeeded, 0 if it failed.
pub const SUCCESS: &str = "dbkit_job_success";
/// How long the run took, in seconds.
pub const DURATION: &str = "dbkit_job_duration_seconds";
/// When the run ended, in seconds since the Unix epoch.
pub const LAST_RUN: &str = "dbkit_job_last_run_timestamp_seconds";
/// When the last successful run ended: sent by successful runs only.
pub const LAST_SUCCESS: &str = "dbkit_job_last_success_timestamp_seconds";

/// The kind of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value that may go up or down.
    Gauge,
    /// Monotonic; the name ends in `_total`.
    Counter,
}

/// One figure of a run: a gauge, or a counter whose name ends in `_total`.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The series' name, `<job>_<what>` (such as `pg_backup_size_bytes`); not `dbkit_job_*`.
    pub name: String,
    /// The `# HELP` text.
    pub help: String,
    /// Gauge or counter.
    pub kind: Kind,
    /// Labels of the series itself (never the grouping labels' names).
    pub labels: Vec<(String, String)>,
    /// The value; finite, and not negative for a counter (rounded to a whole number when sent).
    pub value: f64,
}

/// One run of a job, as pushed.
///
/// ```rust
/// use std::time::Duration;
/// use datastores::push::JobRun;
///
/// let run = JobRun::new("pg_backup", true, Duration::from_secs(42))
///     .label("instance", "recommend")
///     .gauge("pg_backup_size_bytes", "Size of the backup.", 1.5e9)
///     .counter("pg_backup_files_total", "Files written.", 3);
/// assert_eq!(run.path()?, "/metrics/job/pg_backup/instance/recommend");
/// let text = run.exposition()?;
/// assert!(text.contains("\ndbkit_job_success 1\n"));
/// assert!(text.contains("\npg_backup_files_total 3\n"));
///
/// // What the Pushgateway would refuse is refused before anything is sent.
/// let reserved = run.clone().gauge("dbkit_job_success", "A name of the series every run sends.", 0.0);
/// assert!(reserved.validate().is_err());
/// # Ok::<(), datastores::push::PushError>(())
/// ```
#[derive(Clone, Debug)]
pub struct JobRun {
    /// The `job` of the group, such as `pg_backup`.
    pub job: String,
    /// The other labels of the group, such as `("instance", "recommend")`.
    pub grouping: Vec<(String, String)>,
    /// Whether the run succeeded: `dbkit_job_success`, and whether the last-success time is sent.
    pub success: bool,
    /// How long the run took: `dbkit_job_duration_seconds`.
    pub duration: Duration,
    /// When the run ended.
    pub finished: SystemTime,
    /// The job's own series.
    pub figures: Vec<Figure>,
}

impl JobRun {
    /// A run of `job` that ends now.
    pub fn new(job: impl Into<String>, success: bool, duration: Duration) -> JobRun {
        JobRun {
            job: job.into(),
            grouping: Vec::new(),
            success,
            duration,
            finished: SystemTime::now(),
            figures: Vec::new(),
        }
    }

    /// Adds a grouping label: runs with other values are other groups.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> JobRun {
        self.grouping.push((name.into(), value.into()));
        self
    }

    /// Adds a gauge.
    pub fn gauge(self, name: impl Into<String>, help: impl Into<String>, value: f64) -> JobRun {
        self.figure(Figure { name: name.into(), help: help.into(), kind: Kind::Gauge, labels: Vec::new(), value })
    }

    /// Adds a counter; `name` must end in `_total`.
    pub fn counter(self, name: impl Into<String>, help: impl Into<String>, value: u64) -> JobRun {
        self.figure(Figure {
            name: name.into(),
            help: help.into(),
            kind: Kind::Counter,
            labels: Vec::new(),
            value: value as f64,
        })
    }

    /// Adds a figure, with labels of its own if need be.
    pub fn figure(mut self, figure: Figure) -> JobRun {
        self.figures.push(figure);
        self
    }

    /// Checks what Prometheus and the Pushgateway would refuse: names, duplicates, values.
    pub fn validate(&self) -> Result<(), PushError> {
        let invalid = |text: String| Err(PushError::Invalid(text));
        if self.job.is_empty() {
            return invalid("the job name is empty".into());
        }
        let mut grouping: Vec<&str> = vec!["job"];
        for (name, _) in &self.grouping {
            if !is_label_name(name) {
                return invalid(format!("{name:?} is not a label name"));
            }
            if grouping.contains(&name.as_str()) {
                return invalid(format!("the grouping label {name:?} is given twice"));
            }
            grouping.push(name);
        }
        let mut seen: Vec<(&str, Vec<&(String, String)>)> = Vec::new();
        for figure in &self.figures {
            let name = figure.name.as_str();
            if !is_metric_name(name) {
                return invalid(format!("{name:?} is not a metric name"));
            }
            if name.starts_with(PREFIX) {
                return invalid(format!("{name}: the names {PREFIX}* belong to the series every run sends"));
            }
            if figure.kind == Kind::Counter && !name.ends_with("_total") {
                return invalid(format!("the counter {name} does not end in _total"));
            }
            if !figure.value.is_finite() || (figure.kind == Kind::Counter && figure.value < 0.0) {
                return invalid(format!("{name} has the value {}", figure.value));
            }
            for (label, _) in &figure.labels {
                if !is_label_name(label) || grouping.contains(&label.as_str()) {
                    return invalid(format!("{name} has the label {label:?}, not a label name or a grouping label's"));
                }
            }
            let mut labels: Vec<&(String, String)> = figure.labels.iter().collect();
            labels.sort();
            if seen.iter().any(|(n, l)| *n == name && *l == labels) {
                return invalid(format!("{name} is given twice with the same labels"));
            }
            if let Some(other) = self.figures.iter().find(|f| f.name == name && f.kind != figure.kind) {
                return invalid(format!("{} is both a gauge and a counter", other.name));
            }
            seen.push((name, labels));
        }
        Ok(())
    }

    /// The run in the Prometheus text format (0.0.4), as pushed.
    pub fn exposition(&self) -> Result<String, PushError> {
        self.validate()?;
        let finished = self.finished.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            let gauge = |name: &'static str, help: &'static str, value: f64| {
                ::metrics::describe_gauge!(name, help);
                ::metrics::gauge!(name).set(value);
            };
            gauge(SUCCESS, "1 if the job's last run succeeded, 0 if it failed.", if self.success { 1.0 } else { 0.0 });
            gauge(DURATION, "How long the job's last run took, in seconds.", self.duration.as_secs_f64());
            gauge(LAST_RUN, "When the job's last run ended, in seconds since the Unix epoch.", finished);
            if self.success {
                gauge(
                    LAST_SUCCESS,
                    "When the job's last successful run ended, in seconds since the Unix epoch.",
                    finished,
                );
            }
            for figure in &self.figures {
                let labels: Vec<::metrics::Label> =
                    figure.labels.iter().map(|(k, v)| ::metrics::Label::new(k.clone(), v.clone())).collect();
                let name = figure.name.clone();
                match figure.kind {
                    Kind::Gauge => {
                        ::metrics::describe_gauge!(name.clone(), figure.help.clone());
                        ::metrics::gauge!(name, labels).set(figure.value);
                    }
                    Kind::Counter => {
                        ::metrics::describe_counter!(name.clone(), figure.help.clone());
                        ::metrics::counter!(name, labels).absolute(figure.value.round() as u64);
                    }
                }
            }
        });
        Ok(handle.render())
    }

    /// The path of the run's group: `/metrics/job/{job}[/{label}/{value}...]`, each value
    /// percent-encoded, or in URL-safe base64 (`{label}@base64/...`) when percent-encoding
    /// cannot carry it (a `/`, an empty value, `.` or `..`).
    pub fn path(&self) -> Result<String, PushError> {
        self.validate()?;
        let mut path = format!("/metrics/{}", segment("job", &self.job));
        for (name, value) in &self.grouping {
            path.push('/');
            path.push_str(&segment(name, value));
        }
        Ok(path)
    }
}

/// Why a run was not pushed. No variant holds the Pushgateway's credentials, path or query.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The address is not shown: it may hold a password.
    #[error("the Pushgateway address is not an http(s) URL")]
    Address,
    /// The run breaks a rule of Prometheus or the Pushgateway (a name, a duplicate, a value);
    /// nothing was sent.
    #[error("cannot push the run: {0}")]
    Invalid(String),
    /// The Pushgateway could not be reached, or did not answer within the timeout.
    #[error("cannot reach the Pushgateway at {host}: {detail}")]
    Unreachable {
        /// The Pushgateway's host and port.
        host: String,
        /// The HTTP client's error with its causes, without the URL.
        detail: String,
    },
    /// The Pushgateway answered with a status outside 2xx.
    #[error("the Pushgateway at {host} answered {status}{}", answer(.body))]
    Rejected {
        /// The Pushgateway's host and port.
        host: String,
        /// The HTTP status, such as `400 Bad Request`.
        status: String,
        /// The start of the answer's body (at most 300 characters, on one line).
        body: String,
    },
}

fn answer(body: &str) -> String {
    if body.is_empty() { String::new() } else { format!(": {body}") }
}

/// Pushes `run` with POST to its group on the Pushgateway at `gateway`, within `timeout`.
pub async fn push(gateway: &Secret, run: &JobRun, timeout: Duration) -> Result<(), PushError> {
    let body = run.exposition()?;
    let path = run.path()?;
    let mut url = url::Url::parse(gateway.expose())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or(PushError::Address)?;
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "the server".into(),
    };
    let decode = |text: &str| crate::settings::percent_decode(text).unwrap_or_else(|_| text.to_owned());
    let user = decode(url.username());
    let password = url.password().map(decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}{path}"));

    let unreachable =
        |e: reqwest::Error| PushError::Unreachable { host: host.clone(), detail: crate::error_chain(&e.without_url()) };
    // No proxy from the process environment: the library reads none of it, and the credentials
    // go to the gateway named, not to a proxy the environment chooses.
    let client =
        reqwest::Client::builder().no_proxy().timeout(timeout).connect_timeout(timeout).build().map_err(unreachable)?;
    let mut request = client.post(url).header("Content-Type", "text/plain; version=0.0.4").body(body);
    if !user.is_empty() || password.is_some() {
        request = request.basic_auth(user, password);
    }
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let body: String = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect();
    Err(PushError::Rejected { host, status: status.to_string(), body })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// `name/value` of a grouping key, as the Pushgateway reads it.
fn segment(name: &str, value: &str) -> String {
    if value.is_empty() {
        return format!("{name}@base64/=");
    }
    if value.contains('/') || value == "." || value == ".." {
        return format!("{name}@base64/{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value));
    }
    let mut out = format!("{name}/");
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(success: bool) -> JobRun {
        let mut run = JobRun::new("pg_backup", success, Duration::from_millis(1500)).label("instance", "recommend");
        run.finished = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        run
    }

    #[test]
    fn a_success_sends_the_last_success_and_a_failure_does_not() {
        let text = run(true).gauge("pg_backup_size_bytes", "Size of the backup.", 42.0).exposition().unwrap();
        assert!(text.contains("# TYPE dbkit_job_success gauge\ndbkit_job_success 1\n"), "{text}");
        assert!(text.contains("\ndbkit_job_duration_seconds 1.5\n"), "{text}");
        assert!(text.contains("\ndbkit_job_last_run_timestamp_seconds 1700000000\n"), "{text}");
        assert!(text.contains("\ndbkit_job_last_success_timestamp_seconds 1700000000\n"), "{text}");
        assert!(text.contains("# HELP pg_backup_size_bytes Size of the backup.\n"), "{text}");
        assert!(text.contains("\npg_backup_size_bytes 42\n"), "{text}");

        let text = run(false).exposition().unwrap();
        assert!(text.contains("\ndbkit_job_success 0\n"), "{text}");
        assert!(text.contains("dbkit_job_last_run_timestamp_seconds 1700000000"), "{text}");
        assert!(!text.contains("last_success"), "{text}");
    }

    #[test]
    fn counters_and_labelled_figures() {
        let text = run(true)
            .counter("pg_backup_files_total", "Files.", 3)
            .figure(Figure {
                name: "pg_backup_tables".into(),
                help: "Tables.".into(),
                kind: Kind::Gauge,
                labels: vec![("schema".into(), "public \"x\"".into())],
                value: 7.0,
            })
            .exposition()
            .unwrap();
        assert!(text.contains("# TYPE pg_backup_files_total counter\npg_backup_files_total 3\n"), "{text}");
        assert!(text.contains("pg_backup_tables{schema=\"public \\\"x\\\"\"} 7\n"), "{text}");
    }

    #[test]
    fn grouping_values_are_encoded() {
        let run = JobRun::new("recommend_db cleanup", true, Duration::ZERO)
            .label("instance", "db:5432/recommend")
            .label("tier", "")
            .label("db", "a b%é")
            .label("dot", "..");
        assert_eq!(
            run.path().unwrap(),
            "/metrics/job/recommend_db%20cleanup/instance@base64/ZGI6NTQzMi9yZWNvbW1lbmQ/tier@base64/=\
             /db/a%20b%25%C3%A9/dot@base64/Li4"
        );
    }

    #[test]
    fn what_the_pushgateway_would_refuse_is_refused_here() {
        let bad = [
            JobRun::new("", true, Duration::ZERO),
            run(true).label("job", "x"),
            run(true).label("instance", "again"),
            run(true).label("0bad", "x"),
            run(true).gauge("dbkit_job_success", "no", 1.0),
            run(true).gauge("bad-name", "no", 1.0),
            run(true).counter("pg_backup_files", "no _total", 1),
            run(true).gauge("pg_backup_x", "nan", f64::NAN),
            run(true).gauge("pg_backup_x", "a", 1.0).gauge("pg_backup_x", "b", 2.0),
            run(true).figure(Figure {
                name: "pg_backup_x".into(),
                help: "h".into(),
                kind: Kind::Gauge,
                labels: vec![("instance".into(), "other".into())],
                value: 1.0,
            }),
        ];
        for run in bad {
            assert!(matches!(run.exposition(), Err(PushError::Invalid(_))), "{run:?}");
        }
    }

    #[tokio::test]
    async fn an_address_that_is_not_a_url_is_not_shown() {
        for address in ["pushgateway:9091", "ftp://user:hunter2@host", "not a url hunter2"] {
            let error = push(&Secret::new(address), &run(true), Duration::from_secs(1)).await.unwrap_err();
            assert!(matches!(error, PushError::Address), "{error}");
            assert!(!error.to_string().contains("hunter2") && !format!("{error:?}").contains("hunter2"));
        }
    }
}
