use pg_migrate::{MigrateError, State, Target, Version};
use testkit::TestDatabase;

use crate::{config, count, load, scripts, snapshot, write};

const V1: &str = "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);\n\
                  INSERT INTO users (email) VALUES ('a@example.com');\n";
const V2: &str = "ALTER TABLE users ADD COLUMN age int;\n\
                  COPY users (email, age) FROM stdin;\nb@example.com\t30\nc@example.com\t40\n\\.\n";
const R: &str = "CREATE OR REPLACE VIEW adults AS SELECT * FROM users WHERE age >= 18;\n";

#[tokio::test]
async fn fresh_migrate_then_nothing_to_do() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__create_users.sql", V1), ("V1_1__add_age.sql", V2), ("R__adults.sql", R)]);
    let config = config(&dir);
    let scripts = load(&config);

    let report = pg_migrate::migrate(&db.config, &config, &scripts).await.unwrap();
    let applied: Vec<&str> = report.applied.iter().map(|a| a.script.as_str()).collect();
    assert_eq!(applied, ["V1__create_users.sql", "V1_1__add_age.sql", "R__adults.sql"]);
    assert_eq!(report.version_after.as_deref(), Some("1.1"));
    assert_eq!(count(&db.config, "SELECT count(*) FROM adults").await, 2);

    let before = snapshot(&db.config).await;
    let again = pg_migrate::migrate(&db.config, &config, &scripts).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(snapshot(&db.config).await, before, "a second run changes nothing");

    let rows = pg_migrate::info(&db.config, &config, &scripts).await.unwrap();
    assert!(rows.iter().all(|r| r.state == State::Success), "{rows:#?}");
    assert!(pg_migrate::validate(&db.config, &config, &scripts).await.unwrap().is_empty());
}

#[tokio::test]
async fn runs_on_postgres_15_too() {
    let db = TestDatabase::create_on(testkit::postgres15_config()).await;
    let dir = scripts(&[("V1__create_users.sql", V1), ("V2__add_age.sql", V2), ("R__adults.sql", R)]);
    let config = config(&dir);
    let report = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(report.applied.len(), 3);
    let version: String = db.connect().await.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    assert!(version.starts_with("15."), "{version}");
}

#[tokio::test]
async fn a_failing_migration_leaves_the_database_as_it_was() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__create_users.sql", V1)]);
    let config = config(&dir);
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    let before = snapshot(&db.config).await;

    write(
        dir.path(),
        "V2__broken.sql",
        "CREATE TABLE orders (id int);\nINSERT INTO orders VALUES (1);\n\nALTER TABLE users ADD COLUMN x int;\nSELECT no_such_column\n  FROM users;\n",
    );
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err();
    let MigrateError::Failed { script, line, message, rolled_back, .. } = &err else { panic!("{err}") };
    assert_eq!((script.as_str(), *line, *rolled_back), ("V2__broken.sql", 5, true), "{err}");
    assert!(message.contains("no_such_column"), "{message}");
    assert_eq!(snapshot(&db.config).await, before, "nothing of the failed migration stays");
}

#[tokio::test]
async fn later_failure_keeps_earlier_migrations_of_the_run() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__create_users.sql", V1), ("V2__broken.sql", "SELECT 1/0;")]);
    let config = config(&dir);
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err();
    let MigrateError::Failed { applied, .. } = &err else { panic!("{err}") };
    assert_eq!(applied, &["V1__create_users.sql"]);
    assert_eq!((err.kind(), err.sqlstate()), (datastores::ErrorKind::Server, Some("22012")), "division by zero: {err}");
    assert_eq!(count(&db.config, "SELECT count(*) FROM flyway_schema_history WHERE success").await, 1);
}

#[tokio::test]
async fn tampered_script_is_caught_and_repair_accepts_it() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__create_users.sql", V1)]);
    let config = config(&dir);
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();

    write(dir.path(), "V1__create_users.sql", &format!("{V1}-- edited after it ran\n"));
    let scripts = load(&config);
    let issues = pg_migrate::validate(&db.config, &config, &scripts).await.unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(issues[0].contains("V1__create_users.sql") && issues[0].contains("checksum mismatch"), "{}", issues[0]);
    assert!(issues[0].contains(&scripts[0].checksum.to_string()));
    let err = pg_migrate::migrate(&db.config, &config, &scripts).await.unwrap_err();
    assert!(matches!(err, MigrateError::Validation { .. }), "{err}");

    let report = pg_migrate::repair(&db.config, &config, &scripts).await.unwrap();
    assert_eq!(report.realigned.len(), 1);
    assert!(pg_migrate::validate(&db.config, &config, &scripts).await.unwrap().is_empty());
}

