//! The MongoDB metrics collector against the stack's server; also the checks of series names
//! that the Kafka and Milvus collector tests share.

use std::time::Duration;

use datastores::metrics::{self, Kind, Samples};
use datastores::mongodb_driver::bson::{Document, doc};
use datastores::{Datastore, MongoConfig};
use testkit::{TestMongoDatabase, closed_port, expect_up, require};

/// The value of the series `name` whose labels are exactly `labels`.
pub(crate) fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .0
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} appears {} times", found.len());
    found.first().copied()
}

/// Every series: a valid name under `prefix`, a counter exactly when the name ends in `_total`,
/// a one-line help text, valid and distinct label names, each label set once per name; and the
/// rendered text shows the names unchanged with their types.
pub(crate) fn assert_follows_naming_rules(samples: &Samples, prefix: &str) {
    assert!(!samples.0.is_empty());
    let valid = |s: &str, colon: bool| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    let mut seen = std::collections::HashSet::new();
    for s in &samples.0 {
        assert!(s.name.starts_with(prefix) && valid(&s.name, true), "{}", s.name);
        assert_eq!(s.kind == Kind::Counter, s.name.ends_with("_total"), "{} is a {:?}", s.name, s.kind);
        assert!(!s.help.is_empty() && !s.help.contains('\n'), "help of {}: {:?}", s.name, s.help);
        for (k, _) in &s.labels {
            assert!(valid(k, false) && !k.starts_with("__"), "label {k} of {}", s.name);
        }
        let mut labels = s.labels.clone();
        labels.sort();
        assert!(labels.windows(2).all(|w| w[0].0 != w[1].0), "{} repeats a label: {labels:?}", s.name);
        assert!(seen.insert((s.name.clone(), labels.clone())), "{}{labels:?} appears twice", s.name);
        if s.name.contains("_bytes") {
            assert!(s.name.ends_with("_bytes") || s.name.ends_with("_bytes_total"), "{}", s.name);
        }
        if s.name.contains("_seconds") {
            assert!(s.name.ends_with("_seconds") || s.name.ends_with("_seconds_total"), "{}", s.name);
        }
    }
    let collected = metrics::Collected {
        datastore: Datastore::Kafka,
        samples: Samples(samples.0.clone()),
        duration: Duration::ZERO,
        error: None,
    };
    let text = metrics::render(&[collected]);
    for s in &samples.0 {
        let kind = if s.kind == Kind::Counter { "counter" } else { "gauge" };
        assert!(
            text.contains(&format!("# TYPE {} {kind}\n", s.name)),
            "{} is not rendered as a {kind}:\n{text}",
            s.name
        );
    }
}

fn config() -> MongoConfig {
    expect_up(MongoConfig::from_settings(&require(Datastore::MongoDb)))
}

#[tokio::test]
async fn opcounters_grow_with_inserts_and_finds() {
    let db = TestMongoDatabase::new();
    let client = expect_up(db.config.client().await);
    let collection = client.database(&db.name).collection::<Document>("items");
    let config = config();

    let before = expect_up(metrics::mongodb::collect(&config).await);
    for i in 0..3 {
        collection.insert_one(doc! { "k": i }).await.unwrap();
    }
    for i in 0..2 {
        assert!(collection.find_one(doc! { "k": i }).await.unwrap().is_some());
    }
    let after = expect_up(metrics::mongodb::collect(&config).await);

    let grew = |op: &str| {
        let labels = [("legacy_op_type", op)];
        let (a, b) = (
            value(&before, "mongodb_ss_opcounters_total", &labels),
            value(&after, "mongodb_ss_opcounters_total", &labels),
        );
        a.zip(b).map(|(a, b)| b - a).unwrap_or_else(|| panic!("no opcounter {op}: {before:?} {after:?}"))
    };
    // mongod counts an insert per document and secantusdb per command: one document each here.
    assert!(grew("insert") >= 3.0, "insert grew by {}", grew("insert"));
    assert!(grew("query") >= 2.0, "query grew by {}", grew("query"));

    assert!(value(&after, "mongodb_ss_connections", &[("conn_type", "current")]).unwrap() >= 1.0);
    assert!(value(&after, "mongodb_ss_connections_totalCreated_total", &[]).unwrap() >= 1.0);
    let resident = value(&after, "mongodb_ss_mem_resident_bytes", &[]).unwrap();
    assert!(resident >= 1024.0 * 1024.0, "resident memory {resident} is not in bytes");
    assert!(value(&after, "mongodb_ss_uptime_seconds", &[]).unwrap() > 0.0);
    let labels = [("database", db.name.as_str())];
    assert_eq!(value(&after, "mongodb_dbstats_objects", &labels), Some(3.0), "{after:?}");
    assert_eq!(value(&after, "mongodb_dbstats_collections", &labels), Some(1.0));
    assert!(value(&after, "mongodb_dbstats_dataSize_bytes", &labels).unwrap() > 0.0);
}

#[tokio::test]
async fn names_follow_the_rules() {
    let samples = expect_up(metrics::mongodb::collect(&config()).await);
    assert_follows_naming_rules(&samples, "mongodb_");
}

#[tokio::test]
async fn unreachable_server_is_an_error() {
    let mut config = config();
    config.uri = format!("mongodb://127.0.0.1:{}/", closed_port());
    config.server_selection_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(500);
    assert!(metrics::mongodb::collect(&config).await.is_err());
    let collected =
        metrics::bounded(Datastore::MongoDb, Duration::from_secs(30), metrics::mongodb::collect(&config)).await;
    assert!(collected.error.is_some());
    assert_eq!(value(&collected.samples, "mongodb_up", &[]), Some(0.0));
}
