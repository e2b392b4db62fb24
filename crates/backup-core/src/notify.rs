//! Telling people and monitoring: a Slack-compatible webhook, and what a backup run pushes to a
//! Prometheus Pushgateway (pushed by the shared [`datastores::push`]). These never fail a backup:
//! callers report their errors as warnings.
//!
//! A Slack webhook's path is its token, so it never appears in an error: reqwest's errors have
//! their URL removed, and messages name only the host.

use std::time::Duration;

use datastores::Secret;
use datastores::push::JobRun;

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

/// A backup run as pushed to a Pushgateway with [`datastores::push`]: `job` (`pg_backup`,
/// `mongo_backup`), grouped by `instance`, what was backed up. Besides the series of every job, a
/// successful run sends `<job>_size_bytes`; a failed one leaves it out, as it leaves out the
/// last-success time, so both keep the values of the last good backup.
pub fn job_run(job: &str, instance: &str, success: bool, duration: Duration, size_bytes: u64) -> JobRun {
    let run = JobRun::new(job, success, duration).label("instance", instance);
    if success {
        run.gauge(format!("{job}_size_bytes"), "Size of the last successful backup as stored.", size_bytes as f64)
    } else {
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_backup_sends_neither_its_size_nor_a_last_success() {
        let good = job_run("pg_backup", "recommend", true, Duration::from_secs(3), 1024).exposition().unwrap();
        assert!(good.contains("\npg_backup_size_bytes 1024\n"), "{good}");
        assert!(good.contains("dbkit_job_last_success_timestamp_seconds "), "{good}");
        assert!(good.contains("\ndbkit_job_success 1\n"), "{good}");

        let failed = job_run("pg_backup", "recommend", false, Duration::from_secs(3), 1024);
        assert_eq!(failed.grouping, [("instance".to_owned(), "recommend".to_owned())]);
        let text = failed.exposition().unwrap();
        assert!(!text.contains("pg_backup_size_bytes") && !text.contains("last_success"), "{text}");
        assert!(text.contains("\ndbkit_job_success 0\n"), "{text}");
    }
}
