//! What real Flyway projects and hostile scripts threw at pg-migrate: byte-order marks, scripts
//! that must run outside a transaction, trailing comments, a history table of another shape,
//! interrupted concurrent index builds, lost locks, and a transaction-pooling PgBouncer.

use std::time::Duration;

use pg_migrate::{MigrateError, TransactionSource};
use testkit::TestDatabase;

use crate::{config, count, load, scripts};

#[tokio::test]
async fn a_script_with_a_byte_order_mark_runs() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__bom.sql", "\u{feff}CREATE TABLE bom (id int);\nINSERT INTO bom VALUES (1);\n")]);
    let config = config(&dir);
    let report = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(report.applied.len(), 1);
    assert_eq!(count(&db.config, "SELECT count(*) FROM bom").await, 1);
}

#[tokio::test]
async fn a_script_of_concurrent_statements_only_runs_outside_a_transaction_without_a_conf() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[
        (
            "V1__table.sql",
            "CREATE TABLE t (id int, v text);\nINSERT INTO t SELECT g, g::text FROM generate_series(1, 1000) g;\n",
        ),
        (
            "V2__index.sql",
            "-- built online\nCREATE INDEX CONCURRENTLY t_v ON t (v);\nCREATE UNIQUE INDEX CONCURRENTLY t_id ON t (id);\n",
        ),
    ]);
    let config = config(&dir);
    let scripts = load(&config);
    assert_eq!(scripts[1].transaction_source, TransactionSource::Detected);
    let rows = pg_migrate::info(&db.config, &config, &scripts).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.in_transaction).collect::<Vec<_>>(), [Some(true), Some(false)]);
    let dry = pg_migrate::dry_run(&db.config, &config, &scripts).await.unwrap();
    assert!(dry.contains("V2__index.sql (outside a transaction: every statement must run outside one)"), "{dry}");
    let report = pg_migrate::migrate(&db.config, &config, &scripts).await.unwrap();
    assert_eq!(report.applied.iter().map(|a| a.transactional).collect::<Vec<_>>(), [true, false]);
    let valid = count(&db.config, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname IN ('t_v', 't_id') AND i.indisvalid").await;
    assert_eq!(valid, 2);
}

#[tokio::test]
async fn a_script_that_mixes_both_kinds_is_refused_before_anything_runs() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__mixed.sql", "CREATE TABLE m (id int);\nCREATE INDEX CONCURRENTLY m_id ON m (id);\n")]);
    let config = config(&dir);
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err();
    assert!(matches!(&err, MigrateError::Script { line: 2, .. }), "{err}");
    assert!(err.to_string().contains("mixes"), "{err}");
    assert_eq!(count(&db.config, "SELECT count(*) FROM pg_class WHERE relname = 'm'").await, 0);
}

#[tokio::test]
async fn a_last_statement_ending_in_a_line_comment_keeps_its_semicolon() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[
        ("V1__a.sql", "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1) -- the first row"),
        ("V2__b.sql", "INSERT INTO a VALUES (2) -- the second row"),
    ]);
    let config = config(&dir);
    let scripts = load(&config);
    let dry = pg_migrate::dry_run(&db.config, &config, &scripts).await.unwrap();
    assert!(dry.contains("-- the first row\n;"), "{dry}");
    pg_migrate::migrate(&db.config, &config, &scripts).await.unwrap();
    assert_eq!(count(&db.config, "SELECT count(*) FROM a").await, 2);
}

#[tokio::test]
async fn a_history_table_of_another_shape_is_an_error_not_a_panic() {
    let db = TestDatabase::create().await;
    db.connect()
        .await
        .batch_execute(
            "CREATE TABLE flyway_schema_history (installed_rank int, version text, description text, type text, \
             script text, checksum int, installed_by text, installed_on timestamp, execution_time int, success text); \
             INSERT INTO flyway_schema_history VALUES (1, '1', 'x', 'SQL', 'V1__x.sql', 0, 'me', now(), 0, 'yes')",
        )
        .await
        .unwrap();
    let dir = scripts(&[("V1__x.sql", "SELECT 1;")]);
    let config = config(&dir);
    let err = pg_migrate::info(&db.config, &config, &load(&config)).await.unwrap_err().to_string();
    assert!(err.contains("flyway_schema_history") && err.contains("success"), "{err}");
}

