use std::time::{Duration, Instant};

use datastores::{PostgresConfig, Secret};
use testkit::{SilentServer, TestDatabase, closed_port, postgres_config};

#[tokio::test]
async fn health_reports_the_server_version() {
    let version = testkit::expect_up(postgres_config().health().await);
    assert!(version.starts_with("PostgreSQL 1"), "{version}");
}

#[tokio::test]
async fn connects_to_its_own_database_with_pgvector() {
    let db = TestDatabase::create().await;
    let client = db.connect().await;
    client.batch_execute("CREATE EXTENSION vector; CREATE TABLE t (v vector(3))").await.unwrap();
    client.execute("INSERT INTO t VALUES ('[1,2,3]')", &[]).await.unwrap();
    let row = client.query_one("SELECT current_database(), count(*) FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), db.name);
    assert_eq!(row.get::<_, i64>(1), 1);
}

async fn backends(admin: &tokio_postgres::Client, application_name: &str) -> i64 {
    admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&application_name])
        .await
        .unwrap()
        .get(0)
}

use datastores::tokio_postgres;

#[tokio::test]
async fn pool_opens_the_minimum_and_closes_idle_connections_down_to_it() {
    let admin = testkit::expect_up(postgres_config().connect().await);
    let mut config = postgres_config();
    config.application_name = testkit::unique_name("pool");
    config.pool.min_size = 2;
    config.pool.max_size = 6;
    config.pool.idle_timeout = Duration::from_millis(300);
    let pool = config.pool().await.unwrap();
    assert_eq!(pool.status().size, 2);
    assert_eq!(backends(&admin, &config.application_name).await, 2);

    let held: Vec<_> = futures::future::try_join_all((0..6).map(|_| pool.get())).await.unwrap();
    assert_eq!(pool.status().size, 6);
    drop(held);

    // Idle connections are closed by a background task; wait for it (bounded), then check.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.status().size > 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pool.status().size, 2, "idle connections above the minimum are closed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while backends(&admin, &config.application_name).await > 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backends(&admin, &config.application_name).await, 2);
}

#[tokio::test]
async fn pool_never_exceeds_its_maximum() {
    let mut config = postgres_config();
    config.pool.min_size = 0;
    config.pool.max_size = 2;
    config.pool.wait_timeout = Duration::from_millis(200);
    let pool = config.pool().await.unwrap();
    let _a = pool.get().await.unwrap();
    let _b = pool.get().await.unwrap();
    let third = pool.get().await;
    assert!(third.is_err(), "a third connection must wait and time out");
    assert_eq!(pool.status().size, 2);
}

#[tokio::test]
async fn wrong_password_is_refused_without_echoing_it() {
    let mut config = postgres_config();
    config.password = Some(Secret::new("definitely-wrong-pw"));
    let error = config.health().await.unwrap_err();
    assert_eq!(error.sqlstate(), Some("28P01"), "{error}");
    assert_eq!(error.kind(), datastores::ErrorKind::Server, "{error}");
    let shown = format!("{error:?}");
    assert!(!shown.contains("definitely-wrong-pw"), "{shown}");
    let err = error.to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(err.contains(&config.endpoint()), "{err}");
    assert!(!err.contains("definitely-wrong-pw"), "{err}");
}

#[tokio::test]
async fn closed_port_fails_fast_naming_the_host() {
    let mut config = PostgresConfig::new("127.0.0.1");
    config.port = closed_port();
    let error = config.health().await.unwrap_err();
    assert_eq!((error.kind(), error.sqlstate()), (datastores::ErrorKind::Unavailable, None), "{error}");
    let err = error.to_string();
    assert!(err.contains(&format!("127.0.0.1:{}", config.port)), "{err}");
}

#[tokio::test]
async fn silent_host_times_out_within_the_connect_timeout() {
    let server = SilentServer::start();
    let mut config = PostgresConfig::new("127.0.0.1");
    config.port = server.port;
    config.connect_timeout = Duration::from_millis(500);
    let error = config.health().await.unwrap_err();
    assert_eq!(error.kind(), datastores::ErrorKind::TimedOut, "{error}");
    let err = error.to_string();
    assert!(err.contains("no answer within 500ms") || err.contains("timed out"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{}", server.port)), "{err}");
}

#[tokio::test]
async fn sslmode_require_fails_against_a_server_without_tls() {
    let mut config = postgres_config();
    config.sslmode = datastores::SslMode::Require;
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("tls") || err.contains("SSL"), "{err}");
}
