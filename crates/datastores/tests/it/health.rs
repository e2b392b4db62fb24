use std::time::Duration;

use datastores::{Datastore, DatastoresConfig, Settings, Source, Status};

#[tokio::test]
async fn every_stack_datastore_is_healthy_with_a_version() {
    let settings = testkit::settings();
    let config = testkit::expect_up(DatastoresConfig::from_settings(&settings));
    let reports =
        datastores::check(&config, &Datastore::ALL, &datastores::CheckOptions::new(Duration::from_secs(20))).await;
    for report in &reports {
        if report.datastore == Datastore::Weaviate && !settings.is_set("WEAVIATE_URL") {
            assert_eq!(report.status, Status::NotConfigured);
            assert!(report.error.is_none() && report.latency.is_none());
            continue;
        }
        assert_eq!(report.status, Status::Healthy, "{report:?}\nIs the stack up? `cargo xtask stack status`");
        assert!(report.version.as_ref().is_some_and(|v| !v.is_empty()), "{report:?}");
    }
}

#[tokio::test]
async fn configuration_errors_are_all_reported_together() {
    let settings = Settings::new().layer(
        Source::Environment,
        [("POSTGRES_HOST", "h"), ("POSTGRES_PORT", "54x"), ("REDIS_URL", "http://r"), ("S3_BUCKET", "Bad_Bucket")],
    );
    let err = DatastoresConfig::from_settings(&settings).unwrap_err();
    assert_eq!(err.0.len(), 3, "{err}");
    let text = err.to_string();
    for name in ["POSTGRES_PORT", "REDIS_URL", "S3_BUCKET"] {
        assert!(text.contains(name), "{text}");
    }
}

#[tokio::test]
async fn unconfigured_datastores_cause_no_traffic() {
    let config = DatastoresConfig::from_settings(&Settings::new()).unwrap();
    let reports =
        datastores::check(&config, &Datastore::ALL, &datastores::CheckOptions::new(Duration::from_millis(10))).await;
    assert!(reports.iter().all(|r| r.status == Status::NotConfigured && r.endpoint.is_none()));
}
