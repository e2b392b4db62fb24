//! The `redis` section of the bootstrap manifest against Redis servers of the test's own (its
//! settings are server-wide, so the stack's server is left alone).

use datastores::bootstrap::redis::{Section, run};
use datastores::bootstrap::{Mode, SectionReport, State};
use datastores::{RedisConfig, Settings, Source};
use testkit::servers::{RedisOptions, TestRedis};

fn section() -> Section {
    serde_norway::from_str(
        "require_auth: true
maxmemory: 64mb
maxmemory_policy: allkeys-lru
persistence:
  appendonly: yes
  save: 3600 1 300 100
",
    )
    .unwrap()
}

fn config(server: &TestRedis, password: Option<&str>) -> RedisConfig {
    let mut vars = vec![("REDIS_URL".to_owned(), format!("redis://127.0.0.1:{}/0", server.port))];
    if let Some(p) = password {
        vars.push(("REDIS_PASSWORD".to_owned(), p.to_owned()));
    }
    RedisConfig::from_settings(&Settings::new().layer(Source::Environment, vars)).unwrap()
}

fn state_of(report: &SectionReport, name: &str) -> (State, String) {
    let item = report.items.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no {name} in {report:#?}"));
    (item.state, item.detail.clone())
}

#[tokio::test]
async fn apply_sets_limits_and_persistence_then_check_finds_drift_by_hand() {
    testkit::init();
    let password = "bootstrap-redis-secret";
    let server = TestRedis::start(&RedisOptions { password: Some(password.into()), ..RedisOptions::default() });
    let redis = config(&server, Some(password));
    let wanted = section();

    let check = run(&redis, &wanted, Mode::Check).await;
    assert_eq!(state_of(&check, "authentication").0, State::Ok);
    assert_eq!(state_of(&check, "maxmemory"), (State::Drift, "server 0 (no limit), manifest 64mb".to_owned()));
    assert_eq!(
        state_of(&check, "maxmemory-policy"),
        (State::Drift, "server noeviction, manifest allkeys-lru".to_owned())
    );
    assert_eq!(
        state_of(&check, "save"),
        (State::Drift, "server \"\" (no snapshots), manifest 3600 1 300 100".to_owned())
    );
    assert_eq!(check.drift(), 4);

    let applied = run(&redis, &wanted, Mode::Apply).await;
    assert!(!applied.has_errors(), "{applied:#?}");
    assert_eq!(applied.changes(), 4, "{applied:#?}");
    assert_eq!(server.cli(Some(password), &["CONFIG", "GET", "maxmemory"]).lines().nth(1), Some("67108864"));
    assert_eq!(server.cli(Some(password), &["CONFIG", "GET", "appendonly"]).lines().nth(1), Some("yes"));
    // Written to redis.conf too, so a restart keeps it.
    assert!(applied.warnings.is_empty(), "{:?}", applied.warnings);

    let again = run(&redis, &wanted, Mode::Apply).await;
    assert_eq!(again.changes(), 0, "{again:#?}");
    assert_eq!(run(&redis, &wanted, Mode::Check).await.drift(), 0);

    server.cli(Some(password), &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let check = run(&redis, &wanted, Mode::Check).await;
    assert_eq!(check.drift(), 1, "{check:#?}");
    assert_eq!(
        state_of(&check, "maxmemory-policy"),
        (State::Drift, "server noeviction, manifest allkeys-lru".to_owned())
    );
    let repaired = run(&redis, &wanted, Mode::Apply).await;
    assert_eq!(state_of(&repaired, "maxmemory-policy").0, State::Changed);
    assert_eq!(server.cli(Some(password), &["CONFIG", "GET", "maxmemory-policy"]).lines().nth(1), Some("allkeys-lru"));
}

#[tokio::test]
async fn a_server_without_authentication_is_a_conflict_that_apply_leaves_alone() {
    testkit::init();
    let server = TestRedis::start(&RedisOptions::default());
    let redis = config(&server, None);
    let report = run(&redis, &section(), Mode::Apply).await;
    let (state, detail) = state_of(&report, "authentication");
    assert_eq!(state, State::Conflict);
    assert!(detail.contains("without credentials"), "{detail}");
    assert!(report.has_errors());
    assert_eq!(server.cli(None, &["PING"]).trim(), "PONG", "still open: apply did not lock clients out");
}

#[tokio::test]
async fn an_unreachable_server_fails_its_section() {
    let mut vars = vec![("REDIS_URL".to_owned(), format!("redis://127.0.0.1:{}/0", testkit::closed_port()))];
    vars.push(("REDIS_CONNECT_TIMEOUT".to_owned(), "2s".to_owned()));
    let redis = RedisConfig::from_settings(&Settings::new().layer(Source::Environment, vars)).unwrap();
    let report = run(&redis, &section(), Mode::Check).await;
    let error = report.error.clone().unwrap();
    assert!(error.contains(&redis.endpoint()), "{error}");
    assert_eq!(report.drift(), 1);
}
