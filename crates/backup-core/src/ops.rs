//! The steps over the stores that do not depend on the datastore: finding a backup, fetching
//! and checking it, listing, recording a verification, and prune.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::manifest::{BackupManifest, Compression, FileEntry, Verification};
use crate::retention::{Candidate, Retention, keep};
use crate::store::{self, Location, S3Store, Stored};

/// Which backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The newest complete backup (of a database, when given).
    Latest,
    /// A backup id (`recommend_20261122T020000Z`).
    Id(String),
    /// A file, with or without a manifest next to it.
    Path(PathBuf),
    /// An object key in the bucket, relative to the prefix (`daily/recommend_....dump.zst`).
    S3Key(String),
}

impl Selector {
    /// Reads a backup named on the command line: `latest`, a path (anything with a `/` or a
    /// `.`), else an id. An S3 key is never guessed: build [`Selector::S3Key`] for one.
    ///
    /// ```rust
    /// use std::path::PathBuf;
    ///
    /// use backup_core::Selector;
    ///
    /// assert_eq!(Selector::parse("latest"), Selector::Latest);
    /// assert_eq!(
    ///     Selector::parse("recommend_20261122T020000Z"),
    ///     Selector::Id("recommend_20261122T020000Z".into())
    /// );
    /// assert_eq!(
    ///     Selector::parse("daily/recommend_20261122T020000Z.dump.zst"),
    ///     Selector::Path(PathBuf::from("daily/recommend_20261122T020000Z.dump.zst"))
    /// );
    /// ```
    pub fn parse(text: &str) -> Selector {
        if text == "latest" {
            Selector::Latest
        } else if text.contains('/') || text.contains('.') {
            Selector::Path(PathBuf::from(text))
        } else {
            Selector::Id(text.to_owned())
        }
    }
}

/// Where to look for backups.
#[derive(Clone, Debug, Default)]
pub struct Stores {
    /// The local folder (`BACKUP_DIR`), holding one folder per tier; `None` for no local store.
    pub local_dir: Option<PathBuf>,
    /// The bucket and prefix (`S3_BUCKET`, `S3_PREFIX`); `None` for no S3 store.
    pub s3: Option<datastores::S3Config>,
}

impl Stores {
    /// Complete backups of `M`'s datastore from both stores, newest last; a backup in both
    /// appears once, local first.
    pub async fn list<M: BackupManifest>(&self) -> Result<Vec<Stored<M>>, Error> {
        let mut all = match &self.local_dir {
            Some(dir) => store::list_local::<M>(dir).await?,
            None => Vec::new(),
        };
        if let Some(config) = &self.s3 {
            for stored in S3Store::new(config).await.list::<M>().await? {
                if !all.iter().any(|s| s.manifest.id() == stored.manifest.id()) {
                    all.push(stored);
                }
            }
        }
        all.sort_by_key(|s| s.manifest.finished_at());
        Ok(all)
    }

    /// The stores, for messages: `<folder> and s3://<bucket>/<prefix>`.
    pub fn describe(&self) -> String {
        let mut places = Vec::new();
        if let Some(dir) = &self.local_dir {
            places.push(dir.display().to_string());
        }
        if let Some(s3) = &self.s3 {
            places.push(format!("s3://{}/{}", s3.bucket, s3.prefix));
        }
        if places.is_empty() { "no store (set BACKUP_DIR or S3_BUCKET)".into() } else { places.join(" and ") }
    }
}

/// Every backup of `M`'s datastore with the stores that hold it (`local`, `s3`), oldest first.
pub async fn listed<M: BackupManifest>(stores: &Stores) -> Result<Vec<(M, Vec<String>)>, Error> {
    let mut all = match &stores.local_dir {
        Some(dir) => store::list_local::<M>(dir).await?,
        None => Vec::new(),
    };
    if let Some(config) = &stores.s3 {
        all.extend(S3Store::new(config).await.list::<M>().await?);
    }
    let mut out: Vec<(M, Vec<String>)> = Vec::new();
    for stored in all {
        let place = match stored.location {
            Location::Local(_) => "local",
            Location::S3 { .. } => "s3",
        };
        match out.iter_mut().find(|(m, _)| m.id() == stored.manifest.id()) {
            Some((manifest, places)) => {
                places.push(place.into());
                if stored.manifest.verified() && !manifest.verified() {
                    *manifest = stored.manifest;
                }
            }
            None => out.push((stored.manifest, vec![place.into()])),
        }
    }
    out.sort_by_key(|(m, _)| m.finished_at());
    Ok(out)
}

