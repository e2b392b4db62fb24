//! `restore`: an archive read back on a thread of its own, every collection loaded into a scratch
//! collection beside its target with its options, documents and then its indexes (TTL
//! included), counted, and renamed over the target in one step. The target is never emptied
//! before the new collection is complete: at every instant it holds either its old or its
//! complete new documents. A non-empty target is refused without consent (`clean` and `yes`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use backup_core::store::S3Store;
use backup_core::{BackupManifest, Compression, Error, Found, Location, Selector, Stores};
use datastores::MongoConfig;
use datastores::mongodb_driver::Client;
use datastores::mongodb_driver::bson::{Bson, Document, RawDocumentBuf, doc};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::backup::{code, db_error, from_extjson};
use crate::manifest::{ContentHash, Manifest};
use crate::zipstream::ZipStreamReader;

/// How to restore a backup: which one, which collections, where to, and with what consent.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Which backup: the latest (of `name`), an id, a file (its manifest beside it, when there
    /// is one) or an S3 key.
    pub selector: Selector,
    /// With `Latest`: the newest backup of this name (a database's name, or `all`).
    pub name: Option<String>,
    /// Restore the backup's one database under this name.
    pub target_db: Option<String>,
    /// Only these collections (`coll` or `db.coll`); empty: all.
    pub include: Vec<String>,
    /// Not these collections (`coll` or `db.coll`).
    pub exclude: Vec<String>,
    /// Replace collections that hold documents (needs `yes`).
    pub clean: bool,
    /// Confirms `clean`.
    pub yes: bool,
    /// Where to look for the backup.
    pub stores: Stores,
}

/// A collection as restored.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionCount {
    /// The database it was restored into.
    pub database: String,
    /// The collection's name.
    pub collection: String,
    /// Documents loaded, as the server acknowledged them.
    pub documents: u64,
    /// Indexes of its metadata, `_id_` included.
    pub indexes: usize,
    /// The target held documents and was replaced.
    pub replaced: bool,
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    /// The backup restored: its id, or its location when it has no manifest.
    pub backup: String,
    /// Every collection restored.
    pub collections: Vec<CollectionCount>,
    /// Their documents in all.
    pub documents: u64,
    /// How long the restore took, in seconds.
    pub seconds: f64,
    /// Of `seconds`, the time spent renaming loaded collections over their targets (a catalog
    /// change on mongod; a copy on some MongoDB-compatible servers).
    pub swap_seconds: f64,
    /// What the server did not keep (options lost in a rename by a MongoDB-compatible server).
    pub warnings: Vec<String>,
}

/// What the reader thread finds in an archive.
pub(crate) enum Item {
    Metadata {
        database: String,
        collection: String,
        metadata: Document,
    },
    Documents {
        database: String,
        collection: String,
        documents: Vec<RawDocumentBuf>,
    },
    /// The end of a collection's documents: their count and content hash.
    End {
        database: String,
        collection: String,
        documents: u64,
        content_hash: String,
    },
}

/// `<db>/<collection>.<suffix>` split.
fn entry_name(name: &str) -> Option<(String, String, bool)> {
    let (database, file) = name.split_once('/')?;
    if let Some(collection) = file.strip_suffix(".metadata.json") {
        return Some((database.to_owned(), crate::backup::unescape(collection), true));
    }
    file.strip_suffix(".bson").map(|c| (database.to_owned(), crate::backup::unescape(c), false))
}

