use assert_cmd::Command;
use serde_json::Value;
use testkit::{SilentServer, closed_port};

fn datastores() -> Command {
    Command::cargo_bin("datastores").unwrap()
}

fn reports(output: &[u8]) -> Vec<Value> {
    serde_json::from_slice::<Value>(output).unwrap().as_array().unwrap().clone()
}

fn report<'a>(reports: &'a [Value], key: &str) -> &'a Value {
    reports.iter().find(|r| r["datastore"] == key).unwrap()
}

#[test]
fn no_arguments_prints_usage() {
    let output = datastores().env_clear().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage: datastores"));
}

#[test]
fn version_is_printed() {
    let output = datastores().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("datastores {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn health_over_the_stack() {
    testkit::require(datastores::Datastore::Postgres);
    let output = datastores().args(["health", "--output", "json", "--timeout", "20s"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    let reports = reports(&output.stdout);
    for key in ["postgres", "redis", "mongodb", "kafka", "milvus", "s3"] {
        let r = report(&reports, key);
        assert_eq!(r["status"], "healthy", "{r}");
        assert!(r["version"].as_str().is_some_and(|v| !v.is_empty()), "{r}");
    }
    let weaviate = report(&reports, "weaviate");
    let expected = if std::env::var_os("WEAVIATE_URL").is_some() { "healthy" } else { "not_configured" };
    assert_eq!(weaviate["status"], expected);
}

#[test]
fn table_output_lists_every_datastore() {
    testkit::require(datastores::Datastore::Postgres);
    let output = datastores().args(["health", "--timeout", "20s"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("DATASTORE"), "{text}");
    for name in ["PostgreSQL", "Redis", "MongoDB", "Kafka", "Milvus", "Weaviate", "S3"] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn a_stopped_datastore_is_named_and_fails_the_run() {
    testkit::require(datastores::Datastore::Postgres);
    let port = closed_port();
    let output = datastores()
        .args(["health", "--output", "json", "--timeout", "20s", "--redis-url", &format!("redis://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let reports = reports(&output.stdout);
    let redis = report(&reports, "redis");
    assert_eq!(redis["status"], "unhealthy");
    assert!(redis["error"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{redis}");
    assert_eq!(report(&reports, "postgres")["status"], "healthy");
}

#[test]
fn a_hanging_datastore_is_cut_off_at_the_timeout() {
    let server = SilentServer::start();
    let output = datastores()
        .env_clear()
        .args(["health", "--output", "json", "--timeout", "1s"])
        .args(["--postgres-host", "127.0.0.1", "--postgres-port", &server.port.to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let reports = reports(&output.stdout);
    let postgres = report(&reports, "postgres");
    assert_eq!(postgres["status"], "unhealthy");
    let error = postgres["error"].as_str().unwrap();
    assert!(error.contains("no answer within 1s") && error.contains(&server.port.to_string()), "{error}");
}

#[test]
fn bad_configuration_names_the_flag_or_variable() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (&["--postgres-host", "h", "--postgres-port", "54x"], &[], "flag --postgres-port"),
        (&[], &[("POSTGRES_HOST", "h"), ("POSTGRES_SSLMODE", "sometimes")], "environment variable POSTGRES_SSLMODE"),
        (&[], &[("DATABASE_URL", "postgres://u:pw@h:port/db")], "environment variable DATABASE_URL"),
        (
            &[],
            &[("POSTGRES_HOST", "h"), ("POSTGRES_PASSWORD_FILE", "/nonexistent/pg-secret")],
            "/nonexistent/pg-secret",
        ),
        (&[], &[("MONGODB_URI", "mongo://h")], "environment variable MONGODB_URI"),
    ];
    for (args, env, expected) in cases {
        let output = datastores().env_clear().envs(env.iter().copied()).arg("health").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
    }
}

#[test]
fn nothing_configured_is_a_usage_error() {
    let output = datastores().env_clear().arg("health").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no datastore is configured"));
}

#[test]
fn required_but_unconfigured_datastore_fails() {
    let output =
        datastores().env_clear().args(["health", "--require", "weaviate", "--postgres-host", "h"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Weaviate is not configured: set WEAVIATE_URL"));
}

#[test]
fn passwords_never_reach_the_output_or_logs() {
    let secret = "Sup3r-Secret-Pw";
    let server = SilentServer::start();
    let output = datastores()
        .env_clear()
        .env("RUST_LOG", "trace")
        .env("DATABASE_URL", format!("postgres://app:{secret}@127.0.0.1:{}/db", closed_port()))
        .env("REDIS_URL", format!("redis://:{secret}@127.0.0.1:{}/0", server.port))
        .env("MONGODB_URI", format!("mongodb://app:{secret}@127.0.0.1:{}/", closed_port()))
        .env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", closed_port()))
        .env("KAFKA_SASL_USERNAME", "app")
        .env("KAFKA_SASL_PASSWORD", secret)
        .env("WEAVIATE_URL", format!("http://127.0.0.1:{}", closed_port()))
        .env("WEAVIATE_API_KEY", secret)
        .args(["health", "--timeout", "2s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!all.contains(secret), "{all}");
    assert!(all.contains("PostgreSQL"), "{all}");
}
