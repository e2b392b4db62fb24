//! `cleanup`: retention of the event tables. Whole partitions older than the cutoff are detached
//! and dropped (instant, no table bloat); the one partition that straddles the cutoff loses its
//! old rows in bounded batches, one range of blocks at a time. Then what changed is vacuumed and
//! analyzed, and the materialized views are refreshed.
//!
//! A partition is detached with `DETACH PARTITION ... CONCURRENTLY` (PostgreSQL 14 and later),
//! which never blocks readers and writers of the table. It still has to wait for transactions
//! that use the table, such as a pg_dump that runs for an hour: each attempt waits at most
//! `lock_timeout`, attempts are repeated until `lock_wait` has passed, and a detach that still
//! waits then is left pending (its rows are already gone for new queries) and finished by the
//! next cleanup, which also drops tables detached earlier. So a running backup never makes
//! cleanup fail.

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use datastores::tokio_postgres::Client;
use serde::Serialize;

use crate::Error;
use crate::pgident::quote_ident;

/// How much [`cleanup`] keeps and how it waits for locks; [`Default`] gives the seed's retention.
#[derive(Clone, Copy, Debug)]
pub struct CleanupOptions {
    /// Keep user behaviours this many days (1 to 36500; default 90).
    pub behaviors_days: u32,
    /// Keep recommendation requests and results this many days (1 to 36500; default 30).
    pub requests_days: u32,
    /// Rows deleted per statement in the straddling partition (at least 1; default 10,000).
    pub batch_size: u32,
    /// Count the rows of the plan exactly (a full read of each partition); estimates otherwise.
    pub exact: bool,
    /// How long one attempt to take a lock may wait (default 5 s).
    pub lock_timeout: Duration,
    /// How long to keep trying before leaving a detach pending for the next run (default 2 min).
    pub lock_wait: Duration,
}

impl Default for CleanupOptions {
    /// The seed's retention: behaviours 90 days, recommendation requests 30 days.
    fn default() -> CleanupOptions {
        CleanupOptions {
            behaviors_days: 90,
            requests_days: 30,
            batch_size: 10_000,
            exact: false,
            lock_timeout: Duration::from_secs(5),
            lock_wait: Duration::from_secs(120),
        }
    }
}

impl CleanupOptions {
    /// Checks the bounds above; [`Error::Invalid`] names the flag at fault. [`cleanup`] and
    /// [`plan`](crate::cleanup_plan) call it first.
    ///
    /// ```rust
    /// use recommend_db::{CleanupOptions, Error};
    ///
    /// let options = CleanupOptions::default();
    /// assert_eq!((options.behaviors_days, options.requests_days), (90, 30));
    /// assert!(options.validate().is_ok());
    ///
    /// let error = CleanupOptions { behaviors_days: 0, ..options }.validate().unwrap_err();
    /// assert!(matches!(error, Error::Invalid(_)));
    /// assert_eq!(error.to_string(), "--behaviors-days 0 must be between 1 and 36500");
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        for (flag, days) in [("--behaviors-days", self.behaviors_days), ("--requests-days", self.requests_days)] {
            if !(1..=36_500).contains(&days) {
                return Err(Error::Invalid(format!("{flag} {days} must be between 1 and 36500")));
            }
        }
        if self.batch_size == 0 {
            return Err(Error::Invalid("the batch size must be at least 1".into()));
        }
        Ok(())
    }
}

/// What happens to one partition.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionAction {
    /// The partition's name.
    pub partition: String,
    /// The first instant of its month, inclusive.
    pub range_start: DateTime<Utc>,
    /// The first instant of the next month, exclusive.
    pub range_end: DateTime<Utc>,
    /// `drop` (entirely older than the cutoff) or `trim` (straddles it).
    pub action: &'static str,
    /// Rows that go: all of a dropped partition, the old ones of a trimmed one. Estimated from
    /// the planner's statistics unless the plan was made with `exact`.
    pub rows: i64,
    /// Whether `rows` was counted (`exact`) rather than estimated.
    pub rows_exact: bool,
    /// After the run: `dropped`, `trimmed`, or `detach pending` when a long transaction (such as
    /// a pg_dump) kept the detach from finishing; the next cleanup finishes it. Older partitions
    /// of the same table then wait (`deferred: ...`). `None` in a plan or a report-only run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Bytes freed by a drop; the partition's size for a trim.
    pub bytes: i64,
}

/// What cleanup does to one partitioned table.
#[derive(Clone, Debug, Serialize)]
pub struct TablePlan {
    /// The partitioned table.
    pub table: String,
    /// Rows created before this instant go: `now` minus the table's retention in days.
    pub cutoff: DateTime<Utc>,
    /// The partitions that start before the cutoff, oldest first; empty when nothing is to go.
    pub partitions: Vec<PartitionAction>,
}

