//! The streaming sink every one-file backup is written through: raw bytes in, compressed on a
//! thread of its own, hashed with SHA-256, and written to a local `.partial` file and an S3
//! multipart upload at once, with no temporary full copy. A failure of one destination does not
//! stop the other; when neither is left, writes fail so that the producer stops.
//!
//! Nothing here writes a manifest: the caller writes it after [`Sink::finish`], when the data
//! is durable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::Error;
use crate::manifest::{Compression, Tier};
use crate::store::{self, S3Store, Upload, partial_path};

/// What a finished sink wrote.
#[derive(Clone, Debug)]
pub struct Streamed {
    /// Bytes handed to the sink, before compression.
    pub raw_bytes: u64,
    /// Bytes stored, after compression.
    pub stored_bytes: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: String,
    /// `local` and/or `s3`: where the artifact is complete.
    pub completed: Vec<String>,
    /// What failed in a destination that was given up.
    pub failures: Vec<String>,
}

struct Outputs {
    local: Option<(tokio::fs::File, PathBuf, PathBuf)>,
    upload: Option<Upload>,
    hasher: Sha256,
    failures: Vec<String>,
}

/// A backup artifact being written. Feed it with [`Sink::write`], then [`Sink::finish`] or
/// [`Sink::abort`]; dropping it unfinished leaves only a `.partial` file, which the next
/// backup's sweep removes.
pub struct Sink {
    raw: Option<mpsc::Sender<Bytes>>,
    raw_bytes: u64,
    stored: Arc<AtomicU64>,
    compressor: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    writer: Option<tokio::task::JoinHandle<Outputs>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("raw_bytes", &self.raw_bytes).finish_non_exhaustive()
    }
}

impl Sink {
    /// Opens `<tier>/<artifact>` in the local folder (as a `.partial` file) and/or starts its
    /// upload.
    pub async fn open(
        local_dir: Option<&Path>,
        s3: Option<&S3Store>,
        tier: Tier,
        artifact: &str,
        compression: Compression,
        part_size: usize,
    ) -> Result<Sink, Error> {
        let local = match local_dir {
            Some(dir) => {
                let path = store::local_path(dir, tier, artifact);
                if let Some(folder) = path.parent() {
                    tokio::fs::create_dir_all(folder)
                        .await
                        .map_err(|e| Error::io(format!("cannot create {}", folder.display()), e))?;
                }
                let partial = partial_path(&path);
                let file = tokio::fs::File::create(&partial)
                    .await
                    .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
                Some((file, partial, path))
            }
            None => None,
        };
        let upload = match s3 {
            Some(store) => Some(Upload::start(store, store.key(tier, artifact), part_size).await?),
            None => None,
        };
        let (raw_tx, raw_rx) = mpsc::channel::<Bytes>(16);
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(16);
        let compressor = std::thread::spawn(move || compress(compression, raw_rx, out_tx));
        let stored = Arc::new(AtomicU64::new(0));
        let outputs = Outputs { local, upload, hasher: Sha256::new(), failures: Vec::new() };
        let writer = tokio::spawn(write_out(outputs, out_rx, stored.clone()));
        Ok(Sink { raw: Some(raw_tx), raw_bytes: 0, stored, compressor: Some(compressor), writer: Some(writer) })
    }

