//! Where backups live: a local folder and an S3 bucket, laid out alike:
//! `<tier>/<id>.<ext>` next to `<tier>/<id>.manifest.json`.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use datastores::S3Config;
use tokio::io::AsyncWriteExt;

use crate::Error;
use crate::manifest::{BackupManifest, Tier, manifest_name};

/// Suffix of files being written; they never count as backups.
pub const PARTIAL: &str = ".partial";

/// A backup found in a store.
#[derive(Clone, Debug)]
pub struct Stored<M> {
    /// The backup's manifest, as read from the store.
    pub manifest: M,
    /// Where its artifact is.
    pub location: Location,
}

/// Where a backup's artifact is: its file, or the folder of a backup stored as several files.
/// Displays as the path, or as `s3://<bucket>/<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The artifact's path.
    Local(PathBuf),
    /// The artifact's key.
    S3 {
        /// The bucket.
        bucket: String,
        /// The full key, prefix included.
        key: String,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

// ---- local --------------------------------------------------------------------------------------

/// Where a file of a backup of `tier` lives in the local store `dir`: `<dir>/<tier>/<name>`.
pub fn local_path(dir: &Path, tier: Tier, name: &str) -> PathBuf {
    dir.join(tier.as_str()).join(name)
}

/// Writes `bytes` to `path` through a `.partial` file, synced and renamed into place, and syncs
/// the folder so that the rename itself survives a crash.
pub async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let partial = partial_path(path);
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
    file.write_all(bytes).await.map_err(|e| Error::io(format!("cannot write {}", partial.display()), e))?;
    file.sync_all().await.map_err(|e| Error::io(format!("cannot sync {}", partial.display()), e))?;
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|e| Error::io(format!("cannot rename {}", partial.display()), e))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    sync_dir(folder).await.map_err(|e| Error::io(format!("cannot sync {}", folder.display()), e))
}

/// Syncs a folder: its entries (files created, renamed, removed) reach the disk.
pub async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all()).await.map_err(std::io::Error::other)?
}

/// Held by a running backup for its id (`<tier>/<id>.lock`, an advisory file lock): while it is
/// held, the backup's `.partial` files are alive. The lock goes with the process, however it
/// ends, so a leftover whose lock can be taken belongs to a backup that died.
#[derive(Debug)]
pub struct BackupLock {
    file: std::fs::File,
    path: PathBuf,
}

impl BackupLock {
    /// Takes the lock of backup `id` in `folder` (a tier's folder), waiting while another
    /// process holds it. Dropping it removes the lock file and releases the lock.
    pub async fn take(folder: &Path, id: &str) -> Result<BackupLock, Error> {
        let path = folder.join(format!("{id}.lock"));
        let path2 = path.clone();
        let taken = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            loop {
                let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path2)?;
                file.lock()?;
                // A sweeper may have removed the file between our open and our lock: then the
                // lock is on a file nobody else can find. Take it again.
                if same_file(&file, &path2) {
                    return Ok(file);
                }
            }
        })
        .await
        .map_err(|e| Error::Tool(e.to_string()))?;
        let file = taken.map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Ok(BackupLock { file, path })
    }
}

/// Whether `file` is still the file at `path`.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for BackupLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Removes what interrupted backups left in `dir`: `.partial` files and folders whose backup no
/// longer holds its lock, and stale lock files. Returns what it removed.
pub async fn sweep_partials(dir: &Path) -> Vec<String> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut removed = Vec::new();
        for tier in Tier::ALL {
            let folder = dir.join(tier.as_str());
            let Ok(entries) = std::fs::read_dir(&folder) else { continue };
            let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
            names.sort();
            for name in names {
                let is_partial = name.ends_with(PARTIAL);
                let is_lock = name.ends_with(".lock");
                if !is_partial && !is_lock {
                    continue;
                }
                let id = name.split('.').next().unwrap_or(&name);
                let lock_path = folder.join(format!("{id}.lock"));
                let Ok(lock) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)
                else {
                    continue;
                };
                if lock.try_lock().is_err() || !same_file(&lock, &lock_path) {
                    continue; // A live backup.
                }
                let path = folder.join(&name);
                if is_partial {
                    let gone = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                    if gone.is_ok() {
                        removed.push(path.display().to_string());
                    }
                }
                let _ = std::fs::remove_file(&lock_path);
                let _ = lock.unlock();
            }
        }
        removed
    })
    .await
    .unwrap_or_default()
}

