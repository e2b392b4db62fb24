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
    pub table: String,
    pub name: String,
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    /// Created by this call.
    pub created: bool,
    /// The planner's estimate (exact after ANALYZE).
    pub rows_estimate: i64,
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
                Error::db(format!("cannot create the partitions of {table} (are the migrations applied?)"), &e)
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
        let rows = client
            .query(
                "SELECT p.partition_name, p.range_start, p.range_end, greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) \
                 FROM monthly_partitions($1::text::regclass) p JOIN pg_class c ON c.oid = p.partition_name::regclass",
                &[&table],
            )
            .await
            .map_err(|e| Error::db(format!("cannot list the partitions of {table} (are the migrations applied?)"), &e))?;
        out.extend(rows.iter().map(|r| Partition {
            table: table.to_owned(),
            name: r.get(0),
            range_start: r.get(1),
            range_end: r.get(2),
            created: false,
            rows_estimate: r.get(3),
            bytes: r.get(4),
        }));
    }
    Ok(out)
}