/// Reads the archive at `path` on a thread of its own and sends what it holds; every document
/// is checked to be well-formed BSON (`parse_fully`: every element decoded). The thread's
/// result says whether the archive was whole.
pub(crate) fn read_archive(
    path: PathBuf,
    compression: Compression,
    parse_fully: bool,
    tx: mpsc::Sender<Item>,
) -> std::thread::JoinHandle<Result<(), Error>> {
    std::thread::spawn(move || {
        let reader: Box<dyn Read + Send> = backup_core::decompressed(&path, compression)?;
        let mut zip = ZipStreamReader::new(reader);
        let broken = |e: std::io::Error| Error::Damaged(format!("{} is not a whole archive: {e}", path.display()));
        while let Some(entry) = zip.next_entry().map_err(broken)? {
            let Some((database, collection, is_metadata)) = entry_name(&entry.name) else {
                // Not ours (a prelude.json of mongodump): skipped.
                zip.read_entry(&mut |_| Ok(())).map_err(broken)?;
                continue;
            };
            if is_metadata {
                let mut bytes = Vec::new();
                zip.read_entry(&mut |chunk| {
                    bytes.extend_from_slice(chunk);
                    Ok(())
                })
                .map_err(broken)?;
                let metadata = from_extjson(&bytes, &entry.name)?;
                if tx.blocking_send(Item::Metadata { database, collection, metadata }).is_err() {
                    return Ok(());
                }
                continue;
            }
            let mut batch = Vec::new();
            let mut batch_bytes = 0usize;
            let mut hash = ContentHash::default();
            let mut count = 0u64;
            let mut stopped = false;
            let name = entry.name.clone();
            zip.read_documents(&mut |bytes| {
                let doc = RawDocumentBuf::from_bytes(bytes.to_vec()).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{name}: document {}: {e}", count + 1))
                })?;
                if parse_fully {
                    Document::try_from(doc.as_ref()).map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{name}: document {}: {e}", count + 1),
                        )
                    })?;
                }
                hash.add(bytes);
                count += 1;
                batch_bytes += bytes.len();
                batch.push(doc);
                if (batch.len() >= 1000 || batch_bytes >= 4 << 20) && !stopped {
                    let documents = std::mem::take(&mut batch);
                    batch_bytes = 0;
                    let item =
                        Item::Documents { database: database.clone(), collection: collection.clone(), documents };
                    stopped = tx.blocking_send(item).is_err();
                }
                Ok(())
            })
            .map_err(broken)?;
            if stopped {
                return Ok(());
            }
            if !batch.is_empty() {
                let item =
                    Item::Documents { database: database.clone(), collection: collection.clone(), documents: batch };
                if tx.blocking_send(item).is_err() {
                    return Ok(());
                }
            }
            let end = Item::End { database, collection, documents: count, content_hash: hash.hex() };
            if tx.blocking_send(end).is_err() {
                return Ok(());
            }
        }
        zip.finish().map_err(broken)
    })
}

/// Finds the backup: the newest of a name, an id, a file (with the manifest beside it, when
/// there is one), or an S3 key.
pub(crate) async fn find(stores: &Stores, selector: &Selector, name: Option<&str>) -> Result<Found<Manifest>, Error> {
    let found = |manifest: Option<Manifest>, location: Location, file: &str| Found {
        compression: match &manifest {
            Some(m) => m.compression,
            None => compression_of(file),
        },
        manifest,
        location,
    };
    match selector {
        Selector::Latest | Selector::Id(_) => {
            let wanted = |m: &Manifest| name.is_none_or(|n| m.name == n);
            let what = name.map(|n| format!(" named {n}")).unwrap_or_default();
            let stored = backup_core::find_listed(stores, selector, &wanted, &what).await?;
            Ok(Found {
                compression: stored.manifest.compression,
                manifest: Some(stored.manifest),
                location: stored.location,
            })
        }
        Selector::Path(path) => {
            if !path.exists() {
                return Err(Error::Invalid(format!("{} does not exist", path.display())));
            }
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let stem = file.split('.').next().unwrap_or(&file);
            let manifest_path = path.with_file_name(backup_core::manifest_name(stem));
            let manifest = match tokio::fs::read(&manifest_path).await {
                Ok(bytes) => Manifest::from_json_of_kind(&bytes, &manifest_path.display().to_string())?,
                Err(_) => None,
            };
            Ok(found(manifest, Location::Local(path.clone()), &file))
        }
        Selector::S3Key(key) => {
            let config = stores.s3.as_ref().ok_or_else(|| Error::Invalid("--from-s3 needs S3_BUCKET".into()))?;
            let s3 = S3Store::new(config).await;
            let full = config.key(key);
            let file = full.rsplit('/').next().unwrap_or(&full).to_owned();
            let stem = file.split('.').next().unwrap_or(&file).to_owned();
            let folder = full.rsplit_once('/').map(|(f, _)| format!("{f}/")).unwrap_or_default();
            let manifest_key = format!("{folder}{}", backup_core::manifest_name(&stem));
            let manifest = match s3.get(&manifest_key).await {
                Ok(bytes) => Manifest::from_json_of_kind(&bytes, &format!("s3://{}/{manifest_key}", config.bucket))?,
                Err(_) => None,
            };
            Ok(found(manifest, Location::S3 { bucket: config.bucket.clone(), key: full }, &file))
        }
    }
}

