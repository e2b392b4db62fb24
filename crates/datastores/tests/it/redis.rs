use datastores::{Datastore, RedisConfig, RedisConnection, Secret};
use testkit::{closed_port, expect_up, require, unique_name};

fn config() -> RedisConfig {
    expect_up(RedisConfig::from_settings(&require(Datastore::Redis)))
}

#[tokio::test]
async fn health_reports_the_server_version() {
    let version = expect_up(config().health().await);
    assert!(version.starts_with("Redis 7."), "{version}");
}

#[tokio::test]
async fn commands_run_with_the_configured_password() {
    let config = config();
    assert!(config.password.is_some(), "the stack's Redis requires a password");
    let RedisConnection::Single(mut connection) = expect_up(config.connect().await) else {
        panic!("standalone expected")
    };
    let key = unique_name("test");
    let () = datastores::redis_driver::cmd("SET")
        .arg(&key)
        .arg("v")
        .arg("EX")
        .arg(60)
        .query_async(&mut connection)
        .await
        .unwrap();
    let value: String = datastores::redis_driver::cmd("GET").arg(&key).query_async(&mut connection).await.unwrap();
    assert_eq!(value, "v");
    let _: i64 = datastores::redis_driver::cmd("DEL").arg(&key).query_async(&mut connection).await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_refused_without_echoing_it() {
    let mut config = config();
    config.password = Some(Secret::new("not-the-redis-pw"));
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.contains("Redis at 127.0.0.1:"), "{err}");
    assert!(!err.contains("not-the-redis-pw"), "{err}");
}

#[tokio::test]
async fn closed_port_names_the_host() {
    let mut config = config();
    let port = closed_port();
    config.topology = datastores::RedisTopology::Standalone(datastores::RedisNode { host: "127.0.0.1".into(), port });
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
