//! `list`, `prune`, and what a run pushes to a Pushgateway.

use std::time::Duration;

use backup_core::{Error, Owner, PruneReport, Retention, Stores, Tier};
use chrono::{DateTime, Utc};
use datastores::MongoConfig;
use datastores::push::JobRun;
use serde::Serialize;

use crate::manifest::{Consistency, Manifest};

/// One line of `list`.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    /// The backup's id.
    pub id: String,
    /// What was backed up: a database's name, or `all`.
    pub name: String,
    /// The deployment it came from; `None` in manifests that do not record one.
    pub deployment: Option<String>,
    /// The tier it was taken for.
    pub tier: Tier,
    /// Collections and views in the backup.
    pub collections: usize,
    /// Documents in the backup.
    pub documents: u64,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Whether every collection was read in a snapshot.
    pub consistency: Consistency,
    /// When it finished (UTC).
    pub finished_at: DateTime<Utc>,
    /// Whether a verification passed (in any of the stores that hold it).
    pub verified: bool,
    /// `local`, `s3`, or both.
    pub stored_in: Vec<String>,
}

/// Every MongoDB backup in the stores, oldest first; a backup held by both stores is one line.
/// Manifests of other datastores are skipped; an unreadable one is an error.
pub async fn list(stores: &Stores) -> Result<Vec<Listed>, Error> {
    Ok(backup_core::listed::<Manifest>(stores)
        .await?
        .into_iter()
        .map(|(m, stored_in)| Listed {
            verified: m.verified.as_ref().is_some_and(|v| v.ok),
            documents: m.documents(),
            collections: m.collections.len(),
            id: m.id,
            name: m.name,
            deployment: m.deployment,
            tier: m.tier,
            size_bytes: m.size_bytes,
            consistency: m.consistency,
            finished_at: m.finished_at,
            stored_in,
        })
        .collect())
}

/// The deployment and backup name a prune is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// The backup's name: the database's, or `all`.
    pub name: String,
    /// The deployment, as manifests record it: `replicaSetId:<id>`, else `setName:<name>`, else
    /// `host:<address>`.
    pub deployment: String,
}

impl Deployment {
    /// The deployment `mongo` connects to, for backups named `name`.
    pub async fn of(mongo: &MongoConfig, name: &str) -> Result<Deployment, Error> {
        let client = mongo.client().await?;
        let deployment = crate::backup::deployment(&client, mongo).await.unwrap_or_default();
        Ok(Deployment { name: name.to_owned(), deployment })
    }
}

/// Deletes the backups of `deployment` that retention does not keep, in each store separately,
/// and removes what interrupted backups left behind. Backups of the same name from another
/// deployment are never touched.
pub async fn prune(
    stores: &Stores,
    deployment: &Deployment,
    retention: Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, Error> {
    let owner = |m: &Manifest| {
        if m.name != deployment.name {
            Owner::Unrelated
        } else {
            match &m.deployment {
                Some(d) if *d == deployment.deployment => Owner::Ours,
                Some(_) => Owner::Other,
                None => Owner::Unidentified,
            }
        }
    };
    backup_core::prune::<Manifest>(stores, &owner, retention, now, dry_run).await
}

/// A backup run as pushed to a Pushgateway: job `mongo_backup`, grouped by `instance`, the
/// backup's name; see [`backup_core::job_run`].
pub fn backup_run(name: &str, success: bool, duration: Duration, size_bytes: u64) -> JobRun {
    backup_core::job_run("mongo_backup", name, success, duration, size_bytes)
}
