//! `list` and `prune`.

use std::time::Duration;

use backup_core::{Owner, PruneReport, Retention, Stores};
use chrono::{DateTime, Utc};
use datastores::PostgresConfig;
use datastores::pgadmin::quote_ident;
use datastores::push::JobRun;
use serde::Serialize;

use crate::Error;
use crate::manifest::{Manifest, Tier};

/// One line of `list`.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    /// The backup's id.
    pub id: String,
    /// The database backed up.
    pub database: String,
    /// The cluster's system identifier; `None` in manifests of older versions.
    pub system_identifier: Option<String>,
    /// The tier it was taken for.
    pub tier: Tier,
    /// pg_dump's format.
    pub format: crate::Format,
    /// Bytes stored.
    pub size_bytes: u64,
    /// When it finished (UTC).
    pub finished_at: DateTime<Utc>,
    /// Whether a verification passed (in any of the stores that hold it).
    pub verified: bool,
    /// `local`, `s3`, or both.
    pub stored_in: Vec<String>,
}

/// Every PostgreSQL backup in the stores, oldest first; a backup held by both stores is one
/// line. Manifests of other datastores are skipped; an unreadable one is an error.
pub async fn list(stores: &Stores) -> Result<Vec<Listed>, Error> {
    Ok(backup_core::listed::<Manifest>(stores)
        .await?
        .into_iter()
        .map(|(m, stored_in)| Listed {
            verified: m.verified.as_ref().is_some_and(|v| v.ok),
            id: m.id,
            database: m.database,
            system_identifier: m.system_identifier,
            tier: m.tier,
            format: m.format,
            size_bytes: m.size_bytes,
            finished_at: m.finished_at,
            stored_in,
        })
        .collect())
}

/// Which backups a prune may touch: those of one database of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// The database's name.
    pub database: String,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: String,
}

impl Cluster {
    /// The cluster and database `pg` connects to.
    pub async fn of(pg: &PostgresConfig) -> Result<Cluster, Error> {
        let client = pg.connect().await?;
        let row = client
            .query_one("SELECT system_identifier::text FROM pg_control_system()", &[])
            .await
            .map_err(|e| Error::db("cannot read the cluster's system identifier (pg_control_system())", e))?;
        Ok(Cluster { database: pg.dbname.clone(), system_identifier: row.get(0) })
    }
}

/// Deletes the backups of `cluster` that retention does not keep, in each store separately, and
/// removes what interrupted backups left behind.
pub async fn prune(
    stores: &Stores,
    cluster: &Cluster,
    retention: Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, Error> {
    let owner = |m: &Manifest| {
        if m.database != cluster.database {
            Owner::Unrelated
        } else {
            match &m.system_identifier {
                Some(id) if *id == cluster.system_identifier => Owner::Ours,
                Some(_) => Owner::Other,
                None => Owner::Unidentified,
            }
        }
    };
    Ok(backup_core::prune::<Manifest>(stores, &owner, retention, now, dry_run).await?)
}

/// A backup run as pushed to a Pushgateway with [`datastores::push`]: job `pg_backup`, grouped
/// by `instance`, the database. Besides the series of every job, a successful run sends
/// `pg_backup_size_bytes`; a failed one leaves it out, as it leaves out the last-success time,
/// so both keep the values of the last good backup.
pub fn backup_run(database: &str, success: bool, duration: Duration, size_bytes: u64) -> JobRun {
    backup_core::job_run("pg_backup", database, success, duration, size_bytes)
}

/// Drops the databases that restores of `database` replaced and kept (`<database>_old_<time>`,
/// marked by a comment), once they are older than `grace`. Returns their names.
pub async fn prune_replaced_databases(
    pg: &PostgresConfig,
    maintenance_db: &str,
    database: &str,
    grace: Duration,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<String>, Error> {
    let admin = pg.with_dbname(maintenance_db).connect().await?;
    let rows = admin
        .query(
            "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
             WHERE shobj_description(oid, 'pg_database') LIKE 'pg-backup: %'",
            &[],
        )
        .await
        .map_err(|e| Error::db("cannot list the databases restores kept", e))?;
    let mark = format!("{}{database} as it was before the restore of ", crate::restore::OLD_DATABASE_MARK);
    let mut dropped = Vec::new();
    for row in rows {
        let (name, comment): (String, Option<String>) = (row.get(0), row.get(1));
        if !comment.is_some_and(|c| c.starts_with(&mark)) {
            continue;
        }
        let Some(stamp) = name.rsplit("_old_").next() else { continue };
        let Ok(at) = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ") else { continue };
        let age = now.signed_duration_since(at.and_utc()).to_std().unwrap_or_default();
        if age < grace {
            continue;
        }
        if !dry_run {
            admin
                .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&name)))
                .await
                .map_err(|e| Error::db(format!("cannot drop {name}"), e))?;
        }
        dropped.push(name);
    }
    Ok(dropped)
}
