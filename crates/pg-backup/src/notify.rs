//! Telling people and monitoring: a Slack-compatible webhook and a Prometheus Pushgateway. These
//! never fail a backup: callers report their errors as warnings.
//!
//! Both addresses can carry secrets (a Slack webhook's path is its token; a Pushgateway URL may
//! hold `user:password@`), so neither ever appears in an error: reqwest's errors have their URL
//! removed, and messages name only the host.

use std::time::Duration;

use datastores::Secret;

use crate::Error;

fn client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Tool(format!("cannot build an HTTP client: {e}")))
}

/// The host of a URL, for messages: never its path, query or credentials.
fn host_of(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "the server".into(),
    }
}

fn parse(what: &str, secret: &Secret) -> Result<url::Url, Error> {
    url::Url::parse(secret.expose())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| Error::Invalid(format!("{what} is not an http(s) URL")))
}

/// Posts `text` to a Slack incoming webhook (or anything that takes `{"text": ...}`).
pub async fn slack(webhook: &Secret, text: &str) -> Result<(), Error> {
    let url = parse("SLACK_WEBHOOK", webhook)?;
    let host = host_of(&url);
    let response = client()?.post(url).json(&serde_json::json!({ "text": text })).send().await.map_err(|e| {
        Error::Tool(format!("cannot reach the webhook at {host}: {}", datastores::error_chain(&e.without_url())))
    })?;
    if !response.status().is_success() {
        return Err(Error::Tool(format!("the webhook at {host} answered {}", response.status())));
    }
    Ok(())
}

/// The metrics of one run, in Prometheus' text format.
#[derive(Clone, Debug)]
pub struct RunMetrics {
    pub database: String,
    pub success: bool,
    pub finished_unix: i64,
    pub duration_seconds: f64,
    pub size_bytes: u64,
}

impl RunMetrics {
    /// A failed run sends only what describes the run, never the last-success series: pushed
    /// with POST, those keep the values of the last good run, so a staleness alert still fires.
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        let metric = |out: &mut String, name: &str, help: &str, value: String| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
        };
        metric(
            &mut out,
            "pg_backup_last_run_success",
            "1 if the last backup succeeded, 0 if it failed.",
            u8::from(self.success).to_string(),
        );
        metric(
            &mut out,
            "pg_backup_last_run_timestamp_seconds",
            "When the last backup run ended.",
            self.finished_unix.to_string(),
        );
        if self.success {
            metric(
                &mut out,
                "pg_backup_last_success_timestamp_seconds",
                "When the last successful backup finished.",
                self.finished_unix.to_string(),
            );
            metric(
                &mut out,
                "pg_backup_duration_seconds",
                "How long the last successful backup took.",
                format!("{:.3}", self.duration_seconds),
            );
            metric(
                &mut out,
                "pg_backup_size_bytes",
                "Size of the last successful backup as stored.",
                self.size_bytes.to_string(),
            );
        }
        out
    }
}

/// Pushes `metrics` to a Pushgateway under job `pg_backup` and instance `database`, with POST:
/// only the series sent replace the group's series of the same names.
pub async fn push(gateway: &Secret, metrics: &RunMetrics) -> Result<(), Error> {
    let mut url = parse("PUSHGATEWAY_URL", gateway)?;
    let host = host_of(&url);
    let user = url.username().to_owned();
    let password = url.password().map(str::to_owned);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let base = url.as_str().trim_end_matches('/').to_owned();
    let instance = url::form_urlencoded::byte_serialize(metrics.database.as_bytes()).collect::<String>();
    let target = format!("{base}/metrics/job/pg_backup/instance/{instance}");
    let mut request =
        client()?.post(&target).header("Content-Type", "text/plain; version=0.0.4").body(metrics.exposition());
    if !user.is_empty() {
        request = request.basic_auth(user, password);
    }
    let response = request.send().await.map_err(|e| {
        Error::Tool(format!("cannot reach the Pushgateway at {host}: {}", datastores::error_chain(&e.without_url())))
    })?;
    if !response.status().is_success() {
        return Err(Error::Tool(format!("the Pushgateway at {host} answered {}", response.status())));
    }
    Ok(())
}