/// `path` with [`PARTIAL`] appended: where a file is written until it is complete.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(PARTIAL);
    PathBuf::from(name)
}

/// Every complete backup of `M`'s datastore under `dir`, oldest first. Unreadable manifests are
/// errors: a backup that cannot be read should not vanish from view.
pub async fn list_local<M: BackupManifest>(dir: &Path) -> Result<Vec<Stored<M>>, Error> {
    let mut out = Vec::new();
    for tier in Tier::ALL {
        let folder = dir.join(tier.as_str());
        let mut entries = match tokio::fs::read_dir(&folder).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("cannot list {}", folder.display()), e)),
        };
        while let Some(entry) =
            entries.next_entry().await.map_err(|e| Error::io(format!("cannot list {}", folder.display()), e))?
        {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if !name.ends_with(".manifest.json") {
                continue;
            }
            let bytes =
                tokio::fs::read(&path).await.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let Some(manifest) = M::from_json_of_kind(&bytes, &path.display().to_string())? else { continue };
            let artifact = folder.join(manifest.artifact());
            out.push(Stored { manifest, location: Location::Local(artifact) });
        }
    }
    out.sort_by_key(|s| s.manifest.finished_at());
    Ok(out)
}

/// Deletes a local backup: the manifest first, so that a crash midway never leaves a manifest
/// pointing at nothing.
pub async fn delete_local<M: BackupManifest>(stored: &Stored<M>) -> Result<(), Error> {
    let Location::Local(artifact) = &stored.location else { return Ok(()) };
    let folder = artifact.parent().unwrap_or(Path::new("."));
    let manifest = folder.join(manifest_name(stored.manifest.id()));
    tokio::fs::remove_file(&manifest)
        .await
        .map_err(|e| Error::io(format!("cannot delete {}", manifest.display()), e))?;
    let removed = if artifact.is_dir() {
        tokio::fs::remove_dir_all(artifact).await
    } else {
        tokio::fs::remove_file(artifact).await
    };
    if let Err(e) = removed
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(Error::io(format!("cannot delete {}", artifact.display()), e));
    }
    // Once more at the end, for a verify that rewrote the manifest meanwhile.
    match tokio::fs::remove_file(&manifest).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("cannot delete {}", manifest.display()), e))
        }
        _ => Ok(()),
    }
}

// ---- S3 -----------------------------------------------------------------------------------------

/// S3 allows at most 10,000 parts; parts grow so that large dumps fit: `base` for parts 1-1000,
/// twice that for 1001-2000, and so on (8 MiB parts reach 8 TiB), capped at S3's 5 GiB.
pub fn part_size(part_number: u32, base: usize) -> usize {
    let doublings = (part_number.saturating_sub(1) / 1000).min(20);
    base.saturating_mul(1 << doublings).min(5 << 30)
}

/// The S3 side of a backup: the key of each file, the upload, the listing.
#[derive(Clone, Debug)]
pub struct S3Store {
    /// The client, built from `config`.
    pub client: aws_sdk_s3::Client,
    /// The bucket, prefix, server-side encryption and retries.
    pub config: S3Config,
}

impl S3Store {
    /// A store for `config`'s bucket and prefix. The client connects lazily: nothing is sent
    /// yet.
    pub async fn new(config: &S3Config) -> S3Store {
        S3Store { client: config.client().await, config: config.clone() }
    }

    /// The full key of `name` in `tier`'s folder: `<prefix><tier>/<name>`.
    pub fn key(&self, tier: Tier, name: &str) -> String {
        self.config.key(&format!("{}/{name}", tier.as_str()))
    }

