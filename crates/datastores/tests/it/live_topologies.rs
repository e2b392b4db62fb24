//! TLS, Redis Sentinel and Redis Cluster against servers these tests start themselves on
//! loopback: PostgreSQL with a test CA, Debian's redis-server with TLS, a Sentinel-managed
//! master and replica, and a three-master cluster.

use std::time::{Duration, Instant};

use datastores::{PostgresConfig, RedisConfig, Settings, Source, SslMode};
use testkit::servers::{RedisOptions, TestPostgres, TestRedis, TestRedisCluster, TestSentinel};
use testkit::tls::TestCa;

fn with(mut config: PostgresConfig, mode: SslMode, root: Option<&std::path::Path>) -> PostgresConfig {
    config.sslmode = mode;
    config.sslrootcert = root.map(std::path::Path::to_owned);
    config
}

#[tokio::test]
async fn postgres_tls_modes_verify_as_libpq_does() {
    testkit::init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dbkit test CA");
    // Valid for the name "localhost" only, not for the address 127.0.0.1.
    let files = ca.server_files(dir.path(), "server", &["localhost"]);
    let other_ca = TestCa::new("some other CA");
    let other = other_ca.server_files(dir.path(), "other", &["localhost"]);
    let server = TestPostgres::start(&testkit::servers::debian_postgres15_bin(), Some(&files));
    let by_ip = server.config("127.0.0.1");
    let by_name = server.config("localhost");

    // The server takes TLS only.
    let err = with(by_ip.clone(), SslMode::Disable, None).connect().await.unwrap_err().to_string();
    assert!(err.contains("no encryption") || err.contains("pg_hba"), "{err}");
    // require encrypts without verifying.
    let client = with(by_ip.clone(), SslMode::Require, None).connect().await.unwrap();
    let ssl: bool =
        client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl, "the server sees a TLS connection");
    // verify-ca checks the chain, not the name.
    with(by_ip.clone(), SslMode::VerifyCa, Some(&files.ca)).connect().await.unwrap();
    let err = with(by_ip.clone(), SslMode::VerifyCa, Some(&other.ca)).connect().await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // verify-full checks the name too.
    let err = with(by_ip.clone(), SslMode::VerifyFull, Some(&files.ca)).connect().await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate") || err.contains("name"), "wrong host name refused: {err}");
    with(by_name.clone(), SslMode::VerifyFull, Some(&files.ca)).connect().await.unwrap();
    // Without a CA file, verification uses the public roots, which never signed a test CA.
    let err = with(by_name.clone(), SslMode::VerifyFull, None).connect().await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // require with a CA file verifies the chain, as libpq does.
    let err = with(by_ip, SslMode::Require, Some(&other.ca)).connect().await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The same through the pool.
    let pool = with(by_name, SslMode::VerifyFull, Some(&files.ca)).pool().await.unwrap();
    let ssl: bool = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
}

#[tokio::test]
async fn redis_over_tls_with_a_test_ca() {
    testkit::init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dbkit test CA");
    let files = ca.server_files(dir.path(), "redis", &["localhost", "127.0.0.1"]);
    let server = TestRedis::start(&RedisOptions {
        password: Some("tls-pw".into()),
        tls: Some(files.clone()),
        ..RedisOptions::default()
    });
    let settings = |ca_file: &std::path::Path| {
        Settings::new().layer(
            Source::Other("test".into()),
            [
                ("REDIS_URL", format!("rediss://:tls-pw@localhost:{}/0", server.port)),
                ("REDIS_CA_CERT", ca_file.display().to_string()),
            ],
        )
    };
    let config = RedisConfig::from_settings(&settings(&files.ca)).unwrap();
    let version = config.health().await.unwrap();
    assert!(version.starts_with("Redis 7"), "{version}");
    let other = TestCa::new("other").server_files(dir.path(), "other", &["localhost"]);
    let config = RedisConfig::from_settings(&settings(&other.ca)).unwrap();
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate") || err.contains("tls") || err.contains("TLS"), "{err}");
    // Plain text to the TLS port is not an answer.
    let plain = Settings::new()
        .layer(Source::Other("test".into()), [("REDIS_URL", format!("redis://:tls-pw@127.0.0.1:{}/0", server.port))]);
    let mut config = RedisConfig::from_settings(&plain).unwrap();
    config.connect_timeout = Duration::from_secs(2);
    config.response_timeout = Duration::from_secs(2);
    assert!(config.health().await.is_err());
}

