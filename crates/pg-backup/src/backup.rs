//! `backup`: pg_dump's output streamed through compression and SHA-256 to a local file and/or an
//! S3 multipart upload at once, without a temporary full copy, while [`crate::archive`] counts
//! and hashes every table's rows from the same stream. The manifest is written last, after the
//! data is durable, so a killed or failed run never leaves a backup that looks complete.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use chrono::Utc;
use datastores::{PostgresConfig, S3Config};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use backup_core::store::{self, S3Store, Upload, partial_path};
use backup_core::{Prepared, Sink};

use crate::Error;
use crate::archive::{self, DirectoryToc, PlainScanner, RowHash, TableData};
use crate::manifest::{Compression, FileEntry, Format, Manifest, TableInfo, Tier, artifact_name};
use crate::tools::{Credentials, Tools};

/// How to take a backup, and where to store it (at least one of `local_dir` and `s3`).
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// pg_dump's format (`pg-backup` uses custom unless told otherwise).
    pub format: Format,
    /// How the dump is compressed: as a stream for the custom and plain formats, by pg_dump,
    /// file by file, for the directory format (`pg-backup` uses zstd:3, gzip:6 for plain).
    pub compression: Compression,
    /// Parallel pg_dump jobs (directory format).
    pub jobs: u32,
    /// The tier the backup is taken for: its folder, and how long retention keeps it.
    pub tier: Tier,
    /// The local folder (`BACKUP_DIR`); `None` for no local copy.
    pub local_dir: Option<PathBuf>,
    /// The bucket and prefix to upload to; `None` for no upload.
    pub s3: Option<S3Config>,
    /// Where pg_dump is.
    pub tools: Tools,
    /// Also count every table with `count(*)` in the dump's own snapshot and fail when a count
    /// differs from what the archive holds. The manifest's counts always come from the archive.
    pub exact_counts: bool,
    /// The first S3 parts' size in bytes, raised to S3's minimum of 5 MiB (`pg-backup` uses
    /// 8 MiB); later parts grow, see [`part_size`](crate::part_size).
    pub part_size: usize,
}

/// Progress of a running backup.
#[derive(Clone, Copy, Debug)]
pub struct BackupProgress {
    /// Bytes pg_dump wrote, before compression. A one-file backup reports it only at the end
    /// (0 before); for the directory format, whose files pg_dump compresses, it is
    /// `stored_bytes`.
    pub dump_bytes: u64,
    /// Bytes stored so far, after compression.
    pub stored_bytes: u64,
}

/// Facts about the source, read before the dump.
struct Source {
    server_version: String,
    server_major: u32,
    system_identifier: Option<String>,
    properties: Option<datastores::pgadmin::DatabaseProperties>,
    /// Schema, table, the planner's estimate, and with `exact_counts` the count.
    tables: Vec<(String, String, i64, Option<i64>)>,
}

