//! Finding a backup, checking it, and restoring it; `verify` builds on the same steps.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use backup_core::store::{S3Store, Stored};
use chrono::Utc;
use datastores::PostgresConfig;
use datastores::pgadmin::{quote_ident, quote_literal};
use tokio::io::AsyncWriteExt;

pub use backup_core::{Location, Selector, Stores, decompressed};

use backup_core::BackupManifest;

use crate::Error;
use crate::manifest::{Compression, Format, Manifest};
use crate::tools::{Credentials, Tools};

/// A backup found, with its manifest when it has one.
#[derive(Clone, Debug)]
pub struct Found {
    pub manifest: Option<Manifest>,
    pub location: Location,
    pub format: Format,
    pub compression: Compression,
}

impl Found {
    pub fn name(&self) -> String {
        match &self.manifest {
            Some(m) => m.id.clone(),
            None => self.location.to_string(),
        }
    }
}

pub async fn find(stores: &Stores, selector: &Selector, database: Option<&str>) -> Result<Found, Error> {
    let from_stored = |s: Stored<Manifest>| Found {
        format: s.manifest.format,
        compression: s.manifest.compression,
        manifest: Some(s.manifest),
        location: s.location,
    };
    match selector {
        Selector::Latest | Selector::Id(_) => {
            let wanted = |m: &Manifest| database.is_none_or(|d| m.database == d);
            let what = database.map(|d| format!(" of database {d}")).unwrap_or_default();
            Ok(from_stored(backup_core::find_listed(stores, selector, &wanted, &what).await?))
        }
        Selector::Path(path) => {
            if !path.exists() {
                return Err(Error::Invalid(format!("{} does not exist", path.display())));
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let stem = name.split('.').next().unwrap_or(name);
            let manifest_path = path.with_file_name(crate::manifest::manifest_name(stem));
            let manifest = match tokio::fs::read(&manifest_path).await {
                Ok(bytes) => Manifest::from_json_of_kind(&bytes, &manifest_path.display().to_string())?,
                Err(_) => None,
            };
            let (format, compression) = match &manifest {
                Some(m) => (m.format, m.compression),
                None => infer(name)?,
            };
            Ok(Found { manifest, location: Location::Local(path.clone()), format, compression })
        }
        Selector::S3Key(key) => {
            let config = stores.s3.as_ref().ok_or_else(|| Error::Invalid("--from-s3 needs S3_BUCKET".into()))?;
            let s3 = S3Store::new(config).await;
            let full = config.key(key);
            let name = full.rsplit('/').next().unwrap_or(&full).to_owned();
            let stem = name.split('.').next().unwrap_or(&name).to_owned();
            let folder = full.rsplit_once('/').map(|(f, _)| format!("{f}/")).unwrap_or_default();
            let manifest = match s3.get(&format!("{folder}{}", crate::manifest::manifest_name(&stem))).await {
                Ok(bytes) => Manifest::from_json_of_kind(
                    &bytes,
                    &format!("s3://{}/{folder}{stem}.manifest.json", config.bucket),
                )?,
                Err(_) => None,
            };
            let (format, compression) = match &manifest {
                Some(m) => (m.format, m.compression),
                None => infer(&name)?,
            };
            Ok(Found {
                manifest,
                location: Location::S3 { bucket: config.bucket.clone(), key: full },
                format,
                compression,
            })
        }
    }
}

/// Format and compression from a file name without a manifest.
fn infer(name: &str) -> Result<(Format, Compression), Error> {
    let compression = if name.ends_with(".gz") {
        Compression::Gzip(6)
    } else if name.ends_with(".zst") {
        Compression::Zstd(3)
    } else {
        Compression::None
    };
    let format = if name.contains(".sql") {
        Format::Plain
    } else if name.contains(".dump") {
        Format::Custom
    } else if name.ends_with(".dir") {
        Format::Directory
    } else {
        return Err(Error::Invalid(format!(
            "cannot tell the format of {name}: expected .sql[.gz|.zst], .dump[.zst|.gz] or .dir"
        )));
    };
    Ok((format, compression))
}

/// The backup's files on local disk: the artifact itself, or a download into `scratch`.
pub async fn fetch(found: &Found, stores: &Stores, scratch: &Path) -> Result<PathBuf, Error> {
    let files = found.manifest.as_ref().map(|m| m.files.as_slice()).unwrap_or_default();
    Ok(backup_core::fetch(&found.location, files, stores, scratch).await?)
}

/// Checks the stored bytes against the manifest's SHA-256 (each file of a directory backup).
pub async fn check_sha256(found: &Found, path: &Path) -> Result<(), Error> {
    let Some(manifest) = &found.manifest else { return Ok(()) };
    Ok(backup_core::check_sha256(&found.name(), manifest, path).await?)
}

/// Feeds `source` (decompressed on a thread of its own) to the stdin of `command`, and waits.
pub async fn pipe_into(
    mut command: tokio::process::Command,
    mut source: Box<dyn Read + Send>,
    tool: &str,
) -> Result<(), Error> {
    command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| Error::Tool(format!("cannot start {tool}: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| Error::Tool(format!("{tool} has no stdin")))?;
    let stderr = tokio::spawn(crate::backup::tail(child.stderr.take()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(8);
    let reader = std::thread::spawn(move || {
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match source.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut read_error = None;
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(bytes) => {
                if stdin.write_all(&bytes).await.is_err() {
                    break; // The tool stopped reading; its exit status tells why.
                }
            }
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
    }
    drop(rx);
    drop(stdin);
    let status = child.wait().await.map_err(|e| Error::Tool(format!("cannot wait for {tool}: {e}")))?;
    let _ = reader.join();
    let lines = stderr.await.unwrap_or_default();
    if let Some(e) = read_error {
        return Err(Error::io("cannot read the backup (is it damaged?)", e));
    }
    if !status.success() {
        return Err(Error::Tool(format!("{tool} failed ({status}): {}", lines.join(" | "))));
    }
    Ok(())
}

/// Runs a tool to completion; an error carries its stderr.
pub async fn run_tool(mut command: tokio::process::Command, tool: &str) -> Result<String, Error> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let output = command.output().await.map_err(|e| Error::Tool(format!("cannot start {tool}: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(Error::Tool(format!("{tool} failed ({}): {}", output.status, last.join(" | "))));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// How to restore a backup: which one, into which database, and with what consent.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Which backup: the latest of the connection's database, an id, a file (its manifest
    /// beside it, when there is one) or an S3 key.
    pub selector: Selector,
    /// The database to restore into; the connection's database when `None`.
    pub target_db: Option<String>,
    /// Parallel pg_restore jobs for the custom and directory formats (`pg-backup` uses 2); a
    /// compressed custom archive is decompressed to a scratch file first when above 1.
    pub jobs: u32,
    /// Replace a database that is not empty (needs `yes` too).
    pub clean: bool,
    /// Confirms `clean`.
    pub yes: bool,
    /// Terminate other sessions connected to the target.
    pub terminate: bool,
    /// Drop the database a restore replaced, instead of keeping it under a dated name.
    pub drop_old: bool,
    /// Skip restoring ownership (when the roles do not exist on this server).
    pub no_owner: bool,
    /// `maintenance_work_mem` of the restore's sessions (`pg-backup` uses
    /// [`DEFAULT_MAINTENANCE_WORK_MEM`], `1GB`): it makes the index builds that dominate a
    /// restore several times faster, and each parallel job may use that much on the server.
    pub maintenance_work_mem: String,
    /// Where pg_restore and psql are.
    pub tools: Tools,
    /// Where to look for the backup.
    pub stores: Stores,
    /// The database to connect to while databases are created, renamed and dropped (`pg-backup`
    /// uses `postgres`).
    pub maintenance_db: String,
}

/// A table's exact row count.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableCount {
    /// `schema.name`.
    pub table: String,
    /// Its rows, counted with `count(*)`.
    pub rows: i64,
}

/// What a restore did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    /// The backup restored: its id, or its location when it has no manifest.
    pub backup: String,
    /// The database that now holds it.
    pub database: String,
    /// Every table of the restored database, with its exact row count.
    pub tables: Vec<TableCount>,
    /// The rows of all tables.
    pub rows: i64,
    /// Where the database that was replaced is kept, unless it was dropped or there was none.
    pub replaced: Option<String>,
    /// The replaced database was dropped (`drop_old`, or it held no tables).
    pub dropped_old: bool,
    /// What the restored copy was checked against before it took the target's name.
    pub checked_against: String,
    /// How long the restore took, in seconds.
    pub seconds: f64,
}

/// Restores a backup without ever leaving the target half-restored.
///
/// The backup's SHA-256 is checked first. It is then loaded into a new scratch database with the
/// target's encoding, locale, owner, privileges and settings, and checked (every table of the
/// manifest present, with the manifest's exact row counts when it has them). Only then does the
/// scratch database take the target's name, in one transaction that renames the old database
/// away: at every instant the target name holds either the old database or the complete new one.
/// The old database is kept under a dated name (`<target>_old_<time>`) unless `drop_old`; a
/// failed load or check drops the scratch database and leaves the target as it was.
pub async fn restore(pg: &PostgresConfig, options: &RestoreOptions) -> Result<RestoreReport, Error> {
    let started = std::time::Instant::now();
    let found = find(&options.stores, &options.selector, Some(&pg.dbname)).await?;
    // Before anything is downloaded or created: the tools must speak the TLS asked for.
    options.tools.check_tls_of("psql", pg).await?;
    let scratch = tempfile::Builder::new()
        .prefix("pg-backup-restore-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a scratch folder", e))?;
    let path = fetch(&found, &options.stores, scratch.path()).await?;
    check_sha256(&found, &path).await?;
    let target = options.target_db.clone().unwrap_or_else(|| pg.dbname.clone());
    let admin = pg.with_dbname(&options.maintenance_db).connect().await?;
    let existing = inspect_target(pg, &admin, options, &target).await?;

    // The new database gets the old one's properties, or the source's as the backup recorded
    // them, or the server's defaults.
    let properties = existing
        .as_ref()
        .map(|e| e.properties.clone())
        .or_else(|| found.manifest.as_ref().and_then(|m| m.database_properties.clone()));
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let staging = derived_name(&target, &format!("_restore_{stamp}"));
    let create = match &properties {
        Some(p) => p.create_sql(&staging),
        None => format!("CREATE DATABASE {}", quote_ident(&staging)),
    };
    admin
        .batch_execute(&create)
        .await
        .map_err(|e| Error::db(format!("cannot create the scratch database {staging}"), e))?;
    let loaded = async {
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {} IS {}",
                quote_ident(&staging),
                quote_literal(&format!("pg-backup: restore of {} into {target} in progress", found.name()))
            ))
            .await
            .map_err(|e| Error::db("cannot mark the scratch database", e))?;
        let settings = Load {
            jobs: options.jobs,
            no_owner: options.no_owner,
            maintenance_work_mem: options.maintenance_work_mem.clone(),
        };
        load(pg, &found, &path, &staging, &settings, &options.tools, scratch.path()).await?;
        let client = pg.with_dbname(&staging).connect().await?;
        client.batch_execute("ANALYZE").await.map_err(|e| Error::db(format!("cannot analyze {staging}"), e))?;
        let tables = count_all(&client).await?;
        drop(client);
        let checked_against = check_against_manifest(&found, &tables)?;
        if let Some(p) = &properties {
            for statement in p.apply_sql(&staging) {
                admin
                    .batch_execute(&statement)
                    .await
                    .map_err(|e| Error::db(format!("cannot set the database's properties ({statement})"), e))?;
            }
        }
        if properties.as_ref().and_then(|p| p.comment.as_ref()).is_none() {
            admin
                .batch_execute(&format!("COMMENT ON DATABASE {} IS NULL", quote_ident(&staging)))
                .await
                .map_err(|e| Error::db("cannot set the database's comment", e))?;
        }
        Ok::<_, Error>((tables, checked_against))
    }
    .await;
    let (tables, checked_against) = match loaded {
        Ok(done) => done,
        Err(e) => {
            drop_database(&admin, &staging).await;
            return Err(e);
        }
    };

    let old_name = derived_name(&target, &format!("_old_{stamp}"));
    let swapped = swap(&admin, options, &target, &staging, existing.as_ref().map(|_| old_name.as_str())).await;
    if let Err(e) = swapped {
        drop_database(&admin, &staging).await;
        return Err(e);
    }
    let mut report = RestoreReport {
        backup: found.name(),
        database: target.clone(),
        rows: tables.iter().map(|t| t.rows).sum(),
        tables,
        replaced: None,
        dropped_old: false,
        checked_against,
        seconds: 0.0,
    };
    if let Some(old) = existing {
        if options.drop_old || old.objects == 0 {
            admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&old_name))).await.map_err(
                |e| {
                    Error::db(
                        format!("the restore is complete, but the old database {old_name} could not be dropped"),
                        e,
                    )
                },
            )?;
            report.dropped_old = true;
        } else {
            let note = format!(
                "pg-backup: {target} as it was before the restore of {} at {}; drop it when no longer needed \
                 (pg-backup prune --old-databases)",
                report.backup,
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            admin
                .batch_execute(&format!("COMMENT ON DATABASE {} IS {}", quote_ident(&old_name), quote_literal(&note)))
                .await
                .map_err(|e| Error::db("cannot mark the old database", e))?;
            report.replaced = Some(old_name);
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Exact row counts of every table.
pub async fn count_all(client: &datastores::tokio_postgres::Client) -> Result<Vec<TableCount>, Error> {
    let mut out = Vec::new();
    for (schema, name, _) in crate::backup::user_tables(client).await? {
        let rows = crate::backup::count_rows(client, &schema, &name).await?;
        out.push(TableCount { table: format!("{schema}.{name}"), rows });
    }
    Ok(out)
}

/// The comment that marks a database kept by a restore, for `prune --old-databases`.
pub const OLD_DATABASE_MARK: &str = "pg-backup: ";

/// `<base><suffix>`, cut to PostgreSQL's 63 bytes by shortening `base`.
fn derived_name(base: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &base[..cut])
}

/// What the target holds before the restore.
struct Existing {
    properties: datastores::pgadmin::DatabaseProperties,
    /// Tables, views and sequences that no extension owns.
    objects: i64,
}

/// Refuses, before any work, what the restore would not be allowed to finish: a non-empty target
/// without `--clean --yes`, or other sessions without `--terminate-connections`.
async fn inspect_target(
    pg: &PostgresConfig,
    admin: &datastores::tokio_postgres::Client,
    options: &RestoreOptions,
    target: &str,
) -> Result<Option<Existing>, Error> {
    let Some(properties) = datastores::pgadmin::DatabaseProperties::read(admin, target).await.map_err(Error::admin)?
    else {
        return Ok(None);
    };
    let objects = {
        let client = pg.with_dbname(target).connect().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
                 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')",
                &[],
            )
            .await
            .map_err(|e| Error::db("cannot inspect the target database", e))?;
        row.get::<_, i64>(0)
    };
    if objects > 0 && !(options.clean && options.yes) {
        return Err(Error::NeedsConsent(format!(
            "database {target:?} is not empty ({objects} tables, views or sequences); restoring would replace it. \
             Pass --clean --yes to replace it (the old database is kept under a dated name unless --drop-old), or \
             --target-db to restore elsewhere"
        )));
    }
    let sessions = other_sessions(admin, target).await?;
    if sessions > 0 && !options.terminate {
        return Err(Error::NeedsConsent(format!(
            "{sessions} other session(s) are connected to {target:?}; close them or pass --terminate-connections"
        )));
    }
    Ok(Some(Existing { properties, objects }))
}

/// Other sessions connected to `database`. A session this process has just closed can linger for
/// a moment on the server, so a non-zero count is looked at again for up to a second.
async fn other_sessions(admin: &datastores::tokio_postgres::Client, database: &str) -> Result<i64, Error> {
    let mut count = 0;
    for _ in 0..10 {
        count = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .await
            .map_err(|e| Error::db("cannot count sessions", e))?
            .get(0);
        if count == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(count)
}

/// Gives `staging` the target's name. With an existing target, both renames run in one
/// transaction, so the name never points at nothing or at a half-restored database.
async fn swap(
    admin: &datastores::tokio_postgres::Client,
    options: &RestoreOptions,
    target: &str,
    staging: &str,
    old_name: Option<&str>,
) -> Result<(), Error> {
    let script = match old_name {
        None => format!("ALTER DATABASE {} RENAME TO {}", quote_ident(staging), quote_ident(target)),
        Some(old_name) => format!(
            "BEGIN; ALTER DATABASE {t} RENAME TO {o}; ALTER DATABASE {s} RENAME TO {t}; COMMIT;",
            t = quote_ident(target),
            o = quote_ident(old_name),
            s = quote_ident(staging)
        ),
    };
    // A rename needs the database to itself. Our own sessions, just closed, may linger for a
    // moment, and others may connect between the termination and the rename: try a few times.
    let mut attempt = 0;
    loop {
        attempt += 1;
        if options.terminate {
            admin
                .query(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&target],
                )
                .await
                .map_err(|e| Error::db(format!("cannot terminate the sessions of {target}"), e))?;
        }
        match admin.batch_execute(&script).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let _ = admin.batch_execute("ROLLBACK").await;
                let busy = e.code() == Some(&datastores::tokio_postgres::error::SqlState::OBJECT_IN_USE);
                if busy && attempt < 10 {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                let hint = if busy && !options.terminate {
                    " (sessions connected meanwhile: pass --terminate-connections)"
                } else {
                    ""
                };
                return Err(Error::db(format!("cannot swap {staging} in for {target}{hint}"), e));
            }
        }
    }
}

async fn drop_database(admin: &datastores::tokio_postgres::Client, name: &str) {
    if let Err(e) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))).await {
        tracing::warn!(database = name, error = %datastores::error_chain(&e), "cannot drop the scratch database");
    }
}

