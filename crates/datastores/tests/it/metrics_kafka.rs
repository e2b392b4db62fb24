//! The Kafka metrics collector against the stack's broker. Every test works on a topic and a
//! consumer group of its own; topics are never deleted (tansu's DeleteTopics deletes every topic).

use std::time::Duration;

use datastores::metrics;
use datastores::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use datastores::rdkafka::client::DefaultClientContext;
use datastores::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use datastores::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use datastores::rdkafka::{Offset, TopicPartitionList};
use datastores::{Datastore, KafkaConfig};
use testkit::{closed_port, expect_up, require, unique_name};

use crate::metrics_mongodb::{assert_follows_naming_rules, value};

fn config() -> KafkaConfig {
    expect_up(KafkaConfig::from_settings(&require(Datastore::Kafka)))
}

async fn create_topic(config: &KafkaConfig, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config.client_config().create().unwrap();
    let created = admin
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Produces `count` messages to partition 0 of `topic`.
fn produce(config: &KafkaConfig, topic: &str, count: usize) {
    let producer: BaseProducer = config.client_config().create().unwrap();
    for i in 0..count {
        let payload = format!("message {i}");
        producer.send(BaseRecord::to(topic).partition(0).key("k").payload(&payload)).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Commits `offset` for partition 0 of `topic` as consumer group `group`.
fn commit(config: &KafkaConfig, group: &str, topic: &str, offset: i64) {
    let consumer: BaseConsumer =
        config.client_config().set("group.id", group).set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

#[tokio::test]
async fn offsets_and_lag_of_a_consumer_group() {
    const N: usize = 5;
    const K: i64 = 2;
    let config = config();
    let topic = unique_name("metrics_topic");
    let group = unique_name("metrics_group");
    create_topic(&config, &topic, 2).await;
    let (c, t, g) = (config.clone(), topic.clone(), group.clone());
    tokio::task::spawn_blocking(move || {
        produce(&c, &t, N);
        commit(&c, &g, &t, K);
    })
    .await
    .unwrap();

    let samples = expect_up(metrics::kafka::collect(&config).await);
    let t = topic.as_str();
    assert!(value(&samples, "kafka_brokers", &[]).unwrap() >= 1.0);
    assert_eq!(value(&samples, "kafka_topic_partitions", &[("topic", t)]), Some(2.0));
    let p0 = [("topic", t), ("partition", "0")];
    let p1 = [("topic", t), ("partition", "1")];
    assert_eq!(value(&samples, "kafka_topic_partition_current_offset", &p0), Some(N as f64), "{samples:?}");
    assert_eq!(value(&samples, "kafka_topic_partition_oldest_offset", &p0), Some(0.0));
    assert_eq!(value(&samples, "kafka_topic_partition_current_offset", &p1), Some(0.0));
    assert_eq!(value(&samples, "kafka_topic_partition_replicas", &p0), Some(1.0));
    assert_eq!(value(&samples, "kafka_topic_partition_in_sync_replica", &p0), Some(1.0));
    assert_eq!(value(&samples, "kafka_topic_partition_under_replicated_partition", &p0), Some(0.0));

    let g = group.as_str();
    let g0 = [("consumergroup", g), ("topic", t), ("partition", "0")];
    let g1 = [("consumergroup", g), ("topic", t), ("partition", "1")];
    assert_eq!(value(&samples, "kafka_consumergroup_current_offset", &g0), Some(K as f64), "{samples:?}");
    assert_eq!(value(&samples, "kafka_consumergroup_lag", &g0), Some(N as f64 - K as f64));
    // Partition 1 of a topic the group consumes, where it has committed nothing.
    assert_eq!(value(&samples, "kafka_consumergroup_current_offset", &g1), Some(-1.0));
    assert_eq!(value(&samples, "kafka_consumergroup_lag", &g1), Some(-1.0));
    assert_eq!(
        value(&samples, "kafka_consumergroup_lag_sum", &[("consumergroup", g), ("topic", t)]),
        Some(N as f64 - K as f64)
    );
    // The group consumes no other topic.
    assert!(samples.0.iter().all(|s| {
        !s.labels.contains(&("consumergroup".into(), group.clone()))
            || s.labels.contains(&("topic".into(), topic.clone()))
    }));
}

#[tokio::test]
async fn log_dirs_are_left_out_where_the_broker_does_not_serve_them() {
    // tansu 0.6 does not serve DescribeLogDirs; the scrape stands without those series.
    let samples = expect_up(metrics::kafka::collect(&config()).await);
    assert!(value(&samples, "kafka_brokers", &[]).unwrap() >= 1.0);
    assert!(!samples.0.iter().any(|s| s.name == "kafka_log_dir_size_bytes"));
}

#[tokio::test]
async fn names_follow_the_rules() {
    let config = config();
    let topic = unique_name("metrics_topic");
    create_topic(&config, &topic, 1).await;
    let samples = expect_up(metrics::kafka::collect(&config).await);
    assert_follows_naming_rules(&samples, "kafka_");
}

#[tokio::test]
async fn unreachable_broker_is_an_error() {
    let mut config = config();
    config.bootstrap_servers = vec![format!("127.0.0.1:{}", closed_port())];
    config.request_timeout = Duration::from_millis(800);
    let err = metrics::kafka::collect(&config).await.unwrap_err();
    assert!(!err.is_empty());
    let collected = metrics::bounded(Datastore::Kafka, Duration::from_secs(30), metrics::kafka::collect(&config)).await;
    assert!(collected.error.is_some());
    assert_eq!(value(&collected.samples, "kafka_up", &[]), Some(0.0));
}
