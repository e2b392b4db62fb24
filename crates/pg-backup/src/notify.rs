//! Telling people and monitoring: a Slack-compatible webhook and a Prometheus Pushgateway. These
//! never fail a backup: callers report their errors as warnings.

use std::time::Duration;

use crate::Error;

fn client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Tool(format!("cannot build an HTTP client: {e}")))
}

/// Posts `text` to a Slack incoming webhook (or anything that takes `{"text": ...}`).
pub async fn slack(webhook: &str, text: &str) -> Result<(), Error> {
    let response = client()?
        .post(webhook)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .map_err(|e| Error::Tool(format!("cannot reach the webhook: {}", datastores::error_chain(&e))))?;
    if !response.status().is_success() {
        return Err(Error::Tool(format!("the webhook answered {}", response.status())));
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

/// Pushes `metrics` to a Pushgateway under job `pg_backup` and instance `database`.
pub async fn push(gateway: &str, metrics: &RunMetrics) -> Result<(), Error> {
    let url = format!("{}/metrics/job/pg_backup/instance/{}", gateway.trim_end_matches('/'), metrics.database);
    let response = client()?
        .put(&url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(metrics.exposition())
        .send()
        .await
        .map_err(|e| Error::Tool(format!("cannot reach the Pushgateway: {}", datastores::error_chain(&e))))?;
    if !response.status().is_success() {
        return Err(Error::Tool(format!("the Pushgateway answered {}", response.status())));
    }
    Ok(())
}