#[tokio::test]
async fn validate_reports_pending_missing_and_description_changes() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__create_users.sql", V1), ("V2__add_age.sql", V2)]);
    let config = config(&dir);
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    std::fs::rename(dir.path().join("V1__create_users.sql"), dir.path().join("V1__make_users.sql")).unwrap();
    std::fs::remove_file(dir.path().join("V2__add_age.sql")).unwrap();
    write(dir.path(), "V3__next.sql", "SELECT 1;");
    let issues = pg_migrate::validate(&db.config, &config, &load(&config)).await.unwrap().join("\n");
    assert!(
        issues.contains("description mismatch: applied \"create users\", resolved locally \"make users\""),
        "{issues}"
    );
    assert!(issues.contains("V2__add_age.sql (version 2): applied to the database but not found locally"), "{issues}");
    assert!(issues.contains("V3__next.sql: pending"), "{issues}");
}

#[tokio::test]
async fn non_transactional_scripts_and_the_failed_state() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[
        ("V1__create_users.sql", V1),
        ("V2__index.sql", "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\nVACUUM ANALYZE users;\n"),
    ]);
    write(dir.path(), "V2__index.sql.conf", "executeInTransaction=false\n");
    let config = config(&dir);
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(count(&db.config, "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email_idx'").await, 1);

    // Outside a transaction a failure cannot be rolled back: it is recorded, and migrate stops
    // until repair.
    write(dir.path(), "V3__half.sql", "CREATE TABLE half (id int);\nSELECT 1/0;\n");
    write(dir.path(), "V3__half.sql.conf", "executeInTransaction=false\n");
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err();
    assert!(matches!(&err, MigrateError::Failed { rolled_back: false, line: 2, .. }), "{err}");
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err().to_string();
    assert!(err.contains("failed migration") && err.contains("repair"), "{err}");
    let rows = pg_migrate::info(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(rows.iter().find(|r| r.script == "V3__half.sql").unwrap().state, State::Failed);

    write(dir.path(), "V3__half.sql", "CREATE TABLE IF NOT EXISTS half (id int);\n");
    let repaired = pg_migrate::repair(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(repaired.removed_failed, 1);
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
}

#[tokio::test]
async fn concurrent_statement_in_a_transactional_script_is_refused_before_anything_runs() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[
        ("V1__create_users.sql", V1),
        ("V2__index.sql", "ALTER TABLE users ADD COLUMN x int;\n\nCREATE INDEX CONCURRENTLY i ON users (x);\n"),
    ]);
    let config = config(&dir);
    let before = snapshot(&db.config).await;
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err().to_string();
    assert!(err.contains("V2__index.sql line 3") && err.contains("executeInTransaction=false"), "{err}");
    assert_eq!(snapshot(&db.config).await, before, "V1 did not run either: every script is checked first");
}

#[tokio::test]
async fn baseline_and_baseline_on_migrate() {
    let db = TestDatabase::create().await;
    // A database built before migrations were used: V1 describes what it already has.
    db.connect().await.batch_execute(V1).await.unwrap();
    let dir = scripts(&[("V1__create_users.sql", V1), ("V2__add_age.sql", V2)]);
    let mut config = config(&dir);

    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err().to_string();
    assert!(err.contains("no history table") && err.contains("baselineOnMigrate"), "{err}");

    config.baseline_on_migrate = true;
    let report = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(report.baselined.as_deref(), Some("1"));
    let applied: Vec<&str> = report.applied.iter().map(|a| a.script.as_str()).collect();
    assert_eq!(applied, ["V2__add_age.sql"], "V1 is below the baseline");

    let err = pg_migrate::baseline(&db.config, &config).await.unwrap_err().to_string();
    assert!(err.contains("baseline only starts an empty history"), "{err}");

    let other = TestDatabase::create().await;
    config.baseline_version = Version::parse("5").unwrap();
    assert_eq!(pg_migrate::baseline(&other.config, &config).await.unwrap(), "5");
    let rows = pg_migrate::info(&other.config, &config, &load(&config)).await.unwrap();
    assert_eq!(rows[0].state, State::Baseline);
    assert!(rows[1..].iter().all(|r| r.state == State::BelowBaseline), "{rows:#?}");
}

