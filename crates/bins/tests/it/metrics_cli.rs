//! `datastores serve-metrics` scraped by a real Prometheus, against the stack's servers and
//! servers of the tests' own.

use std::process::Command;

use testkit::servers::{Daemon, RedisOptions, Scratch, TestPrometheus, TestRedis, http_get};
use testkit::{SilentServer, TestDatabase, closed_port};

/// The exporter as a Deployment runs it, on a port of its own, with `env` over the stack's.
fn exporter(env: &[(&str, String)], deadline: &str) -> (Daemon, u16, Scratch) {
    testkit::require(datastores::Datastore::Postgres);
    let scratch = Scratch::new("exporter");
    let port = closed_port();
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("datastores"));
    command.args(["serve-metrics", "--listen", &format!("127.0.0.1:{port}"), "--deadline", deadline]);
    command.env_remove("WEAVIATE_URL");
    for (k, v) in env {
        command.env(k, v);
    }
    let daemon = Daemon::spawn("exporter", command, &scratch.path, port);
    (daemon, port, scratch)
}

/// The value of a series in an exposition text (labels given must all match).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_every_datastore_and_sees_sessions_and_misses() {
    let redis = TestRedis::start(&RedisOptions::default());
    let env = [("REDIS_URL", format!("redis://127.0.0.1:{}/0", redis.port)), ("REDIS_PASSWORD_FILE", String::new())];
    let (_exporter, port, _dir) = exporter(&env, "2s");
    let prometheus =
        tokio::task::spawn_blocking(move || TestPrometheus::start(&[format!("127.0.0.1:{port}")])).await.unwrap();

    let settings = testkit::settings();
    let config = datastores::DatastoresConfig::from_settings(&settings).unwrap();
    for (datastore, prefix) in [
        (datastores::Datastore::Postgres, "pg"),
        (datastores::Datastore::Redis, "redis"),
        (datastores::Datastore::MongoDb, "mongodb"),
        (datastores::Datastore::Kafka, "kafka"),
        (datastores::Datastore::Milvus, "milvus"),
    ] {
        if config.is_configured(datastore) {
            prometheus.wait_for(&format!("{prefix}_up"), |v| v == 1.0);
        }
    }

    // Sessions held open in a database of the test's own show in the connection gauge.
    let db = TestDatabase::create().await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(db.connect().await);
    }
    let query = format!("pg_stat_activity_count{{datname=\"{}\",state=\"idle\"}}", db.name);
    prometheus.wait_for(&query, |v| v == 5.0);
    drop(sessions);

    // Misses on a Redis of the test's own: the counter grows by exactly that many.
    let before = prometheus.wait_for("redis_keyspace_misses_total", |_| true);
    for i in 0..7 {
        redis.cli(None, &["GET", &format!("missing-{i}")]);
    }
    prometheus.wait_for("redis_keyspace_misses_total", |v| v == before + 7.0);
    prometheus.wait_for("redis_memory_max_bytes", |v| v == 0.0);
}

/// Scrapes until PostgreSQL reports (one slow scrape of the shared server on a busy machine may
/// miss the deadline), checking `each` scrape; returns the last exposition.
async fn scrape_with_postgres_up(port: u16, each: impl Fn(&str)) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = tokio::task::spawn_blocking(move || http_get(port, "/metrics")).await.unwrap();
        each(&text);
        if value(&text, "pg_up", &[]) == Some(1.0) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "PostgreSQL never reported: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datastore_that_stops_or_hangs_is_down_within_the_deadline_and_the_others_still_report() {
    let mut redis = TestRedis::start(&RedisOptions::default());
    let env = [("REDIS_URL", format!("redis://127.0.0.1:{}/0", redis.port)), ("REDIS_PASSWORD_FILE", String::new())];
    let (_exporter, port, _dir) = exporter(&env, "3s");
    scrape_with_postgres_up(port, |text| assert_eq!(value(text, "redis_up", &[]), Some(1.0), "{text}")).await;

    redis.daemon.kill();
    let text =
        scrape_with_postgres_up(port, |text| assert_eq!(value(text, "redis_up", &[]), Some(0.0), "{text}")).await;
    assert!(value(&text, "pg_stat_database_numbackends", &[("datname", "postgres")]).is_some());

    // A server that accepts and never answers: the scrape still ends (http_get gives up after
    // 10 s, over three times the deadline), with that datastore down. Redis's own timeouts are
    // far longer, so only the deadline can have ended its part.
    let silent = SilentServer::start();
    let env = [
        ("REDIS_URL", format!("redis://127.0.0.1:{}/0", silent.port)),
        ("REDIS_PASSWORD_FILE", String::new()),
        ("REDIS_CONNECT_TIMEOUT", "60s".into()),
        ("REDIS_RESPONSE_TIMEOUT", "60s".into()),
    ];
    let (_exporter, port, _dir) = exporter(&env, "3s");
    scrape_with_postgres_up(port, |text| {
        assert_eq!(value(text, "redis_up", &[]), Some(0.0), "{text}");
        let took = value(text, "redis_scrape_duration_seconds", &[]).unwrap();
        assert!((2.9..10.0).contains(&took), "cut off at the deadline, long before Redis's own timeouts: {took}");
    })
    .await;
}

#[test]
fn every_series_follows_the_naming_rules_and_has_help() {
    testkit::require(datastores::Datastore::Postgres);
    let output = Command::new(assert_cmd::cargo::cargo_bin("datastores"))
        .args(["serve-metrics", "--once"])
        .env_remove("WEAVIATE_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let mut types = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
        }
    }
    assert!(types.len() > 30, "{text}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for (name, kind) in &types {
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has help");
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name} ends in _total");
        }
        assert!(!name.contains("_usec") && !name.ends_with("_mb"), "{name}: base units");
        assert!(
            readme.contains(&format!("`{name}`")) || readme.contains(&format!("`{name}{{")),
            "the README lists {name}"
        );
    }
}

#[test]
fn the_alert_rules_pass_promtool_and_the_deployment_runs_the_exporter() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let promtool = testkit::servers::program("promtool", "prometheus");
    for args in [["check", "rules", "dbkit-rules.yaml"], ["test", "rules", "dbkit-rules.test.yaml"]] {
        let output = Command::new(&promtool).args(args).current_dir(deploy.join("prometheus")).output().unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = std::fs::read_to_string(deploy.join("datastores-exporter.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_json::to_value(serde_norway::from_str::<serde_norway::Value>(d).unwrap()).unwrap())
        .collect();
    let rules = std::fs::read_to_string(deploy.join("prometheus/dbkit-rules.yaml")).unwrap();
    let prometheus = docs.iter().find(|d| d["metadata"]["name"] == "prometheus-dbkit").unwrap();
    assert_eq!(prometheus["data"]["dbkit-rules.yaml"], rules.as_str(), "the ConfigMap carries the tested rules");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut args: Vec<String> =
        container["command"].as_array().unwrap().iter().skip(1).map(|a| a.as_str().unwrap().to_owned()).collect();
    assert_eq!(args[0], "serve-metrics");
    let env = container["env"].as_array().unwrap();
    assert!(env.iter().all(|e| !e["name"].as_str().unwrap().ends_with("PASSWORD")), "secrets only as files");
    args.push("--help".into());
    let help = Command::new(assert_cmd::cargo::cargo_bin("datastores")).args(&args).output().unwrap();
    assert!(help.status.success(), "{}", String::from_utf8_lossy(&help.stderr));
}
