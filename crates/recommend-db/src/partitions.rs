//! Monthly partitions of the event tables: created ahead of time, listed with their sizes.

use chrono::{DateTime, Utc};
use datastores::tokio_postgres::Client;
use serde::Serialize;

use crate::Error;

/// The tables partitioned by month on `created_at`.
pub const PARTITIONED_TABLES: [&str; 3] = ["user_behaviors", "recommendation_requests", "recommendation_results"];

/// One partition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Partition {
    /// The partitioned table (`user_behaviors`, ...).
    pub table: String,
    /// The partition's name; those recommend-db creates are `<table>_y<YYYY>m<MM>`
    /// (`user_behaviors_y2024m03`).
    pub name: String,
    /// The first instant of its month, inclusive.
    pub range_start: DateTime<Utc>,
    /// The first instant of the next month, exclusive.
    pub range_end: DateTime<Utc>,
    /// Created by this call.
    pub created: bool,
    /// The planner's estimate (exact after ANALYZE).
    pub rows_estimate: i64,
    /// Its size on disk with indexes and TOAST (`pg_total_relation_size`).
    pub bytes: i64,
}

/// Creates the partitions of every partitioned table from `months_back` months before the
/// current month (UTC) to `months_ahead` after it, and lists all partitions afterwards.
pub async fn ensure(client: &Client, months_back: u32, months_ahead: u32) -> Result<Vec<Partition>, Error> {
    if months_ahead > 120 || months_back > 1200 {
        return Err(Error::Invalid(format!(
            "months ahead must be at most 120 and months back at most 1200 (got {months_ahead} and {months_back})"
        )));
    }
    let mut created = Vec::new();
    for table in PARTITIONED_TABLES {
        let rows = client
            .query(
                "SELECT partition_name FROM ensure_monthly_partitions($1::text::regclass, $2, $3) WHERE created",
                &[&table, &(months_back as i32), &(months_ahead as i32)],
            )
            .await
            .map_err(|e| {
                Error::db(format!("cannot create the partitions of {table} (are the migrations applied?)"), e)
            })?;
        created.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    let mut all = list(client).await?;
    for partition in &mut all {
        partition.created = created.contains(&partition.name);
    }
    Ok(all)
}

/// Every partition of every partitioned table, oldest first per table.
pub async fn list(client: &Client) -> Result<Vec<Partition>, Error> {
    let mut out = Vec::new();
    for table in PARTITIONED_TABLES {
        out.extend(monthly(client, table).await?);
    }
    Ok(out)
}

/// The monthly partitions of `table`, oldest first. A partition with other bounds (a DEFAULT
/// partition, say) is an error that names it: this tool manages monthly ranges only, and must
/// never guess what such a partition holds.
pub(crate) async fn monthly(client: &Client, table: &str) -> Result<Vec<Partition>, Error> {
    let rows = client
        .query(
            "SELECT p.partition_name, p.range_start, p.range_end, greatest(c.reltuples, 0)::bigint, \
             pg_total_relation_size(c.oid), pg_get_expr(c.relpartbound, c.oid) \
             FROM monthly_partitions($1::text::regclass) p JOIN pg_class c ON c.oid = p.partition_name::regclass",
            &[&table],
        )
        .await
        .map_err(|e| Error::db(format!("cannot list the partitions of {table} (are the migrations applied?)"), e))?;
    let mut out = Vec::new();
    for r in &rows {
        let name: String =
            r.try_get(0).map_err(|e| Error::db(format!("unexpected partition listing of {table}"), e))?;
        let start: Option<DateTime<Utc>> = r.try_get(1).ok().flatten();
        let end: Option<DateTime<Utc>> = r.try_get(2).ok().flatten();
        let (Some(range_start), Some(range_end)) = (start, end) else {
            let bound: Option<String> = r.try_get(5).ok().flatten();
            return Err(Error::Conflict(format!(
                "{table} has a partition {name} that is not a monthly range ({}); recommend-db manages monthly \
                 partitions only. Move its rows into monthly partitions and drop or detach it",
                bound.unwrap_or_else(|| "unknown bounds".into())
            )));
        };
        out.push(Partition {
            table: table.to_owned(),
            name,
            range_start,
            range_end,
            created: false,
            rows_estimate: r.try_get(3).unwrap_or(0),
            bytes: r.try_get(4).unwrap_or(0),
        });
    }
    Ok(out)
}

/// A table that lacks partitions for some of the months it should have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Missing {
    /// The partitioned table.
    pub table: String,
    /// The first day of each month without a partition, `YYYY-MM-DD`.
    pub months: Vec<String>,
}

/// The months from the current one (UTC) to `months_ahead` ahead that lack a partition, per
/// table; nothing is created. Inserts dated in a missing month fail, so a monitor alerts on this
/// before they do.
pub async fn missing_ahead(client: &Client, months_ahead: u32, now: DateTime<Utc>) -> Result<Vec<Missing>, Error> {
    use chrono::{Datelike, Months, NaiveDate};
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or_default();
    let wanted: Vec<DateTime<Utc>> = (0..=months_ahead)
        .filter_map(|i| first.checked_add_months(Months::new(i)))
        .filter_map(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .collect();
    let mut out = Vec::new();
    for table in PARTITIONED_TABLES {
        let partitions = monthly(client, table).await?;
        let months: Vec<String> = wanted
            .iter()
            .filter(|m| !partitions.iter().any(|p| p.range_start <= **m && **m < p.range_end))
            .map(|m| m.format("%Y-%m-%d").to_string())
            .collect();
        if !months.is_empty() {
            out.push(Missing { table: table.to_owned(), months });
        }
    }
    Ok(out)
}