    /// Hands raw bytes to the sink. Fails when no destination is left (each one's error is in
    /// the message): the producer should stop.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.raw_bytes += chunk.len() as u64;
        let sent = match &self.raw {
            Some(raw) => raw.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The compressor stopped: every destination failed, or the compressor itself did.
        self.raw = None;
        let mut problems = Vec::new();
        if let Some(writer) = self.writer.take()
            && let Ok(outputs) = writer.await
        {
            problems.extend(outputs.failures.iter().cloned());
            discard(outputs).await;
        }
        if let Some(compressor) = self.compressor.take()
            && let Err(e) = join(compressor).await
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            problems.push(format!("compression failed: {e}"));
        }
        Err(Error::Tool(if problems.is_empty() {
            "the backup's destinations failed".into()
        } else {
            problems.join("; ")
        }))
    }

    /// Raw bytes handed over so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// Bytes stored so far, after compression.
    pub fn stored_bytes(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Ends the stream: the local file is synced and renamed into place with its folder synced,
    /// the upload completed. Fails only when no destination completed.
    pub async fn finish(mut self) -> Result<Streamed, Error> {
        drop(self.raw.take());
        // The writer first: it drains what the compressor sends until the compressor ends, so
        // the compressor's thread is never left blocked on a full channel.
        let writer = self.writer.take().ok_or_else(|| Error::Tool("the backup's destinations failed".into()))?;
        let mut outputs = writer.await.map_err(|e| Error::Tool(format!("the writer stopped: {e}")))?;
        let compressed = match self.compressor.take() {
            Some(c) => join(c).await,
            None => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the backup's destinations failed")),
        };
        if let Err(e) = compressed {
            let failures = std::mem::take(&mut outputs.failures);
            discard(outputs).await;
            let mut problems = Vec::new();
            if e.kind() != std::io::ErrorKind::BrokenPipe || failures.is_empty() {
                problems.push(format!("compression failed: {e}"));
            }
            problems.extend(failures);
            return Err(Error::Tool(problems.join("; ")));
        }
        let stored_bytes = self.stored.load(Ordering::Relaxed);
        let mut completed = Vec::new();
        let mut failures = outputs.failures;
        if let Some((mut file, partial, path)) = outputs.local {
            let done = async {
                file.flush().await?;
                file.sync_all().await?;
                tokio::fs::rename(&partial, &path).await?;
                store::sync_dir(path.parent().unwrap_or(Path::new("."))).await
            }
            .await;
            match done {
                Ok(()) => completed.push("local".to_owned()),
                Err(e) => failures.push(Error::io(format!("cannot finish {}", path.display()), e).to_string()),
            }
        }
        if let Some(up) = outputs.upload {
            match up.finish().await {
                Ok(()) => completed.push("s3".to_owned()),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if completed.is_empty() {
            return Err(Error::Tool(failures.join("; ")));
        }
        Ok(Streamed {
            raw_bytes: self.raw_bytes,
            stored_bytes,
            sha256: hex::encode(outputs.hasher.finalize()),
            completed,
            failures,
        })
    }

    /// Gives up: removes the partial file and aborts the upload.
    pub async fn abort(mut self) {
        drop(self.raw.take());
        if let Some(writer) = self.writer.take()
            && let Ok(outputs) = writer.await
        {
            discard(outputs).await;
        }
        if let Some(c) = self.compressor.take() {
            let _ = join(c).await;
        }
    }
}

/// Waits for the compressor's thread without blocking the async runtime.
async fn join(thread: std::thread::JoinHandle<std::io::Result<()>>) -> std::io::Result<()> {
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(result)) => result,
        _ => Err(std::io::Error::other("the compressor stopped")),
    }
}

async fn discard(outputs: Outputs) {
    if let Some((file, partial, _)) = outputs.local {
        drop(file);
        let _ = tokio::fs::remove_file(&partial).await;
    }
    if let Some(up) = outputs.upload {
        up.abort().await;
    }
}

/// Hashes and writes what the compressor sends, until it ends or no destination is left.
async fn write_out(mut outputs: Outputs, mut rx: mpsc::Receiver<Vec<u8>>, stored: Arc<AtomicU64>) -> Outputs {
    while let Some(chunk) = rx.recv().await {
        outputs.hasher.update(&chunk);
        stored.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some((file, partial, _)) = &mut outputs.local
            && let Err(e) = file.write_all(&chunk).await
        {
            outputs.failures.push(Error::io(format!("cannot write {}", partial.display()), e).to_string());
            if let Some((file, partial, _)) = outputs.local.take() {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
            }
        }
        if let Some(up) = &mut outputs.upload
            && let Err(e) = up.write(&chunk).await
        {
            outputs.failures.push(e.to_string());
            if let Some(up) = outputs.upload.take() {
                up.abort().await;
            }
        }
        if outputs.local.is_none() && outputs.upload.is_none() {
            break; // Nowhere left to write: dropping `rx` stops the compressor and the producer.
        }
    }
    outputs
}

/// Sends chunks of about a megabyte from the compressor thread to the async side.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(1 << 21));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the backup stopped"))
    }
}

/// Compresses what arrives on `raw` into `out`, on a thread of its own.
fn compress(
    compression: Compression,
    mut raw: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let writer = ChannelWriter { tx: out, buffer: Vec::with_capacity(1 << 21) };
    match compression {
        Compression::Zstd(level) => {
            let mut encoder = zstd::stream::write::Encoder::new(writer, level)?;
            while let Some(chunk) = raw.blocking_recv() {
                encoder.write_all(&chunk)?;
            }
            encoder.finish()?.flush()
        }
        Compression::Gzip(level) => {
            let mut encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::new(level));
            while let Some(chunk) = raw.blocking_recv() {
                encoder.write_all(&chunk)?;
            }
            encoder.finish()?.flush()
        }
        Compression::None => {
            let mut writer = writer;
            while let Some(chunk) = raw.blocking_recv() {
                writer.write_all(&chunk)?;
            }
            writer.flush()
        }
    }
}

