//! `backup`: every collection's metadata and documents, streamed through a ZIP archive in
//! mongodump's layout into `backup-core`'s sink (compression, SHA-256, local file and S3 upload
//! at once). The manifest is written last, after the data is durable, so a killed or failed run
//! never leaves a backup that looks complete.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use backup_core::{Compression, Error, Prepared, Sink, Tier};
use bytes::Bytes;
use chrono::Utc;
use datastores::mongodb_driver::bson::{Bson, Document, RawDocumentBuf, doc};
use datastores::mongodb_driver::{self as mongodb, Client};
use datastores::{MongoConfig, S3Config};
use futures::TryStreamExt;

use crate::manifest::{CollectionInfo, Consistency, ContentHash, Manifest, artifact_name};
use crate::zipstream::ZipStreamWriter;

/// What to back up, and where to store it (at least one of `local_dir` and `s3`).
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The databases to back up; empty: every database but `admin`, `local` and `config`.
    pub databases: Vec<String>,
    /// How the archive is compressed, as a whole (`mongo-backup` uses zstd:3).
    pub compression: Compression,
    /// The tier the backup is taken for: its folder, and how long retention keeps it.
    pub tier: Tier,
    /// The local folder (`BACKUP_DIR`); `None` for no local copy.
    pub local_dir: Option<PathBuf>,
    /// The bucket and prefix to upload to; `None` for no upload.
    pub s3: Option<S3Config>,
    /// The first S3 parts' size in bytes, raised to S3's minimum of 5 MiB; later parts grow,
    /// see [`backup_core::part_size`].
    pub part_size: usize,
}

/// Progress of a running backup.
#[derive(Clone, Debug)]
pub struct BackupProgress {
    /// `<db>.<collection>` being read.
    pub collection: String,
    /// Documents of that collection read so far.
    pub documents: u64,
    /// Bytes stored so far, after compression (reported about every 4 MiB).
    pub stored_bytes: u64,
}

/// The name a backup of `databases` is listed, restored and pruned by: the one database named,
/// else `all`.
pub fn backup_name(databases: &[String]) -> String {
    match databases {
        [one] => one.clone(),
        _ => "all".to_owned(),
    }
}

pub(crate) fn db_error(context: impl Into<String>, error: &mongodb::error::Error) -> Error {
    Error::database(context, error.clone())
}

/// What names the deployment: the replica set's id, else its name, else the server's address.
pub(crate) async fn deployment(client: &Client, mongo: &MongoConfig) -> Option<String> {
    let admin = client.database("admin");
    if let Ok(config) = admin.run_command(doc! { "replSetGetConfig": 1 }).await
        && let Ok(id) = config
            .get_document("config")
            .and_then(|c| c.get_document("settings"))
            .and_then(|s| s.get_object_id("replicaSetId"))
    {
        return Some(format!("replicaSetId:{id}"));
    }
    if let Ok(hello) = admin.run_command(doc! { "hello": 1 }).await
        && let Ok(name) = hello.get_str("setName")
    {
        return Some(format!("setName:{name}"));
    }
    Some(format!("host:{}", mongo.endpoint()))
}

pub(crate) async fn server_version(client: &Client) -> Result<String, Error> {
    let info = client
        .database("admin")
        .run_command(doc! { "buildInfo": 1 })
        .await
        .map_err(|e| db_error("cannot read the server's version (buildInfo)", &e))?;
    Ok(info.get_str("version").unwrap_or("unknown").to_owned())
}

/// The bytes the ZIP writer produced since the last drain.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Bytes {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Bytes::from(std::mem::take(&mut *buffer))
    }
}

/// One collection as `listCollections` describes it.
struct Listed {
    name: String,
    kind: String,
    options: Document,
    uuid: Option<String>,
}