fn compression_of(file: &str) -> Compression {
    if file.ends_with(".zst") {
        Compression::Zstd(3)
    } else if file.ends_with(".gz") {
        Compression::Gzip(6)
    } else {
        Compression::None
    }
}

/// The backup on local disk, checked against its manifest's SHA-256.
pub(crate) async fn fetch_checked(found: &Found<Manifest>, stores: &Stores, scratch: &Path) -> Result<PathBuf, Error> {
    let path = backup_core::fetch(&found.location, &[], stores, scratch).await?;
    if let Some(manifest) = &found.manifest {
        backup_core::check_sha256(&found.name(), manifest, &path).await?;
    }
    Ok(path)
}

/// Which collections are restored, and where.
pub(crate) struct Plan {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Source database -> target database.
    pub databases: BTreeMap<String, String>,
    pub target_db: Option<String>,
}

impl Plan {
    pub(crate) fn wanted(&self, database: &str, collection: &str) -> bool {
        let matches = |pattern: &String| pattern == collection || *pattern == format!("{database}.{collection}");
        (self.include.is_empty() || self.include.iter().any(matches)) && !self.exclude.iter().any(matches)
    }

    pub(crate) fn target(&mut self, database: &str) -> Result<String, Error> {
        if let Some(target) = self.databases.get(database) {
            return Ok(target.clone());
        }
        let target = match &self.target_db {
            Some(target) if self.databases.is_empty() => target.clone(),
            Some(_) => {
                return Err(Error::Invalid(format!(
                    "the backup holds more than one database ({} and {database}); --target-db needs one: \
                     choose it with --include <db>.<collection>",
                    self.databases.keys().next().cloned().unwrap_or_default()
                )));
            }
            None => database.to_owned(),
        };
        self.databases.insert(database.to_owned(), target.clone());
        Ok(target)
    }
}

