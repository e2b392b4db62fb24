use std::time::Duration;

use datastores::{Datastore, KafkaConfig};
use testkit::{closed_port, expect_up, require};

#[tokio::test]
async fn health_reads_cluster_metadata() {
    let config = expect_up(KafkaConfig::from_settings(&require(Datastore::Kafka)));
    let version = expect_up(config.health().await);
    assert!(version.contains("1 broker(s)"), "{version}");
}

#[tokio::test]
async fn unreachable_broker_fails_within_the_request_timeout() {
    let mut config = expect_up(KafkaConfig::from_settings(&require(Datastore::Kafka)));
    config.bootstrap_servers = vec![format!("127.0.0.1:{}", closed_port())];
    config.request_timeout = Duration::from_millis(800);
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.contains(&config.bootstrap_servers[0]), "{err}");
}