async fn inspect(client: &datastores::tokio_postgres::Client, database: &str, exact: bool) -> Result<Source, Error> {
    let row = client
        .query_one("SELECT current_setting('server_version'), current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::db("cannot read the server version", e))?;
    let (server_version, num): (String, i32) = (row.get(0), row.get(1));
    let system_identifier = match client.query_one("SELECT system_identifier::text FROM pg_control_system()", &[]).await
    {
        Ok(row) => Some(row.get::<_, String>(0)),
        Err(e) => {
            tracing::warn!(error = %datastores::error_chain(&e), "cannot read the cluster's system identifier");
            None
        }
    };
    let properties = datastores::pgadmin::DatabaseProperties::read(client, database).await.map_err(Error::admin)?;
    let mut tables = Vec::new();
    for (schema, name, row_estimate) in user_tables(client).await? {
        let rows = if exact { Some(count_rows(client, &schema, &name).await?) } else { None };
        tables.push((schema, name, row_estimate, rows));
    }
    Ok(Source { server_version, server_major: (num / 10_000) as u32, system_identifier, properties, tables })
}

/// Every table that holds rows (partitions included, partitioned parents not): schema, name and
/// the planner's row estimate.
pub(crate) async fn user_tables(
    client: &datastores::tokio_postgres::Client,
) -> Result<Vec<(String, String, i64)>, Error> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, greatest(c.reltuples, 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| Error::db("cannot list the tables", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

pub(crate) async fn count_rows(
    client: &datastores::tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Result<i64, Error> {
    use datastores::pgadmin::quote_ident;
    let sql = format!("SELECT count(*) FROM ONLY {}.{}", quote_ident(schema), quote_ident(table));
    let row = client.query_one(&sql, &[]).await.map_err(|e| Error::db(format!("cannot count {schema}.{table}"), e))?;
    Ok(row.get(0))
}

/// Takes a backup. With both a local folder and S3, a failure of one does not stop the other:
/// the backup completes where it can, and [`Error::Incomplete`] says what failed.
pub async fn backup(
    pg: &PostgresConfig,
    options: &BackupOptions,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) -> Result<Manifest, Error> {
    if options.local_dir.is_none() && options.s3.is_none() {
        return Err(Error::Invalid("no destination: set BACKUP_DIR (--backup-dir) and/or S3_BUCKET".into()));
    }
    let started = Utc::now();
    let session = pg.connect().await?;
    // With exact counts, the counts and the dump read one snapshot: this transaction exports it
    // and stays open until pg_dump has taken it.
    let snapshot = if options.exact_counts {
        session
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(|e| Error::db("cannot begin the snapshot transaction", e))?;
        let row = session
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| Error::db("cannot export a snapshot", e))?;
        Some(row.get::<_, String>(0))
    } else {
        None
    };
    let source = inspect(&session, &pg.dbname, options.exact_counts).await?;
    let pg_dump_major = options.tools.check_against("pg_dump", source.server_major).await?;
    options.tools.check_tls(pg).await?;
    let credentials = Credentials::new(pg)?;
    let artifact_of = |id: &str| artifact_name(id, options.format, options.compression);
    let Prepared { started, id, s3, lock: _lock } = backup_core::prepare(
        &pg.dbname,
        options.tier,
        options.local_dir.as_deref(),
        options.s3.as_ref(),
        &artifact_of,
        started,
    )
    .await?;
    let artifact = artifact_of(&id);

    let pg_dump = || {
        let mut command = credentials.command(&options.tools, "pg_dump", pg);
        // The session settings that `verify --checksums` reproduces to hash the restored rows
        // the way the dump wrote them.
        command.arg("--no-password").env("PGTZ", "UTC").env("PGCLIENTENCODING", "UTF8");
        if let Some(id) = &snapshot {
            command.arg(format!("--snapshot={id}"));
        }
        command
    };
    let outcome = match options.format {
        Format::Directory => dump_directory(&pg_dump, options, pg_dump_major, &artifact, s3.as_ref(), progress).await,
        Format::Custom | Format::Plain => {
            let mut command = pg_dump();
            command.arg(if options.format == Format::Custom { "--format=custom" } else { "--format=plain" });
            if options.format == Format::Custom {
                // Compressed here, as a stream, not inside the archive.
                command.arg("--compress=0");
            }
            dump_stream(command, options, &artifact, s3.as_ref(), progress).await
        }
    };
    if snapshot.is_some() {
        let _ = session.batch_execute("COMMIT").await;
    }
    let streamed = outcome?;
    let mut failures = streamed.failures;
    let tables = match streamed.tables {
        Ok(found) => match tables_from_archive(found, &source.tables) {
            Ok(tables) => tables,
            Err(problem) => {
                failures.push(problem);
                Vec::new()
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the row counts from the archive; the manifest has estimates only");
            source
                .tables
                .iter()
                .map(|(schema, name, estimate, rows)| TableInfo {
                    schema: schema.clone(),
                    name: name.clone(),
                    row_estimate: *estimate,
                    rows: *rows,
                    content_hash: None,
                    columns: None,
                })
                .collect()
        }
    };
    let finished = Utc::now();
    let manifest = Manifest {
        id: id.clone(),
        database: pg.dbname.clone(),
        system_identifier: source.system_identifier,
        database_properties: source.properties,
        server_version: source.server_version,
        pg_dump_version: pg_dump_major.to_string(),
        format: options.format,
        compression: streamed.compression,
        tier: options.tier,
        artifact: artifact.clone(),
        files: streamed.files,
        size_bytes: streamed.stored_bytes,
        dump_bytes: streamed.dump_bytes,
        sha256: streamed.sha256,
        started_at: started,
        finished_at: finished,
        duration_seconds: (finished - started).num_milliseconds() as f64 / 1000.0,
        tables,
        destinations: streamed.completed.clone(),
        verified: None,
        created_by: concat!("pg-backup ", env!("CARGO_PKG_VERSION")).into(),
    };
    if !failures.is_empty() && streamed.completed.is_empty() {
        return Err(Error::Tool(failures.join("; ")));
    }
    if failures.iter().any(|f| f.starts_with("row counts")) {
        // The archive does not hold what the database held: no manifest, no backup.
        return Err(Error::Tool(failures.join("; ")));
    }
    failures
        .extend(backup_core::publish(&manifest, options.local_dir.as_deref(), s3.as_ref(), &streamed.completed).await?);
    if failures.is_empty() { Ok(manifest) } else { Err(Error::Incomplete { failures, manifest: Box::new(manifest) }) }
}

/// The manifest's tables from what the archive holds, with the planner's estimates beside them;
/// with `exact_counts`, each archive count must equal `count(*)` in the dump's snapshot.
fn tables_from_archive(
    found: Vec<TableData>,
    source: &[(String, String, i64, Option<i64>)],
) -> Result<Vec<TableInfo>, String> {
    let mut problems = Vec::new();
    let mut tables: Vec<TableInfo> = found
        .into_iter()
        .map(|t| {
            let known = source.iter().find(|(s, n, _, _)| *s == t.schema && *n == t.name);
            if let Some((_, _, _, Some(counted))) = known
                && *counted != t.rows
            {
                problems.push(format!("{}.{}: {} in the archive, count(*) {counted}", t.schema, t.name, t.rows));
            }
            TableInfo {
                row_estimate: known.map(|k| k.2).unwrap_or(0),
                schema: t.schema,
                name: t.name,
                rows: Some(t.rows),
                content_hash: Some(t.content_hash),
                columns: t.columns,
            }
        })
        .collect();
    tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    if problems.is_empty() {
        Ok(tables)
    } else {
        Err(format!("row counts of the archive differ from the database: {}", problems.join(", ")))
    }
}

struct Streamed {
    /// What was used: the directory format falls back to gzip where pg_dump lacks zstd.
    compression: Compression,
    dump_bytes: u64,
    stored_bytes: u64,
    sha256: String,
    files: Vec<FileEntry>,
    /// Every table's rows and hash, read from the dump; an error when it could not be read.
    tables: Result<Vec<TableData>, String>,
    /// `local` and/or `s3`: where the artifact is complete.
    completed: Vec<String>,
    failures: Vec<String>,
}

/// A `Read` over chunks arriving on a channel, for the archive scanner's thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Reads the tables out of the dump as it streams, on a thread of its own. Whatever happens to
/// the scan, the thread keeps draining its channel, so it never holds the backup up.
fn scanner(
    format: Format,
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> std::thread::JoinHandle<Result<Vec<TableData>, String>> {
    std::thread::spawn(move || {
        let mut reader = ChannelReader { rx, current: Bytes::new() };
        let result = match format {
            Format::Custom => archive::scan_custom(&mut reader).map_err(|e| e.to_string()),
            _ => {
                let mut plain = PlainScanner::default();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    match std::io::Read::read(&mut reader, &mut buf) {
                        Ok(0) => break plain.finish().map_err(|e| e.to_string()),
                        Ok(n) => plain.feed(&buf[..n]),
                        Err(e) => break Err(e.to_string()),
                    }
                }
            }
        };
        while reader.rx.blocking_recv().is_some() {}
        result
    })
}

/// Keeps the last lines a tool wrote to stderr, for error messages.
pub(crate) async fn tail(stderr: Option<tokio::process::ChildStderr>) -> Vec<String> {
    use tokio::io::AsyncBufReadExt;
    let Some(stderr) = stderr else { return Vec::new() };
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut last = std::collections::VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if last.len() == 20 {
            last.pop_front();
        }
        last.push_back(line);
    }
    last.into_iter().collect()
}

async fn dump_stream(
    mut command: tokio::process::Command,
    options: &BackupOptions,
    artifact: &str,
    s3: Option<&S3Store>,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) -> Result<Streamed, Error> {
    let mut sink =
        Sink::open(options.local_dir.as_deref(), s3, options.tier, artifact, options.compression, options.part_size)
            .await?;
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            sink.abort().await;
            return Err(Error::Tool(format!("cannot start pg_dump: {e}")));
        }
    };
    let Some(mut stdout) = child.stdout.take() else {
        sink.abort().await;
        return Err(Error::Tool("pg_dump has no stdout".into()));
    };
    let stderr = tokio::spawn(tail(child.stderr.take()));
    let (scan_tx, scan_rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let scan = scanner(options.format, scan_rx);

    let mut reported = 0u64;
    let mut stopped = None;
    let read = loop {
        let mut buf = vec![0u8; 256 << 10];
        let n = match stdout.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        buf.truncate(n);
        let chunk = Bytes::from(buf);
        let _ = scan_tx.send(chunk.clone()).await;
        if let Err(e) = sink.write(chunk).await {
            // Nowhere left to write: stop pg_dump.
            let _ = child.kill().await;
            stopped = Some(e);
            break Ok(());
        }
        if sink.stored_bytes() - reported >= 4 << 20 {
            reported = sink.stored_bytes();
            progress(BackupProgress { dump_bytes: 0, stored_bytes: reported });
        }
    };
    drop(scan_tx);
    drop(stdout);
    let status = child.wait().await;
    let tables = tokio::task::spawn_blocking(move || scan.join()).await;
    let stderr = stderr.await.unwrap_or_default();
    if let Some(e) = stopped {
        return Err(e.into());
    }
    let (status, tables) = match (status, tables) {
        (Ok(status), Ok(Ok(tables))) => (status, tables),
        (Err(e), _) => {
            sink.abort().await;
            return Err(Error::Tool(format!("cannot wait for pg_dump: {e}")));
        }
        _ => {
            sink.abort().await;
            return Err(Error::Tool("the archive scanner stopped".into()));
        }
    };
    if !status.success() {
        sink.abort().await;
        return Err(Error::Tool(format!("pg_dump failed ({status}): {}", stderr.join(" | "))));
    }
    if let Err(e) = read {
        sink.abort().await;
        return Err(Error::io("cannot read pg_dump's output", e));
    }
    let dump_bytes = sink.raw_bytes();
    let streamed = sink.finish().await?;
    progress(BackupProgress { dump_bytes, stored_bytes: streamed.stored_bytes });
    Ok(Streamed {
        compression: options.compression,
        dump_bytes,
        stored_bytes: streamed.stored_bytes,
        sha256: streamed.sha256,
        files: Vec::new(),
        tables,
        completed: streamed.completed,
        failures: streamed.failures,
    })
}

/// One file of a directory-format dump, read once in chunks of a megabyte on a thread of its
/// own: hashed, decompressed to count its rows when it holds table data, and sent on for upload.
/// Memory stays at a few chunks whatever the file's size.
fn read_dump_file(
    path: PathBuf,
    data_compression: Option<Compression>,
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
) -> std::thread::JoinHandle<std::io::Result<(u64, String, Option<RowHash>)>> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut sha = Sha256::new();
        let mut total = 0u64;
        let mut sink: Option<Box<dyn Write>> = None;
        let rows = std::rc::Rc::new(std::cell::RefCell::new(RowHash::default()));
        struct Lines(std::rc::Rc<std::cell::RefCell<RowHash>>);
        impl Write for Lines {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().feed(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        if let Some(compression) = data_compression {
            let lines = Lines(rows.clone());
            sink = Some(match compression {
                Compression::Gzip(_) => Box::new(flate2::write::MultiGzDecoder::new(lines)),
                Compression::Zstd(_) => Box::new(zstd::stream::write::Decoder::new(lines)?),
                Compression::None => Box::new(lines),
            });
        }
        let mut tx = tx;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            total += n as u64;
            sha.update(&buf);
            if let Some(w) = &mut sink {
                w.write_all(&buf)?;
            }
            if let Some(sender) = &tx
                && sender.blocking_send(Bytes::from(buf)).is_err()
            {
                tx = None; // The upload gave up; keep hashing for the local copy.
            }
        }
        if let Some(mut w) = sink.take() {
            w.flush()?;
        }
        // pg_dump does not sync what it writes; the manifest must only ever describe durable files.
        file.sync_all()?;
        drop(sink);
        let hash = data_compression.map(|_| std::mem::take(&mut *rows.borrow_mut()));
        Ok((total, hex::encode(sha.finalize()), hash))
    })
}

