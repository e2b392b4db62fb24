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
    let options = CleanupOptions {
        behaviors_days: 45,
        requests_days: 20,
        batch_size: 100,
        exact: true,
        ..CleanupOptions::default()
    };
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
        &CleanupOptions { behaviors_days: 0, requests_days: 30, batch_size: 10, ..CleanupOptions::default() },
        true,
        Utc::now(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--behaviors-days"), "{err}");
}

#[tokio::test]
async fn estimates_by_default_exact_counts_on_request() {
    let db = migrated().await;
    let client = db.connect().await;
    recommend_db::seed(&client, &small_seed(4), &mut |_| {}).await.unwrap();
    client.batch_execute("ANALYZE").await.unwrap();
    let options = CleanupOptions { behaviors_days: 45, requests_days: 20, ..CleanupOptions::default() };
    let estimated = recommend_db::cleanup(&client, &options, true, Utc::now()).await.unwrap();
    assert!(estimated.tables.iter().flat_map(|t| &t.partitions).all(|p| !p.rows_exact));
    let exact =
        recommend_db::cleanup(&client, &CleanupOptions { exact: true, ..options }, true, Utc::now()).await.unwrap();
    let dropped = |r: &recommend_db::CleanupReport| -> i64 {
        r.tables.iter().flat_map(|t| &t.partitions).filter(|p| p.action == "drop").map(|p| p.rows).sum()
    };
    // After ANALYZE the planner's counts of whole partitions are exact.
    assert_eq!(dropped(&estimated), dropped(&exact));
    assert!(exact.tables.iter().flat_map(|t| &t.partitions).all(|p| p.rows_exact));
}

/// A pg_dump holds ACCESS SHARE on every table it dumps for its whole run. A plain DETACH needs
/// ACCESS EXCLUSIVE on the parent and fails after its lock timeout; cleanup must not.
#[tokio::test]
async fn cleanup_does_not_fail_while_a_backup_holds_its_locks() {
    let db = migrated().await;
    let client = db.connect().await;
    recommend_db::seed(&client, &small_seed(5), &mut |_| {}).await.unwrap();
    let now = Utc::now();
    let cutoff = now - Duration::days(45);
    let keep: i64 = client
        .query_one("SELECT count(*) FROM user_behaviors WHERE created_at >= $1", &[&cutoff])
        .await
        .unwrap()
        .get(0);

    // The stand-in for pg_dump: a transaction that has read every partition and stays open.
    let backup = db.connect().await;
    backup.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM user_behaviors;").await.unwrap();
    let options = CleanupOptions {
        behaviors_days: 45,
        requests_days: 20,
        // Above deadlock_timeout (1 s): only a waiter that reaches the deadlock check cancels an
        // autovacuum of the freshly seeded partitions, which would otherwise keep the first step.
        lock_timeout: std::time::Duration::from_millis(1500),
        lock_wait: std::time::Duration::from_secs(6),
        ..CleanupOptions::default()
    };
    let report = recommend_db::cleanup(&client, &options, false, now).await.unwrap();
    let behaviours = report.tables.iter().find(|t| t.table == "user_behaviors").unwrap();
    let pending: Vec<&str> =
        behaviours.partitions.iter().filter(|p| p.action == "drop").map(|p| p.outcome.as_deref().unwrap()).collect();
    // The oldest waits for the backup to end; the others wait their turn (one pending detach per table).
    assert!(pending.first().is_some_and(|o| *o == "detach pending"), "{pending:?}");
    assert!(pending.iter().skip(1).all(|o| o.starts_with("deferred")), "{pending:?}");
    // New queries no longer see the pending partition's rows, though the backup still does.
    let oldest = &behaviours.partitions[0];
    let visible: i64 = client
        .query_one("SELECT count(*) FROM user_behaviors WHERE created_at < $1", &[&oldest.range_end])
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 0);
    assert!(count(&backup, "SELECT count(*) FROM user_behaviors").await > keep, "the backup's snapshot is intact");

    // Once the backup is over, the next run finishes the job (with time enough to outwait an
    // autovacuum of the freshly seeded partitions).
    backup.batch_execute("COMMIT").await.unwrap();
    let options = CleanupOptions {
        lock_timeout: std::time::Duration::from_secs(5),
        lock_wait: std::time::Duration::from_secs(60),
        ..options
    };
    let again = recommend_db::cleanup(&client, &options, false, now).await.unwrap();
    let left_old: i64 =
        client.query_one("SELECT count(*) FROM user_behaviors WHERE created_at < $1", &[&cutoff]).await.unwrap().get(0);
    assert_eq!(left_old, 0);
    for p in again.tables.iter().flat_map(|t| &t.partitions).filter(|p| p.action == "drop") {
        assert_eq!(p.outcome.as_deref(), Some("dropped"), "{p:?}");
    }
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'user_behaviors_y%' AND relkind = 'r' \
             AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = pg_class.oid)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no detached table is left behind");
    assert_eq!(count(&client, "SELECT count(*) FROM user_behaviors").await, keep);
}

#[tokio::test]
async fn a_default_partition_is_named_not_a_panic() {
    let db = migrated().await;
    let client = db.connect().await;
    client.batch_execute("CREATE TABLE user_behaviors_default PARTITION OF user_behaviors DEFAULT").await.unwrap();
    let err =
        recommend_db::cleanup(&client, &CleanupOptions::default(), true, Utc::now()).await.unwrap_err().to_string();
    assert!(err.contains("user_behaviors_default") && err.contains("DEFAULT"), "{err}");
    let err = recommend_db::list_partitions(&client).await.unwrap_err().to_string();
    assert!(err.contains("user_behaviors_default"), "{err}");
}

#[tokio::test]
async fn partitions_check_names_the_missing_months() {
    let db = migrated().await;
    let client = db.connect().await;
    assert!(recommend_db::missing_ahead(&client, 3, Utc::now()).await.unwrap().is_empty(), "migrate made them");
    let missing = recommend_db::missing_ahead(&client, 5, Utc::now()).await.unwrap();
    assert_eq!(missing.len(), 3, "{missing:?}");
    assert!(missing.iter().all(|m| m.months.len() == 2), "{missing:?}");
}
