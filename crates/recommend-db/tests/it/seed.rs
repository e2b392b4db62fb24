use recommend_db::{Error, Phase};

use crate::{count, migrated, small_seed};

async fn fingerprint(db: &testkit::TestDatabase) -> Vec<String> {
    let client = db.connect().await;
    let mut out = Vec::new();
    for sql in [
        "SELECT md5(string_agg(id::text || email || coalesce(age::text, '') || created_at::text, ',' ORDER BY id)) FROM users",
        "SELECT md5(string_agg(id::text || title || array_to_string(tags, '|'), ',' ORDER BY id)) FROM items",
        "SELECT md5(string_agg(id::text || user_id::text || item_id::text || action || created_at::text, ',' ORDER BY id)) FROM user_behaviors",
        "SELECT md5(string_agg(request_id::text || item_id::text || position::text, ',' ORDER BY id)) FROM recommendation_results",
        "SELECT md5(string_agg(item_id::text || embedding::text, ',' ORDER BY item_id)) FROM item_embeddings",
    ] {
        out.push(client.query_one(sql, &[]).await.unwrap().get::<_, Option<String>>(0).unwrap_or_default());
    }
    out
}

#[tokio::test]
async fn seed_loads_the_requested_counts_and_derived_tables() {
    let db = migrated().await;
    let client = db.connect().await;
    let options = small_seed(7);
    let report = recommend_db::seed(&client, &options, &mut |_| {}).await.unwrap();
    assert_eq!(
        (report.users, report.items, report.behaviors, report.requests, report.results),
        (60, 200, 3000, 150, 1500)
    );
    let phases: Vec<Phase> = report.phases.iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Users,
            Phase::Items,
            Phase::Behaviors,
            Phase::Requests,
            Phase::Results,
            Phase::Embeddings,
            Phase::Derived
        ]
    );
    let timed: f64 = report.phases.iter().map(|p| p.seconds).sum();
    assert!(timed > 0.0 && timed <= report.seconds, "{timed} of {}", report.seconds);
    for (sql, expected) in [
        ("SELECT count(*) FROM users", 60),
        ("SELECT count(*) FROM items", 200),
        ("SELECT count(*) FROM user_behaviors", 3000),
        ("SELECT count(*) FROM recommendation_requests", 150),
        ("SELECT count(*) FROM recommendation_results", 1500),
        ("SELECT count(*) FROM item_embeddings", 200),
        ("SELECT count(*) FROM user_embeddings", 60),
    ] {
        assert_eq!(count(&client, sql).await, expected, "{sql}");
    }
    // Several monthly partitions filled; views and counters derived.
    assert!(count(&client, "SELECT count(DISTINCT tableoid) FROM user_behaviors").await >= 4);
    assert!(count(&client, "SELECT count(*) FROM item_stats").await > 0);
    assert!(count(&client, "SELECT count(*) FROM user_profiles").await > 0);
    assert!(count(&client, "SELECT count(*) FROM item_popularity").await > 0);
    // Funnel: many more views than purchases; popular items dominate.
    assert!(
        count(&client, "SELECT count(*) FROM user_behaviors WHERE action = 'view'").await
            > 5 * count(&client, "SELECT count(*) FROM user_behaviors WHERE action = 'buy'").await
    );
    let top10 = count(&client, "SELECT sum(n)::bigint FROM (SELECT count(*) AS n FROM user_behaviors GROUP BY item_id ORDER BY n DESC LIMIT 10) t").await;
    assert!(top10 > 3000 / 10, "the 10 most popular of 200 items get more than a tenth of the events: {top10}");

    // The indexes dropped for the load are back, on every partition, and valid.
    assert_eq!(count(&client, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await, 0);
    let per_partition = count(
        &client,
        "SELECT min(n) FROM (SELECT count(*) AS n FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid \
         WHERE h.inhparent = 'user_behaviors'::regclass GROUP BY i.indrelid) t",
    )
    .await;
    assert_eq!(per_partition, 6, "primary key and five indexes on each partition");
    assert_eq!(count(&client, "SELECT count(*) FROM pg_indexes WHERE indexname = 'item_embeddings_hnsw'").await, 1);

    // Seeding again needs consent.
    let err = recommend_db::seed(&client, &options, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, Error::NeedsConsent(_)) && err.to_string().contains("--clean"), "{err}");
    let again =
        recommend_db::seed(&client, &recommend_db::SeedOptions { clean: true, ..options }, &mut |_| {}).await.unwrap();
    assert_eq!(again.users, 60);
    assert_eq!(count(&client, "SELECT count(*) FROM users").await, 60);
}

#[tokio::test]
async fn the_same_seed_reproduces_the_same_data() {
    let (a, b, c) = (migrated().await, migrated().await, migrated().await);
    recommend_db::seed(&a.connect().await, &small_seed(11), &mut |_| {}).await.unwrap();
    recommend_db::seed(&b.connect().await, &small_seed(11), &mut |_| {}).await.unwrap();
    recommend_db::seed(&c.connect().await, &small_seed(12), &mut |_| {}).await.unwrap();
    let (fa, fb, fc) = (fingerprint(&a).await, fingerprint(&b).await, fingerprint(&c).await);
    assert_eq!(fa, fb);
    assert!(fa.iter().zip(&fc).all(|(x, y)| x != y), "another seed gives other data");
}

#[tokio::test]
async fn seeding_needs_the_schema_and_sane_options() {
    let empty = testkit::TestDatabase::create().await;
    let err = recommend_db::seed(&empty.connect().await, &small_seed(1), &mut |_| {}).await.unwrap_err().to_string();
    assert!(err.contains("--run-migrations"), "{err}");
    let db = migrated().await;
    let bad = recommend_db::SeedOptions { users: 0, ..small_seed(1) };
    let err = recommend_db::seed(&db.connect().await, &bad, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert_eq!(count(&db.connect().await, "SELECT count(*) FROM items").await, 0, "nothing was loaded");
}