/// Restores a backup without ever leaving a target collection half-restored. The backup's
/// SHA-256 is checked first; every wanted collection is loaded into a scratch collection beside
/// its target and counted against the archive and the manifest, and only when all are loaded are
/// they renamed over their targets. A failure before that drops the scratch collections and
/// leaves every target as it was. A target that holds documents refuses the restore, before
/// anything is written, with [`Error::NeedsConsent`] unless `clean` and `yes`; `include` and
/// `exclude` matching nothing is [`Error::Invalid`].
pub async fn restore(mongo: &MongoConfig, options: &RestoreOptions) -> Result<RestoreReport, Error> {
    if options.clean && !options.yes {
        return Err(Error::NeedsConsent(
            "--clean replaces collections that hold documents: add --yes to confirm".into(),
        ));
    }
    let begun = Instant::now();
    let found = find(&options.stores, &options.selector, options.name.as_deref()).await?;
    let client = mongo.client().await?;
    let mut plan = Plan {
        include: options.include.clone(),
        exclude: options.exclude.clone(),
        databases: BTreeMap::new(),
        target_db: options.target_db.clone(),
    };
    if let Some(manifest) = &found.manifest {
        let wanted: Vec<_> = manifest.collections.iter().filter(|c| plan.wanted(&c.database, &c.name)).collect();
        if wanted.is_empty() {
            return Err(Error::Invalid(format!(
                "no collection of {} matches --include/--exclude (it holds {})",
                found.name(),
                manifest
                    .collections
                    .iter()
                    .map(|c| format!("{}.{}", c.database, c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut sources: Vec<&String> = wanted.iter().map(|c| &c.database).collect();
        sources.dedup();
        if options.target_db.is_some() && sources.len() > 1 {
            return Err(Error::Invalid(format!(
                "the backup holds {} databases ({}); --target-db needs one: choose it with --include <db>.<collection>",
                sources.len(),
                sources.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        // Before anything is written: the targets that hold documents.
        if !options.clean {
            let mut occupied = Vec::new();
            for c in wanted {
                let database = plan.target(&c.database)?;
                if holds_documents(&client, &database, &c.name).await? {
                    occupied.push(format!("{database}.{}", c.name));
                }
            }
            if !occupied.is_empty() {
                return Err(Error::NeedsConsent(format!(
                    "{} already hold documents; nothing was restored (replace them with --clean --yes)",
                    occupied.join(", ")
                )));
            }
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix("mongo-backup-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a scratch folder", e))?;
    let path = fetch_checked(&found, &options.stores, scratch.path()).await?;
    let expected: BTreeMap<(String, String), u64> = found
        .manifest
        .iter()
        .flat_map(|m| m.collections.iter().map(|c| ((c.database.clone(), c.name.clone()), c.documents)))
        .collect();
    let Loaded { collections, swap_seconds, warnings } =
        load(&client, &path, found.compression, &mut plan, Mode::Replace { clean: options.clean, expected: &expected })
            .await?;
    if collections.is_empty() {
        return Err(Error::Invalid(format!("no collection of {} matches --include/--exclude", found.name())));
    }
    Ok(RestoreReport {
        backup: found.name(),
        documents: collections.iter().map(|c| c.documents).sum(),
        collections,
        seconds: begun.elapsed().as_secs_f64(),
        swap_seconds,
        warnings,
    })
}

/// Whether a collection holds at least one document (absent: no).
pub(crate) async fn holds_documents(client: &Client, database: &str, collection: &str) -> Result<bool, Error> {
    client
        .database(database)
        .collection::<Document>(collection)
        .find_one(doc! {})
        .projection(doc! { "_id": 1 })
        .await
        .map(|d| d.is_some())
        .map_err(|e| db_error(format!("cannot read {database}.{collection}"), &e))
}

/// How [`load`] treats its targets.
pub(crate) enum Mode<'a> {
    /// A restore: every collection is loaded into a scratch collection beside its target, and
    /// only when all are loaded and counted are they renamed over their targets (`clean`: targets
    /// that hold documents are replaced). `expected`: the manifest's counts, by source database
    /// and collection.
    Replace { clean: bool, expected: &'a BTreeMap<(String, String), u64> },
    /// verify's scratch databases: loaded in place.
    Fresh,
}

/// A collection being loaded.
struct Loading {
    source_database: String,
    database: String,
    collection: String,
    scratch: String,
    metadata: Document,
    capped: bool,
    inserts: tokio::task::JoinSet<Result<u64, Error>>,
    /// Documents the server acknowledged.
    inserted: u64,
}

/// A collection loaded into its scratch collection, waiting for the rename.
struct Staged {
    database: String,
    collection: String,
    scratch: String,
    metadata: Document,
    count: CollectionCount,
}

/// What [`load`] did.
pub(crate) struct Loaded {
    pub collections: Vec<CollectionCount>,
    pub swap_seconds: f64,
    pub warnings: Vec<String>,
}

/// Loads every wanted collection of the archive. On any failure before the renames, every
/// scratch collection is dropped and no target has been touched.
pub(crate) async fn load(
    client: &Client,
    path: &Path,
    compression: Compression,
    plan: &mut Plan,
    mode: Mode<'_>,
) -> Result<Loaded, Error> {
    let fresh = matches!(mode, Mode::Fresh);
    let (tx, mut rx) = mpsc::channel::<Item>(4);
    let reader = read_archive(path.to_owned(), compression, false, tx);
    let mut warnings = Vec::new();
    let mut staged: Vec<Staged> = Vec::new();
    let mut views = Vec::new();
    let mut current: Option<Loading> = None;
    let suffix = format!("dbkit-restore-{:016x}", rand::random::<u64>());
    let outcome: Result<(), Error> = async {
        while let Some(item) = rx.recv().await {
            match item {
                Item::Metadata { database, collection, metadata } => {
                    if let Some(loading) = &current {
                        return Err(Error::Damaged(format!(
                            "{}: the archive has no documents entry for {}.{} before {database}.{collection}",
                            path.display(),
                            loading.source_database,
                            loading.collection
                        )));
                    }
                    if !plan.wanted(&database, &collection) {
                        continue;
                    }
                    let target = plan.target(&database)?;
                    match metadata.get_str("type").unwrap_or("collection") {
                        "collection" => {}
                        "view" => {
                            views.push((target, collection, metadata));
                            continue;
                        }
                        other => {
                            warnings.push(format!("{target}.{collection}: a {other} collection is not restored"));
                            continue;
                        }
                    }
                    if let Mode::Replace { clean: false, .. } = mode
                        && holds_documents(client, &target, &collection).await?
                    {
                        return Err(Error::NeedsConsent(format!(
                            "{target}.{collection} already holds documents; nothing was replaced (replace it with \
                             --clean --yes)"
                        )));
                    }
                    let scratch = if fresh { collection.clone() } else { format!("{collection}.{suffix}") };
                    if !fresh {
                        for leftover in leftovers(client, &target, &collection).await? {
                            client.database(&target).collection::<Document>(&leftover).drop().await.map_err(|e| {
                                db_error(format!("cannot drop {target}.{leftover}, left by an interrupted restore"), &e)
                            })?;
                            warnings.push(format!("{target}.{leftover}: left by an interrupted restore, dropped"));
                        }
                    }
                    create(client, &target, &scratch, &metadata).await?;
                    let capped = metadata.get_document("options").is_ok_and(|o| o.get_bool("capped") == Ok(true));
                    current = Some(Loading {
                        source_database: database,
                        database: target,
                        collection,
                        scratch,
                        metadata,
                        capped,
                        inserts: tokio::task::JoinSet::new(),
                        inserted: 0,
                    });
                }
                Item::Documents { database, collection, documents } => {
                    let Some(loading) = current.as_mut().filter(|_| plan.wanted(&database, &collection)) else {
                        continue;
                    };
                    // A capped collection keeps insertion order: one batch at a time.
                    let in_flight = if loading.capped { 1 } else { 2 };
                    while loading.inserts.len() >= in_flight {
                        if let Some(done) = loading.inserts.join_next().await {
                            loading.inserted += done.map_err(|e| Error::Tool(e.to_string()))??;
                        }
                    }
                    let target = client.database(&loading.database).collection::<RawDocumentBuf>(&loading.scratch);
                    let what = format!("{}.{}", loading.database, loading.collection);
                    loading.inserts.spawn(async move {
                        target
                            .insert_many(documents)
                            .bypass_document_validation(true)
                            .await
                            .map(|r| r.inserted_ids.len() as u64)
                            .map_err(|e| db_error(format!("cannot insert into {what}"), &e))
                    });
                }
                Item::End { database, collection, documents, .. } => {
                    if !plan.wanted(&database, &collection) {
                        continue;
                    }
                    let Some(loading) = current.as_mut() else { continue };
                    while let Some(done) = loading.inserts.join_next().await {
                        loading.inserted += done.map_err(|e| Error::Tool(e.to_string()))??;
                    }
                    let indexes =
                        create_indexes(client, &loading.database, &loading.scratch, &loading.metadata).await?;
                    let mut problems = Vec::new();
                    if loading.inserted != documents {
                        problems.push(format!(
                            "{}.{}: {} documents loaded, the archive holds {documents}",
                            loading.database, loading.collection, loading.inserted
                        ));
                    }
                    if let Mode::Replace { expected, .. } = &mode
                        && let Some(want) = expected.get(&(database.clone(), collection.clone()))
                        && *want != documents
                    {
                        problems.push(format!(
                            "{}.{}: the archive holds {documents} documents, the manifest says {want}",
                            loading.database, loading.collection
                        ));
                    }
                    if !problems.is_empty() {
                        return Err(Error::Verify { backup: path.display().to_string(), problems });
                    }
                    let Some(loading) = current.take() else { continue };
                    staged.push(Staged {
                        count: CollectionCount {
                            database: loading.database.clone(),
                            collection: loading.collection.clone(),
                            documents,
                            indexes,
                            replaced: false,
                        },
                        database: loading.database,
                        collection: loading.collection,
                        scratch: loading.scratch,
                        metadata: loading.metadata,
                    });
                }
            }
        }
        Ok(())
    }
    .await;
    rx.close();
    while rx.recv().await.is_some() {}
    let read = reader.join().map_err(|_| Error::Tool("the archive reader stopped".into()))?;
    let outcome = outcome.and(read);
    if outcome.is_err() || current.is_some() {
        if !fresh {
            // Inserts still in flight finish first, so that none recreates a dropped scratch.
            if let Some(mut loading) = current.take() {
                while loading.inserts.join_next().await.is_some() {}
                let _ = client.database(&loading.database).collection::<Document>(&loading.scratch).drop().await;
            }
            for s in &staged {
                let _ = client.database(&s.database).collection::<Document>(&s.scratch).drop().await;
            }
        }
        outcome?;
        return Err(Error::Damaged(format!("{}: the archive ends inside a collection's documents", path.display())));
    }
    // Every collection is loaded and counted: now, and only now, the targets are replaced.
    let mut swap_seconds = 0.0;
    let mut collections = Vec::new();
    for mut s in staged {
        if !fresh {
            let clean = matches!(mode, Mode::Replace { clean: true, .. });
            s.count.replaced = holds_documents(client, &s.database, &s.collection).await?;
            if s.count.replaced && !clean {
                return Err(Error::Conflict(format!(
                    "{}.{} received documents during the restore; it was left as it is, and the restored copy is \
                     {}.{} (replace it with --clean --yes)",
                    s.database, s.collection, s.database, s.scratch
                )));
            }
            let began = Instant::now();
            rename(client, &s.database, &s.scratch, &s.collection).await?;
            swap_seconds += began.elapsed().as_secs_f64();
            if let Some(lost) = options_lost(client, &s.database, &s.collection, &s.metadata).await? {
                warnings.push(lost);
            }
        }
        collections.push(s.count);
    }
    for (database, name, metadata) in views {
        create(client, &database, &name, &metadata).await?;
        collections.push(CollectionCount { database, collection: name, documents: 0, indexes: 0, replaced: false });
    }
    Ok(Loaded { collections, swap_seconds, warnings })
}

/// Scratch collections of `collection` that an interrupted restore left in `database`.
async fn leftovers(client: &Client, database: &str, collection: &str) -> Result<Vec<String>, Error> {
    let prefix = format!("{collection}.dbkit-restore-");
    let names = client
        .database(database)
        .list_collection_names()
        .await
        .map_err(|e| db_error(format!("cannot list the collections of {database}"), &e))?;
    Ok(names.into_iter().filter(|n| n.starts_with(&prefix)).collect())
}

/// `create` with the collection's options from its metadata (capped, validator, collation,
/// a view's pipeline, ...).
async fn create(client: &Client, database: &str, name: &str, metadata: &Document) -> Result<(), Error> {
    let mut command = doc! { "create": name };
    if let Ok(options) = metadata.get_document("options") {
        for (key, value) in options {
            command.insert(key.clone(), value.clone());
        }
    }
    match client.database(database).run_command(command).await {
        Ok(_) => Ok(()),
        // NamespaceExists: a view or collection of that name is already there, as it should be.
        Err(e) if code(&e) == Some(48) && metadata.get_str("type") == Ok("view") => Ok(()),
        Err(e) => Err(db_error(format!("cannot create {database}.{name}"), &e)),
    }
}

async fn create_indexes(client: &Client, database: &str, name: &str, metadata: &Document) -> Result<usize, Error> {
    let indexes: Vec<Bson> = metadata
        .get_array("indexes")
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.as_document().is_some_and(|d| d.get_str("name") != Ok("_id_")))
        .collect();
    let count = indexes.len() + 1;
    if indexes.is_empty() {
        return Ok(count);
    }
    client
        .database(database)
        .run_command(doc! { "createIndexes": name, "indexes": indexes })
        .await
        .map_err(|e| db_error(format!("cannot create the indexes of {database}.{name}"), &e))?;
    Ok(count)
}

/// The options of the metadata that `database.name` does not have after the rename: mongod keeps
/// them; some MongoDB-compatible servers do not. Returns a warning naming them.
async fn options_lost(
    client: &Client,
    database: &str,
    name: &str,
    metadata: &Document,
) -> Result<Option<String>, Error> {
    let wanted = metadata.get_document("options").cloned().unwrap_or_default();
    if wanted.is_empty() {
        return Ok(None);
    }
    let specs: Vec<Document> = futures::TryStreamExt::try_collect(
        client
            .database(database)
            .run_cursor_command(doc! { "listCollections": 1, "filter": { "name": name } })
            .await
            .map_err(|e| db_error(format!("cannot read the options of {database}.{name}"), &e))?,
    )
    .await
    .map_err(|e| db_error(format!("cannot read the options of {database}.{name}"), &e))?;
    let have = specs.first().and_then(|s| s.get_document("options").ok().cloned()).unwrap_or_default();
    let lost: Vec<String> = wanted.keys().filter(|k| wanted.get(*k) != have.get(*k)).cloned().collect();
    if lost.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "{database}.{name}: the server did not keep {} across renameCollection (mongod does); the documents and \
         indexes are restored",
        lost.join(", ")
    )))
}

/// Renames the loaded scratch collection over the target, dropping the old one in the same step.
async fn rename(client: &Client, database: &str, from: &str, to: &str) -> Result<(), Error> {
    client
        .database("admin")
        .run_command(doc! {
            "renameCollection": format!("{database}.{from}"),
            "to": format!("{database}.{to}"),
            "dropTarget": true,
        })
        .await
        .map_err(|e| db_error(format!("cannot rename {database}.{from} to {to}"), &e))?;
    Ok(())
}
