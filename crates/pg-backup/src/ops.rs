//! `list` and `prune`.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Error;
use crate::manifest::Tier;
use crate::restore::Stores;
use crate::retention::{Candidate, Retention, keep};
use crate::store::{self, Location, PARTIAL, S3Store, Stored};

/// One line of `list`.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub id: String,
    pub database: String,
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

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub kept: Vec<String>,
    /// `<where>: <id>`.
    pub deleted: Vec<String>,
    /// Leftovers of interrupted backups, older than a day.
    pub stale_partials: Vec<String>,
}

/// Deletes the backups of `database` that retention does not keep, in each store separately.
pub async fn prune(
    stores: &Stores,
    database: &str,
    retention: Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, Error> {
    let mut report = PruneReport { dry_run, ..PruneReport::default() };
    if let Some(dir) = &stores.local_dir {
        let backups: Vec<Stored> =
            store::list_local(dir).await?.into_iter().filter(|s| s.manifest.database == database).collect();
        for stored in select(&backups, retention, now, &mut report.kept) {
            report.deleted.push(format!("local: {}", stored.manifest.id));
            if !dry_run {
                store::delete_local(stored).await?;
            }
        }
        for tier in Tier::ALL {
            let Ok(mut entries) = tokio::fs::read_dir(dir.join(tier.as_str())).await else { continue };
            while let Ok(Some(entry)) = entries.next_entry().await {
                let path = entry.path();
                let old = entry.metadata().await.ok().and_then(|m| m.modified().ok()).is_some_and(|t| {
                    SystemTime::now().duration_since(t).unwrap_or_default() > Duration::from_secs(86_400)
                });
                if path.to_string_lossy().ends_with(PARTIAL) && old {
                    report.stale_partials.push(path.display().to_string());
                    if !dry_run {
                        let _ = if path.is_dir() {
                            tokio::fs::remove_dir_all(&path).await
                        } else {
                            tokio::fs::remove_file(&path).await
                        };
                    }
                }
            }
        }
    }
    if let Some(config) = &stores.s3 {
        let s3 = S3Store::new(config).await;
        let backups: Vec<Stored> = s3.list().await?.into_iter().filter(|s| s.manifest.database == database).collect();
        for stored in select(&backups, retention, now, &mut report.kept) {
            report.deleted.push(format!("s3: {}", stored.manifest.id));
            if !dry_run {
                s3.delete_backup(stored).await?;
            }
        }
    }
    report.kept.sort();
    report.kept.dedup();
    Ok(report)
}

fn select<'a>(
    backups: &'a [Stored],
    retention: Retention,
    now: DateTime<Utc>,
    kept: &mut Vec<String>,
) -> Vec<&'a Stored> {
    let candidates: Vec<Candidate> = backups
        .iter()
        .map(|s| Candidate {
            id: s.manifest.id.clone(),
            at: s.manifest.finished_at,
            verified: s.manifest.verified.as_ref().is_some_and(|v| v.ok),
        })
        .collect();
    let keep = keep(&candidates, retention, now);
    kept.extend(keep.iter().cloned());
    backups.iter().filter(|s| !keep.contains(&s.manifest.id)).collect()
}