/// Compares what was restored with the manifest: the same tables, and the same row counts when
/// the manifest has exact ones. Returns what the restore was checked against.
pub(crate) fn check_against_manifest(found: &Found, restored: &[TableCount]) -> Result<String, Error> {
    let Some(manifest) = &found.manifest else {
        return Ok("nothing (the backup has no manifest)".into());
    };
    let restored: std::collections::BTreeMap<&str, i64> = restored.iter().map(|t| (t.table.as_str(), t.rows)).collect();
    let mut problems = Vec::new();
    let mut exact = true;
    for table in &manifest.tables {
        let name = format!("{}.{}", table.schema, table.name);
        match (restored.get(name.as_str()), table.rows) {
            (None, _) => problems.push(format!("{name}: in the backup, missing from the restore")),
            (Some(r), Some(expected)) if *r != expected => {
                problems.push(format!("{name}: {r} rows restored, the backup holds {expected}"))
            }
            (Some(_), None) => exact = false,
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(if exact { "the manifest's exact row counts".into() } else { "the manifest's list of tables".into() })
    } else {
        Err(Error::Verify { backup: found.name(), problems })
    }
}

/// How to load a backup. A large `maintenance_work_mem` makes the index builds that dominate a
/// restore several times faster (an HNSW index over 125,000 vectors of 256 dimensions: 199 s with
/// the server's default 64MB, 57 s with 1GB); each parallel job may use that much on the server.
#[derive(Clone, Debug)]
pub struct Load {
    pub jobs: u32,
    pub no_owner: bool,
    pub maintenance_work_mem: String,
}

/// The `maintenance_work_mem` restores use unless told otherwise.
pub const DEFAULT_MAINTENANCE_WORK_MEM: &str = "1GB";

/// Loads the backup into `target` with the tool its format needs.
pub async fn load(
    pg: &PostgresConfig,
    found: &Found,
    path: &Path,
    target: &str,
    settings: &Load,
    tools: &Tools,
    scratch: &Path,
) -> Result<(), Error> {
    let (jobs, no_owner) = (settings.jobs, settings.no_owner);
    let mut target_pg = pg.with_dbname(target);
    let memory = format!("-c maintenance_work_mem={}", settings.maintenance_work_mem);
    target_pg.options = Some(match &target_pg.options {
        Some(options) => format!("{options} {memory}"),
        None => memory,
    });
    let credentials = Credentials::new(&target_pg)?;
    let restore_tool = |file: Option<&Path>| {
        let mut command = credentials.command(tools, "pg_restore", &target_pg);
        command.args(["--no-password", "--exit-on-error", &format!("--dbname={target}")]);
        if no_owner {
            command.arg("--no-owner");
        }
        if let Some(file) = file {
            command.arg(format!("--jobs={}", jobs.max(1))).arg(file);
        }
        command
    };
    match found.format {
        Format::Directory => {
            run_tool(restore_tool(Some(path)), "pg_restore").await?;
        }
        Format::Custom if jobs > 1 => {
            // Parallel restore needs a seekable archive: decompress to scratch first.
            let plain = match found.compression {
                Compression::None => path.to_owned(),
                compression => {
                    let out = scratch.join("archive.dump");
                    let (source, out_path) = (path.to_owned(), out.clone());
                    tokio::task::spawn_blocking(move || -> Result<(), Error> {
                        let mut reader = decompressed(&source, compression)?;
                        let mut file = std::fs::File::create(&out_path)
                            .map_err(|e| Error::io(format!("cannot create {}", out_path.display()), e))?;
                        std::io::copy(&mut reader, &mut file)
                            .map_err(|e| Error::io("cannot decompress the backup (is it damaged?)", e))?;
                        Ok(())
                    })
                    .await
                    .map_err(|e| Error::Tool(e.to_string()))??;
                    out
                }
            };
            run_tool(restore_tool(Some(&plain)), "pg_restore").await?;
        }
        Format::Custom => {
            pipe_into(restore_tool(None), decompressed(path, found.compression)?, "pg_restore").await?;
        }
        Format::Plain => {
            let mut command = credentials.command(tools, "psql", &target_pg);
            command.args(["--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", &format!("--dbname={target}")]);
            pipe_into(command, decompressed(path, found.compression)?, "psql").await?;
        }
    }
    Ok(())
}