/// The newest backup (`Latest`, among those `wanted` accepts) or the one with an id.
pub async fn find_listed<M: BackupManifest>(
    stores: &Stores,
    selector: &Selector,
    wanted: &(dyn Fn(&M) -> bool + Sync),
    what: &str,
) -> Result<Stored<M>, Error> {
    let all = stores.list::<M>().await?;
    let mut matching = all.into_iter().filter(|s| match selector {
        Selector::Id(id) => s.manifest.id() == id,
        _ => wanted(&s.manifest),
    });
    matching.next_back().ok_or_else(|| {
        let missing = match selector {
            Selector::Id(id) => format!("no backup with id {id}"),
            _ => format!("no complete backup{what}"),
        };
        Error::NotFound(format!("{missing} in {}", stores.describe()))
    })
}

/// A backup found, with its manifest when it has one.
#[derive(Clone, Debug)]
pub struct Found<M> {
    /// The manifest; `None` for a file named without one beside it.
    pub manifest: Option<M>,
    /// Where the artifact is.
    pub location: Location,
    /// How the artifact is compressed: the manifest's word, else the file name's extension.
    pub compression: Compression,
}

impl<M: BackupManifest> Found<M> {
    /// The backup's id, or its location when it has no manifest: for messages.
    pub fn name(&self) -> String {
        match &self.manifest {
            Some(m) => m.id().to_owned(),
            None => self.location.to_string(),
        }
    }
}

/// The backup's files on local disk: the artifact itself, or a download into `scratch`.
pub async fn fetch(
    location: &Location,
    files: &[FileEntry],
    stores: &Stores,
    scratch: &Path,
) -> Result<PathBuf, Error> {
    match location {
        Location::Local(path) => Ok(path.clone()),
        Location::S3 { key, .. } => {
            let config = stores
                .s3
                .as_ref()
                .ok_or_else(|| Error::Invalid("the backup is in S3 but S3_BUCKET is not set".into()))?;
            let s3 = S3Store::new(config).await;
            let name = key.rsplit('/').next().unwrap_or(key);
            let path = scratch.join(name);
            if files.is_empty() {
                s3.download(key, &path).await?;
            } else {
                tokio::fs::create_dir_all(&path)
                    .await
                    .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
                for file in files {
                    s3.download(&format!("{key}/{}", file.name), &path.join(&file.name)).await?;
                }
            }
            Ok(path)
        }
    }
}

/// Checks the stored bytes at `path` against the manifest's SHA-256 (each file of a backup
/// stored as a folder).
pub async fn check_sha256<M: BackupManifest>(name: &str, manifest: &M, path: &Path) -> Result<(), Error> {
    let problems = tokio::task::spawn_blocking({
        let (manifest, path) = (manifest.clone(), path.to_owned());
        move || -> Result<Vec<String>, Error> {
            let mut problems = Vec::new();
            if manifest.files().is_empty() {
                let actual = sha256_file(&path)?;
                if actual != manifest.sha256() {
                    problems.push(format!(
                        "{}: SHA-256 is {actual}, the manifest says {}",
                        path.display(),
                        manifest.sha256()
                    ));
                }
            } else {
                for file in manifest.files() {
                    let actual = sha256_file(&path.join(&file.name))?;
                    if actual != file.sha256 {
                        problems.push(format!(
                            "{}/{}: SHA-256 is {actual}, the manifest says {}",
                            path.display(),
                            file.name,
                            file.sha256
                        ));
                    }
                }
            }
            Ok(problems)
        }
    })
    .await
    .map_err(|e| Error::Tool(e.to_string()))??;
    if problems.is_empty() { Ok(()) } else { Err(Error::Verify { backup: name.to_owned(), problems }) }
}

/// SHA-256 of the file at `path`, lowercase hex, read in 1 MiB chunks (blocking). Fails with
/// [`Error::Io`] naming the file.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A reader that decompresses `path`.
pub fn decompressed(path: &Path, compression: Compression) -> Result<Box<dyn Read + Send>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let file = std::io::BufReader::with_capacity(1 << 20, file);
    Ok(match compression {
        Compression::Zstd(_) => {
            Box::new(zstd::stream::read::Decoder::with_buffer(file).map_err(|e| Error::io("cannot start zstd", e))?)
        }
        Compression::Gzip(_) => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::None => Box::new(file),
    })
}

