//! The Jobs report their runs to the Pushgateway of PUSHGATEWAY_URL (or its `_FILE`): a run that
//! fails keeps the last success, and a Pushgateway that cannot be reached changes nothing but a
//! warning.

use std::process::Output;

use assert_cmd::Command;
use testkit::servers::{Pushgateway, RedisOptions, TestRedis};
use testkit::{TestDatabase, TestRoles, closed_port};

const SECRET: &str = "gw-secret-9q8r7s";
const SUCCESS: &str = "dbkit_job_success";
const LAST_SUCCESS: &str = "dbkit_job_last_success_timestamp_seconds";

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test]
async fn recommend_db_partitions_and_cleanup_push_their_runs() {
    testkit::require(datastores::Datastore::Postgres);
    let roles = TestRoles::new(&["owner", "app", "ro"]);
    let name = testkit::unique_name("pushed");
    let _db = TestDatabase::adopt(&name);
    let gateway = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("pushgateway-url");
    std::fs::write(&url_file, format!("http://jobs:{SECRET}@127.0.0.1:{}\n", gateway.port)).unwrap();
    let run = |args: &[&str]| {
        let output = Command::cargo_bin("recommend-db")
            .unwrap()
            .env_remove("POSTGRES_DB")
            .env_remove("DATABASE_URL")
            .env_remove("PUSHGATEWAY_URL")
            .env("PUSHGATEWAY_URL_FILE", &url_file)
            .env("RECOMMEND_OWNER_ROLE", &roles.names[0])
            .env("RECOMMEND_APP_ROLE", &roles.names[1])
            .env("RECOMMEND_READONLY_ROLE", &roles.names[2])
            .args(args)
            .args(["--postgres-db", &name])
            .output()
            .unwrap();
        assert!(!text(&output).contains(SECRET), "{args:?} printed the secret:\n{}", text(&output));
        output
    };
    let output = run(&["init", "--full"]);
    assert!(output.status.success(), "{}", text(&output));

    let output = run(&["partitions", "--ahead", "2"]);
    assert!(output.status.success(), "{}", text(&output));
    let labels = [("job", "recommend_db_partitions"), ("instance", name.as_str())];
    assert_eq!(gateway.value(SUCCESS, &labels), Some(1.0));
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(gateway.value(LAST_SUCCESS, &labels).is_some_and(|t| (t - now).abs() < 120.0));
    assert!(gateway.value("dbkit_job_duration_seconds", &labels).is_some_and(|d| d >= 0.0));
    assert!(gateway.value("recommend_db_partitions_present", &labels).is_some_and(|n| n >= 3.0));
    assert!(gateway.value("recommend_db_partitions_created", &labels).is_some());

    let output = run(&["cleanup"]);
    assert!(output.status.success(), "{}", text(&output));
    let labels = [("job", "recommend_db_cleanup"), ("instance", name.as_str())];
    assert_eq!(gateway.value(SUCCESS, &labels), Some(1.0));
    let success = gateway.value(LAST_SUCCESS, &labels).expect("pushed");
    assert_eq!(gateway.value("recommend_db_cleanup_rows_removed", &labels), Some(0.0));
    assert_eq!(gateway.value("recommend_db_cleanup_partitions_dropped", &labels), Some(0.0));

    // A cleanup that cannot connect fails, and keeps the last success and the last figures.
    let port = closed_port().to_string();
    let output = run(&["cleanup", "--postgres-port", &port]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(gateway.value(SUCCESS, &labels), Some(0.0));
    assert_eq!(gateway.value(LAST_SUCCESS, &labels), Some(success));
    assert_eq!(gateway.value("recommend_db_cleanup_rows_removed", &labels), Some(0.0));

    // A report is not a run of the job: nothing is pushed.
    let output = run(&["cleanup", "--report-only"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(gateway.value(SUCCESS, &labels), Some(0.0));
}

#[test]
fn datastores_check_pushes_its_run_and_an_unreachable_gateway_is_only_a_warning() {
    // A Redis of the test's own: the stack's is changed by other tests' `apply`. Fresh, it
    // differs from the built-in manifest (no maxmemory), so the check finds drift.
    let redis = TestRedis::start(&RedisOptions::default());
    let gateway = Pushgateway::start();
    let check = |url: &str| {
        Command::cargo_bin("datastores")
            .unwrap()
            .args(["check", "--only", "redis", "--output", "json"])
            .env("REDIS_URL", format!("redis://127.0.0.1:{}/0", redis.port))
            .env("REDIS_PASSWORD_FILE", "")
            .env("PUSHGATEWAY_URL", url)
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap()
    };
    let output = check(&format!("http://jobs:{SECRET}@127.0.0.1:{}", gateway.port));
    let code = output.status.code();
    assert_eq!(code, Some(1), "{}", text(&output));
    let labels = [("job", "datastores_check")];
    assert_eq!(gateway.value(SUCCESS, &labels), Some(0.0), "{}", text(&output));
    assert!(gateway.value("dbkit_job_last_run_timestamp_seconds", &labels).is_some());
    let labels = [("job", "datastores_check"), ("datastore", "redis")];
    assert!(gateway.value("datastores_check_drift", &labels).is_some(), "{}", text(&output));

    let output = check(&format!("http://jobs:{SECRET}@127.0.0.1:{}", closed_port()));
    assert_eq!(output.status.code(), code, "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("warning: metrics not pushed: cannot reach the Pushgateway at 127.0.0.1:"), "{stderr}");
    assert!(!text(&output).contains(SECRET), "{}", text(&output));
}
