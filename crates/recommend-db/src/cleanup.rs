//! `cleanup`: retention of the event tables. Whole partitions older than the cutoff are detached
//! and dropped (instant, no table bloat); the one partition that straddles the cutoff loses its
//! old rows in bounded batches, one range of blocks at a time. Then what changed is vacuumed and
//! analyzed, and the materialized views are refreshed.

use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use datastores::tokio_postgres::Client;
use serde::Serialize;

use crate::Error;
use crate::pgident::quote_ident;

#[derive(Clone, Copy, Debug)]
pub struct CleanupOptions {
    /// Keep user behaviours this many days.
    pub behaviors_days: u32,
    /// Keep recommendation requests and results this many days.
    pub requests_days: u32,
    /// Rows deleted per statement in the straddling partition.
    pub batch_size: u32,
}

impl CleanupOptions {
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
    pub partition: String,
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    /// `drop` (entirely older than the cutoff) or `trim` (straddles it).
    pub action: &'static str,
    /// Rows that go: all of a dropped partition, the old ones of a trimmed one.
    pub rows: i64,
    /// Bytes freed by a drop; the partition's size for a trim.
    pub bytes: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TablePlan {
    pub table: String,
    pub cutoff: DateTime<Utc>,
    pub partitions: Vec<PartitionAction>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CleanupReport {
    pub report_only: bool,
    pub tables: Vec<TablePlan>,
    pub rows_removed: i64,
    pub bytes_freed: i64,
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

/// What cleanup would remove, partition by partition, with exact row counts.
pub async fn plan(client: &Client, options: &CleanupOptions, now: DateTime<Utc>) -> Result<Vec<TablePlan>, Error> {
    options.validate()?;
    let mut plans = Vec::new();
    for (table, days) in retention(options) {
        let cutoff = now - ChronoDuration::days(i64::from(days));
        let rows = client
            .query(
                "SELECT partition_name, range_start, range_end, pg_total_relation_size(partition_name::regclass) \
                 FROM monthly_partitions($1::text::regclass) WHERE range_start < $2",
                &[&table, &cutoff],
            )
            .await
            .map_err(|e| {
                Error::db(format!("cannot list the partitions of {table} (are the migrations applied?)"), &e)
            })?;
        let mut partitions = Vec::new();
        for row in rows {
            let (name, start, end, bytes): (String, DateTime<Utc>, DateTime<Utc>, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let (action, count_sql) = if end <= cutoff {
                ("drop", format!("SELECT count(*) FROM {}", quote_ident(&name)))
            } else {
                ("trim", format!("SELECT count(*) FROM {} WHERE created_at < $1", quote_ident(&name)))
            };
            let count: i64 = if action == "drop" {
                client.query_one(&count_sql, &[]).await
            } else {
                client.query_one(&count_sql, &[&cutoff]).await
            }
            .map_err(|e| Error::db(format!("cannot count rows of {name}"), &e))?
            .get(0);
            if action == "trim" && count == 0 {
                continue;
            }
            partitions.push(PartitionAction {
                partition: name,
                range_start: start,
                range_end: end,
                action,
                rows: count,
                bytes,
            });
        }
        plans.push(TablePlan { table: table.to_owned(), cutoff, partitions });
    }
    Ok(plans)
}

/// Runs cleanup (or only reports, with `report_only`); cutoffs count back from `now`.
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
        views_refreshed: false,
        removal_seconds: 0.0,
        views_seconds: 0.0,
        seconds: 0.0,
    };
    if report_only {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let removal = Instant::now();
    let mut trimmed = Vec::new();
    for table in &report.tables {
        for p in &table.partitions {
            match p.action {
                "drop" => {
                    // A short lock_timeout: dropping must not queue behind long queries and
                    // block every writer behind it.
                    let sql = format!(
                        "BEGIN; SET LOCAL lock_timeout = '10s'; ALTER TABLE {} DETACH PARTITION {}; DROP TABLE {}; COMMIT;",
                        quote_ident(&table.table),
                        quote_ident(&p.partition),
                        quote_ident(&p.partition)
                    );
                    if let Err(e) = client.batch_execute(&sql).await {
                        let _ = client.batch_execute("ROLLBACK").await;
                        return Err(Error::db(format!("cannot drop partition {}", p.partition), &e));
                    }
                }
                _ => {
                    trim(client, &p.partition, table.cutoff, options.batch_size).await?;
                    trimmed.push(p.partition.clone());
                }
            }
        }
    }
    report.removal_seconds = removal.elapsed().as_secs_f64();
    for partition in &trimmed {
        client
            .batch_execute(&format!("VACUUM (ANALYZE) {}", quote_ident(partition)))
            .await
            .map_err(|e| Error::db(format!("cannot vacuum {partition}"), &e))?;
    }
    let changed: Vec<&str> =
        report.tables.iter().filter(|t| !t.partitions.is_empty()).map(|t| t.table.as_str()).collect();
    // The partitions that changed were analyzed by their VACUUM; the parents' own statistics
    // (autovacuum never gathers them) need a sample. Since PostgreSQL 18, ONLY spares the
    // untouched partitions a second ANALYZE.
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::db("cannot read the server version", &e))?
        .get(0);
    let only = if version >= 180_000 { "ONLY " } else { "" };
    for table in &changed {
        client
            .batch_execute(&format!("ANALYZE {only}{}", quote_ident(table)))
            .await
            .map_err(|e| Error::db(format!("cannot analyze {table}"), &e))?;
    }
    let views = Instant::now();
    client
        .batch_execute("SELECT refresh_recommendation_views()")
        .await
        .map_err(|e| Error::db("cannot refresh the materialized views", &e))?;
    report.views_refreshed = true;
    report.views_seconds = views.elapsed().as_secs_f64();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Deletes the rows of `partition` older than `cutoff`, walking it in ranges of blocks of about
/// `batch_size` rows. Each statement reads only its own blocks (a TID range scan), so the whole
/// trim reads the partition once, and every transaction stays short.
async fn trim(client: &Client, partition: &str, cutoff: DateTime<Utc>, batch_size: u32) -> Result<(), Error> {
    let failed = |e: &datastores::tokio_postgres::Error| Error::db(format!("cannot delete old rows of {partition}"), e);
    let row = client
        .query_one(
            "SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint, \
             CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages ELSE 100 END::float8 \
             FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&quote_ident(partition)],
        )
        .await
        .map_err(|e| failed(&e))?;
    let (blocks, rows_per_block): (i64, f64) = (row.get(0), row.get(1));
    let step = ((f64::from(batch_size) / rows_per_block.max(1.0)) as i64).max(1);
    let sql = format!(
        "DELETE FROM {} WHERE ctid >= $1::text::tid AND ctid < $2::text::tid AND created_at < $3",
        quote_ident(partition)
    );
    let tid = |block: i64| format!("({block},0)");
    let mut start = 0;
    while start < blocks {
        client.execute(&sql, &[&tid(start), &tid(start + step), &cutoff]).await.map_err(|e| failed(&e))?;
        start += step;
    }
    // Rows that arrived in new blocks meanwhile.
    client
        .execute(
            &format!("DELETE FROM {} WHERE ctid >= $1::text::tid AND created_at < $2", quote_ident(partition)),
            &[&tid(blocks), &cutoff],
        )
        .await
        .map_err(|e| failed(&e))?;
    Ok(())
}