/// The directory format: pg_dump writes the folder itself (in parallel, compressing each file);
/// each file is then read once, streamed to S3, hashed and its rows counted. Without a local
/// folder it is dumped to a scratch folder that is removed afterwards.
async fn dump_directory(
    pg_dump: &(dyn Fn() -> tokio::process::Command + Sync),
    options: &BackupOptions,
    pg_dump_major: u32,
    artifact: &str,
    s3: Option<&S3Store>,
    progress: &mut (dyn FnMut(BackupProgress) + Send),
) -> Result<Streamed, Error> {
    let scratch;
    let (target, final_path) = match &options.local_dir {
        Some(dir) => {
            let path = store::local_path(dir, options.tier, artifact);
            (partial_path(&path), Some(path))
        }
        None => {
            scratch = tempfile::Builder::new()
                .prefix("pg-backup-dir-")
                .tempdir()
                .map_err(|e| Error::io("cannot create a scratch folder", e))?;
            (scratch.path().join(artifact), None)
        }
    };
    // pg_dump compresses each file itself; zstd needs pg_dump 16 built with it, gzip always works.
    let mut attempts = match options.compression {
        Compression::Zstd(level) if pg_dump_major >= 16 => vec![Compression::Zstd(level), Compression::Gzip(6)],
        Compression::Zstd(_) => vec![Compression::Gzip(6)],
        other => vec![other],
    };
    let compression = loop {
        let compression = attempts.remove(0);
        let flag = match compression {
            Compression::Zstd(level) => format!("--compress=zstd:{level}"),
            Compression::Gzip(level) => format!("--compress={level}"),
            Compression::None => "--compress=0".into(),
        };
        let mut command = pg_dump();
        command
            .args(["--format=directory", &format!("--jobs={}", options.jobs.max(1)), &flag])
            .arg(format!("--file={}", target.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| Error::Tool(format!("cannot start pg_dump: {e}")))?;
        let stderr = tokio::spawn(tail(child.stderr.take()));
        let status = child.wait().await.map_err(|e| Error::Tool(format!("cannot wait for pg_dump: {e}")))?;
        if status.success() {
            break compression;
        }
        let _ = tokio::fs::remove_dir_all(&target).await;
        let lines = stderr.await.unwrap_or_default().join(" | ");
        if !lines.contains("does not support compression") || attempts.is_empty() {
            return Err(Error::Tool(format!("pg_dump failed ({status}): {lines}")));
        }
        tracing::info!("this pg_dump cannot compress with zstd; using gzip");
    };
    let toc = match std::fs::File::open(target.join("toc.dat")).and_then(DirectoryToc::read) {
        Ok(toc) => Ok(toc),
        Err(e) => Err(format!("cannot read the dump's toc.dat: {e}")),
    };
    let mut files = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&target)
        .map_err(|e| Error::io(format!("cannot list {}", target.display()), e))?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    names.sort();
    let mut stored = 0u64;
    let mut failures = Vec::new();
    let mut s3_ok = s3.is_some();
    let mut tables = Vec::new();
    for name in &names {
        let path = target.join(name);
        let holds_data = toc.as_ref().ok().and_then(|t| t.table_for(name)).is_some();
        let data_compression = holds_data.then(|| {
            if name.ends_with(".gz") {
                Compression::Gzip(6)
            } else if name.ends_with(".zst") {
                Compression::Zstd(3)
            } else {
                Compression::None
            }
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let reading = read_dump_file(path.clone(), data_compression, s3_ok.then_some(tx));
        if let Some(store) = s3
            && s3_ok
        {
            let key = store.key(options.tier, &format!("{artifact}/{name}"));
            let sent = async {
                let mut up = Upload::start(store, key, options.part_size).await?;
                while let Some(chunk) = rx.recv().await {
                    up.write(&chunk).await?;
                }
                up.finish().await
            }
            .await;
            if let Err(e) = sent {
                failures.push(e.to_string());
                s3_ok = false;
            }
        }
        drop(rx);
        let (bytes, sha256, hash) = tokio::task::spawn_blocking(move || reading.join())
            .await
            .map_err(|e| Error::Tool(e.to_string()))?
            .map_err(|_| Error::Tool("reading the dump stopped".into()))?
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if let (Ok(toc), Some(hash)) = (&toc, hash)
            && let Some(table) = toc.table_data(name, hash)
        {
            tables.push(table);
        }
        stored += bytes;
        files.push(FileEntry { name: name.clone(), bytes, sha256 });
        progress(BackupProgress { dump_bytes: stored, stored_bytes: stored });
    }
    let mut completed = Vec::new();
    if let Some(path) = final_path {
        let done = async {
            store::sync_dir(&target).await?;
            tokio::fs::rename(&target, &path).await?;
            store::sync_dir(path.parent().unwrap_or(Path::new("."))).await
        }
        .await;
        done.map_err(|e| Error::io(format!("cannot finish {}", target.display()), e))?;
        completed.push("local".to_owned());
    }
    if s3_ok {
        completed.push("s3".to_owned());
    }
    let listing: String = files.iter().map(|f| format!("{} {} {}\n", f.sha256, f.bytes, f.name)).collect();
    Ok(Streamed {
        compression,
        dump_bytes: stored,
        stored_bytes: stored,
        sha256: hex::encode(Sha256::digest(listing.as_bytes())),
        files,
        tables: toc.map(|_| tables),
        completed,
        failures,
    })
}