    /// Writes an object in one request (for manifests), with the configured server-side
    /// encryption.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let mut request = self.client.put_object().bucket(&self.config.bucket).key(key).body(ByteStream::from(bytes));
        if let Some(sse) = self.config.server_side_encryption() {
            request = request.server_side_encryption(sse);
        }
        if let Some(id) = self.config.kms_key_id() {
            request = request.ssekms_key_id(id);
        }
        request.send().await.map_err(|e| Error::s3(format!("cannot write s3://{}/{key}", self.config.bucket), &e))?;
        Ok(())
    }

    /// Reads a whole object into memory (for manifests; see [`S3Store::download`] for
    /// artifacts).
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        let object = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::s3(format!("cannot read s3://{}/{key}", self.config.bucket), &e))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| Error::s3(format!("cannot read s3://{}/{key}", self.config.bucket), &e))?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// Downloads `key` to `path`, streaming.
    pub async fn download(&self, key: &str, path: &Path) -> Result<u64, Error> {
        let mut object = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::s3(format!("cannot read s3://{}/{key}", self.config.bucket), &e))?;
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        let mut total = 0u64;
        while let Some(chunk) = object
            .body
            .try_next()
            .await
            .map_err(|e| Error::s3(format!("cannot read s3://{}/{key}", self.config.bucket), &e))?
        {
            total += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        }
        file.sync_all().await.map_err(|e| Error::io(format!("cannot sync {}", path.display()), e))?;
        Ok(total)
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        match self.client.head_object().bucket(&self.config.bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(e) => Err(Error::s3(format!("cannot look up s3://{}/{key}", self.config.bucket), &e)),
        }
    }

    /// Deletes the object at `key`; S3 answers success for a key that does not exist.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::s3(format!("cannot delete s3://{}/{key}", self.config.bucket), &e))?;
        Ok(())
    }

    /// Every complete backup of `M`'s datastore in the bucket under the prefix, oldest first.
    pub async fn list<M: BackupManifest>(&self) -> Result<Vec<Stored<M>>, Error> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(&self.config.prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    Error::s3(format!("cannot list s3://{}/{}", self.config.bucket, self.config.prefix), &e)
                })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if !key.ends_with(".manifest.json") {
                    continue;
                }
                let origin = format!("s3://{}/{key}", self.config.bucket);
                let Some(manifest) = M::from_json_of_kind(&self.get(key).await?, &origin)? else { continue };
                let artifact = self.key(manifest.tier(), manifest.artifact());
                out.push(Stored {
                    manifest,
                    location: Location::S3 { bucket: self.config.bucket.clone(), key: artifact },
                });
            }
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        out.sort_by_key(|s| s.manifest.finished_at());
        Ok(out)
    }

    /// Deletes a backup from the bucket, manifest first; the files of a directory backup too.
    /// The manifest goes first and once more at the end: a verify that rewrote it meanwhile
    /// (see `record_verification`) does not bring back a manifest without its backup.
    pub async fn delete_backup<M: BackupManifest>(&self, stored: &Stored<M>) -> Result<(), Error> {
        let m = &stored.manifest;
        let manifest = self.key(m.tier(), &manifest_name(m.id()));
        self.delete(&manifest).await?;
        if m.files().is_empty() {
            self.delete(&self.key(m.tier(), m.artifact())).await?;
        } else {
            for file in m.files() {
                self.delete(&self.key(m.tier(), &format!("{}/{}", m.artifact(), file.name))).await?;
            }
        }
        self.delete(&manifest).await
    }

    /// Multipart uploads under the prefix started more than `age` before `now`: `(key, id)`.
    /// Stores without ListMultipartUploads answer with an error.
    pub async fn stale_uploads(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        age: std::time::Duration,
    ) -> Result<Vec<(String, String)>, Error> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.config.bucket)
                .prefix(&self.config.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| {
                    Error::s3(format!("cannot list the incomplete uploads of s3://{}", self.config.bucket), &e)
                })?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else { continue };
                let started = upload.initiated().map(|t| t.secs()).unwrap_or(i64::MAX);
                if now.timestamp() - started >= age.as_secs() as i64 {
                    out.push((key.to_owned(), id.to_owned()));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Aborts the multipart upload `upload_id` of `key`, so the store frees its parts.
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), Error> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.config.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| Error::s3(format!("cannot abort the upload of s3://{}/{key}", self.config.bucket), &e))?;
        Ok(())
    }
}

/// A multipart upload fed chunk by chunk; at most two parts in flight.
pub struct Upload {
    store: S3Store,
    key: String,
    upload_id: String,
    base_part: usize,
    buffer: Vec<u8>,
    parts: Vec<CompletedPart>,
    in_flight: tokio::task::JoinSet<Result<CompletedPart, Error>>,
    next_part: u32,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("key", &self.key).field("next_part", &self.next_part).finish_non_exhaustive()
    }
}

