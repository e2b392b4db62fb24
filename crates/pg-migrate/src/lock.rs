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
//!
//! Behind a transaction-pooling proxy (PgBouncer `pool_mode=transaction`) a session-level lock
//! protects nothing, and worse, it leaks: the unlock runs on another server connection, and the
//! pooled one keeps the lock for ever. So the proxy is detected first, and then no session lock is
//! taken; each migration's transaction guards itself instead (see `engine::applied_guard`).

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
    /// The server process that holds the lock (0 when none is held).
    pub pid: i32,
    /// Set when the connection goes through a transaction-pooling proxy: then no session lock
    /// is held, since it would protect nothing.
    pub warning: Option<String>,
    held: bool,
}

impl MigrationLock {
    /// Waits up to `timeout` for the lock on `table`'s key.
    pub async fn acquire(pg: &PostgresConfig, table: &Table, timeout: Duration) -> Result<MigrationLock, MigrateError> {
        let key = crate::checksum::flyway_lock_key(&table.schema, &table.name);
        let client = pg.connect().await?;
        if transaction_pooled(pg, &client).await? {
            return Ok(MigrationLock { client, key, pid: 0, warning: Some(POOLED.into()), held: false });
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut announced = false;
        loop {
            let row = client
                .query_typed_one("SELECT pg_try_advisory_lock($1)", &[(&key, Type::INT8)])
                .await
                .map_err(|e| MigrateError::db("cannot take the migration lock", &e))?;
            if row.get::<_, bool>(0) {
                let pid: i32 = client
                    .query_typed_one("SELECT pg_backend_pid()", &[])
                    .await
                    .map_err(|e| MigrateError::db("cannot read the lock session", &e))?
                    .get(0);
                return Ok(MigrationLock { client, key, pid, warning: None, held: true });
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
        if !self.held {
            return Ok(());
        }
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

const POOLED: &str = "this connection goes through a transaction-pooling proxy (PgBouncer pool_mode=transaction): \
    statements of one session run on different server connections, so the migration lock cannot hold. Each \
    migration checks the history inside its own transaction, so none is applied twice, but scripts that run \
    outside a transaction are refused. Connect directly to PostgreSQL, or through a session-pooling port.";

/// Whether `client`'s statements may run on different server connections: a transaction-pooling
/// proxy. A session setting is made, a second connection keeps a transaction open (a pooling
/// proxy gives it the server connection just used, last used first reused, as PgBouncer does),
/// and the setting is read back. A proxy with no other connection to spare counts as pooling.
async fn transaction_pooled(pg: &PostgresConfig, client: &Client) -> Result<bool, MigrateError> {
    let token = format!("{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    client
        .query_typed_one("SELECT set_config('pg_migrate.session_probe', $1, false)", &[(&token, Type::TEXT)])
        .await
        .map_err(|e| MigrateError::db("cannot check the session", &e))?;
    let probe = pg.connect().await?;
    probe.batch_execute("BEGIN; SELECT 1").await.map_err(|e| MigrateError::db("cannot check the session", &e))?;
    let read = tokio::time::timeout(
        Duration::from_secs(3),
        client.query_typed_one("SELECT current_setting('pg_migrate.session_probe', true)", &[]),
    )
    .await;
    let _ = probe.batch_execute("ROLLBACK").await;
    match read {
        Ok(Ok(row)) => Ok(row.get::<_, Option<String>>(0).as_deref() != Some(token.as_str())),
        Ok(Err(e)) => Err(MigrateError::db("cannot check the session", &e)),
        Err(_) => Ok(true),
    }
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
