//! The sqlx pool and the deadpool pool from one `PostgresConfig`: the same server, database,
//! user, `application_name`, options, TLS and sizing.

use std::path::Path;
use std::time::{Duration, Instant};

use datastores::sqlx::{self, Row};
use datastores::tokio_postgres;
use datastores::{ConnectError, PostgresConfig, Secret, SslMode};
use testkit::servers::TestPostgres;
use testkit::tls::TestCa;
use testkit::{SilentServer, closed_port, postgres_config};

async fn backends(admin: &tokio_postgres::Client, application_name: &str) -> i64 {
    admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&application_name])
        .await
        .unwrap()
        .get(0)
}

/// Waits (bounded) until `expected` backends carry `application_name`, and returns the count.
async fn settle(admin: &tokio_postgres::Client, application_name: &str, expected: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let count = backends(admin, application_name).await;
        if count == expected || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const WHO: &str = "SELECT current_database(), current_user, a.application_name, current_setting('statement_timeout'), \
                   coalesce(s.ssl, false) FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s USING (pid) \
                   WHERE a.pid = pg_backend_pid()";

/// Database, user, `application_name`, `statement_timeout` and TLS of a backend, as the server
/// sees them.
#[derive(Debug, PartialEq)]
struct Session {
    database: String,
    user: String,
    application_name: String,
    statement_timeout: String,
    ssl: bool,
}

async fn through_deadpool(pool: &datastores::deadpool_postgres::Pool) -> Session {
    let row = pool.get().await.unwrap().query_one(WHO, &[]).await.unwrap();
    Session {
        database: row.get(0),
        user: row.get(1),
        application_name: row.get(2),
        statement_timeout: row.get(3),
        ssl: row.get(4),
    }
}

async fn through_sqlx(pool: &sqlx::PgPool) -> Session {
    let row = sqlx::query(WHO).fetch_one(pool).await.unwrap();
    Session {
        database: row.get(0),
        user: row.get(1),
        application_name: row.get(2),
        statement_timeout: row.get(3),
        ssl: row.get(4),
    }
}

#[tokio::test]
async fn both_pools_open_the_same_sessions() {
    let admin = testkit::expect_up(postgres_config().connect().await);
    let mut config = postgres_config();
    config.application_name = testkit::unique_name("sqlx");
    config.options = Some("-c statement_timeout=4321".into());
    config.pool.min_size = 3;
    config.pool.max_size = 5;

    let sqlx_pool = config.sqlx_pool().await.unwrap();
    assert_eq!(sqlx_pool.size(), 3);
    assert_eq!(settle(&admin, &config.application_name, 3).await, 3, "the minimum is open once built");
    let deadpool = config.pool().await.unwrap();
    assert_eq!(settle(&admin, &config.application_name, 6).await, 6);

    let expected = Session {
        database: config.dbname.clone(),
        user: config.user.clone(),
        application_name: config.application_name.clone(),
        statement_timeout: "4321ms".into(),
        ssl: false,
    };
    assert_eq!(through_deadpool(&deadpool).await, expected);
    assert_eq!(through_sqlx(&sqlx_pool).await, expected);

    // sslmode=disable: neither pool asks for TLS (the stack's server has none to offer anyway).
    config.sslmode = SslMode::Disable;
    config.pool.min_size = 1;
    assert!(!through_deadpool(&config.pool().await.unwrap()).await.ssl);
    assert!(!through_sqlx(&config.sqlx_pool().await.unwrap()).await.ssl);
}

#[tokio::test]
async fn both_pools_connect_through_a_unix_socket_directory() {
    let admin = testkit::expect_up(postgres_config().connect().await);
    let directory: String =
        admin.query_one("SELECT current_setting('unix_socket_directories')", &[]).await.unwrap().get(0);
    let directory = directory.split(',').next().unwrap().trim().to_owned();
    assert!(directory.starts_with('/'), "{directory}");
    let mut config = postgres_config();
    config.host = directory;
    config.pool.min_size = 1;
    // A Unix socket has no client address.
    let sql = "SELECT inet_client_addr() IS NULL";
    let deadpool = config.pool().await.unwrap();
    assert!(deadpool.get().await.unwrap().query_one(sql, &[]).await.unwrap().get::<_, bool>(0));
    let pool = config.sqlx_pool().await.unwrap();
    assert!(sqlx::query_scalar::<_, bool>(sql).fetch_one(&pool).await.unwrap());
}

#[tokio::test]
async fn a_bad_configuration_fails_when_the_sqlx_pool_is_built() {
    let mut config = postgres_config();
    config.password = Some(Secret::new("not-the-sqlx-pw"));
    let err = config.sqlx_pool().await.unwrap_err();
    assert!(matches!(err, ConnectError::Failed { .. }), "{err:?}");
    assert_eq!((err.kind(), err.sqlstate()), (datastores::ErrorKind::Server, Some("28P01")), "{err}");
    let text = err.to_string();
    assert!(text.contains("password authentication failed") && text.contains(&config.endpoint()), "{text}");
    assert!(!text.contains("not-the-sqlx-pw"), "{text}");

    // A refused port fails at once, not after the pool's wait timeout.
    let mut config = PostgresConfig::new("127.0.0.1");
    config.port = closed_port();
    // (The pool's own retries would end in a Timeout after the wait timeout, not in Failed.)
    let err = config.sqlx_pool().await.unwrap_err();
    assert!(matches!(err, ConnectError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{}", config.port)), "{err}");

    // A server that never answers: within the connect timeout.
    let silent = SilentServer::start();
    let mut config = PostgresConfig::new("127.0.0.1");
    config.port = silent.port;
    config.connect_timeout = Duration::from_millis(500);
    let err = config.sqlx_pool().await.unwrap_err();
    assert!(matches!(err, ConnectError::Timeout { timeout, .. } if timeout == Duration::from_millis(500)), "{err:?}");
}

fn with(mut config: PostgresConfig, mode: SslMode, root: Option<&Path>) -> PostgresConfig {
    config.sslmode = mode;
    config.sslrootcert = root.map(Path::to_owned);
    config.pool.min_size = 1;
    config.application_name = testkit::unique_name("sqlx_tls");
    config
}

/// Both pools' errors for `config`, each required to be a refused certificate.
async fn both_refuse(config: &PostgresConfig) {
    let deadpool = config.pool().await.unwrap_err().to_string();
    let sqlx = config.sqlx_pool().await.unwrap_err().to_string();
    for err in [deadpool, sqlx] {
        assert!(err.to_lowercase().contains("certificate"), "{}: {err}", config.sslmode.as_str());
    }
}

#[tokio::test]
async fn both_pools_verify_tls_as_libpq_does() {
    testkit::init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dbkit test CA");
    // Valid for the name "localhost" only, not for the address 127.0.0.1.
    let files = ca.server_files(dir.path(), "server", &["localhost"]);
    let other = TestCa::new("some other CA").server_files(dir.path(), "other", &["localhost"]);
    let server = TestPostgres::start(&testkit::servers::debian_postgres15_bin(), Some(&files));
    let admin = server.config("127.0.0.1");
    let admin = with(admin, SslMode::Require, None).connect().await.unwrap();

    // verify-full by name: both connect, and the server sees TLS on every backend of both.
    let config = with(server.config("localhost"), SslMode::VerifyFull, Some(&files.ca));
    let deadpool = config.pool().await.unwrap();
    let pool = config.sqlx_pool().await.unwrap();
    assert!(through_deadpool(&deadpool).await.ssl);
    assert!(through_sqlx(&pool).await.ssl);
    let plain: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = $1 AND NOT s.ssl",
            &[&config.application_name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0);
    assert_eq!(settle(&admin, &config.application_name, 2).await, 2);

    // verify-full by address: the certificate does not name 127.0.0.1.
    both_refuse(&with(server.config("127.0.0.1"), SslMode::VerifyFull, Some(&files.ca))).await;
    // verify-ca checks the chain. sqlx 0.8 checks the name too (launchbadge/sqlx#3793, fixed in
    // sqlx 0.9): stricter than libpq, never weaker.
    let config = with(server.config("127.0.0.1"), SslMode::VerifyCa, Some(&files.ca));
    assert!(through_deadpool(&config.pool().await.unwrap()).await.ssl);
    let err = config.sqlx_pool().await.unwrap_err().to_string();
    assert!(err.contains("not valid for name"), "{err}");
    let config = with(server.config("localhost"), SslMode::VerifyCa, Some(&files.ca));
    assert!(through_deadpool(&config.pool().await.unwrap()).await.ssl);
    assert!(through_sqlx(&config.sqlx_pool().await.unwrap()).await.ssl);
    both_refuse(&with(server.config("localhost"), SslMode::VerifyCa, Some(&other.ca))).await;
    // require with a root certificate verifies the chain, as libpq does; without one it does not.
    both_refuse(&with(server.config("localhost"), SslMode::Require, Some(&other.ca))).await;
    let config = with(server.config("localhost"), SslMode::Require, Some(&files.ca));
    assert!(through_deadpool(&config.pool().await.unwrap()).await.ssl);
    assert!(through_sqlx(&config.sqlx_pool().await.unwrap()).await.ssl);
    let config = with(server.config("127.0.0.1"), SslMode::Require, None);
    assert!(through_deadpool(&config.pool().await.unwrap()).await.ssl);
    assert!(through_sqlx(&config.sqlx_pool().await.unwrap()).await.ssl);
    // Without a root certificate, verification uses the public roots, which never signed a test CA.
    both_refuse(&with(server.config("localhost"), SslMode::VerifyFull, None)).await;
    // The server takes TLS only, so disable is refused by both.
    let config = with(server.config("127.0.0.1"), SslMode::Disable, None);
    for err in [config.pool().await.unwrap_err().to_string(), config.sqlx_pool().await.unwrap_err().to_string()] {
        assert!(err.contains("no encryption") || err.contains("pg_hba"), "{err}");
    }
}
