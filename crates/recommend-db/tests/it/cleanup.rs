use chrono::{Duration, Utc};
use recommend_db::CleanupOptions;

use crate::{count, migrated, small_seed};

async fn snapshot(client: &datastores::tokio_postgres::Client) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*) FROM user_behaviors",
        "SELECT count(*) FROM recommendation_requests",
        "SELECT count(*) FROM recommendation_results",
        "SELECT count(*) FROM pg_inherits",
    ] {
        out.push(count(client, sql).await);
    }
    out
}

#[tokio::test]
async fn cleanup_removes_exactly_the_old_rows_and_report_only_changes_nothing() {
    let db = migrated().await;
    let client = db.connect().await;
    recommend_db::seed(&client, &small_seed(3), &mut |_| {}).await.unwrap();
    let now = Utc::now();
    let options = CleanupOptions { behaviors_days: 45, requests_days: 20, batch_size: 100 };
    let behaviour_cutoff = now - Duration::days(45);
    let request_cutoff = now - Duration::days(20);
    let keep_behaviours: i64 = client
        .query_one("SELECT count(*) FROM user_behaviors WHERE created_at >= $1", &[&behaviour_cutoff])
        .await
        .unwrap()
        .get(0);
    let old_behaviours: i64 = client
        .query_one("SELECT count(*) FROM user_behaviors WHERE created_at < $1", &[&behaviour_cutoff])
        .await
        .unwrap()
        .get(0);
    let keep_requests: i64 = client
        .query_one("SELECT count(*) FROM recommendation_requests WHERE created_at >= $1", &[&request_cutoff])
        .await
        .unwrap()
        .get(0);
    assert!(old_behaviours > 0 && keep_behaviours > 0);

    let before = snapshot(&client).await;
    let report = recommend_db::cleanup(&client, &options, true, now).await.unwrap();
    assert_eq!(snapshot(&client).await, before, "report-only changes nothing");
    let behaviours = report.tables.iter().find(|t| t.table == "user_behaviors").unwrap();
    assert_eq!(behaviours.partitions.iter().map(|p| p.rows).sum::<i64>(), old_behaviours);
    assert!(
        behaviours.partitions.iter().any(|p| p.action == "drop")
            && behaviours.partitions.iter().any(|p| p.action == "trim"),
        "{behaviours:#?}"
    );
    assert!(behaviours.partitions.iter().all(|p| p.bytes > 0));

    let done = recommend_db::cleanup(&client, &options, false, now).await.unwrap();
    assert!(done.views_refreshed);
    assert!(done.removal_seconds > 0.0 && done.removal_seconds < done.seconds, "{done:?}");
    assert_eq!(count(&client, "SELECT count(*) FROM user_behaviors").await, keep_behaviours);
    let left: i64 = client
        .query_one("SELECT count(*) FROM user_behaviors WHERE created_at < $1", &[&behaviour_cutoff])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(count(&client, "SELECT count(*) FROM recommendation_requests").await, keep_requests);
    let dropped: Vec<String> = done
        .tables
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.action == "drop")
        .map(|p| p.partition.clone())
        .collect();
    for name in dropped {
        let exists: bool = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).await.unwrap().get(0);
        assert!(!exists, "{name} is dropped");
    }
    // Nothing more to do.
    let again = recommend_db::cleanup(&client, &options, false, now).await.unwrap();
    assert_eq!(again.rows_removed, 0);
}

#[tokio::test]
async fn bad_retention_is_refused() {
    let db = migrated().await;
    let client = db.connect().await;
    let err = recommend_db::cleanup(
        &client,
        &CleanupOptions { behaviors_days: 0, requests_days: 30, batch_size: 10 },
        true,
        Utc::now(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--behaviors-days"), "{err}");
}
