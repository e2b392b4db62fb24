//! The PostgreSQL series, named as postgres_exporter names them, with `_total` on counters and
//! units in the name (`pg_stat_database_blks_hit` there is `pg_stat_database_blks_hit_total`
//! here).
//!
//! | series | postgres_exporter | meaning |
//! |---|---|---|
//! | `pg_static{version,short_version}` | `pg_static` | 1, with the server version |
//! | `pg_stat_activity_count{datname,state}` | same | client sessions by database and state |
//! | `pg_stat_activity_max_tx_duration_seconds{datname,state}` | `pg_stat_activity_max_tx_duration` | age of the oldest open transaction |
//! | `pg_stat_activity_max_query_duration_seconds{datname}` | (none) | age of the longest running statement: the query latency when pg_stat_statements is not installed |
//! | `pg_stat_database_numbackends{datname}` | same | sessions per database |
//! | `pg_stat_database_xact_commit_total{datname}` | `pg_stat_database_xact_commit` | commits |
//! | `pg_stat_database_xact_rollback_total{datname}` | `pg_stat_database_xact_rollback` | rollbacks |
//! | `pg_stat_database_blks_hit_total{datname}` | `pg_stat_database_blks_hit` | blocks found in shared buffers (cache hit ratio: hit / (hit + read)) |
//! | `pg_stat_database_blks_read_total{datname}` | `pg_stat_database_blks_read` | blocks read from disk or the OS cache |
//! | `pg_stat_database_tup_{returned,fetched,inserted,updated,deleted}_total{datname}` | without `_total` | rows |
//! | `pg_stat_database_deadlocks_total{datname}` | `pg_stat_database_deadlocks` | deadlocks |
//! | `pg_stat_database_conflicts_total{datname}` | `pg_stat_database_conflicts` | queries cancelled by recovery conflicts |
//! | `pg_stat_database_temp_bytes_total{datname}` | `pg_stat_database_temp_bytes` | bytes written to temporary files |
//! | `pg_database_size_bytes{datname}` | same | size on disk |
//! | `pg_locks_count{datname,mode}` | same | locks held or requested, by database and mode (lower case, as postgres_exporter has it) |
//! | `pg_locks_waiting{datname,mode}` | (none) | lock requests waiting: the lock waits of seed 003 |
//! | `pg_settings_max_connections` | same | the connection limit |
//! | `pg_settings_superuser_reserved_connections` | same | connections kept for superusers |
//! | `pg_replication_is_replica` | `pg_replication_is_replica` | 1 on a standby |
//! | `pg_replication_lag_seconds` | `pg_replication_lag` | on a standby: time since the last replayed transaction |
//! | `pg_stat_replication_lag_bytes{application_name,client_addr}` | `pg_stat_replication_pg_wal_lsn_diff` | on a primary: WAL not yet replayed by each standby |
//! | `pg_stat_replication_replay_lag_seconds{application_name,client_addr}` | (none) | on a primary: each standby's replay lag |
//! | `pg_stat_statements_installed` | (none) | whether the query latency below is available |
//! | `pg_stat_statements_all_calls_total` / `pg_stat_statements_all_seconds_total` | (none) | all statements: calls and execution time (mean latency = seconds / calls) |
//! | `pg_stat_statements_calls_total{queryid,datname}` / `..._seconds_total{...}` / `..._rows_total{...}` | `pg_stat_statements_calls`, ... | the 20 statements with the most execution time |
//!
//! One round trip reads everything but pg_stat_statements (a second one when it is installed).
//! No query reads a table: only statistics views, `pg_settings` and `pg_database_size`.

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::Samples;
use crate::PostgresConfig;

/// The statements whose figures are published one by one.
const TOP_STATEMENTS: usize = 20;

/// Connects and reads the server's figures.
pub async fn collect(config: &PostgresConfig) -> Result<Samples, String> {
    let client = config.connect().await.map_err(|e| e.to_string())?;
    collect_with(&client).await
}