#[tokio::test]
async fn clean_keeps_grants_to_roles_whose_names_need_quotes() {
    let roles = testkit::TestRoles::new(&["Mixed Case"]);
    let role = &roles.names[0];
    let db = TestDatabase::create().await;
    let quoted = format!("\"{role} X\"");
    db.connect()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {quoted}; CREATE SCHEMA app; GRANT USAGE ON SCHEMA app TO {quoted}; CREATE TABLE app.t (id int)"
        ))
        .await
        .unwrap();
    let dir = scripts(&[("V1__x.sql", "SELECT 1;")]);
    let mut config = config(&dir);
    config.schemas = vec!["app".into()];
    config.default_schema = "app".into();
    config.clean_disabled = false;
    config.baseline_on_migrate = true;
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    pg_migrate::clean(&db.config, &config).await.unwrap();
    let has: bool = db
        .connect()
        .await
        .query_one("SELECT has_schema_privilege($1, 'app', 'USAGE')", &[&format!("{role} X")])
        .await
        .unwrap()
        .get(0);
    assert!(has, "the grant survives clean");
    db.connect().await.batch_execute(&format!("DROP SCHEMA app CASCADE; DROP ROLE {quoted}")).await.unwrap();
}

#[tokio::test]
async fn a_statement_left_running_by_an_earlier_migrator_is_waited_for_or_named() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__a.sql", "CREATE TABLE a (id int);")]);
    let mut config = config(&dir);
    config.lock_timeout = Duration::from_millis(1500);
    // What a killed migrator leaves: a session with pg-migrate's application name still busy.
    let mut orphan_config = db.config.clone();
    orphan_config.application_name = db.config.application_name.clone();
    let orphan = orphan_config.connect().await.unwrap();
    let pid: i32 = orphan.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let running = tokio::spawn(async move { orphan.batch_execute("SELECT pg_sleep(120)").await });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(&db.config, &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND state = 'active'"))
        .await
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "the orphan's statement never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err().to_string();
    assert!(err.contains(&format!("pid {pid}")) && err.contains("pg_sleep"), "{err}");
    assert_eq!(count(&db.config, "SELECT count(*) FROM pg_class WHERE relname = 'a'").await, 0, "nothing ran");
    // With time enough, migrate waits for it and goes on once it ends (here: is cancelled).
    config.lock_timeout = Duration::from_secs(60);
    let admin = db.config.clone();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        count(&admin, &format!("SELECT pg_cancel_backend({pid})::int::bigint")).await
    });
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert!(cancel.is_finished(), "migrate waited for the orphan until it was cancelled");
    assert_eq!(cancel.await.unwrap(), 1, "the orphan's backend was there to cancel");
    assert!(running.await.unwrap().is_err(), "the orphan's statement was cancelled, not finished");
    assert_eq!(count(&db.config, "SELECT count(*) FROM pg_class WHERE relname = 'a'").await, 1);
}

#[tokio::test]
async fn an_invalid_index_of_an_interrupted_build_is_named_and_rebuilt_with_consent() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[
        (
            "V1__t.sql",
            "CREATE TABLE t (id int, v text);\nINSERT INTO t SELECT g, g::text FROM generate_series(1, 1000) g;\n",
        ),
        ("V2__idx.sql", "CREATE INDEX CONCURRENTLY t_v ON t (v);\n"),
    ]);
    let mut config = config(&dir);
    config.target = pg_migrate::Target::Version(pg_migrate::Version::parse("1").unwrap());
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    // An interrupted CREATE INDEX CONCURRENTLY leaves the index marked invalid.
    db.connect()
        .await
        .batch_execute(
            "CREATE INDEX t_v ON t (v); UPDATE pg_index SET indisvalid = false WHERE indexrelid = 't_v'::regclass",
        )
        .await
        .unwrap();
    config.target = pg_migrate::Target::Latest;
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err().to_string();
    assert!(
        err.contains("\"public\".\"t_v\"") && err.contains("INVALID") && err.contains("--drop-invalid-indexes"),
        "{err}"
    );
    config.drop_invalid_indexes = true;
    let report = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(report.rebuilt_indexes, ["\"public\".\"t_v\""]);
    let valid =
        count(&db.config, "SELECT count(*) FROM pg_index WHERE indexrelid = 't_v'::regclass AND indisvalid").await;
    assert_eq!(valid, 1);
}

