//! `list` and `prune`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use datastores::PostgresConfig;
use datastores::pgadmin::quote_ident;
use serde::Serialize;

use crate::Error;
use crate::manifest::Tier;
use crate::restore::Stores;
use crate::retention::{Candidate, Retention, keep};
use crate::store::{self, Location, S3Store, Stored};

/// One line of `list`.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub id: String,
    pub database: String,
    pub system_identifier: Option<String>,
    pub tier: Tier,
    pub format: crate::Format,
    pub size_bytes: u64,
    pub finished_at: DateTime<Utc>,
    pub verified: bool,
    /// `local`, `s3`, or both.
    pub stored_in: Vec<String>,
}

pub async fn list(stores: &Stores) -> Result<Vec<Listed>, Error> {
    let mut local = match &stores.local_dir {
        Some(dir) => store::list_local(dir).await?,
        None => Vec::new(),
    };
    let remote = match &stores.s3 {
        Some(config) => S3Store::new(config).await.list().await?,
        None => Vec::new(),
    };
    local.extend(remote);
    let mut out: Vec<Listed> = Vec::new();
    for stored in local {
        let place = match stored.location {
            Location::Local(_) => "local",
            Location::S3 { .. } => "s3",
        };
        match out.iter_mut().find(|l| l.id == stored.manifest.id) {
            Some(listed) => {
                listed.stored_in.push(place.into());
                listed.verified |= stored.manifest.verified.as_ref().is_some_and(|v| v.ok);
            }
            None => out.push(Listed {
                id: stored.manifest.id.clone(),
                database: stored.manifest.database.clone(),
                system_identifier: stored.manifest.system_identifier.clone(),
                tier: stored.manifest.tier,
                format: stored.manifest.format,
                size_bytes: stored.manifest.size_bytes,
                finished_at: stored.manifest.finished_at,
                verified: stored.manifest.verified.as_ref().is_some_and(|v| v.ok),
                stored_in: vec![place.into()],
            }),
        }
    }
    out.sort_by_key(|l| l.finished_at);
    Ok(out)
}

/// Which backups a prune may touch: those of one database of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cluster {
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
            .map_err(|e| Error::db("cannot read the cluster's system identifier (pg_control_system())", &e))?;
        Ok(Cluster { database: pg.dbname.clone(), system_identifier: row.get(0) })
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub kept: Vec<String>,
    /// `<where>: <id>`.
    pub deleted: Vec<String>,
    /// Backups of a database of the same name in another cluster: never touched.
    pub other_clusters: Vec<String>,
    /// Backups whose manifest names no cluster (made by an older pg-backup): never touched;
    /// delete them by hand when they are no longer needed.
    pub unidentified: Vec<String>,
    /// Leftovers of interrupted backups that were removed.
    pub stale_partials: Vec<String>,
    /// Incomplete S3 multipart uploads that were aborted.
    pub stale_uploads: Vec<String>,
    /// Databases a restore replaced and kept, dropped once older than the grace period.
    pub replaced_databases: Vec<String>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

/// Incomplete multipart uploads older than this are leftovers: no backup runs this long.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

/// Deletes the backups of `cluster` that retention does not keep, in each store separately, and
/// removes what interrupted backups left behind.
pub async fn prune(
    stores: &Stores,
    cluster: &Cluster,
    retention: Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, Error> {
    let mut report = PruneReport { dry_run, ..PruneReport::default() };
    if let Some(dir) = &stores.local_dir {
        let backups = store::list_local(dir).await?;
        for stored in select(&backups, cluster, retention, now, &mut report) {
            report.deleted.push(format!("local: {}", stored.manifest.id));
            if !dry_run {
                store::delete_local(stored).await?;
            }
        }
        if !dry_run {
            report.stale_partials = store::sweep_partials(dir).await;
        }
    }
    if let Some(config) = &stores.s3 {
        let s3 = S3Store::new(config).await;
        let backups = s3.list().await?;
        for stored in select(&backups, cluster, retention, now, &mut report) {
            report.deleted.push(format!("s3: {}", stored.manifest.id));
            if !dry_run {
                s3.delete_backup(stored).await?;
            }
        }
        match s3.stale_uploads(now, STALE_UPLOAD_AGE).await {
            Ok(uploads) => {
                for (key, upload_id) in uploads {
                    if !dry_run {
                        s3.abort_upload(&key, &upload_id).await?;
                    }
                    report.stale_uploads.push(format!("s3://{}/{key}", config.bucket));
                }
            }
            Err(e) => report.notes.push(format!("incomplete uploads not checked: {e}")),
        }
    }
    for list in [&mut report.kept, &mut report.other_clusters, &mut report.unidentified] {
        list.sort();
        list.dedup();
    }
    Ok(report)
}

fn select<'a>(
    backups: &'a [Stored],
    cluster: &Cluster,
    retention: Retention,
    now: DateTime<Utc>,
    report: &mut PruneReport,
) -> Vec<&'a Stored> {
    let mut ours = Vec::new();
    for stored in backups.iter().filter(|s| s.manifest.database == cluster.database) {
        match &stored.manifest.system_identifier {
            Some(id) if *id == cluster.system_identifier => ours.push(stored),
            Some(_) => report.other_clusters.push(stored.manifest.id.clone()),
            None => report.unidentified.push(stored.manifest.id.clone()),
        }
    }
    let candidates: Vec<Candidate> = ours
        .iter()
        .map(|s| Candidate {
            id: s.manifest.id.clone(),
            tier: s.manifest.tier,
            at: s.manifest.finished_at,
            verified: s.manifest.verified.as_ref().is_some_and(|v| v.ok),
        })
        .collect();
    let keep = keep(&candidates, retention, now);
    report.kept.extend(keep.iter().cloned());
    ours.into_iter().filter(|s| !keep.contains(&s.manifest.id)).collect()
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
        .map_err(|e| Error::db("cannot list the databases restores kept", &e))?;
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
                .map_err(|e| Error::db(format!("cannot drop {name}"), &e))?;
        }
        dropped.push(name);
    }
    Ok(dropped)
}
