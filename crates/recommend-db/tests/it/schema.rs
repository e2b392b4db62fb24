use std::collections::BTreeSet;

use chrono::{Datelike, Months, Utc};

use crate::{count, migrated};

async fn names(client: &datastores::tokio_postgres::Client, sql: &str) -> BTreeSet<String> {
    client.query(sql, &[]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect()
}

#[tokio::test]
async fn migrations_apply_and_a_second_run_is_a_no_op() {
    let db = migrated().await;
    let scripts = recommend_db::migrations::scripts().unwrap();
    let again = pg_migrate::migrate(&db.config, &recommend_db::migrations::config(3), &scripts).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.version_after.as_deref(), Some("005"));
}

#[tokio::test]
async fn the_catalog_has_every_table_partition_index_and_view() {
    let db = migrated().await;
    let client = db.connect().await;
    let tables = names(&client, "SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition").await;
    for table in [
        "users",
        "items",
        "item_stats",
        "user_behaviors",
        "user_profiles",
        "recommendation_requests",
        "recommendation_results",
        "experiments",
        "experiment_metrics",
        "user_experiment_assignments",
        "item_embeddings",
        "user_embeddings",
        "flyway_schema_history",
    ] {
        assert!(tables.contains(table), "{table} missing from {tables:?}");
    }

    // Partitioned by month, with the current month and three ahead.
    let partitioned = names(&client, "SELECT c.relname::text FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid WHERE p.partstrat = 'r'").await;
    assert_eq!(
        partitioned,
        ["recommendation_requests", "recommendation_results", "user_behaviors"].map(String::from).into()
    );
    let now = Utc::now();
    for table in &partitioned {
        let parts = names(&client, &format!("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{table}'::regclass")).await;
        for ahead in 0..=3 {
            let month = now.checked_add_months(Months::new(ahead)).unwrap();
            let name = format!("{table}_y{}m{:02}", month.year(), month.month());
            assert!(parts.contains(&name), "{name} missing from {parts:?}");
        }
        let pk = names(&client, &format!("SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = '{table}'::regclass AND i.indisprimary")).await;
        assert!(pk.contains("created_at"), "the primary key of {table} includes the partition key: {pk:?}");
    }

    // Indexes by access method, and the partial ones by their predicate.
    let indexes: BTreeSet<String> = client
        .query(
            "SELECT c.relname::text || ' ' || am.amname::text || CASE WHEN i.indpred IS NOT NULL THEN ' partial' ELSE '' END \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
             JOIN pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = 'public'::regnamespace AND NOT t.relispartition",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "users_name_trgm gin",
        "items_title_trgm gin",
        "items_tags_gin gin",
        "items_metadata_gin gin",
        "items_semantic_id_gin gin",
        "user_behaviors_created_brin brin",
        "recommendation_requests_created_brin brin",
        "recommendation_results_created_brin brin",
        "user_behaviors_conversions btree partial",
        "items_active_category btree partial",
        "users_active_created btree partial",
        "recommendation_results_clicked btree partial",
        "item_embeddings_hnsw hnsw",
        "user_embeddings_hnsw hnsw",
        "user_embeddings_long_term_hnsw hnsw",
        "item_popularity_item btree",
        "user_activity_user btree",
        "users_email_key btree",
    ] {
        assert!(indexes.contains(expected), "{expected} missing from {indexes:#?}");
    }

    let views = names(&client, "SELECT matviewname::text FROM pg_matviews").await;
    assert_eq!(views, ["item_popularity", "user_activity"].map(String::from).into());
    client.batch_execute("SELECT refresh_recommendation_views()").await.unwrap();
    let triggers = names(&client, "SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal").await;
    for t in [
        "users_set_updated_at",
        "items_set_updated_at",
        "item_embeddings_set_updated_at",
        "user_embeddings_set_updated_at",
    ] {
        assert!(triggers.contains(t), "{t}");
    }
    let extensions = names(&client, "SELECT extname::text FROM pg_extension").await;
    assert!(extensions.contains("vector") && extensions.contains("pg_trgm"));
}

#[tokio::test]
async fn behaviours_today_and_next_month_go_in_and_out_of_range_rows_are_refused() {
    let db = migrated().await;
    let client = db.connect().await;
    let insert = |when: &str| {
        format!(
            "INSERT INTO user_behaviors (user_id, item_id, action, created_at) VALUES (gen_random_uuid(), gen_random_uuid(), 'view', {when})"
        )
    };
    client.batch_execute(&insert("now()")).await.unwrap();
    client.batch_execute(&insert("date_trunc('month', now()) + interval '1 month' + interval '3 days'")).await.unwrap();
    client
        .batch_execute(&insert("date_trunc('month', now()) + interval '3 months' + interval '27 days'"))
        .await
        .unwrap();
    let err = client.batch_execute(&insert("now() + interval '2 years'")).await.unwrap_err();
    assert!(
        err.as_db_error().unwrap().message().contains("no partition of relation \"user_behaviors\" found for row"),
        "{err}"
    );
    assert_eq!(count(&client, "SELECT count(*) FROM user_behaviors").await, 3);
    let requests =
        "INSERT INTO recommendation_requests (scene, created_at) VALUES ('home_feed', now() + interval '1 month')";
    client.batch_execute(requests).await.unwrap();
}

#[tokio::test]
async fn embeddings_take_256_dimensions_only() {
    let db = migrated().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "INSERT INTO items (id, type, title) VALUES ('00000000-0000-4000-8000-000000000001', 'movie', 'm')",
        )
        .await
        .unwrap();
    let vector = |n: usize| format!("'[{}]'", vec!["0.1"; n].join(","));
    let insert = |n| {
        format!(
            "INSERT INTO item_embeddings (item_id, embedding, model_version) VALUES ('00000000-0000-4000-8000-000000000001', {}, 'v1')",
            vector(n)
        )
    };
    let err = client.batch_execute(&insert(255)).await.unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("expected 256 dimensions, not 255"), "{err}");
    client.batch_execute(&insert(256)).await.unwrap();
    let nearest: String = client
        .query_one(
            &format!("SELECT item_id::text FROM item_embeddings ORDER BY embedding <=> {} LIMIT 1", vector(256)),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nearest, "00000000-0000-4000-8000-000000000001");
}

#[tokio::test]
async fn partitions_are_idempotent_and_reported() {
    let db = migrated().await;
    let client = db.connect().await;
    let first = recommend_db::ensure_partitions(&client, 2, 5).await.unwrap();
    let created = first.iter().filter(|p| p.created).count();
    assert_eq!(created, 3 * (2 + 2), "two months back and two more ahead, for each of three tables");
    let second = recommend_db::ensure_partitions(&client, 2, 5).await.unwrap();
    assert!(second.iter().all(|p| !p.created));
    assert_eq!(second.len(), 3 * 8);
    assert!(recommend_db::ensure_partitions(&client, 0, 500).await.is_err());
}