fn sentinel_config(sentinel: &TestSentinel) -> RedisConfig {
    let settings = Settings::new().layer(
        Source::Other("test".into()),
        [
            ("REDIS_SENTINEL_NODES", format!("127.0.0.1:{}", sentinel.sentinel_port)),
            ("REDIS_SENTINEL_MASTER", sentinel.name.clone()),
            ("REDIS_PASSWORD", sentinel.password.clone()),
            ("REDIS_CONNECT_TIMEOUT", "5s".into()),
            ("REDIS_RESPONSE_TIMEOUT", "5s".into()),
        ],
    );
    RedisConfig::from_settings(&settings).unwrap()
}

#[tokio::test]
async fn sentinel_follows_a_failover_during_a_health_loop() {
    let sentinel = tokio::task::spawn_blocking(TestSentinel::start).await.unwrap();
    let config = sentinel_config(&sentinel);
    config.health().await.unwrap();
    assert_eq!(sentinel.current_master_port(), sentinel.master.port);

    // Health checks every 100 ms while the Sentinel promotes the replica, and for 10 s after.
    let looping = config.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let checks = tokio::spawn(async move {
        let mut results = Vec::new();
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            results.push((Instant::now(), looping.health().await.is_ok()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        results
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = testkit::servers::redis_cli(sentinel.sentinel_port, None, &["sentinel", "failover", &sentinel.name]);
    assert!(out.contains("OK"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while sentinel.current_master_port() != sentinel.replica.port {
        assert!(Instant::now() < deadline, "the Sentinel did not promote the replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let promoted = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = checks.await.unwrap();
    // Every check some time after the promotion succeeds: the connection follows the Sentinel.
    let settled: Vec<bool> =
        results.iter().filter(|(at, _)| *at > promoted + Duration::from_secs(4)).map(|(_, ok)| *ok).collect();
    assert!(!settled.is_empty() && settled.iter().all(|ok| *ok), "{results:?}");
    // And writes go to the new master.
    let datastores::RedisConnection::Single(mut connection) = config.connect().await.unwrap() else { panic!() };
    let role: String = datastores::redis_driver::cmd("ROLE")
        .query_async::<Vec<datastores::redis_driver::Value>>(&mut connection)
        .await
        .map(|v| format!("{v:?}"))
        .unwrap();
    assert!(role.contains("master"), "{role}");
    let () =
        datastores::redis_driver::cmd("SET").arg("after-failover").arg("1").query_async(&mut connection).await.unwrap();
    assert!(sentinel.replica.cli(Some(&sentinel.password), &["get", "after-failover"]).contains('1'));
}

#[tokio::test]
async fn cluster_health_and_commands_across_slots() {
    let cluster = tokio::task::spawn_blocking(TestRedisCluster::start).await.unwrap();
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let settings = Settings::new().layer(
        Source::Other("test".into()),
        [("REDIS_CLUSTER_NODES", nodes.join(",")), ("REDIS_PASSWORD", cluster.password.clone())],
    );
    let config = RedisConfig::from_settings(&settings).unwrap();
    let version = config.health().await.unwrap();
    assert!(version.starts_with("Redis 7"), "{version}");
    let datastores::RedisConnection::Cluster(mut connection) = config.connect().await.unwrap() else {
        panic!("a cluster connection")
    };
    // Keys spread over the three masters' slots.
    for i in 0..30 {
        let () = datastores::redis_driver::cmd("SET")
            .arg(format!("key-{i}"))
            .arg(i)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let mut holders = 0;
    for node in &cluster.nodes {
        let keys = node.cli(Some(&cluster.password), &["dbsize"]);
        if keys.trim().parse::<u32>().unwrap_or(0) > 0 {
            holders += 1;
        }
    }
    assert_eq!(holders, 3, "every master holds some of the keys");
    for i in 0..30 {
        let v: i64 =
            datastores::redis_driver::cmd("GET").arg(format!("key-{i}")).query_async(&mut connection).await.unwrap();
        assert_eq!(v, i);
    }
}