/// What [`cleanup`] did, or would do with `report_only`.
#[derive(Clone, Debug, Serialize)]
pub struct CleanupReport {
    /// Whether this was only a report: nothing was changed.
    pub report_only: bool,
    /// Per table, its cutoff and what happened to each partition.
    pub tables: Vec<TablePlan>,
    /// Rows of the planned drops and trims (estimated unless `exact`).
    pub rows_removed: i64,
    /// Bytes of the partitions to drop, as planned (a pending detach frees them later).
    pub bytes_freed: i64,
    /// Tables detached by an earlier run whose drop had to wait, dropped now.
    pub leftovers_dropped: Vec<String>,
    /// Whether the materialized views were refreshed (not in a report-only run).
    pub views_refreshed: bool,
    /// Time spent dropping and trimming partitions.
    pub removal_seconds: f64,
    /// Time spent refreshing the materialized views.
    pub views_seconds: f64,
    /// Time in all, planning, vacuum, analyze and the views' refresh included.
    pub seconds: f64,
}

fn retention(options: &CleanupOptions) -> [(&'static str, u32); 3] {
    [
        ("user_behaviors", options.behaviors_days),
        ("recommendation_requests", options.requests_days),
        ("recommendation_results", options.requests_days),
    ]
}

/// What cleanup would remove, partition by partition: estimated counts, or exact ones with
/// `options.exact`.
pub async fn plan(client: &Client, options: &CleanupOptions, now: DateTime<Utc>) -> Result<Vec<TablePlan>, Error> {
    options.validate()?;
    let mut plans = Vec::new();
    for (table, days) in retention(options) {
        let cutoff = now - ChronoDuration::days(i64::from(days));
        let partitions = crate::partitions::monthly(client, table).await?;
        let mut actions = Vec::new();
        for p in partitions.into_iter().filter(|p| p.range_start < cutoff) {
            let action = if p.range_end <= cutoff { "drop" } else { "trim" };
            let rows: i64 = if options.exact {
                let (sql, params): (String, Vec<&(dyn datastores::tokio_postgres::types::ToSql + Sync)>) =
                    if action == "drop" {
                        (format!("SELECT count(*) FROM {}", quote_ident(&p.name)), vec![])
                    } else {
                        (format!("SELECT count(*) FROM {} WHERE created_at < $1", quote_ident(&p.name)), vec![&cutoff])
                    };
                client
                    .query_one(&sql, &params)
                    .await
                    .map_err(|e| Error::db(format!("cannot count rows of {}", p.name), e))?
                    .get(0)
            } else if action == "drop" {
                p.rows_estimate
            } else {
                // The share of the month before the cutoff.
                let month = (p.range_end - p.range_start).num_seconds().max(1) as f64;
                let before = (cutoff - p.range_start).num_seconds().max(0) as f64;
                (p.rows_estimate as f64 * before / month).round() as i64
            };
            if action == "trim" && options.exact && rows == 0 {
                continue;
            }
            actions.push(PartitionAction {
                partition: p.name,
                range_start: p.range_start,
                range_end: p.range_end,
                action,
                rows,
                rows_exact: options.exact,
                outcome: None,
                bytes: p.bytes,
            });
        }
        plans.push(TablePlan { table: table.to_owned(), cutoff, partitions: actions });
    }
    Ok(plans)
}

/// Runs cleanup (or only reports, with `report_only`); cutoffs count back from `now`.
///
/// ```rust,no_run
/// # async fn run(pg: datastores::PostgresConfig) -> Result<(), recommend_db::Error> {
/// use recommend_db::{CleanupOptions, cleanup};
///
/// let client = pg.connect().await?;
/// let report = cleanup(&client, &CleanupOptions::default(), true, chrono::Utc::now()).await?;
/// for table in &report.tables {
///     println!("{}: {} partition(s) before {}", table.table, table.partitions.len(), table.cutoff);
/// }
/// # Ok(()) }
/// ```
pub async fn cleanup(
    client: &Client,
    options: &CleanupOptions,
    report_only: bool,
    now: DateTime<Utc>,
) -> Result<CleanupReport, Error> {
    let started = Instant::now();
    let tables = plan(client, options, now).await?;
    let rows_removed = tables.iter().flat_map(|t| &t.partitions).map(|p| p.rows).sum();
    let bytes_freed = tables.iter().flat_map(|t| &t.partitions).filter(|p| p.action == "drop").map(|p| p.bytes).sum();
    let mut report = CleanupReport {
        report_only,
        tables,
        rows_removed,
        bytes_freed,
        leftovers_dropped: Vec::new(),
        views_refreshed: false,
        removal_seconds: 0.0,
        views_seconds: 0.0,
        seconds: 0.0,
    };
    if report_only {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::db("cannot read the server version", e))?
        .get(0);
    let removal = Instant::now();
    report.leftovers_dropped = drop_leftovers(client, options).await?;
    let mut trimmed = Vec::new();
    for table in &mut report.tables {
        let parent = table.table.clone();
        // A table can have one pending detach at a time: after one is left pending, the older
        // partitions that follow wait for the next run.
        let mut pending: Option<String> = None;
        for p in &mut table.partitions {
            match p.action {
                "drop" if pending.is_some() => {
                    p.outcome = Some(format!("deferred: {} is still being detached", pending.as_deref().unwrap_or("")));
                }
                "drop" => {
                    let outcome = if version >= 140_000 {
                        detach_concurrently(client, &parent, &p.partition, options).await?
                    } else {
                        detach_and_drop(client, &parent, &p.partition, options).await?
                    };
                    if outcome == "detach pending" {
                        pending = Some(p.partition.clone());
                    }
                    p.outcome = Some(outcome.into());
                }
                _ => {
                    trim(client, &p.partition, table.cutoff, options.batch_size).await?;
                    trimmed.push(p.partition.clone());
                    p.outcome = Some("trimmed".into());
                }
            }
        }
    }
    report.removal_seconds = removal.elapsed().as_secs_f64();
    for partition in &trimmed {
        client
            .batch_execute(&format!("VACUUM (ANALYZE) {}", quote_ident(partition)))
            .await
            .map_err(|e| Error::db(format!("cannot vacuum {partition}"), e))?;
    }
    let changed: Vec<&str> =
        report.tables.iter().filter(|t| !t.partitions.is_empty()).map(|t| t.table.as_str()).collect();
    // The partitions that changed were analyzed by their VACUUM; the parents' own statistics
    // (autovacuum never gathers them) need a sample. Since PostgreSQL 18, ONLY spares the
    // untouched partitions a second ANALYZE.
    let only = if version >= 180_000 { "ONLY " } else { "" };
    for table in &changed {
        client
            .batch_execute(&format!("ANALYZE {only}{}", quote_ident(table)))
            .await
            .map_err(|e| Error::db(format!("cannot analyze {table}"), e))?;
    }
    let views = Instant::now();
    client
        .batch_execute("SELECT refresh_recommendation_views()")
        .await
        .map_err(|e| Error::db("cannot refresh the materialized views", e))?;
    report.views_refreshed = true;
    report.views_seconds = views.elapsed().as_secs_f64();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs `sql` (outside a transaction block) until it gets its locks: each attempt waits at most
/// `options.lock_timeout`, and attempts go on until `options.lock_wait` has passed. `Ok(false)`
/// when the time ran out.
async fn with_lock_retries(client: &Client, sql: &str, what: &str, options: &CleanupOptions) -> Result<bool, Error> {
    with_lock_retries_of(client, what, options, async || Ok(sql.to_owned())).await
}

/// As [`with_lock_retries`], with the statement chosen anew for every attempt.
async fn with_lock_retries_of(
    client: &Client,
    what: &str,
    options: &CleanupOptions,
    statement: impl AsyncFn() -> Result<String, Error>,
) -> Result<bool, Error> {
    let deadline = Instant::now() + options.lock_wait;
    let timeout = format!("SET lock_timeout = '{}ms'", options.lock_timeout.as_millis().max(1));
    client.batch_execute(&timeout).await.map_err(|e| Error::db("cannot set lock_timeout", e))?;
    let mut pause = Duration::from_millis(200);
    let outcome = loop {
        let sql = match statement().await {
            Ok(sql) => sql,
            Err(e) => break Err(e),
        };
        match client.batch_execute(&sql).await {
            Ok(()) => break Ok(true),
            Err(e) if e.code() == Some(&datastores::tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                if Instant::now() + pause >= deadline {
                    break Ok(false);
                }
                tracing::info!(target: "progress", what, "waiting for a lock held by a long transaction; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
            Err(e) => break Err(Error::db(format!("cannot {what}"), e)),
        }
    };
    let _ = client.batch_execute("RESET lock_timeout").await;
    outcome
}

/// Whether `partition` is attached to `parent` with a detach pending (PostgreSQL 14 and later).
async fn detach_pending(client: &Client, partition: &str) -> Result<bool, Error> {
    let row = client
        .query_opt(
            "SELECT i.inhdetachpending FROM pg_inherits i WHERE i.inhrelid = to_regclass($1)",
            &[&quote_ident(partition)],
        )
        .await
        .map_err(|e| Error::db(format!("cannot look up partition {partition}"), e))?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Detaches `partition` without blocking the table's users, then drops it. Returns `dropped`,
/// `detached, drop pending` or `detach pending` when long transactions kept it from finishing.
async fn detach_concurrently(
    client: &Client,
    parent: &str,
    partition: &str,
    options: &CleanupOptions,
) -> Result<&'static str, Error> {
    let (parent_q, partition_q) = (quote_ident(parent), quote_ident(partition));
    // An attempt that timed out waiting for older transactions leaves the detach pending: the
    // next attempt finishes it instead of starting again.
    let detach = async || -> Result<String, Error> {
        Ok(if detach_pending(client, partition).await? {
            format!("ALTER TABLE {parent_q} DETACH PARTITION {partition_q} FINALIZE")
        } else {
            format!("ALTER TABLE {parent_q} DETACH PARTITION {partition_q} CONCURRENTLY")
        })
    };
    if !with_lock_retries_of(client, &format!("detach partition {partition}"), options, detach).await? {
        // The first step (the one that hides the rows from new queries) may have committed.
        return Ok(if detach_pending(client, partition).await? { "detach pending" } else { "kept: table in use" });
    }
    let drop = format!("DROP TABLE {partition_q}");
    if !with_lock_retries(client, &drop, &format!("drop table {partition}"), options).await? {
        mark_detached(client, partition).await?;
        return Ok("detached, drop pending");
    }
    Ok("dropped")
}

/// Before PostgreSQL 14: detach and drop in one short transaction, retried on lock timeouts.
async fn detach_and_drop(
    client: &Client,
    parent: &str,
    partition: &str,
    options: &CleanupOptions,
) -> Result<&'static str, Error> {
    let sql = format!(
        "BEGIN; ALTER TABLE {} DETACH PARTITION {}; DROP TABLE {}; COMMIT;",
        quote_ident(parent),
        quote_ident(partition),
        quote_ident(partition)
    );
    let done = with_lock_retries(client, &sql, &format!("drop partition {partition}"), options).await;
    if !matches!(done, Ok(true)) {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    Ok(if done? { "dropped" } else { "kept: table in use" })
}

/// The comment that marks a table cleanup detached and could not drop yet.
const DETACHED_MARK: &str = "recommend-db cleanup: detached, to be dropped";

async fn mark_detached(client: &Client, table: &str) -> Result<(), Error> {
    client
        .batch_execute(&format!(
            "COMMENT ON TABLE {} IS {}",
            quote_ident(table),
            datastores::pgadmin::quote_literal(DETACHED_MARK)
        ))
        .await
        .map_err(|e| Error::db(format!("cannot mark {table}"), e))
}

/// Drops what earlier runs detached but could not drop, and finishes their pending detaches.
async fn drop_leftovers(client: &Client, options: &CleanupOptions) -> Result<Vec<String>, Error> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname = current_schema() AND obj_description(c.oid, 'pg_class') = $1 \
             AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)",
            &[&DETACHED_MARK],
        )
        .await
        .map_err(|e| Error::db("cannot look for tables detached earlier", e))?;
    let mut dropped = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let drop = format!("DROP TABLE {}", quote_ident(&name));
        if with_lock_retries(client, &drop, &format!("drop table {name}"), options).await? {
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Deletes the rows of `partition` older than `cutoff`, walking it in ranges of blocks of about
/// `batch_size` rows. Each statement reads only its own blocks (a TID range scan), so the whole
/// trim reads the partition once, and every transaction stays short.
async fn trim(client: &Client, partition: &str, cutoff: DateTime<Utc>, batch_size: u32) -> Result<(), Error> {
    let failed = |e: datastores::tokio_postgres::Error| Error::db(format!("cannot delete old rows of {partition}"), e);
    let row = client
        .query_one(
            "SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint, \
             CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages ELSE 100 END::float8 \
             FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&quote_ident(partition)],
        )
        .await
        .map_err(failed)?;
    let (blocks, rows_per_block): (i64, f64) = (row.get(0), row.get(1));
    let step = ((f64::from(batch_size) / rows_per_block.max(1.0)) as i64).max(1);
    let sql = format!(
        "DELETE FROM {} WHERE ctid >= $1::text::tid AND ctid < $2::text::tid AND created_at < $3",
        quote_ident(partition)
    );
    let tid = |block: i64| format!("({block},0)");
    let mut start = 0;
    while start < blocks {
        client.execute(&sql, &[&tid(start), &tid(start + step), &cutoff]).await.map_err(failed)?;
        start += step;
    }
    // Rows that arrived in new blocks meanwhile.
    client
        .execute(
            &format!("DELETE FROM {} WHERE ctid >= $1::text::tid AND created_at < $2", quote_ident(partition)),
            &[&tid(blocks), &cutoff],
        )
        .await
        .map_err(failed)?;
    Ok(())
}
