//! The migration lock: a transaction-level advisory lock, taken by polling
//! `pg_try_advisory_xact_lock` in a transaction that stays open on a connection of its own until
//! the migration ends.
//!
//! Why polling and why its own connection: a migrator blocked inside `pg_advisory_lock()` sits in
//! a running statement with a snapshot, and `CREATE INDEX CONCURRENTLY` in the lock holder waits
//! for every such snapshot to end, while the blocked migrator waits for the holder: a deadlock
//! that Flyway, sqlx and golang-migrate users have met. Polled try-locks are short statements, so
//! the index build only ever waits a moment. Keeping the lock on a separate, idle connection means
//! the migration connection can run statements that must not be inside a transaction.
//!
//! The key is Flyway's for the same history table (session and transaction advisory locks share
//! one key space), so pg-migrate and Flyway exclude each other.
//!
//! Why a transaction and not a session lock: behind a transaction-pooling proxy (PgBouncer
//! `pool_mode=transaction`) a session-level lock leaks: the unlock runs on another server
//! connection and the pooled one keeps the lock for ever, blocking every later migration. An open
//! transaction pins its server connection, and ending it (commit, or the client going away) ends
//! the lock, so no proxy can leave it behind. The transaction is READ COMMITTED, so between the
//! polls it holds no snapshot that `CREATE INDEX CONCURRENTLY` would wait for, and the server's
//! idle-in-transaction and transaction timeouts are lifted for it alone.
//!
//! The proxy is still detected first (the detection is a heuristic under concurrent load, which
//! the lock no longer depends on): behind one, statements of the migration session may run on
//! different server connections, so no lock is taken and each migration's transaction guards
//! itself instead (see `engine::applied_guard`), and scripts outside a transaction are refused.

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
            return Ok(MigrationLock { client, pid: 0, warning: Some(POOLED.into()), held: false });
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut announced = false;
        loop {
            // Each try is a transaction of its own, ended when the lock is not free: a waiting
            // migrator pins no server connection of a pooling proxy.
            let rows = client
                .simple_query(&format!(
                    "BEGIN ISOLATION LEVEL READ COMMITTED; \
                     SELECT set_config(name, '0', true) FROM pg_settings \
                     WHERE name IN ('idle_in_transaction_session_timeout', 'transaction_timeout'); \
                     SELECT pg_try_advisory_xact_lock({key}), pg_backend_pid()"
                ))
                .await
                .map_err(|e| MigrateError::db("cannot take the migration lock", e))?;
            let (taken, pid) = rows
                .iter()
                .rev()
                .find_map(|m| match m {
                    datastores::tokio_postgres::SimpleQueryMessage::Row(r) => Some((r.get(0) == Some("t"), r.get(1))),
                    _ => None,
                })
                .ok_or_else(|| MigrateError::Unexpected("the server did not answer the lock query".into()))?;
            if taken {
                let pid = pid.and_then(|p| p.parse().ok()).unwrap_or(0);
                return Ok(MigrationLock { client, pid, warning: None, held: true });
            }
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| MigrateError::db("cannot take the migration lock", e))?;
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
    /// migrator may take it. Never when no lock is held (behind a pooling proxy, which may close
    /// the idle connection without that meaning anything).
    pub fn is_lost(&self) -> bool {
        self.held && self.client.is_closed()
    }

    /// Completes when the lock's connection closes; never when no lock is held.
    pub async fn lost(&self) {
        if !self.held {
            std::future::pending::<()>().await;
        }
        while !self.is_lost() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn release(self) -> Result<(), MigrateError> {
        // A closed connection has released the lock with its transaction.
        if !self.held || self.client.is_closed() {
            return Ok(());
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| MigrateError::db("cannot release the migration lock", e))?;
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
/// proxy. A session setting is made, then a second connection (the probe) opens a transaction and
/// reads it: a pooling proxy gives the probe the server connection just used (last used, first
/// reused, as PgBouncer does), so the probe sees the value, and that settles it. Otherwise the
/// setting is read back on the first connection, while the probe's transaction pins its server
/// connection: a pooling proxy runs the read on another one, without the value.
///
/// That read can be slow to answer for two reasons: a server that stalls, or a proxy with no
/// server connection to spare. After 3 s the probe lets go of its connection and the read is
/// awaited: on a direct connection it answers with the value once the server does, so a stall
/// is not taken for a proxy. What the check can still take for a direct connection: a proxy
/// whose connections are all busy with other clients, or one that reuses its oldest connection
/// first, when the read lands on the connection that holds the value. The lock is then taken
/// as on a direct connection; it is a transaction-level lock on a server connection its
/// transaction pins, so it still excludes every other migrator.
async fn transaction_pooled(pg: &PostgresConfig, client: &Client) -> Result<bool, MigrateError> {
    const SLOW: Duration = Duration::from_secs(3);
    const GIVE_UP: Duration = Duration::from_secs(120);
    let failed = |e| MigrateError::db("cannot check the session", e);
    // Random, so that a value another client left on a pooled server connection never matches.
    let token = format!("{:016x}", rand::random::<u64>());
    client
        .query_typed_one("SELECT set_config('pg_migrate.session_probe', $1, false)", &[(&token, Type::TEXT)])
        .await
        .map_err(failed)?;
    let probe = pg.connect().await?;
    // The probe's transaction may wait seconds: the server's idle timeouts are lifted for it.
    let messages = probe
        .simple_query(
            "BEGIN; SELECT set_config(name, '0', true) FROM pg_settings \
             WHERE name IN ('idle_in_transaction_session_timeout', 'transaction_timeout'); \
             SELECT current_setting('pg_migrate.session_probe', true) AS seen_by_the_probe",
        )
        .await
        .map_err(failed)?;
    let seen = messages.iter().rev().find_map(|m| match m {
        datastores::tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
        _ => None,
    });
    if seen.flatten().as_deref() == Some(token.as_str()) {
        let _ = probe.batch_execute("ROLLBACK").await;
        return Ok(true);
    }
    let mut read =
        std::pin::pin!(client.query_typed_one("SELECT current_setting('pg_migrate.session_probe', true)", &[]));
    let row = match tokio::time::timeout(SLOW, &mut read).await {
        Ok(row) => {
            let _ = probe.batch_execute("ROLLBACK").await;
            row
        }
        Err(_) => {
            let until = tokio::time::Instant::now() + GIVE_UP;
            let _ = tokio::time::timeout_at(until, probe.batch_execute("ROLLBACK")).await;
            tokio::time::timeout_at(until, read).await.map_err(|_| {
                MigrateError::NoAnswer(format!(
                    "the server did not answer a one-row query in {} s (the check for a pooling proxy)",
                    (SLOW + GIVE_UP).as_secs()
                ))
            })?
        }
    };
    let value: Option<String> = row.map_err(failed)?.get(0);
    Ok(value.as_deref() != Some(token.as_str()))
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
        .map_err(|e| MigrateError::db("cannot find the lock holder", e))?;
    Ok(rows
        .iter()
        .map(|r| LockHolder { pid: r.get(0), application_name: r.get(1), client: r.get(2), state: r.get(3) })
        .collect())
}
