use assert_cmd::Command;
use testkit::{TestDatabase, TestRoles};

fn recommend_db() -> Command {
    let mut command = Command::cargo_bin("recommend-db").unwrap();
    command.env_remove("POSTGRES_DB").env_remove("DATABASE_URL");
    command
}

#[test]
fn bad_flags_are_usage_errors() {
    let cases: [(&[&str], &str); 5] = [
        (&["seed", "--users", "-5"], "negative"),
        (&["seed", "--behaviors", "99999999999"], "more than the limit"),
        (&["seed", "--users", "many"], "not a whole number"),
        (&["seed", "--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["cleanup", "--behaviors-days", "0"], "--behaviors-days 0 must be between 1 and 36500"),
    ];
    for (args, expected) in cases {
        let output = recommend_db().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let output = recommend_db().arg("init").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "no step: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn a_missing_database_is_named() {
    testkit::require(datastores::Datastore::Postgres);
    let name = testkit::unique_name("missing");
    let output = recommend_db().args(["seed", "--postgres-db", &name]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("database \"{name}\" does not exist")), "{stderr}");
    let output = recommend_db().args(["init", "--install-extensions", "--postgres-db", &name]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--create-db"), "{stderr}");
}

#[tokio::test]
async fn init_seed_partitions_and_cleanup_end_to_end() {
    let roles = TestRoles::new(&["owner", "app", "ro"]);
    let name = testkit::unique_name("recommend");
    let _db = TestDatabase::adopt(&name);
    let run = |args: &[&str]| {
        recommend_db()
            .args(args)
            .args(["--postgres-db", &name])
            .env("RECOMMEND_OWNER_ROLE", &roles.names[0])
            .env("RECOMMEND_APP_ROLE", &roles.names[1])
            .env("RECOMMEND_READONLY_ROLE", &roles.names[2])
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let output = run(&["init", "--full"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Done."), "{stdout}");
    let output = run(&["init", "--full"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("Nothing changed"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    let output = run(&["seed", "--users", "30", "--items", "80", "--behaviors", "900", "--output", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (report["users"].as_u64(), report["behaviors"].as_u64(), report["requests"].as_u64()),
        (Some(30), Some(900), Some(90))
    );
    // Not a terminal: progress lines instead of a bar, on by default.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loading") && stderr.contains("phase=\"behaviors\""), "{stderr}");
    let output = run(&["seed", "--users", "30"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--clean"));
    // --clean deletes everything: it needs --yes, and without it nothing changes.
    let output = run(&["seed", "--users", "30", "--clean"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--yes"));
    let output = run(&["seed", "--users", "20", "--items", "80", "--behaviors", "500", "--clean", "--yes"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // A monitor's check: nothing missing after init, something missing further ahead.
    let output = run(&["partitions", "--check"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = run(&["partitions", "--check", "--ahead", "6"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("user_behaviors") && stderr.contains("recommend-db partitions"), "{stderr}");

    let output = run(&["partitions", "--ahead", "4", "--output", "json"]);
    let partitions: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        partitions.as_array().unwrap().iter().filter(|p| p["created"] == true).count(),
        3,
        "one more month per table"
    );

    let output = run(&["cleanup", "--behaviors-days", "30", "--report-only", "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["report_only"], true);
    assert!(plan["rows_removed"].as_i64().unwrap() > 0);
    let output = run(&["cleanup", "--behaviors-days", "30"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Removed"));
}

/// Two `init --full` at once (a retried Job and a person, a Helm hook and a CronJob) both
/// succeed, every time.
#[tokio::test]
async fn concurrent_inits_both_succeed() {
    for round in 0..5 {
        let roles = TestRoles::new(&["owner", "app", "ro"]);
        let name = testkit::unique_name("recommend");
        let _db = TestDatabase::adopt(&name);
        let spawn = || {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("recommend-db"))
                .args(["init", "--full", "--postgres-db", &name])
                .env_remove("DATABASE_URL")
                .env("RECOMMEND_OWNER_ROLE", &roles.names[0])
                .env("RECOMMEND_APP_ROLE", &roles.names[1])
                .env("RECOMMEND_READONLY_ROLE", &roles.names[2])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for child in [a, b] {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "round {round}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