async fn list_collections(client: &Client, database: &str) -> Result<Vec<Listed>, Error> {
    let db = client.database(database);
    let cursor = db
        .run_cursor_command(doc! { "listCollections": 1, "nameOnly": false })
        .await
        .map_err(|e| db_error(format!("cannot list the collections of {database}"), &e))?;
    let specs: Vec<Document> =
        cursor.try_collect().await.map_err(|e| db_error(format!("cannot list the collections of {database}"), &e))?;
    let mut out = Vec::new();
    for spec in specs {
        let Ok(name) = spec.get_str("name") else { continue };
        // system.* holds the server's own data (profile, views' definitions, js): mongodump
        // leaves them too, views come with their own metadata.
        if name.starts_with("system.") || name.contains(".dbkit-restore-") {
            continue;
        }
        let uuid = spec.get_document("info").ok().and_then(|i| match i.get("uuid") {
            Some(Bson::Binary(b)) => Some(hex::encode(&b.bytes)),
            _ => None,
        });
        out.push(Listed {
            name: name.to_owned(),
            kind: spec.get_str("type").unwrap_or("collection").to_owned(),
            options: spec.get_document("options").cloned().unwrap_or_default(),
            uuid,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

async fn list_indexes(client: &Client, database: &str, collection: &str) -> Result<Vec<Document>, Error> {
    let db = client.database(database);
    match db.run_cursor_command(doc! { "listIndexes": collection }).await {
        Ok(cursor) => {
            let mut indexes: Vec<Document> = cursor
                .try_collect()
                .await
                .map_err(|e| db_error(format!("cannot list the indexes of {database}.{collection}"), &e))?;
            for index in &mut indexes {
                index.remove("ns");
            }
            Ok(indexes)
        }
        // NamespaceNotFound: dropped since it was listed.
        Err(e) if code(&e) == Some(26) => Ok(Vec::new()),
        Err(e) => Err(db_error(format!("cannot list the indexes of {database}.{collection}"), &e)),
    }
}

pub(crate) fn code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// mongodump's `<collection>.metadata.json`, in canonical Extended JSON.
fn metadata_json(listed: &Listed, indexes: &[Document]) -> Vec<u8> {
    let mut metadata = doc! {
        "options": listed.options.clone(),
        "indexes": indexes.iter().cloned().map(Bson::Document).collect::<Vec<_>>(),
    };
    if let Some(uuid) = &listed.uuid {
        metadata.insert("uuid", uuid.clone());
    }
    metadata.insert("collectionName", listed.name.clone());
    metadata.insert("type", listed.kind.clone());
    Bson::Document(metadata).into_canonical_extjson().to_string().into_bytes()
}

/// Takes a backup. With both a local folder and S3, a failure of one does not stop the other:
/// the backup completes where it can, and [`Error::Incomplete`] says what failed.
pub async fn backup(
    mongo: &MongoConfig,
    options: &BackupOptions,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) -> Result<Manifest, Error> {
    if options.local_dir.is_none() && options.s3.is_none() {
        return Err(Error::Invalid("no destination: set BACKUP_DIR (--backup-dir) and/or S3_BUCKET".into()));
    }
    let started = Utc::now();
    let client = mongo.client().await?;
    let server_version = server_version(&client).await?;
    let deployment = deployment(&client, mongo).await;
    let databases = if options.databases.is_empty() {
        let mut names = client.list_database_names().await.map_err(|e| db_error("cannot list the databases", &e))?;
        names.retain(|n| !matches!(n.as_str(), "admin" | "local" | "config"));
        names.sort();
        names
    } else {
        let existing = client.list_database_names().await.map_err(|e| db_error("cannot list the databases", &e))?;
        let missing: Vec<&String> = options.databases.iter().filter(|d| !existing.contains(d)).collect();
        if !missing.is_empty() {
            return Err(Error::Invalid(format!(
                "no database {} on the server (it has {})",
                missing.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "),
                existing.join(", ")
            )));
        }
        options.databases.clone()
    };
    let name = backup_name(&options.databases);
    let label = format!("mongodb-{name}");
    let artifact_of = |id: &str| artifact_name(id, options.compression);
    let Prepared { started, id, s3, lock: _lock } = backup_core::prepare(
        &label,
        options.tier,
        options.local_dir.as_deref(),
        options.s3.as_ref(),
        &artifact_of,
        started,
    )
    .await?;
    let artifact = artifact_of(&id);
    let mut sink = Sink::open(
        options.local_dir.as_deref(),
        s3.as_ref(),
        options.tier,
        &artifact,
        options.compression,
        options.part_size,
    )
    .await?;
    let shared = Shared::default();
    let mut zip = ZipStreamWriter::new(shared.clone());
    let read = read_all(&client, &databases, &mut zip, &shared, &mut sink, progress).await;
    let collections = match read {
        Ok(collections) => collections,
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    };
    let finished_zip = zip.finish().map_err(|e| Error::io("cannot finish the archive", e));
    if let Err(e) = finished_zip {
        sink.abort().await;
        return Err(e);
    }
    sink.write(shared.take()).await?;
    let streamed = sink.finish().await?;
    let finished = Utc::now();
    let consistency = if collections.iter().all(|c| c.snapshot || c.kind != "collection") {
        Consistency::SnapshotPerCollection
    } else {
        Consistency::None
    };
    let manifest = Manifest {
        datastore: "mongodb".into(),
        id: id.clone(),
        name,
        deployment,
        server_version,
        compression: options.compression,
        tier: options.tier,
        artifact,
        size_bytes: streamed.stored_bytes,
        archive_bytes: streamed.raw_bytes,
        sha256: streamed.sha256,
        consistency,
        started_at: started,
        finished_at: finished,
        duration_seconds: (finished - started).num_milliseconds() as f64 / 1000.0,
        databases,
        collections,
        destinations: streamed.completed.clone(),
        verified: None,
        created_by: concat!("mongo-backup ", env!("CARGO_PKG_VERSION")).into(),
    };
    let mut failures = streamed.failures;
    failures
        .extend(backup_core::publish(&manifest, options.local_dir.as_deref(), s3.as_ref(), &streamed.completed).await?);
    if failures.is_empty() {
        Ok(manifest)
    } else {
        Err(Error::Incomplete { failures, id: manifest.id.clone(), destinations: manifest.destinations.clone() })
    }
}

/// Writes every collection of `databases` into the archive, draining it into the sink as it goes.
async fn read_all(
    client: &Client,
    databases: &[String],
    zip: &mut ZipStreamWriter<Shared>,
    shared: &Shared,
    sink: &mut Sink,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) -> Result<Vec<CollectionInfo>, Error> {
    let io = |e: std::io::Error| Error::io("cannot write the archive", e);
    let mut out = Vec::new();
    // Cleared when the server refuses a snapshot read (a standalone server): not asked again.
    let mut snapshots = true;
    for database in databases {
        for listed in list_collections(client, database).await? {
            let indexes = if listed.kind == "collection" {
                list_indexes(client, database, &listed.name).await?
            } else {
                Vec::new()
            };
            zip.add_whole(
                &format!("{database}/{}.metadata.json", escape(&listed.name)),
                &metadata_json(&listed, &indexes),
            )
            .map_err(io)?;
            let mut info = CollectionInfo {
                database: database.clone(),
                name: listed.name.clone(),
                kind: listed.kind.clone(),
                documents: 0,
                bytes: 0,
                content_hash: ContentHash::default().hex(),
                snapshot: false,
                indexes: indexes.len(),
                note: None,
            };
            if listed.kind != "collection" {
                if listed.kind != "view" {
                    // A time-series collection's documents live in system.buckets.*.
                    info.note =
                        Some(format!("a {} collection: its definition is backed up, not its documents", listed.kind));
                    tracing::warn!(target: "progress", collection = %format!("{database}.{}", listed.name), "{}", info.note.as_deref().unwrap_or_default());
                }
                out.push(info);
                continue;
            }
            progress(BackupProgress {
                collection: format!("{database}.{}", listed.name),
                documents: 0,
                stored_bytes: sink.stored_bytes(),
            });
            zip.start_stream(&format!("{database}/{}.bson", escape(&listed.name))).map_err(io)?;
            let mut hash = ContentHash::default();
            let read = read_collection(
                client,
                database,
                &listed.name,
                &mut snapshots,
                &mut info,
                &mut hash,
                zip,
                shared,
                sink,
                progress,
            )
            .await;
            if let Err(e) = read {
                let dropped = !collection_exists(client, database, &listed.name).await?;
                if !dropped {
                    return Err(e);
                }
                info.note = Some(format!("dropped during the backup after {} documents: {e}", info.documents));
            } else if !collection_exists(client, database, &listed.name).await? {
                info.note = Some(format!("dropped during the backup; {} documents were read", info.documents));
            }
            if let Some(note) = &info.note {
                tracing::warn!(target: "progress", collection = %format!("{database}.{}", listed.name), "{note}");
            }
            zip.finish_stream().map_err(io)?;
            info.content_hash = hash.hex();
            out.push(info);
        }
    }
    Ok(out)
}

async fn collection_exists(client: &Client, database: &str, name: &str) -> Result<bool, Error> {
    let names = client
        .database(database)
        .list_collection_names()
        .filter(doc! { "name": name })
        .await
        .map_err(|e| db_error(format!("cannot list the collections of {database}"), &e))?;
    Ok(!names.is_empty())
}

/// Reads one collection's documents into the archive, in a snapshot where the server has them.
#[allow(clippy::too_many_arguments)]
async fn read_collection(
    client: &Client,
    database: &str,
    name: &str,
    snapshots: &mut bool,
    info: &mut CollectionInfo,
    hash: &mut ContentHash,
    zip: &mut ZipStreamWriter<Shared>,
    shared: &Shared,
    sink: &mut Sink,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) -> Result<(), Error> {
    let collection = client.database(database).collection::<RawDocumentBuf>(name);
    let what = format!("{database}.{name}");
    let mut session = if *snapshots { client.start_session().snapshot(true).await.ok() } else { None };
    let mut snapshot_cursor = None;
    if let Some(s) = session.as_mut() {
        match collection.find(doc! {}).session(&mut *s).await {
            Ok(cursor) => snapshot_cursor = Some(cursor),
            // The server has no snapshot reads (a standalone server, an old or compatible one).
            Err(e) if matches!(code(&e), Some(20 | 59 | 72 | 115 | 246)) => {
                tracing::debug!(collection = %what, error = %e, "no snapshot read; reading without one");
                *snapshots = false;
            }
            Err(e) => return Err(db_error(format!("cannot read {what}"), &e)),
        }
    }
    let mut reported = 0u64;
    let mut pending = 0usize;
    let read_error = |e: mongodb::error::Error| db_error(format!("cannot read {what}"), &e);
    match (snapshot_cursor, session.as_mut()) {
        (Some(mut cursor), Some(session)) => {
            info.snapshot = true;
            while let Some(doc) = cursor.next(session).await.transpose().map_err(read_error)? {
                pending += take(doc.as_bytes(), info, hash, zip)?;
                if pending >= 1 << 20 {
                    pending = 0;
                    sink.write(shared.take()).await?;
                    report(&what, info, sink, &mut reported, progress);
                }
            }
        }
        _ => {
            let mut cursor = collection.find(doc! {}).await.map_err(read_error)?;
            while let Some(doc) = cursor.try_next().await.map_err(read_error)? {
                pending += take(doc.as_bytes(), info, hash, zip)?;
                if pending >= 1 << 20 {
                    pending = 0;
                    sink.write(shared.take()).await?;
                    report(&what, info, sink, &mut reported, progress);
                }
            }
        }
    }
    sink.write(shared.take()).await?;
    Ok(())
}

/// One document into the archive, the counts and the hash; returns its size.
fn take(
    doc: &[u8],
    info: &mut CollectionInfo,
    hash: &mut ContentHash,
    zip: &mut ZipStreamWriter<Shared>,
) -> Result<usize, Error> {
    zip.write_stream(doc).map_err(|e| Error::io("cannot write the archive", e))?;
    hash.add(doc);
    info.documents += 1;
    info.bytes += doc.len() as u64;
    Ok(doc.len())
}

fn report(
    what: &str,
    info: &CollectionInfo,
    sink: &Sink,
    reported: &mut u64,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) {
    if sink.stored_bytes() - *reported >= 4 << 20 {
        *reported = sink.stored_bytes();
        progress(BackupProgress { collection: what.to_owned(), documents: info.documents, stored_bytes: *reported });
    }
}

/// A document's canonical Extended JSON, for metadata read back.
pub(crate) fn from_extjson(bytes: &[u8], origin: &str) -> Result<Document, Error> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::Damaged(format!("{origin} is not valid JSON: {e}")))?;
    match Bson::try_from(value) {
        Ok(Bson::Document(doc)) => Ok(doc),
        Ok(_) => Err(Error::Damaged(format!("{origin} is not a JSON object"))),
        Err(e) => Err(Error::Damaged(format!("{origin} is not Extended JSON: {e}"))),
    }
}

/// A collection's name as a file name, as mongodump writes it: `%` and `/` percent-escaped.
pub(crate) fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

/// The collection's name from its file name.
pub(crate) fn unescape(name: &str) -> String {
    name.replace("%2F", "/").replace("%2f", "/").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_as_mongodump_does() {
        for name in ["plain", "a/b", "100%", "a%2Fb"] {
            assert_eq!(unescape(&escape(name)), name);
            assert!(!escape(name).contains('/'));
        }
    }
}
