//! The recommendation database against the stack's PostgreSQL 18 with pgvector.

#![allow(clippy::unwrap_used)]

mod cleanup;
mod deploy;
mod init;
mod schema;
mod seed;

use chrono::NaiveDate;
use datastores::PostgresConfig;
use datastores::tokio_postgres::Client;
use recommend_db::SeedOptions;
use testkit::TestDatabase;

/// A fresh database with the schema migrated (as the connected superuser).
pub async fn migrated() -> TestDatabase {
    let db = TestDatabase::create().await;
    db.connect().await.batch_execute("CREATE EXTENSION pg_trgm; CREATE EXTENSION vector;").await.unwrap();
    let scripts = recommend_db::migrations::scripts().unwrap();
    pg_migrate::migrate(&db.config, &recommend_db::migrations::config(3), &scripts).await.unwrap();
    db
}

pub fn small_seed(seed: u64) -> SeedOptions {
    SeedOptions {
        users: 60,
        items: 200,
        behaviors: 3000,
        requests: 150,
        months: 4,
        seed,
        until: chrono::Utc::now().date_naive(),
        embeddings: true,
        clean: false,
    }
}

pub fn fixed_day() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

pub async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

pub async fn connect(config: &PostgresConfig) -> Client {
    config.connect().await.unwrap()
}