/// Writes a verification into the manifest, where the backup is stored.
///
/// Prune deletes the manifest, then the backup, then the manifest again. Writing the manifest
/// and only then checking that the backup is still there (and removing the manifest when it is
/// not) means a backup pruned meanwhile never comes back as a manifest without data.
pub async fn record_verification<M: BackupManifest>(
    stores: &Stores,
    location: &Location,
    manifest: &M,
    method: &str,
) -> Result<(), Error> {
    let mut manifest = manifest.clone();
    manifest.set_verification(Verification { at: Utc::now(), method: method.into(), ok: true });
    let json = manifest.to_json()?;
    let gone = || Error::Conflict(format!("{} was deleted (pruned) while it was verified", manifest.id()));
    match location {
        Location::Local(artifact) => {
            let folder = artifact.parent().unwrap_or(Path::new("."));
            let path = folder.join(manifest.manifest_name());
            if !path.exists() {
                return Err(gone());
            }
            let _lock = store::BackupLock::take(folder, manifest.id()).await?;
            store::write_atomic(&path, &json).await?;
            if !artifact.exists() {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(gone());
            }
            Ok(())
        }
        Location::S3 { key, .. } => {
            let config = stores.s3.as_ref().ok_or_else(|| Error::Invalid("S3_BUCKET is not set".into()))?;
            let s3 = S3Store::new(config).await;
            let manifest_key = s3.key(manifest.tier(), &manifest.manifest_name());
            if !s3.exists(&manifest_key).await? {
                return Err(gone());
            }
            s3.put(&manifest_key, json).await?;
            let data_key = match manifest.files().first() {
                Some(file) => format!("{key}/{}", file.name),
                None => key.clone(),
            };
            if !s3.exists(&data_key).await? {
                let _ = s3.delete(&manifest_key).await;
                return Err(gone());
            }
            Ok(())
        }
    }
}

/// What a prune did or, with `dry_run`, would do. Each list names backups by id.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Nothing was deleted: `deleted`, `stale_uploads` and `replaced_databases` say what would
    /// be; the local leftovers of interrupted backups (`stale_partials`) are not looked for.
    pub dry_run: bool,
    /// The backups retention keeps, sorted.
    pub kept: Vec<String>,
    /// The backups deleted, one entry per store: `<where>: <id>`, `<where>` being `local` or
    /// `s3`.
    pub deleted: Vec<String>,
    /// Backups of a database of the same name in another cluster or deployment: never touched.
    pub other_clusters: Vec<String>,
    /// Backups whose manifest names no cluster (made by an older version): never touched;
    /// delete them by hand when they are no longer needed.
    pub unidentified: Vec<String>,
    /// Leftovers of interrupted backups that were removed.
    pub stale_partials: Vec<String>,
    /// Incomplete S3 multipart uploads that were aborted.
    pub stale_uploads: Vec<String>,
    /// PostgreSQL: databases a restore replaced and kept, dropped once older than the grace
    /// period.
    pub replaced_databases: Vec<String>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

/// Whose a backup is, as a prune sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Of what this prune is for: retention decides.
    Ours,
    /// Of the same name elsewhere (another cluster): never touched, reported.
    Other,
    /// The manifest cannot tell: never touched, reported.
    Unidentified,
    /// Of something else altogether (another database): not mentioned.
    Unrelated,
}

/// Incomplete multipart uploads older than this are leftovers: no backup runs this long.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

/// Deletes the backups `owner` calls ours that retention does not keep, in each store
/// separately, and removes what interrupted backups left behind.
pub async fn prune<M: BackupManifest>(
    stores: &Stores,
    owner: &(dyn Fn(&M) -> Owner + Sync),
    retention: Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, Error> {
    let mut report = PruneReport { dry_run, ..PruneReport::default() };
    if let Some(dir) = &stores.local_dir {
        let backups = store::list_local::<M>(dir).await?;
        for stored in select(&backups, owner, retention, now, &mut report) {
            report.deleted.push(format!("local: {}", stored.manifest.id()));
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
        let backups = s3.list::<M>().await?;
        for stored in select(&backups, owner, retention, now, &mut report) {
            report.deleted.push(format!("s3: {}", stored.manifest.id()));
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

fn select<'a, M: BackupManifest>(
    backups: &'a [Stored<M>],
    owner: &(dyn Fn(&M) -> Owner + Sync),
    retention: Retention,
    now: DateTime<Utc>,
    report: &mut PruneReport,
) -> Vec<&'a Stored<M>> {
    let mut ours = Vec::new();
    for stored in backups {
        match owner(&stored.manifest) {
            Owner::Ours => ours.push(stored),
            Owner::Other => report.other_clusters.push(stored.manifest.id().to_owned()),
            Owner::Unidentified => report.unidentified.push(stored.manifest.id().to_owned()),
            Owner::Unrelated => {}
        }
    }
    let candidates: Vec<Candidate> = ours
        .iter()
        .map(|s| Candidate {
            id: s.manifest.id().to_owned(),
            tier: s.manifest.tier(),
            at: s.manifest.finished_at(),
            verified: s.manifest.verified(),
        })
        .collect();
    let keep = keep(&candidates, retention, now);
    report.kept.extend(keep.iter().cloned());
    ours.into_iter().filter(|s| !keep.contains(s.manifest.id())).collect()
}