#[tokio::test]
async fn clean_is_refused_by_default_and_keeps_the_schema_when_allowed() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__create_users.sql", V1), ("V2__add_age.sql", V2), ("R__adults.sql", R)]);
    let mut config = config(&dir);
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    // A predefined role, so the test creates nothing outside its database.
    db.connect().await.batch_execute("GRANT USAGE ON SCHEMA public TO pg_read_all_data").await.unwrap();

    let before = snapshot(&db.config).await;
    let error = pg_migrate::clean(&db.config, &config).await.unwrap_err();
    assert_eq!(error.kind(), datastores::ErrorKind::NeedsConsent, "{error}");
    let err = error.to_string();
    assert!(err.contains("clean is disabled") && err.contains("cleanDisabled=false"), "{err}");
    assert_eq!(snapshot(&db.config).await, before);

    config.clean_disabled = false;
    let report = pg_migrate::clean(&db.config, &config).await.unwrap();
    assert_eq!(report.emptied_schemas, ["public"]);
    assert!(snapshot(&db.config).await.is_empty(), "{:?}", snapshot(&db.config).await);
    let usage = count(&db.config, "SELECT count(*) FROM aclexplode((SELECT nspacl FROM pg_namespace WHERE nspname = 'public')) a WHERE a.grantee = 'pg_read_all_data'::regrole").await;
    assert_eq!(usage, 1, "grants on the schema survive");
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
}

#[tokio::test]
async fn created_schemas_are_recorded_and_dropped_by_clean() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__t.sql", "CREATE TABLE t (id int);")]);
    let mut config = config(&dir);
    config.schemas = vec!["app".into(), "audit".into()];
    config.default_schema = "app".into();
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(count(&db.config, "SELECT count(*) FROM app.t").await, 0, "unqualified names go to the default schema");
    assert_eq!(
        count(
            &db.config,
            "SELECT count(*) FROM app.flyway_schema_history WHERE type = 'SCHEMA' AND installed_rank = 0"
        )
        .await,
        1
    );
    config.clean_disabled = false;
    let report = pg_migrate::clean(&db.config, &config).await.unwrap();
    assert_eq!(report.dropped_schemas, ["app", "audit"]);
}

#[tokio::test]
async fn placeholders_target_and_out_of_order() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[
        (
            "V1__t.sql",
            "CREATE TABLE ${table_name} (who text DEFAULT '${flyway:user}', f text DEFAULT '${flyway:filename}');",
        ),
        ("V3__c.sql", "INSERT INTO items DEFAULT VALUES;"),
    ]);
    let mut config = config(&dir);
    config.placeholders.insert("table_name".into(), "items".into());
    config.target = Target::Version(Version::parse("2").unwrap());
    let report = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(report.applied.len(), 1, "V3 is above the target");
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT column_default FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'f'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).contains("V1__t.sql"));

    config.target = Target::Latest;
    pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    write(dir.path(), "V2__late.sql", "INSERT INTO items DEFAULT VALUES;");
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err().to_string();
    assert!(err.contains("V2__late.sql") && err.contains("outOfOrder"), "{err}");
    config.out_of_order = true;
    let report = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(report.applied[0].script, "V2__late.sql");
    let rows = pg_migrate::info(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(rows.iter().find(|r| r.script == "V2__late.sql").unwrap().state, State::OutOfOrder);

    write(dir.path(), "V4__x.sql", "SELECT 1;\n-- uses ${missing}\n");
    let err = pg_migrate::migrate(&db.config, &config, &load(&config)).await.unwrap_err().to_string();
    assert!(err.contains("V4__x.sql line 2") && err.contains("${missing}"), "{err}");
}

#[tokio::test]
async fn dry_run_prints_the_sql_and_changes_nothing() {
    let db = TestDatabase::create().await;
    let dir = scripts(&[("V1__create_users.sql", V1), ("V2__add_age.sql", V2)]);
    let config = config(&dir);
    let before = snapshot(&db.config).await;
    let sql = pg_migrate::dry_run(&db.config, &config, &load(&config)).await.unwrap();
    assert_eq!(snapshot(&db.config).await, before);
    assert!(sql.contains("CREATE TABLE \"public\".\"flyway_schema_history\""), "{sql}");
    assert!(
        sql.contains("-- V2__add_age.sql (in a transaction)\nBEGIN;\nALTER TABLE users ADD COLUMN age int;"),
        "{sql}"
    );
    assert!(sql.contains("b@example.com\t30\n"), "{sql}");
}
