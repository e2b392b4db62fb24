//! The migration lock: a session-level advisory lock, taken by polling `pg_try_advisory_lock` on
//! a connection of its own.
//!
//! Why polling and why its own connection: a migrator blocked inside `pg_advisory_lock()` sits in
//! a running statement with a snapshot, and `CREATE INDEX CONCURRENTLY` in the lock holder waits
//! for every such snapshot to end, while the blocked migrator waits for the holder: a deadlock
//! that Flyway, sqlx and golang-migrate users have met. Polled try-locks are short statements, so
//! the index build only ever waits a moment. Keeping the lock on a separate, idle connection means
//! the migration connection can run statements that must not be inside a transaction.
//!
//! The key is Flyway's for the same history table, so pg-migrate and Flyway exclude each other.

use std::time::{Duration, Instant};

use datastores::PostgresConfig;
use datastores::tokio_postgres::Client;
use datastores::tokio_postgres::types::Type;

use crate::error::{LockHolder, MigrateError};
use crate::history::Table;

/// A held lock; released by [`MigrationLock::release`] or when its connection closes.
#[derive(Debug)]
pub struct MigrationLock {
    client: Client,
    key: i64,
    /// The server process that holds the lock.
    pub pid: i32,
    /// Set when the lock is not visible on the server: the connection goes through a
    /// transaction-pooling proxy (PgBouncer), where advisory locks do not protect anything.
    pub warning: Option<String>,
}

impl MigrationLock {
    /// Waits up to `timeout` for the lock on `table`'s key.
    pub async fn acquire(pg: &PostgresConfig, table: &Table, timeout: Duration) -> Result<MigrationLock, MigrateError> {
        let key = crate::checksum::flyway_lock_key(&table.schema, &table.name);
        let client = pg.connect().await?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut announced = false;
        loop {
            let row = client
                .query_typed_one("SELECT pg_try_advisory_lock($1)", &[(&key, Type::INT8)])
                .await
                .map_err(|e| MigrateError::db("cannot take the migration lock", &e))?;
            if row.get::<_, bool>(0) {
                let warning = check_visible(pg, &client, key).await?;
                let pid: i32 = client
                    .query_typed_one("SELECT pg_backend_pid()", &[])
                    .await
                    .map_err(|e| MigrateError::db("cannot read the lock session", &e))?
                    .get(0);
                return Ok(MigrationLock { client, key, pid, warning });
            }
            if started.elapsed() >= timeout {
                let holders = holders(&client, key).await.unwrap_or_default();
                return Err(MigrateError::LockTimeout { table: table.qualified(), waited: timeout, holders });
            }
            if !announced && started.elapsed() > Duration::from_secs(2) {
                announced = true;
                let holders = holders(&client, key).await.unwrap_or_default();
                tracing::info!(?holders, "waiting for another migration to finish");
            }
            tokio::time::sleep(pause.min(timeout.saturating_sub(started.elapsed()))).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Whether the lock's connection has closed: the server has released the lock, and another
    /// migrator may take it.
    pub fn is_lost(&self) -> bool {
        self.client.is_closed()
    }

    /// Completes when the lock's connection closes.
    pub async fn lost(&self) {
        while !self.is_lost() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn release(self) -> Result<(), MigrateError> {
        self.client
            .query_typed_one("SELECT pg_advisory_unlock($1)", &[(&self.key, Type::INT8)])
            .await
            .map_err(|e| MigrateError::db("cannot release the migration lock", &e))?;
        Ok(())
    }
}

fn split_key(key: i64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

/// Checks that this session's server connection holds the lock. Through a transaction-pooling
/// proxy each statement may run on another server connection, which does not. To tell for sure,
/// a second connection keeps a transaction open meanwhile: a proxy that pools by transaction
/// (last used, first reused, as PgBouncer does) gives it the server connection that took the
/// lock, and the check then runs elsewhere. A proxy whose pool has no other connection to spare
/// is counted as pooling too.
async fn check_visible(pg: &PostgresConfig, client: &Client, key: i64) -> Result<Option<String>, MigrateError> {
    let probe = pg.connect().await?;
    probe
        .batch_execute("BEGIN; SELECT 1")
        .await
        .map_err(|e| MigrateError::db("cannot check the migration lock", &e))?;
    let visible = tokio::time::timeout(Duration::from_secs(3), holds(client, key)).await;
    let _ = probe.batch_execute("ROLLBACK").await;
    let visible = match visible {
        Ok(held) => held?,
        Err(_) => false,
    };
    if visible {
        return Ok(None);
    }
    Ok(Some(
        "the migration lock is not held by the server connection this session uses now: the connection seems to go \
         through a transaction-pooling proxy (PgBouncer pool_mode=transaction), where advisory locks do not hold. \
         Each migration checks the history inside its own transaction, so none is applied twice, but scripts that \
         run outside a transaction are refused. Connect directly to PostgreSQL, or through a session-pooling port."
            .into(),
    ))
}

/// Whether the server connection that answers holds the lock.
async fn holds(client: &Client, key: i64) -> Result<bool, MigrateError> {
    let (classid, objid) = split_key(key);
    let row = client
        .query_typed_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() \
             AND classid = $1 AND objid = $2 AND objsubid = 1",
            &[(&classid, Type::OID), (&objid, Type::OID)],
        )
        .await
        .map_err(|e| MigrateError::db("cannot check the migration lock", &e))?;
    Ok(row.get::<_, i64>(0) == 1)
}

async fn holders(client: &Client, key: i64) -> Result<Vec<LockHolder>, MigrateError> {
    let (classid, objid) = split_key(key);
    let rows = client
        .query_typed(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket'), \
             coalesce(a.state, '?') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[(&classid, Type::OID), (&objid, Type::OID)],
        )
        .await
        .map_err(|e| MigrateError::db("cannot find the lock holder", &e))?;
    Ok(rows
        .iter()
        .map(|r| LockHolder { pid: r.get(0), application_name: r.get(1), client: r.get(2), state: r.get(3) })
        .collect())
}