#[tokio::test]
async fn a_lost_lock_connection_stops_the_migration() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__slow.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);\n")]);
    let config = config(&dir);
    let scripts = load(&config);
    let (pg, migrate_config) = (db.config.clone(), config.clone());
    let running = tokio::spawn(async move { pg_migrate::migrate(&pg, &migrate_config, &scripts).await });
    // Once the migration runs, kill the backend that holds the advisory lock, as a network cut
    // would. Advisory locks belong to a database: the tests running beside this one, each in a
    // database of its own on the same server, hold the same key and must not be touched.
    let admin = db.connect().await;
    let key = pg_migrate::flyway_lock_key("public", "flyway_schema_history");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(&db.config, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()").await == 0 {
        assert!(std::time::Instant::now() < deadline, "the migration never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objid = ($1::bigint & 4294967295)::oid AND pid <> pg_backend_pid() \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[&key],
            )
            .await
            .unwrap()
            .get(0);
        if killed > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the lock was never taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    let err = running.await.unwrap().unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(30), "stopped well before the statement would end");
    assert!(err.contains("lock was lost"), "{err}");
    assert_eq!(count(&db.config, "SELECT count(*) FROM pg_class WHERE relname = 'slow'").await, 0, "rolled back");
    // The cancel request pg-migrate sends is asynchronous: the server ends the statement soon
    // after, well before its 60 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(&db.config, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()").await > 0 {
        assert!(std::time::Instant::now() < deadline, "the statement was not stopped on the server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn through_a_transaction_pooling_pgbouncer_nothing_is_applied_twice() {
    let db = TestDatabase::create().await;
    let bouncer = tokio::task::spawn_blocking({
        let upstream = db.config.clone();
        move || testkit::servers::TestPgBouncer::start(&upstream, "transaction")
    })
    .await
    .unwrap();
    let mut pooled = db.config.clone();
    pooled.port = bouncer.port;
    let mut files: Vec<(String, String)> = vec![("V1__t.sql".into(), "CREATE TABLE applied (script text);".into())];
    for n in 2..=25 {
        files.push((format!("V{n}__step.sql"), format!("INSERT INTO applied VALUES ('V{n}');")));
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let dir = scripts(&refs);
    let config = config(&dir);
    let scripts = load(&config);
    let runs = (0..4).map(|_| pg_migrate::migrate(&pooled, &config, &scripts));
    let reports = futures::future::join_all(runs).await;
    let mut warned = false;
    for report in &reports {
        match report {
            Ok(r) => warned |= r.warnings.iter().any(|w| w.contains("transaction-pooling")),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(warned, "the transaction-pooling warning appears");
    assert_eq!(count(&db.config, "SELECT count(*) FROM applied").await, 24, "each step ran once");
    assert_eq!(count(&db.config, "SELECT count(DISTINCT script) FROM applied").await, 24);
    assert_eq!(count(&db.config, "SELECT count(*) FROM flyway_schema_history WHERE success").await, 25);
    assert_eq!(count(&db.config, "SELECT count(DISTINCT version) FROM flyway_schema_history").await, 25);
}

/// A pool with one server connection: the session check's probe gets the connection the
/// setting was made on, and the proxy is found (a direct connection assumed here would pin the
/// only server connection with the lock, and the migration would wait for PgBouncer's 120 s).
#[tokio::test]
async fn a_pooling_proxy_with_no_connection_to_spare_is_found() {
    let db = TestDatabase::create().await;
    let bouncer = tokio::task::spawn_blocking({
        let upstream = db.config.clone();
        move || testkit::servers::TestPgBouncer::start_with_pool_size(&upstream, "transaction", 1)
    })
    .await
    .unwrap();
    let mut pooled = db.config.clone();
    pooled.port = bouncer.port;
    let dir = scripts(&[("V1__t.sql", "CREATE TABLE t (id int);"), ("V2__row.sql", "INSERT INTO t VALUES (1);")]);
    let config = config(&dir);
    let report = pg_migrate::migrate(&pooled, &config, &load(&config)).await.unwrap();
    assert!(report.warnings.iter().any(|w| w.contains("transaction-pooling")), "{:?}", report.warnings);
    assert_eq!(count(&db.config, "SELECT count(*) FROM t").await, 1);
    assert_eq!(count(&db.config, "SELECT count(*) FROM flyway_schema_history WHERE success").await, 2);
}

/// A direct connection whose server is slow to answer the session check's read (held back 4 s by
/// a forwarder) is still taken for a direct one: the lock is taken, and a script outside a
/// transaction, refused behind a pooling proxy, runs.
#[tokio::test]
async fn a_server_slow_to_answer_the_session_check_is_not_taken_for_a_pooling_proxy() {
    let db = TestDatabase::create().await;
    let upstream = format!("{}:{}", db.config.host, db.config.port);
    // The read of the session setting on the migration's first connection, as it is parsed
    // (the probe's read of the same setting carries an alias, and is not held back).
    let read = b"SELECT current_setting('pg_migrate.session_probe', true)\0";
    let proxy = testkit::StallingProxy::start(&upstream, read, Duration::from_secs(4));
    let mut slow = db.config.clone();
    slow.host = "127.0.0.1".into();
    slow.port = proxy.port;
    slow.sslmode = datastores::SslMode::Disable;
    let dir = scripts(&[
        ("V1__t.sql", "CREATE TABLE t (v text);"),
        ("V2__index.sql", "CREATE INDEX CONCURRENTLY t_v ON t (v);"),
    ]);
    let config = config(&dir);
    let report = pg_migrate::migrate(&slow, &config, &load(&config)).await.unwrap();
    assert_eq!(proxy.stalled(), 1, "the session check's read was held back once");
    assert!(!report.warnings.iter().any(|w| w.contains("transaction-pooling")), "{:?}", report.warnings);
    let valid =
        count(&db.config, "SELECT count(*) FROM pg_index WHERE indexrelid = 't_v'::regclass AND indisvalid").await;
    assert_eq!(valid, 1);
}
