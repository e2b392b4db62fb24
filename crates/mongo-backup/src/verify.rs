//! `verify`: the stored bytes against the manifest's SHA-256, every document of the archive
//! decoded, each collection's count and content hash against the manifest; with `compare`, the
//! backup restored into scratch databases and each collection's count and content hash read back
//! from the server, then the scratch databases dropped.

use std::collections::BTreeMap;

use backup_core::{Error, Selector, Stores};
use chrono::Utc;
use datastores::MongoConfig;
use datastores::mongodb_driver::Client;
use datastores::mongodb_driver::bson::{RawDocumentBuf, doc};
use futures::TryStreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::backup::db_error;
use crate::manifest::{ContentHash, Manifest};
use crate::restore::{Item, Mode, Plan, fetch_checked, find, load, read_archive};

/// How to verify a backup.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Which backup: the latest (of `name`), an id, a file or an S3 key; it needs its manifest.
    pub selector: Selector,
    /// With `Latest`: the newest backup of this name.
    pub name: Option<String>,
    /// Also restore into scratch databases and compare each collection read back from the
    /// server (needs a connection).
    pub compare: bool,
    /// Where to look for the backup.
    pub stores: Stores,
}

/// What a verification that passed checked.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The backup verified, by id.
    pub backup: String,
    /// The stored bytes match the manifest's SHA-256 (always `true` in a report: a mismatch is
    /// an error).
    pub checksum: bool,
    /// Collections whose documents were read from the archive and matched the manifest.
    pub collections: usize,
    /// Their documents in all.
    pub documents: u64,
    /// With `compare`: the collections restored and read back.
    pub compared: usize,
    /// With `compare`: the scratch databases restored into, and dropped after (a drop that
    /// failed is among the warnings).
    pub scratch_databases: Vec<String>,
    /// How long the verification took, in seconds.
    pub seconds: f64,
    /// Scratch databases that could not be dropped, or that a killed verify left and were.
    pub warnings: Vec<String>,
}

/// Verifies a backup: its SHA-256, every document of the archive decoded and each collection's
/// count and content hash compared with the manifest, and with `compare` the same read back from
/// a restore into scratch databases (`mongo` is needed for that only), which are dropped after.
/// Any difference is [`Error::Verify`]; a backup without a manifest is [`Error::NotFound`]. A
/// successful verification is recorded in the manifest, which retention then protects.
pub async fn verify(mongo: Option<&MongoConfig>, options: &VerifyOptions) -> Result<VerifyReport, Error> {
    let begun = std::time::Instant::now();
    let found = find(&options.stores, &options.selector, options.name.as_deref()).await?;
    let Some(manifest) = found.manifest.clone() else {
        return Err(Error::NotFound(format!(
            "{} has no manifest: there is nothing to verify it against",
            found.name()
        )));
    };
    if options.compare && mongo.is_none() {
        return Err(Error::Invalid("--compare restores the backup: it needs MONGODB_URI".into()));
    }
    let scratch = tempfile::Builder::new()
        .prefix("mongo-backup-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a scratch folder", e))?;
    let path = fetch_checked(&found, &options.stores, scratch.path()).await?;

    let (tx, mut rx) = mpsc::channel::<Item>(4);
    let reader = read_archive(path.clone(), found.compression, true, tx);
    let mut seen: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    while let Some(item) = rx.recv().await {
        if let Item::End { database, collection, documents, content_hash } = item {
            seen.insert((database, collection), (documents, content_hash));
        }
    }
    reader.join().map_err(|_| Error::Tool("the archive reader stopped".into()))??;
    let mut problems = compare_with(&manifest, &seen, "the archive");

    let mut compared = 0;
    let mut scratch_databases = Vec::new();
    let mut warnings = Vec::new();
    if problems.is_empty()
        && options.compare
        && let Some(mongo) = mongo
    {
        let client = mongo.client().await?;
        warnings.extend(sweep_scratch(&client, Utc::now()).await?);
        let stem = backup_core::scratch_name(SCRATCH_PREFIX, Utc::now());
        let databases: BTreeMap<String, String> =
            manifest.databases.iter().enumerate().map(|(i, d)| (d.clone(), format!("{stem}_{i}"))).collect();
        let mut plan = Plan { include: Vec::new(), exclude: Vec::new(), databases: databases.clone(), target_db: None };
        let restored = async {
            load(&client, &path, found.compression, &mut plan, Mode::Fresh).await?;
            let mut read_back = BTreeMap::new();
            for c in manifest.collections.iter().filter(|c| c.kind == "collection") {
                let Some(scratch_db) = databases.get(&c.database) else { continue };
                read_back
                    .insert((c.database.clone(), c.name.clone()), hash_collection(&client, scratch_db, &c.name).await?);
            }
            Ok::<_, Error>(read_back)
        }
        .await;
        for scratch_db in databases.values() {
            if let Err(e) = client.database(scratch_db).drop().await {
                warnings.push(format!("cannot drop the scratch database {scratch_db}: {e}"));
            }
        }
        scratch_databases = databases.into_values().collect();
        let read_back = restored?;
        compared = read_back.len();
        problems.extend(compare_with(&manifest, &read_back, "the restored copy"));
    }
    if !problems.is_empty() {
        return Err(Error::Verify { backup: found.name(), problems });
    }
    let method = if options.compare { "restore" } else { "structure" };
    backup_core::record_verification(&options.stores, &found.location, &manifest, method).await?;
    Ok(VerifyReport {
        backup: found.name(),
        checksum: true,
        collections: seen.len(),
        documents: seen.values().map(|(d, _)| d).sum(),
        compared,
        scratch_databases,
        seconds: begun.elapsed().as_secs_f64(),
        warnings,
    })
}