impl Upload {
    /// Starts the multipart upload of `key`, with the configured server-side encryption. Parts
    /// are `base_part` bytes (at least S3's minimum, 5 MiB) and grow as [`part_size`] says.
    pub async fn start(store: &S3Store, key: String, base_part: usize) -> Result<Upload, Error> {
        let mut request = store.client.create_multipart_upload().bucket(&store.config.bucket).key(&key);
        if let Some(sse) = store.config.server_side_encryption() {
            request = request.server_side_encryption(sse);
        }
        if let Some(id) = store.config.kms_key_id() {
            request = request.ssekms_key_id(id);
        }
        let created = request
            .send()
            .await
            .map_err(|e| Error::s3(format!("cannot start the upload of s3://{}/{key}", store.config.bucket), &e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        Ok(Upload {
            store: store.clone(),
            key,
            upload_id,
            base_part: base_part.max(5 << 20),
            buffer: Vec::with_capacity(base_part),
            parts: Vec::new(),
            in_flight: tokio::task::JoinSet::new(),
            next_part: 1,
        })
    }

    /// Adds `data` to the object, sending each part once it is full; waits while two parts are
    /// in flight. A part that failed after the client's retries fails this call or
    /// [`Upload::finish`].
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let want = part_size(self.next_part, self.base_part);
            let take = (want - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() >= want {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), Error> {
        if self.in_flight.len() >= 2
            && let Some(done) = self.in_flight.join_next().await
        {
            self.parts.push(join(done)?);
        }
        let body =
            std::mem::replace(&mut self.buffer, Vec::with_capacity(part_size(self.next_part + 1, self.base_part)));
        let (client, bucket, key, upload_id, number) = (
            self.store.client.clone(),
            self.store.config.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
            self.next_part as i32,
        );
        let attempts = self.store.config.max_attempts;
        self.in_flight.spawn(async move {
            // The SDK retries with exponential backoff up to `attempts` times.
            let sent = client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(number)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| {
                    Error::s3(
                        format!("upload of part {number} of s3://{bucket}/{key} failed after {attempts} attempt(s)"),
                        &e,
                    )
                })?;
            Ok(CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag().map(str::to_owned)).build())
        });
        self.next_part += 1;
        Ok(())
    }

    /// Uploads what is left and completes the object.
    pub async fn finish(mut self) -> Result<(), Error> {
        if !self.buffer.is_empty() || self.next_part == 1 {
            self.send_part().await?;
        }
        while let Some(done) = self.in_flight.join_next().await {
            self.parts.push(join(done)?);
        }
        self.parts.sort_by_key(|p| p.part_number());
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.config.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(self.parts.clone())).build())
            .send()
            .await
            .map_err(|e| Error::s3(format!("cannot complete s3://{}/{}", self.store.config.bucket, self.key), &e))?;
        Ok(())
    }

    /// Abandons the upload, so that no incomplete object is left behind (best effort).
    pub async fn abort(mut self) {
        self.in_flight.abort_all();
        let _ = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.config.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
    }
}

fn join(done: Result<Result<CompletedPart, Error>, tokio::task::JoinError>) -> Result<CompletedPart, Error> {
    done.map_err(|e| Error::S3 { context: "part upload".into(), message: e.to_string() })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_to_stay_under_ten_thousand() {
        let base = 8 << 20;
        assert_eq!(part_size(1, base), base);
        assert_eq!(part_size(1000, base), base);
        assert_eq!(part_size(1001, base), 2 * base);
        let total: u64 = (1..=10_000).map(|n| part_size(n, base) as u64).sum();
        assert!(total > 5 << 40, "10,000 parts hold more than 5 TiB: {total}");
        assert!((1..=10_000).all(|n| part_size(n, base) <= 5 << 30));
        // 50 GiB needs well under 10,000 parts.
        let mut sum = 0u64;
        let mut n = 0;
        while sum < 50 << 30 {
            n += 1;
            sum += part_size(n, base) as u64;
        }
        assert!(n < 10_000, "{n}");
    }
}
