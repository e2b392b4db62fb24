use std::time::Duration;

use pg_migrate::MigrateError;
use testkit::TestDatabase;

use crate::{config, load, scripts};

#[tokio::test]
async fn a_held_lock_times_out_naming_the_holder() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__a.sql", "CREATE TABLE a (id int);")]);
    let mut config = config(&dir);
    config.lock_timeout = Duration::from_millis(800);

    let mut holder_config = db.config.clone();
    holder_config.application_name = "someone-else-migrating".into();
    let holder = holder_config.connect().await.unwrap();
    let key = pg_migrate::flyway_lock_key("public", "flyway_schema_history");
    holder.query_one("SELECT pg_advisory_lock($1)", &[&key]).await.unwrap();
    let holder_pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);

    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err();
    let MigrateError::LockTimeout { holders, .. } = &err else { panic!("{err}") };
    assert_eq!(holders.len(), 1, "{err}");
    assert_eq!(holders[0].pid, holder_pid);
    assert_eq!(holders[0].application_name, "someone-else-migrating");
    assert!(err.to_string().contains("someone-else-migrating"));

    holder.query_one("SELECT pg_advisory_unlock($1)", &[&key]).await.unwrap();
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
}

#[tokio::test]
async fn concurrent_migrators_in_one_process_apply_each_version_once() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "INSERT INTO a SELECT generate_series(1, 1000);"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let config = config(&dir);
    let scripts = load(&config);
    let runs = (0..6).map(|_| pg_migrate::migrate(&db.config, &config, &scripts));
    let reports = futures::future::join_all(runs).await;
    let applied: usize = reports.into_iter().map(|r| r.unwrap().applied.len()).sum();
    assert_eq!(applied, 3);
    assert_eq!(crate::count(&db.config, "SELECT count(*) FROM a").await, 1000);
}
