use datastores::{Datastore, MilvusConfig};
use testkit::{closed_port, expect_up, require};

#[tokio::test]
async fn health_reports_the_server_version() {
    let config = expect_up(MilvusConfig::from_settings(&require(Datastore::Milvus)));
    let version = expect_up(config.health().await);
    assert!(version.starts_with("Milvus v2.3"), "{version}");
}

#[tokio::test]
async fn closed_port_names_the_host() {
    let mut config = expect_up(MilvusConfig::from_settings(&require(Datastore::Milvus)));
    let port = closed_port();
    config.uri = format!("http://127.0.0.1:{port}");
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
