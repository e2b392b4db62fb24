//! A restore never leaves the target half-restored: it loads into a scratch database, checks it,
//! and only then swaps names. These tests make the load fail half-way and look at the target.

use std::time::{Duration, Instant};

use datastores::PostgresConfig;
use pg_backup::{RestoreOptions, Selector, Stores};
use testkit::{TestDatabase, TestRoles};

use crate::{big_database, fingerprint, options, tools};

fn replace(target: &str, stores: Stores) -> RestoreOptions {
    RestoreOptions {
        selector: Selector::Latest,
        target_db: Some(target.to_owned()),
        jobs: 1,
        clean: true,
        yes: true,
        terminate: false,
        drop_old: false,
        no_owner: false,
        maintenance_work_mem: "64MB".into(),
        tools: tools(),
        stores,
        maintenance_db: "postgres".into(),
    }
}

/// Databases whose name starts with `prefix`.
async fn databases_like(admin: &PostgresConfig, prefix: &str) -> Vec<String> {
    let client = admin.with_dbname("postgres").connect().await.unwrap();
    client
        .query("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1", &[&prefix])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A target that must survive: some rows, a privilege revoked from PUBLIC, a setting, a comment.
async fn precious_target() -> TestDatabase {
    let target = TestDatabase::create().await;
    let client = target.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE precious AS SELECT g AS id FROM generate_series(1, 1000) g; \
             REVOKE CONNECT, TEMPORARY ON DATABASE \"{0}\" FROM PUBLIC; \
             ALTER DATABASE \"{0}\" SET work_mem = '12MB'; \
             COMMENT ON DATABASE \"{0}\" IS 'the real one'",
            target.name
        ))
        .await
        .unwrap();
    target
}

type State = (std::collections::BTreeMap<String, (i64, String)>, datastores::pgadmin::DatabaseProperties);

/// The target's rows and properties.
async fn state(target: &TestDatabase) -> State {
    (fingerprint(&target.config).await, properties(&target.config, &target.name).await)
}

/// The target is exactly as it was, and no scratch copy is left.
async fn assert_untouched(target: &TestDatabase, before: State) {
    assert_eq!(state(target).await, before, "the target is exactly as it was");
    let left = databases_like(&target.config, &target.name).await;
    assert_eq!(left, std::slice::from_ref(&target.name), "no scratch copy is left");
}

async fn properties(pg: &PostgresConfig, name: &str) -> datastores::pgadmin::DatabaseProperties {
    let client = pg.with_dbname("postgres").connect().await.unwrap();
    datastores::pgadmin::DatabaseProperties::read(&client, name).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_restore_that_fails_on_a_missing_role_leaves_the_target_as_it_was() {
    let roles = TestRoles::new(&["gone"]);
    let source = TestDatabase::create().await;
    let client = source.connect().await;
    let role = &roles.names[0];
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\"; CREATE TABLE owned AS SELECT g AS id FROM generate_series(1, 5000) g; \
             ALTER TABLE owned OWNER TO \"{role}\""
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    pg_backup::backup(&source.config, &options(Some(dir.path().into()), None), &mut |_| {}).await.unwrap();
    // The role the dump needs disappears from the server.
    client.batch_execute(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\"")).await.unwrap();

    let target = precious_target().await;
    let before = state(&target).await;
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    let err = pg_backup::restore(&source.config, &replace(&target.name, stores)).await.unwrap_err().to_string();
    assert!(err.contains(role.as_str()) && err.contains("does not exist"), "{err}");

    assert_untouched(&target, before).await;
}

