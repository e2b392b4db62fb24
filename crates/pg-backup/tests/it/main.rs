//! pg-backup against the stack's PostgreSQL 18 (with pgvector) and S3.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod deploy;
mod failures;
mod job;
mod restore_safety;
mod round_trip;
mod tls;
mod without_dbkit;

use std::collections::BTreeMap;
use std::path::PathBuf;

use datastores::PostgresConfig;
use pg_backup::{BackupOptions, Compression, Format, Tier, Tools};
use testkit::TestDatabase;

pub fn tools() -> Tools {
    Tools { bin_dir: testkit::settings().get("PG_BIN_DIR").unwrap().map(|v| PathBuf::from(v.text)) }
}

pub fn options(local: Option<PathBuf>, s3: Option<datastores::S3Config>) -> BackupOptions {
    BackupOptions {
        format: Format::Custom,
        compression: Compression::Zstd(3),
        jobs: 2,
        tier: Tier::Daily,
        local_dir: local,
        s3,
        tools: tools(),
        exact_counts: true,
        part_size: 5 << 20,
    }
}

/// A database with what a backup must carry: pgvector columns, partitioned tables, a
/// materialized view, functions and triggers (the recommendation schema), and some data.
pub async fn interesting_database() -> TestDatabase {
    let db = TestDatabase::create().await;
    let client = db.connect().await;
    client.batch_execute("CREATE EXTENSION pg_trgm; CREATE EXTENSION vector;").await.unwrap();
    let scripts = recommend_db::migrations::scripts().unwrap();
    pg_migrate::migrate(&db.config, &recommend_db::migrations::config(3), &scripts).await.unwrap();
    let seed = recommend_db::SeedOptions {
        users: 40,
        items: 120,
        behaviors: 2500,
        requests: 100,
        months: 3,
        seed: 5,
        until: chrono::Utc::now().date_naive(),
        embeddings: true,
        clean: false,
    };
    recommend_db::seed(&client, &seed, &mut |_| {}).await.unwrap();
    db
}

/// A database with one plain table of about `mb` megabytes, quick to make.
pub async fn big_database(mb: u32) -> TestDatabase {
    let db = TestDatabase::create().await;
    let rows = mb * 10_000;
    db.connect()
        .await
        .batch_execute(&format!(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    db
}

/// Row count and an md5 of the sorted rows of every table: equal fingerprints, equal data.
pub async fn fingerprint(pg: &PostgresConfig) -> BTreeMap<String, (i64, String)> {
    let client = pg.connect().await.unwrap();
    let tables = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for row in tables {
        let table: String = row.get(0);
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} t"
                ),
                &[],
            )
            .await
            .unwrap();
        out.insert(table, (row.get(0), row.get(1)));
    }
    out
}
