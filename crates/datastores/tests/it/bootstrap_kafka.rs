//! The `kafka` section of the bootstrap manifest against the stack's server.
//!
//! Every test works on topics of its own (topics are never deleted: tansu's DeleteTopics deletes
//! every topic of the cluster) and reads the outcome back with a client of its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datastores::bootstrap::kafka::{Expect, Section, Topic, run};
use datastores::bootstrap::{Item, Mode, Scalar, SectionReport, State};
use datastores::rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use datastores::rdkafka::client::DefaultClientContext;
use datastores::{Datastore, KafkaConfig};
use testkit::{closed_port, expect_up, require, unique_name};

fn config() -> KafkaConfig {
    expect_up(KafkaConfig::from_settings(&require(Datastore::Kafka)))
}

fn topic(name: &str, partitions: u32, configs: &[(&str, &str)]) -> Topic {
    Topic {
        name: name.to_owned(),
        partitions,
        replication_factor: None,
        configs: configs.iter().map(|(k, v)| ((*k).to_owned(), Scalar((*v).to_owned()))).collect(),
    }
}

fn section(topics: Vec<Topic>) -> Section {
    Section { topics, ..Section::default() }
}

fn item<'a>(report: &'a SectionReport, kind: &str, name: &str) -> &'a Item {
    report
        .items
        .iter()
        .find(|i| i.kind == kind && i.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {report:#?}"))
}

/// A topic as the broker holds it, read without the code under test.
#[derive(Debug)]
struct ServerTopic {
    partitions: usize,
    replicas: usize,
    /// What DescribeConfigs answers (on tansu, only the keys that were set).
    configs: BTreeMap<String, String>,
}

fn admin(config: &KafkaConfig) -> AdminClient<DefaultClientContext> {
    config.client_config().create().unwrap()
}

fn brokers(config: &KafkaConfig) -> usize {
    admin(config).inner().fetch_metadata(None, config.request_timeout).unwrap().brokers().len()
}

async fn server_topic(config: &KafkaConfig, name: &str) -> Option<ServerTopic> {
    let admin = admin(config);
    // All topics: a metadata request that names a topic may create it on a broker that
    // auto-creates topics.
    let metadata = admin.inner().fetch_metadata(None, config.request_timeout).unwrap();
    let topic = metadata.topics().iter().find(|t| t.name() == name && t.error().is_none())?;
    let partitions = topic.partitions().len();
    let replicas = topic.partitions().iter().find(|p| p.id() == 0).unwrap().replicas().len();
    let described = admin.describe_configs(&[ResourceSpecifier::Topic(name)], &AdminOptions::new()).await.unwrap();
    let configs = described
        .into_iter()
        .map(|r| r.unwrap())
        .flat_map(|r| r.entries)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    Some(ServerTopic { partitions, replicas, configs })
}

/// The cluster id, as the report of a run shows it (`cluster id X, N broker(s)`).
fn cluster_id(report: &SectionReport) -> String {
    let identity = report.identity.as_deref().unwrap_or_else(|| panic!("no identity in {report:#?}"));
    identity.strip_prefix("cluster id ").unwrap().split(',').next().unwrap().to_owned()
}

#[tokio::test]
async fn apply_creates_missing_topics_and_a_second_apply_changes_nothing() {
    let config = config();
    let (a, b) = (unique_name("bk_create_a"), unique_name("bk_create_b"));
    let manifest =
        || section(vec![topic(&a, 3, &[("retention.ms", "3600000"), ("cleanup.policy", "delete")]), topic(&b, 1, &[])]);

    let plan = run(&config, &manifest(), Mode::Plan).await;
    assert_eq!(plan.error, None, "{plan:#?}");
    assert_eq!(item(&plan, "topic", &a).state, State::Missing, "{plan:#?}");
    assert_eq!(item(&plan, "topic", &b).state, State::Missing, "{plan:#?}");
    assert_eq!(plan.changes(), 0);
    assert!(server_topic(&config, &a).await.is_none(), "plan created {a}");
    // Not pinned: a warning, and the run goes on.
    assert!(plan.warnings.iter().any(|w| w.contains("cluster id")), "{plan:#?}");
    assert!(plan.identity.as_deref().is_some_and(|i| i.contains("broker(s)")), "{plan:#?}");

    let applied = run(&config, &manifest(), Mode::Apply).await;
    assert_eq!(applied.error, None, "{applied:#?}");
    assert!(!applied.has_errors(), "{applied:#?}");
    assert_eq!(item(&applied, "topic", &a).state, State::Created, "{applied:#?}");
    assert_eq!(item(&applied, "topic", &b).state, State::Created, "{applied:#?}");
    assert_eq!(applied.changes(), 2, "{applied:#?}");

    let server_a = server_topic(&config, &a).await.expect("topic a was not created");
    assert_eq!(server_a.partitions, 3, "{server_a:?}");
    assert_eq!(server_a.replicas, 1, "{server_a:?}");
    assert_eq!(server_a.configs.get("retention.ms").map(String::as_str), Some("3600000"), "{server_a:?}");
    assert_eq!(server_a.configs.get("cleanup.policy").map(String::as_str), Some("delete"), "{server_a:?}");
    let server_b = server_topic(&config, &b).await.expect("topic b was not created");
    assert_eq!(server_b.partitions, 1, "{server_b:?}");

    // Again, now with the cluster pinned: nothing to do.
    let mut pinned = manifest();
    pinned.expect = Expect { cluster_id: Some(cluster_id(&applied)) };
    let again = run(&config, &pinned, Mode::Apply).await;
    assert_eq!(again.error, None, "{again:#?}");
    assert!(again.warnings.is_empty(), "{again:#?}");
    assert!(again.items.iter().all(|i| i.state == State::Ok), "{again:#?}");
    assert_eq!(again.changes(), 0, "{again:#?}");
    assert_eq!(again.drift(), 0, "{again:#?}");
    // Every manifest key of a is compared.
    assert_eq!(item(&again, "config", &format!("{a}/retention.ms")).state, State::Ok);
    assert_eq!(item(&again, "config", &format!("{a}/cleanup.policy")).state, State::Ok);
    assert_eq!(item(&again, "partitions", &a).state, State::Ok);
    assert_eq!(item(&again, "replication_factor", &a).state, State::Ok);
}

#[tokio::test]
async fn a_config_changed_by_hand_is_drift_in_check_and_repaired_by_apply() {
    let config = config();
    let name = unique_name("bk_config");
    let created = run(
        &config,
        &section(vec![topic(&name, 1, &[("retention.ms", "3600000"), ("cleanup.policy", "delete")])]),
        Mode::Apply,
    )
    .await;
    assert_eq!(item(&created, "topic", &name).state, State::Created, "{created:#?}");

    // By hand: another manifest that names retention.ms only. It goes through IncrementalAlterConfigs,
    // which leaves the keys it does not name (cleanup.policy) as they are.
    let by_hand = run(&config, &section(vec![topic(&name, 1, &[("retention.ms", "7200000")])]), Mode::Apply).await;
    let changed = item(&by_hand, "config", &format!("{name}/retention.ms"));
    assert_eq!(changed.state, State::Changed, "{by_hand:#?}");
    assert_eq!(changed.detail, "server 3600000, manifest 7200000");
    let server = server_topic(&config, &name).await.unwrap();
    assert_eq!(server.configs.get("retention.ms").map(String::as_str), Some("7200000"), "{server:?}");
    assert_eq!(server.configs.get("cleanup.policy").map(String::as_str), Some("delete"), "{server:?}");

    // The manifest wants the old value back and a key that is not set.
    let manifest = section(vec![topic(
        &name,
        1,
        &[("retention.ms", "3600000"), ("cleanup.policy", "delete"), ("max.message.bytes", "2097152")],
    )]);
    let check = run(&config, &manifest, Mode::Check).await;
    assert_eq!(check.error, None, "{check:#?}");
    let retention = item(&check, "config", &format!("{name}/retention.ms"));
    assert_eq!(retention.state, State::Drift, "{check:#?}");
    assert_eq!(
        retention.detail,
        "server 7200000, manifest 3600000; the broker deletes the segments past the new retention at its next check"
    );
    let max_bytes = item(&check, "config", &format!("{name}/max.message.bytes"));
    assert_eq!(max_bytes.state, State::Drift, "{check:#?}");
    assert_eq!(max_bytes.detail, "server not set, manifest 2097152");
    assert_eq!(item(&check, "config", &format!("{name}/cleanup.policy")).state, State::Ok, "{check:#?}");
    assert_eq!(check.drift(), 2, "{check:#?}");
    assert_eq!(check.changes(), 0);
    let server = server_topic(&config, &name).await.unwrap();
    assert_eq!(server.configs.get("retention.ms").map(String::as_str), Some("7200000"), "check wrote: {server:?}");

    let repaired = run(&config, &manifest, Mode::Apply).await;
    assert!(!repaired.has_errors(), "{repaired:#?}");
    assert_eq!(item(&repaired, "config", &format!("{name}/retention.ms")).state, State::Changed, "{repaired:#?}");
    assert_eq!(item(&repaired, "config", &format!("{name}/max.message.bytes")).state, State::Changed);
    assert_eq!(repaired.changes(), 2, "{repaired:#?}");
    let server = server_topic(&config, &name).await.unwrap();
    assert_eq!(server.configs.get("retention.ms").map(String::as_str), Some("3600000"), "{server:?}");
    assert_eq!(server.configs.get("max.message.bytes").map(String::as_str), Some("2097152"), "{server:?}");
    assert_eq!(server.configs.get("cleanup.policy").map(String::as_str), Some("delete"), "{server:?}");

    let check = run(&config, &manifest, Mode::Check).await;
    assert_eq!(check.drift(), 0, "{check:#?}");
}

#[tokio::test]
async fn fewer_partitions_or_another_replication_factor_is_a_conflict_and_nothing_changes() {
    let config = config();
    let name = unique_name("bk_shrink");
    let created = run(&config, &section(vec![topic(&name, 3, &[])]), Mode::Apply).await;
    assert_eq!(item(&created, "topic", &name).state, State::Created, "{created:#?}");

    for mode in [Mode::Check, Mode::Apply] {
        let report = run(&config, &section(vec![topic(&name, 1, &[])]), mode).await;
        let partitions = item(&report, "partitions", &name);
        assert_eq!(partitions.state, State::Conflict, "{report:#?}");
        assert_eq!(partitions.detail, "partitions cannot decrease: server 3, manifest 1");
        assert!(report.has_errors());
        assert_eq!(report.changes(), 0, "{report:#?}");
    }
    assert_eq!(server_topic(&config, &name).await.unwrap().partitions, 3);

    let mut other_factor = topic(&name, 3, &[]);
    other_factor.replication_factor = Some(2);
    let report = run(&config, &section(vec![other_factor]), Mode::Apply).await;
    let factor = item(&report, "replication_factor", &name);
    assert_eq!(factor.state, State::Conflict, "{report:#?}");
    assert!(factor.detail.starts_with("server 1, manifest 2;") && factor.detail.contains("reassignment"), "{factor:?}");
    assert_eq!(report.changes(), 0, "{report:#?}");
    let server = server_topic(&config, &name).await.unwrap();
    assert_eq!((server.partitions, server.replicas), (3, 1), "{server:?}");
}

#[tokio::test]
async fn a_replication_factor_above_the_broker_count_is_a_conflict_and_the_topic_is_not_created() {
    let config = config();
    let brokers = brokers(&config);
    let factor = u16::try_from(brokers + 1).unwrap();
    let name = unique_name("bk_factor");
    let mut manifest = section(vec![topic(&name, 1, &[("retention.ms", "3600000")])]);
    manifest.replication_factor = Some(factor);

    for mode in [Mode::Plan, Mode::Apply] {
        let report = run(&config, &manifest, mode).await;
        assert_eq!(report.error, None, "{report:#?}");
        let topic = item(&report, "topic", &name);
        assert_eq!(topic.state, State::Conflict, "{report:#?}");
        assert!(
            topic.detail.contains(&format!("replication factor {factor} is larger than the {brokers} broker(s)")),
            "{topic:?}"
        );
        assert!(topic.detail.contains("KAFKA_REPLICATION_FACTOR"), "{topic:?}");
        assert_eq!(report.changes(), 0, "{report:#?}");
    }
    assert!(server_topic(&config, &name).await.is_none(), "{name} was created");
}

#[tokio::test]
async fn more_partitions_fail_on_a_broker_without_create_partitions() {
    // tansu 0.6.0 has no CreatePartitions (librdkafka answers UNSUPPORTED_FEATURE): this test covers
    // the error path. On Apache Kafka the same apply adds the partition.
    let config = config();
    let name = unique_name("bk_grow");
    let created = run(&config, &section(vec![topic(&name, 1, &[])]), Mode::Apply).await;
    assert_eq!(item(&created, "topic", &name).state, State::Created, "{created:#?}");

    let check = run(&config, &section(vec![topic(&name, 2, &[])]), Mode::Check).await;
    let partitions = item(&check, "partitions", &name);
    assert_eq!(partitions.state, State::Drift, "{check:#?}");
    assert_eq!(partitions.detail, "server 1, manifest 2");

    let applied = run(&config, &section(vec![topic(&name, 2, &[])]), Mode::Apply).await;
    let partitions = item(&applied, "partitions", &name);
    assert_eq!(partitions.state, State::Failed, "{applied:#?}");
    assert!(partitions.detail.starts_with("server 1, manifest 2; "), "{partitions:?}");
    assert!(partitions.detail.contains("CreatePartitions"), "{partitions:?}");
    assert!(partitions.detail.contains("UNSUPPORTED_FEATURE"), "{partitions:?}");
    assert_eq!(applied.changes(), 0, "{applied:#?}");
    assert_eq!(server_topic(&config, &name).await.unwrap().partitions, 1);
}

#[tokio::test]
async fn another_cluster_id_is_refused_before_anything_is_created() {
    let config = config();
    let name = unique_name("bk_guard");
    let mut manifest = section(vec![topic(&name, 1, &[])]);
    manifest.expect = Expect { cluster_id: Some("other".into()) };

    let report = run(&config, &manifest, Mode::Apply).await;
    let error = report.error.as_deref().unwrap_or_else(|| panic!("not refused: {report:#?}"));
    assert!(error.starts_with("refused:") && error.contains("cluster id other"), "{error}");
    assert!(error.contains(&config.endpoint()), "{error}");
    assert!(report.items.is_empty(), "{report:#?}");
    assert!(report.has_errors());
    assert!(server_topic(&config, &name).await.is_none(), "{name} was created");
}

#[tokio::test]
async fn an_unreachable_broker_fails_the_section_naming_the_endpoint() {
    let mut config = config();
    config.bootstrap_servers = vec![format!("127.0.0.1:{}", closed_port())];
    // librdkafka's smallest connection setup timeout is 1 s.
    config.request_timeout = Duration::from_millis(1500);

    let started = Instant::now();
    let report = run(&config, &section(vec![topic(&unique_name("bk_down"), 1, &[])]), Mode::Apply).await;
    let elapsed = started.elapsed();
    let error = report.error.as_deref().unwrap_or_else(|| panic!("did not fail: {report:#?}"));
    assert!(error.contains(&config.bootstrap_servers[0]), "{error}");
    assert!(error.contains("cannot reach"), "{error}");
    assert!(report.items.is_empty(), "{report:#?}");
    assert_eq!(report.endpoint, config.bootstrap_servers[0]);
    assert!(elapsed < Duration::from_secs(25), "the 1.5 s timeout, not librdkafka's 60 s: took {elapsed:?}");
}
