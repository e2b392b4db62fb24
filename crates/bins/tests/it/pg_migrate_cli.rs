use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use testkit::{SilentServer, TestDatabase, closed_port};

/// The connection comes from each test's flyway.conf, so variables that would override it are
/// removed; the password still comes from the environment.
const OVERRIDES: [&str; 4] = ["DATABASE_URL", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB"];

fn pg_migrate() -> Command {
    let mut command = Command::cargo_bin("pg-migrate").unwrap();
    for name in OVERRIDES {
        command.env_remove(name);
    }
    command
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A scripts folder and a flyway.conf pointing at `db` with jdbc: syntax; the password comes
/// from the stack's environment (POSTGRES_PASSWORD_FILE).
fn project(db: &TestDatabase, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sql")).unwrap();
    for (name, text) in files {
        write(&dir.path().join("sql"), name, text);
    }
    let conf = format!(
        "# as the seed's migrations/flyway.conf\nflyway.url=jdbc:postgresql://{}:{}/{}\nflyway.user={}\n\
         flyway.locations=filesystem:sql\nflyway.placeholders.owner=app\n",
        db.config.host, db.config.port, db.name, db.config.user
    );
    write(dir.path(), "flyway.conf", &conf);
    dir
}

async fn scalar(db: &TestDatabase, sql: &str) -> i64 {
    db.connect().await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn has_history(db: &TestDatabase) -> bool {
    db.connect().await.query_one("SELECT to_regclass('flyway_schema_history') IS NOT NULL", &[]).await.unwrap().get(0)
}

#[test]
fn usage_and_version() {
    let output = pg_migrate().env_clear().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = pg_migrate().arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("pg-migrate {}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn flyway_spelling_migrate_info_and_json() {
    let db = TestDatabase::create().await;
    let dir = project(
        &db,
        &[
            ("V1__init.sql", "CREATE TABLE t (owner text DEFAULT '${owner}');"),
            ("V2__more.sql", "ALTER TABLE t ADD COLUMN n int;"),
        ],
    );
    let output = pg_migrate().current_dir(dir.path()).args(["-configFiles=flyway.conf", "migrate"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Applied 2 migration(s)"));

    let output = pg_migrate()
        .current_dir(dir.path())
        .args(["--config-file", "flyway.conf", "info", "--output", "json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let states: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["success", "success"]);
    assert_eq!(rows[0]["installed_by"], db.config.user.as_str());

    let output =
        pg_migrate().current_dir(dir.path()).args(["--config-file", "flyway.conf", "migrate"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("up to date at version 2"));
}

#[tokio::test]
async fn precedence_flag_over_environment_over_config_file() {
    let db = TestDatabase::create().await;
    let dir = project(&db, &[("V1__init.sql", "SELECT 1;")]);
    let mut conf = std::fs::read_to_string(dir.path().join("flyway.conf")).unwrap();
    conf.push_str("flyway.table=from_file\n");
    write(dir.path(), "flyway.conf", &conf);
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        pg_migrate()
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .args(["-configFiles=flyway.conf"])
            .args(extra)
            .arg("migrate")
            .output()
            .unwrap()
    };
    assert!(run(&[], &[]).status.success());
    // Later runs meet a non-empty schema without their history table, so they baseline it.
    let env = [("FLYWAY_TABLE", "from_env"), ("FLYWAY_BASELINE_ON_MIGRATE", "true")];
    assert!(run(&[], &env).status.success());
    assert!(run(&["-table=from_flag"], &env).status.success());
    for table in ["from_file", "from_env", "from_flag"] {
        assert_eq!(scalar(&db, &format!("SELECT count(*) FROM {table}")).await, 1, "{table}");
    }
}

fn spawn_migrator(dir: &Path, extra: &[&str]) -> Child {
    let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("pg-migrate"));
    for name in OVERRIDES {
        command.env_remove(name);
    }
    command
        .current_dir(dir)
        .args(["-configFiles=flyway.conf", "--lock-timeout", "120s"])
        .args(extra)
        .arg("migrate")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for every child; a child still running after `limit` means a deadlock.
fn wait_all(children: Vec<Child>, limit: Duration) -> Vec<std::process::Output> {
    let deadline = Instant::now() + limit;
    children
        .into_iter()
        .map(|mut child| {
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("a migrator did not finish within {limit:?}: deadlock?");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            child.wait_with_output().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn eight_migrators_at_once_apply_each_version_once() {
    let db = TestDatabase::create().await;
    let files: Vec<(String, String)> = (1..=10)
        .map(|i| (format!("V{i}__step_{i}.sql"), format!("CREATE TABLE t{i} (id int); INSERT INTO t{i} VALUES ({i});")))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let dir = project(&db, &files);
    let children = (0..8).map(|_| spawn_migrator(dir.path(), &[])).collect();
    for output in wait_all(children, Duration::from_secs(120)) {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM flyway_schema_history").await, 10);
    assert_eq!(scalar(&db, "SELECT count(DISTINCT version) FROM flyway_schema_history").await, 10);
    assert_eq!(scalar(&db, "SELECT count(*) FROM t10").await, 1);
}

#[tokio::test]
async fn concurrent_migrators_with_create_index_concurrently_finish() {
    let db = TestDatabase::create().await;
    let dir = project(
        &db,
        &[
            (
                "V1__data.sql",
                "CREATE TABLE big (id int, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 300000) g;",
            ),
            ("V2__index.sql", "CREATE INDEX CONCURRENTLY big_v ON big (v);"),
            ("V3__after.sql", "CREATE TABLE after_index (id int);"),
        ],
    );
    write(&dir.path().join("sql"), "V2__index.sql.conf", "executeInTransaction=false\n");
    let children = (0..4).map(|_| spawn_migrator(dir.path(), &[])).collect();
    for output in wait_all(children, Duration::from_secs(180)) {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'big_v' AND i.indisvalid").await, 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM flyway_schema_history WHERE success").await, 3);
}

#[tokio::test]
async fn bad_sources_change_nothing() {
    let db = TestDatabase::create().await;
    let cases: [(&[(&str, &str)], &str); 2] = [
        (&[("V1__ok.sql", "CREATE TABLE a (id int);"), ("V2_bad_name.sql", "SELECT 1;")], "V2_bad_name.sql"),
        (&[("V1__one.sql", "CREATE TABLE a (id int);"), ("V001__two.sql", "SELECT 1;")], "also used by"),
    ];
    for (files, expected) in &cases {
        let dir = project(&db, files);
        let output =
            pg_migrate().current_dir(dir.path()).args(["-configFiles=flyway.conf", "migrate"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!has_history(&db).await, "nothing was applied");
    }
    let dir = project(&db, &[("V1__ok.sql", "CREATE TABLE a (id int);")]);
    std::fs::write(dir.path().join("sql/V2__bytes.sql"), b"SELECT '\xff\xfe';").unwrap();
    let output = pg_migrate().current_dir(dir.path()).args(["-configFiles=flyway.conf", "migrate"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("V2__bytes.sql") && stderr.contains("UTF-8"), "{stderr}");
    assert!(!has_history(&db).await);
}

#[tokio::test]
async fn connection_problems_are_named() {
    let db = TestDatabase::create().await;
    let dir = project(&db, &[("V1__ok.sql", "CREATE TABLE a (id int);")]);
    let pw = dir.path().join("wrong-password");
    write(dir.path(), "wrong-password", "definitely-not-it\n");
    let output = pg_migrate()
        .current_dir(dir.path())
        .env("FLYWAY_PASSWORD_FILE", &pw)
        .args(["-configFiles=flyway.conf", "migrate"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("password authentication failed") && !stderr.contains("definitely-not-it"), "{stderr}");

    let port = closed_port();
    let output = pg_migrate()
        .env_clear()
        .args(["--url", &format!("postgres://u@127.0.0.1:{port}/db"), "--locations", "."])
        .arg("info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");

    let silent = SilentServer::start();
    let output = pg_migrate()
        .env_clear()
        .args(["--url", &format!("postgres://u@127.0.0.1:{}/db?connect_timeout=1", silent.port), "--locations", "."])
        .arg("info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no answer within 1s"), "{stderr}");
    assert!(!has_history(&db).await);
}

#[tokio::test]
async fn bad_configuration_is_named() {
    let db = TestDatabase::create().await;
    let dir = project(&db, &[("V1__ok.sql", "SELECT 1;")]);
    write(dir.path(), "typo.conf", "flyway.outOfOrdr=true\n");
    let cases: [(&[&str], &str); 4] = [
        (&["-configFiles=typo.conf", "info"], "flyway.outOfOrdr in typo.conf"),
        (&["-configFiles=flyway.conf", "-outOfOrder=perhaps", "migrate"], "option -outOfOrder"),
        (&["-configFiles=missing.conf", "info"], "missing.conf"),
        (&["-configFiles=flyway.conf", "--locations", "classpath:db/migration", "info"], "JVM"),
    ];
    for (args, expected) in cases {
        let output = pg_migrate().current_dir(dir.path()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn validate_and_lint_exit_codes() {
    let db = TestDatabase::create().await;
    let dir = project(&db, &[("V1__init.sql", "CREATE TABLE users (id int, email text);")]);
    let run = |args: &[&str]| {
        pg_migrate().current_dir(dir.path()).arg("-configFiles=flyway.conf").args(args).output().unwrap()
    };
    assert_eq!(run(&["validate"]).status.code(), Some(1), "pending counts as a difference");
    assert!(run(&["migrate"]).status.success());
    assert!(run(&["validate"]).status.success());
    assert!(run(&["lint"]).status.success(), "nothing pending, nothing to lint");

    write(
        &dir.path().join("sql"),
        "V2__risky.sql",
        "SET lock_timeout = '5s';\nCREATE INDEX users_email ON users (email);\n",
    );
    let output = run(&["lint"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("V2__risky.sql:2: error PM001"), "{stdout}");
    // Over every script, V1 creates the table in the same run, so the index is no risk.
    let output = run(&["lint", "--all", "--output", "json"]);
    let findings: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(findings, serde_json::json!([]));
    assert!(output.status.success());

    write(
        &dir.path().join("sql"),
        "V2__risky.sql",
        "SET lock_timeout = '5s';\nALTER TABLE users ADD COLUMN note text;\n",
    );
    assert!(run(&["lint"]).status.success());
    let output = run(&["migrate", "--dry-run"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("ALTER TABLE users ADD COLUMN note text;"));
    assert_eq!(scalar(&db, "SELECT count(*) FROM flyway_schema_history").await, 1, "a dry run changes nothing");
}

/// Scripts refused before anything runs are bad input (exit 2); with --output json a failure
/// still prints JSON on stdout.
#[tokio::test]
async fn refused_scripts_exit_2_and_json_failures_print_json() {
    let db = TestDatabase::create().await;
    for (script, expected) in [
        ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1;", "unterminated dollar-quoted string"),
        ("CREATE TABLE t (owner text DEFAULT '${unset_placeholder}');", "unset_placeholder"),
        ("CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY t_id ON t (id);", "mixes"),
    ] {
        let dir = project(&db, &[("V1__bad.sql", script)]);
        let output = pg_migrate().current_dir(dir.path()).args(["migrate", "--output", "json"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{script}: {stderr}");
        assert!(stderr.contains(expected), "{script}: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["exit_code"], 2);
        assert!(json["error"].as_str().unwrap().contains(expected), "{json}");
        assert!(!has_history(&db).await, "nothing was written");
    }
    // A failure while running (exit 1) prints JSON too.
    let dir = project(&db, &[("V1__fails.sql", "SELECT no_such_column FROM pg_class;")]);
    let output = pg_migrate().current_dir(dir.path()).args(["migrate", "--output", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(json["error"].as_str().unwrap().contains("no_such_column"), "{json}");
}

/// A Job evicted during CREATE INDEX CONCURRENTLY on a big table: the server stops the build
/// when the client dies, the next run names the INVALID index it left, and with consent drops
/// it and builds it again.
#[tokio::test]
async fn a_migrator_killed_during_create_index_concurrently() {
    let db = TestDatabase::create().await;
    db.connect()
        .await
        .batch_execute(
            "CREATE SCHEMA data; CREATE TABLE data.big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 3000000) g",
        )
        .await
        .unwrap();
    let dir = project(&db, &[("V1__index.sql", "CREATE INDEX CONCURRENTLY big_v ON data.big (v);\n")]);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("pg-migrate"))
        .current_dir(dir.path())
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env_remove("POSTGRES_HOST")
        .env_remove("POSTGRES_PORT")
        .env_remove("POSTGRES_DB")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let building = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'CREATE INDEX CONCURRENTLY big_v%' AND state = 'active'";
    // The kill must come after the build's first transaction committed the index's catalog
    // entry: before that (the build can wait seconds for autovacuum's lock on the new table),
    // a kill leaves no index at all. pg_stat_progress_create_index names the phase.
    let scanning = "SELECT count(*) FROM pg_stat_progress_create_index p JOIN pg_stat_activity a USING (pid) \
                    WHERE a.datname = current_database() AND p.index_relid = to_regclass('data.big_v') \
                    AND p.phase LIKE 'building index%'";
    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar(&db, scanning).await == 0 {
        assert!(child.try_wait().unwrap().is_none(), "pg-migrate ended before the build started");
        assert!(Instant::now() < deadline, "the index build never reached its scan");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The server notices the dead client within seconds and stops the build.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&db, building).await > 0 {
        assert!(Instant::now() < deadline, "the build went on after its client died");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let invalid = "SELECT count(*) FROM pg_index WHERE indexrelid = 'data.big_v'::regclass AND NOT indisvalid";
    assert_eq!(scalar(&db, invalid).await, 1, "the interrupted build left an INVALID index");
    let output = pg_migrate().current_dir(dir.path()).arg("migrate").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("big_v") && stderr.contains("INVALID") && stderr.contains("--drop-invalid-indexes"),
        "{stderr}"
    );
    let output = pg_migrate().current_dir(dir.path()).args(["migrate", "--drop-invalid-indexes"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("big_v"), "the rebuild is reported: {stderr}");
    let valid = "SELECT count(*) FROM pg_index WHERE indexrelid = 'data.big_v'::regclass AND indisvalid";
    assert_eq!(scalar(&db, valid).await, 1);
}