/// Every collection of the manifest against what was read (`where_`: the archive, the restored
/// copy).
fn compare_with(manifest: &Manifest, seen: &BTreeMap<(String, String), (u64, String)>, where_: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for c in manifest.collections.iter().filter(|c| c.kind == "collection") {
        match seen.get(&(c.database.clone(), c.name.clone())) {
            None => problems.push(format!("{}.{}: not in {where_}", c.database, c.name)),
            Some((documents, _)) if *documents != c.documents => problems.push(format!(
                "{}.{}: {documents} documents in {where_}, the manifest says {}",
                c.database, c.name, c.documents
            )),
            Some((_, hash)) if *hash != c.content_hash => problems
                .push(format!("{}.{}: the content hash of {where_} differs from the manifest's", c.database, c.name)),
            Some(_) => {}
        }
    }
    problems
}

async fn hash_collection(client: &Client, database: &str, name: &str) -> Result<(u64, String), Error> {
    let what = format!("cannot read {database}.{name}");
    let mut cursor = client
        .database(database)
        .collection::<RawDocumentBuf>(name)
        .find(doc! {})
        .await
        .map_err(|e| db_error(what.clone(), &e))?;
    let mut hash = ContentHash::default();
    let mut count = 0u64;
    while let Some(doc) = cursor.try_next().await.map_err(|e| db_error(what.clone(), &e))? {
        hash.add(doc.as_bytes());
        count += 1;
    }
    Ok((count, hash.hex()))
}

const SCRATCH_PREFIX: &str = "mongobackup_verify_";

/// Drops the scratch databases of verifies that were killed more than a day before `now`
/// (`mongobackup_verify_<YYYYMMDDTHHMMSS>_...`); returns what it dropped.
async fn sweep_scratch(client: &Client, now: chrono::DateTime<Utc>) -> Result<Vec<String>, Error> {
    let names = client.list_database_names().await.map_err(|e| db_error("cannot list the databases", &e))?;
    let mut swept = Vec::new();
    for name in names.into_iter().filter(|n| backup_core::is_stale_scratch(SCRATCH_PREFIX, n, now)) {
        let warning = match client.database(&name).drop().await {
            Ok(()) => format!("dropped {name}, left by an interrupted verify"),
            Err(e) => db_error(format!("cannot drop {name}, left by an interrupted verify"), &e).to_string(),
        };
        tracing::warn!("{warning}");
        swept.push(warning);
    }
    Ok(swept)
}