/// Writes the manifest where the artifact is complete (`completed`: `local`, `s3`), the local
/// copy atomically and synced. Returns what failed; a destination whose manifest failed does not
/// hold the backup.
pub async fn publish<M: crate::BackupManifest>(
    manifest: &M,
    local_dir: Option<&Path>,
    s3: Option<&S3Store>,
    completed: &[String],
) -> Result<Vec<String>, Error> {
    let json = manifest.to_json()?;
    let mut failures = Vec::new();
    if let Some(dir) = local_dir
        && completed.iter().any(|d| d == "local")
    {
        let path = store::local_path(dir, manifest.tier(), &manifest.manifest_name());
        if let Err(e) = store::write_atomic(&path, &json).await {
            failures.push(e.to_string());
        }
    }
    if let Some(s3) = s3
        && completed.iter().any(|d| d == "s3")
        && let Err(e) = s3.put(&s3.key(manifest.tier(), &manifest.manifest_name()), json).await
    {
        failures.push(e.to_string());
    }
    Ok(failures)
}

/// A backup id for `name` that no backup in the stores has: `started`'s second, or the next
/// free one (waiting for it), so that two backups never share an id.
pub async fn free_id(
    name: &str,
    tier: Tier,
    local_dir: Option<&Path>,
    s3: Option<&S3Store>,
    artifact_of: &(dyn Fn(&str) -> String + Sync),
    mut started: chrono::DateTime<chrono::Utc>,
) -> Result<(chrono::DateTime<chrono::Utc>, String), Error> {
    use chrono::{DateTime, Utc};
    const ATTEMPTS: u32 = 5;
    for _ in 0..ATTEMPTS {
        let id = crate::backup_id(name, started);
        let manifest = crate::manifest_name(&id);
        let mut taken = match local_dir {
            Some(dir) => {
                let folder = dir.join(tier.as_str());
                folder.join(&manifest).exists() || folder.join(artifact_of(&id)).exists()
            }
            None => false,
        };
        if let Some(s3) = s3
            && !taken
        {
            taken = s3.exists(&s3.key(tier, &manifest)).await?;
        }
        if !taken {
            return Ok((started, id));
        }
        let next = started.timestamp() + 1;
        let wait = (next * 1000 - Utc::now().timestamp_millis()).max(0) as u64;
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        started = Utc::now().max(DateTime::from_timestamp(next, 0).unwrap_or(started));
    }
    Err(Error::Conflict(format!(
        "backup ids of {ATTEMPTS} seconds in a row are taken for {name}; is another backup running?"
    )))
}

/// A backup about to be written: its id and start time, the bucket, and the lock that marks its
/// files as alive until it is dropped.
#[derive(Debug)]
pub struct Prepared {
    /// The backup's start time, the second its id names: the time asked for, or later when
    /// that second's id was taken (see [`free_id`]).
    pub started: chrono::DateTime<chrono::Utc>,
    /// The backup's id, free in every store.
    pub id: String,
    /// The bucket, when the backup goes to S3.
    pub s3: Option<S3Store>,
    /// The lock on the backup's files in the local folder (`None` without one): hold it until
    /// the manifest is written, so that no sweep takes the files for leftovers.
    pub lock: Option<store::BackupLock>,
}

/// What every backup does before it writes: sweeps what interrupted backups left in the local
/// folder, takes a free id for `name` (see [`free_id`]) and the lock of its files.
pub async fn prepare(
    name: &str,
    tier: Tier,
    local_dir: Option<&Path>,
    s3: Option<&datastores::S3Config>,
    artifact_of: &(dyn Fn(&str) -> String + Sync),
    started: chrono::DateTime<chrono::Utc>,
) -> Result<Prepared, Error> {
    let s3 = match s3 {
        Some(config) => Some(S3Store::new(config).await),
        None => None,
    };
    if let Some(dir) = local_dir {
        for removed in store::sweep_partials(dir).await {
            tracing::warn!(target: "progress", removed = %removed, "removed the leftover of an interrupted backup");
        }
    }
    let (started, id) = free_id(name, tier, local_dir, s3.as_ref(), artifact_of, started).await?;
    let lock = match local_dir {
        Some(dir) => {
            let folder = dir.join(tier.as_str());
            tokio::fs::create_dir_all(&folder)
                .await
                .map_err(|e| Error::io(format!("cannot create {}", folder.display()), e))?;
            Some(store::BackupLock::take(&folder, &id).await?)
        }
        None => None,
    };
    Ok(Prepared { started, id, s3, lock })
}