#[tokio::test]
async fn a_restore_whose_pg_restore_is_killed_leaves_the_target_as_it_was() {
    let source = big_database(60).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(Some(dir.path().into()), None);
    opts.compression = pg_backup::Compression::None;
    pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();

    let target = precious_target().await;
    let before = state(&target).await;
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    let (config, restore) = (source.config.clone(), replace(&target.name, stores));
    let running = tokio::spawn(async move { pg_backup::restore(&config, &restore).await });

    // Kill pg_restore once it has loaded part of the data into the scratch database.
    let scratch_prefix = format!("PGDATABASE={}_restore_", target.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed = false;
    while !killed && !running.is_finished() {
        assert!(Instant::now() < deadline, "pg_restore was never seen");
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            if !String::from_utf8_lossy(&cmdline).contains("pg_restore") {
                continue;
            }
            let environ = String::from_utf8_lossy(&std::fs::read(entry.path().join("environ")).unwrap_or_default())
                .replace('\0', "\n");
            if !environ.lines().any(|l| l.starts_with(&scratch_prefix)) {
                continue;
            }
            // Hold it, and let it run in short steps until its session is loading rows (a COPY
            // into the scratch database), then kill it there: however fast the machine, the
            // kill lands half-way through the load.
            let pid = entry.file_name().to_string_lossy().into_owned();
            let signal = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success();
            if !signal("-STOP") {
                break;
            }
            let watcher = source.config.with_dbname("postgres").connect().await.unwrap();
            loop {
                let copying: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE $1 AND query ILIKE 'COPY %'",
                        &[&format!("{}_restore_%", target.name)],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if copying > 0 {
                    killed = signal("-KILL");
                    break;
                }
                assert!(Instant::now() < deadline, "pg_restore never started loading rows");
                if !signal("-CONT") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                if !signal("-STOP") {
                    break;
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed, "pg_restore was killed while it ran");
    let err = running.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("pg_restore"), "{err}");

    assert_untouched(&target, before).await;
}

#[tokio::test]
async fn a_replacing_restore_keeps_the_databases_properties_and_the_old_copy() {
    let source = big_database(1).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        pg_backup::backup(&source.config, &options(Some(dir.path().into()), None), &mut |_| {}).await.unwrap();
    let target = precious_target().await;
    let role_setting = format!("ALTER ROLE postgres IN DATABASE \"{}\" SET statement_timeout = '7s'", target.name);
    target.connect().await.batch_execute(&role_setting).await.unwrap();
    let before = properties(&target.config, &target.name).await;
    assert!(before.privileges.as_ref().is_some_and(|p| !p.iter().any(|p| p.grantee == "PUBLIC")));
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };

    // Without consent, a non-empty target is refused before anything happens.
    let mut refused = replace(&target.name, stores.clone());
    refused.clean = false;
    let err = pg_backup::restore(&source.config, &refused).await.unwrap_err().to_string();
    assert!(err.contains("not empty") && err.contains("--clean --yes"), "{err}");

    let report = pg_backup::restore(&source.config, &replace(&target.name, stores.clone())).await.unwrap();
    assert_eq!(report.checked_against, "the manifest's exact row counts");
    let old = report.replaced.clone().expect("the old database is kept");
    assert!(old.starts_with(&format!("{}_old_", target.name)), "{old}");
    let _old_guard = TestDatabase::adopt(&old);
    assert_eq!(fingerprint(&target.config).await, fingerprint(&source.config).await, "the backup's contents");
    let after = properties(&target.config, &target.name).await;
    assert_eq!(after, before, "owner, encoding, locale, privileges, settings and comment carried over");
    // The old database holds the old rows.
    let kept = source.config.with_dbname(&old);
    assert_eq!(fingerprint(&kept).await["public.precious"].0, 1000);
    assert_eq!(manifest.tables.iter().map(|t| t.rows.unwrap()).sum::<i64>(), report.rows);

    // prune drops kept databases once past the grace period, not before.
    let now = chrono::Utc::now();
    let grace = Duration::from_secs(3600);
    let dropped =
        pg_backup::prune_replaced_databases(&source.config, "postgres", &target.name, grace, now, false).await.unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");
    let later = now + chrono::Duration::hours(2);
    let dropped = pg_backup::prune_replaced_databases(&source.config, "postgres", &target.name, grace, later, false)
        .await
        .unwrap();
    assert_eq!(dropped, std::slice::from_ref(&old));
    assert!(databases_like(&target.config, &old).await.is_empty());

    // --drop-old drops it at once.
    let mut drop_old = replace(&target.name, stores);
    drop_old.drop_old = true;
    let report = pg_backup::restore(&source.config, &drop_old).await.unwrap();
    assert!(report.dropped_old && report.replaced.is_none());
    assert_eq!(databases_like(&target.config, &target.name).await, std::slice::from_ref(&target.name));
}

#[tokio::test]
async fn a_restore_into_a_new_database_gives_it_the_sources_properties() {
    let source = big_database(1).await;
    source
        .connect()
        .await
        .batch_execute(&format!(
            "REVOKE CONNECT ON DATABASE \"{0}\" FROM PUBLIC; ALTER DATABASE \"{0}\" SET search_path = app, public",
            source.name
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    pg_backup::backup(&source.config, &options(Some(dir.path().into()), None), &mut |_| {}).await.unwrap();
    let target = TestDatabase::adopt(&testkit::unique_name("fresh"));
    let mut opts = replace(&target.name, Stores { local_dir: Some(dir.path().into()), s3: None });
    opts.clean = false;
    opts.yes = false;
    pg_backup::restore(&source.config, &opts).await.unwrap();
    let (from, to) = (properties(&source.config, &source.name).await, properties(&target.config, &target.name).await);
    assert_eq!((&to.privileges, &to.settings, &to.owner), (&from.privileges, &from.settings, &from.owner));
}
