//! pg-migrate against the real PostgreSQL servers of the local stack (`cargo xtask test`).

#![allow(clippy::unwrap_used)]

mod embedded;
mod flows;
mod flyway_interop;
mod hardening;
mod locking;

use std::path::Path;

use datastores::PostgresConfig;
use pg_migrate::{MigrateConfig, Script};
use tempfile::TempDir;

/// A folder of scripts.
pub fn scripts(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    dir
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

pub fn config(dir: &TempDir) -> MigrateConfig {
    let mut config = MigrateConfig::new();
    config.locations = vec![dir.path().to_owned()];
    config
}

pub fn load(config: &MigrateConfig) -> Vec<Script> {
    pg_migrate::load(&config.locations, config.encoding).unwrap()
}

/// The schema as the catalog sees it: every relation with its kind and row estimate, every
/// function, and the history rows. Equal snapshots mean nothing changed.
pub async fn snapshot(pg: &PostgresConfig) -> Vec<String> {
    let client = pg.connect().await.unwrap();
    let mut out = Vec::new();
    for row in client
        .query(
            "SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(row.get(0));
    }
    for row in client
        .query(
            "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!("function {}", row.get::<_, String>(0)));
    }
    let exists: bool =
        client.query_one("SELECT to_regclass('public.flyway_schema_history') IS NOT NULL", &[]).await.unwrap().get(0);
    if exists {
        for row in client
            .query("SELECT installed_rank::text || ' ' || coalesce(version, '-') || ' ' || success::text FROM flyway_schema_history ORDER BY 1", &[])
            .await
            .unwrap()
        {
            out.push(format!("history {}", row.get::<_, String>(0)));
        }
    }
    out
}

pub async fn count(pg: &PostgresConfig, sql: &str) -> i64 {
    pg.connect().await.unwrap().query_one(sql, &[]).await.unwrap().get(0)
}