const QUERIES: &str = "\
SELECT current_setting('server_version'), current_setting('server_version_num'), pg_is_in_recovery()::int, \
  CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
    ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END, \
  (SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'), \
  current_setting('max_connections'), current_setting('superuser_reserved_connections');
SELECT coalesce(datname, ''), coalesce(state, 'unknown'), count(*), \
  coalesce(max(extract(epoch FROM now() - xact_start)), 0), \
  coalesce(max(extract(epoch FROM now() - query_start)) FILTER (WHERE state = 'active'), 0) \
  FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1, 2;
SELECT datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, \
  tup_inserted, tup_updated, tup_deleted, conflicts, temp_bytes, deadlocks, \
  CASE WHEN has_database_privilege(datid, 'CONNECT') THEN pg_database_size(datid) END \
  FROM pg_stat_database WHERE datname IS NOT NULL;
SELECT d.datname, lower(l.mode), count(*), count(*) FILTER (WHERE NOT l.granted) \
  FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.pid <> pg_backend_pid() GROUP BY 1, 2;
SELECT coalesce(application_name, ''), coalesce(host(client_addr), ''), \
  coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0), coalesce(extract(epoch FROM replay_lag), 0) \
  FROM pg_stat_replication WHERE NOT pg_is_in_recovery();";

fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<&SimpleQueryRow>> {
    let mut sets = vec![Vec::new()];
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => sets.last_mut().unwrap_or(&mut Vec::new()).push(row),
            SimpleQueryMessage::CommandComplete(_) => sets.push(Vec::new()),
            _ => {}
        }
    }
    sets
}

fn text(row: &SimpleQueryRow, i: usize) -> &str {
    row.get(i).unwrap_or_default()
}

fn num(row: &SimpleQueryRow, i: usize) -> f64 {
    text(row, i).parse().unwrap_or(0.0)
}

/// Reads the server's figures on an open session.
pub async fn collect_with(client: &Client) -> Result<Samples, String> {
    let messages = client.simple_query(QUERIES).await.map_err(|e| crate::error::chain(&e))?;
    let sets = rows(&messages);
    let set = |i: usize| sets.get(i).map(Vec::as_slice).unwrap_or_default();
    let mut s = Samples::default();
    let Some(server) = set(0).first() else {
        return Err("the server answered no rows".into());
    };
    let version = text(server, 0);
    let short = version.split_whitespace().next().unwrap_or(version);
    s.gauge("pg_static", "The server's version, as labels.", &[("version", version), ("short_version", short)], 1.0);
    s.gauge("pg_replication_is_replica", "Whether the server is a standby (1) or a primary (0).", &[], num(server, 2));
    if num(server, 2) > 0.0 {
        s.gauge(
            "pg_replication_lag_seconds",
            "On a standby, the time since the last transaction it replayed was committed.",
            &[],
            num(server, 3),
        );
    }
    let statements = num(server, 4) > 0.0;
    s.gauge("pg_settings_max_connections", "The server's max_connections.", &[], num(server, 5));
    s.gauge("pg_settings_superuser_reserved_connections", "Connections reserved for superusers.", &[], num(server, 6));
    for row in set(1) {
        let labels = [("datname", text(row, 0)), ("state", text(row, 1))];
        s.gauge("pg_stat_activity_count", "Client sessions by database and state.", &labels, num(row, 2));
        s.gauge(
            "pg_stat_activity_max_tx_duration_seconds",
            "The age of the oldest open transaction, by database and state.",
            &labels,
            num(row, 3),
        );
        if text(row, 1) == "active" {
            s.gauge(
                "pg_stat_activity_max_query_duration_seconds",
                "The age of the longest running statement, by database.",
                &[("datname", text(row, 0))],
                num(row, 4),
            );
        }
    }
    for row in set(2) {
        let db = [("datname", text(row, 0))];
        s.gauge("pg_stat_database_numbackends", "Sessions connected to the database.", &db, num(row, 1));
        let counters: [(&str, &'static str, usize); 12] = [
            ("pg_stat_database_xact_commit_total", "Transactions committed.", 2),
            ("pg_stat_database_xact_rollback_total", "Transactions rolled back.", 3),
            ("pg_stat_database_blks_read_total", "Blocks read from disk or the OS cache.", 4),
            ("pg_stat_database_blks_hit_total", "Blocks found in shared buffers.", 5),
            ("pg_stat_database_tup_returned_total", "Rows returned by scans.", 6),
            ("pg_stat_database_tup_fetched_total", "Rows fetched by index scans.", 7),
            ("pg_stat_database_tup_inserted_total", "Rows inserted.", 8),
            ("pg_stat_database_tup_updated_total", "Rows updated.", 9),
            ("pg_stat_database_tup_deleted_total", "Rows deleted.", 10),
            ("pg_stat_database_conflicts_total", "Queries cancelled by recovery conflicts.", 11),
            ("pg_stat_database_temp_bytes_total", "Bytes written to temporary files.", 12),
            ("pg_stat_database_deadlocks_total", "Deadlocks detected.", 13),
        ];
        for (name, help, i) in counters {
            s.counter(name, help, &db, num(row, i));
        }
        if row.get(14).is_some() {
            s.gauge("pg_database_size_bytes", "The database's size on disk.", &db, num(row, 14));
        }
    }
    for row in set(3) {
        let labels = [("datname", text(row, 0)), ("mode", text(row, 1))];
        s.gauge("pg_locks_count", "Locks held or requested, by database and mode.", &labels, num(row, 2));
        s.gauge("pg_locks_waiting", "Lock requests waiting, by database and mode.", &labels, num(row, 3));
    }
    for row in set(4) {
        let labels = [("application_name", text(row, 0)), ("client_addr", text(row, 1))];
        s.gauge("pg_stat_replication_lag_bytes", "WAL a standby has not replayed yet, in bytes.", &labels, num(row, 2));
        s.gauge("pg_stat_replication_replay_lag_seconds", "A standby's replay lag.", &labels, num(row, 3));
    }
    // Installed but not loaded (not in shared_preload_libraries), or not readable: the rest of
    // the scrape stands, and the series says the latency is not available.
    let statements = statements && statements_samples(client, &mut s).await.is_ok();
    s.gauge(
        "pg_stat_statements_installed",
        "Whether pg_stat_statements can be read in the database the exporter connects to.",
        &[],
        if statements { 1.0 } else { 0.0 },
    );
    Ok(s)
}

async fn statements_samples(client: &Client, s: &mut Samples) -> Result<(), String> {
    // `pg_stat_statements(false)`: the figures without reading the query texts' file. The top
    // statements are summed over users and nesting levels, so that (queryid, datname) is a key.
    let sql = format!(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) / 1000 FROM pg_stat_statements(false); \
         SELECT coalesce(s.queryid::text, ''), coalesce(d.datname, ''), sum(s.calls), sum(s.total_exec_time) / 1000, \
         sum(s.rows) FROM pg_stat_statements(false) s LEFT JOIN pg_database d ON d.oid = s.dbid \
         WHERE s.queryid IS NOT NULL GROUP BY 1, 2 ORDER BY 4 DESC LIMIT {TOP_STATEMENTS}"
    );
    let messages = client.simple_query(&sql).await.map_err(|e| crate::error::chain(&e))?;
    let sets = rows(&messages);
    if let Some(all) = sets.first().and_then(|r| r.first()) {
        s.counter(
            "pg_stat_statements_all_calls_total",
            "Calls of every statement pg_stat_statements tracks.",
            &[],
            num(all, 0),
        );
        s.counter(
            "pg_stat_statements_all_seconds_total",
            "Execution time of every statement pg_stat_statements tracks.",
            &[],
            num(all, 1),
        );
    }
    for row in sets.get(1).map(Vec::as_slice).unwrap_or_default() {
        let labels = [("queryid", text(row, 0)), ("datname", text(row, 1))];
        s.counter(
            "pg_stat_statements_calls_total",
            "Calls of one of the statements with the most execution time.",
            &labels,
            num(row, 2),
        );
        s.counter(
            "pg_stat_statements_seconds_total",
            "Execution time of one of the statements with the most execution time.",
            &labels,
            num(row, 3),
        );
        s.counter("pg_stat_statements_rows_total", "Rows the statement returned or changed.", &labels, num(row, 4));
    }
    Ok(())
}
