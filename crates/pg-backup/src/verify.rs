//! `verify`: the checksum, the archive's structure, and, with `compare`, a full restore into a
//! scratch database whose row counts (and content checksums) must match.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use datastores::PostgresConfig;
use datastores::pgadmin::quote_ident;
use serde::Serialize;

use crate::Error;
use crate::manifest::Format;
use crate::restore::Location;
use crate::restore::{
    Found, Load, Selector, Stores, check_sha256, count_all, decompressed, fetch, find, load, pipe_into, run_tool,
};
use crate::tools::{Credentials, Tools};

/// How to verify a backup.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Which backup: the latest of the connection's database, an id, a file or an S3 key.
    pub selector: Selector,
    /// Restore into a scratch database and compare row counts.
    pub compare: bool,
    /// With `compare`, compare each table's content too: the hash of its rows (see
    /// [`RowHash`](crate::RowHash)) against the manifest's.
    pub checksums: bool,
    /// With `compare`, compare with the live database instead of the manifest (for backups
    /// whose manifest has no exact counts). A busy database differs from any backup of it.
    pub against_live: bool,
    /// Parallel pg_restore jobs of the scratch restore (`compare`).
    pub jobs: u32,
    /// `maintenance_work_mem` of the scratch restore's sessions, as
    /// [`RestoreOptions::maintenance_work_mem`](crate::RestoreOptions::maintenance_work_mem).
    pub maintenance_work_mem: String,
    /// Where pg_restore and psql are.
    pub tools: Tools,
    /// Where to look for the backup.
    pub stores: Stores,
    /// The database to connect to while the scratch database is created and dropped
    /// (`pg-backup` uses `postgres`).
    pub maintenance_db: String,
}

/// What a verification that passed checked.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The backup verified: its id, or its location when it has no manifest.
    pub backup: String,
    /// One line per check passed, in the order they ran.
    pub checks: Vec<String>,
    /// What the counts were compared with: the manifest's exact counts or the live database.
    pub compared_with: Option<String>,
    /// Tables whose counts (and hashes) were compared; 0 without `compare`.
    pub tables_compared: usize,
    /// Scratch databases left by killed verifies and dropped, or that could not be.
    pub warnings: Vec<String>,
}

/// Verifies a backup; any difference is [`Error::Verify`]. A successful verification is
/// recorded in the manifest, which retention then protects.
pub async fn verify(pg: &PostgresConfig, options: &VerifyOptions) -> Result<VerifyReport, Error> {
    let found = find(&options.stores, &options.selector, Some(&pg.dbname)).await?;
    // A comparison restores through psql and pg_restore: before anything is downloaded or a
    // scratch database created, they must speak the TLS asked for.
    if options.compare {
        options.tools.check_tls_of("psql", pg).await?;
    }
    let scratch = tempfile::Builder::new()
        .prefix("pg-backup-verify-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a scratch folder", e))?;
    let path = fetch(&found, &options.stores, scratch.path()).await?;
    let mut report = VerifyReport {
        backup: found.name(),
        checks: Vec::new(),
        compared_with: None,
        tables_compared: 0,
        warnings: Vec::new(),
    };
    let checked = async {
        if found.manifest.is_some() {
            check_sha256(&found, &path).await?;
            report.checks.push("SHA-256 matches the manifest".into());
        }
        structure(pg, &found, &path, &options.tools).await?;
        report.checks.push(match found.format {
            Format::Plain => "the SQL script is complete".into(),
            _ => "pg_restore reads the archive's table of contents".into(),
        });
        if let Some(check) = scan_against_manifest(&found, &path).await? {
            report.checks.push(check);
        }
        if options.compare {
            compare(pg, options, &found, &path, scratch.path(), &mut report).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = checked {
        // A backup that prune deleted under our feet is not a damaged backup.
        if let (Location::Local(_), Some(manifest)) = (&found.location, &found.manifest)
            && let Location::Local(artifact) = &found.location
            && !artifact.with_file_name(manifest.manifest_name()).exists()
        {
            return Err(Error::Conflict(format!("{} was deleted (pruned) while it was verified", manifest.id)));
        }
        return Err(e);
    }
    let method = if options.compare { "restore" } else { "structure" };
    record(&options.stores, &found, method).await?;
    Ok(report)
}

/// The archive can be read to its end: `pg_restore --list`, or the closing line of a SQL dump.
async fn structure(pg: &PostgresConfig, found: &Found, path: &std::path::Path, tools: &Tools) -> Result<(), Error> {
    let credentials = Credentials::new(pg)?;
    let fail =
        |e: Error| Error::Verify { backup: found.name(), problems: vec![format!("the archive is unreadable: {e}")] };
    match found.format {
        Format::Directory => {
            let mut command = credentials.command(tools, "pg_restore", pg);
            command.arg("--list").arg(path);
            run_tool(command, "pg_restore").await.map_err(fail)?;
        }
        Format::Custom => {
            let mut command = credentials.command(tools, "pg_restore", pg);
            command.arg("--list");
            pipe_into(command, decompressed(path, found.compression)?, "pg_restore").await.map_err(fail)?;
        }
        Format::Plain => {
            let (path, compression) = (path.to_owned(), found.compression);
            let complete = tokio::task::spawn_blocking(move || -> Result<bool, Error> {
                use std::io::Read;
                let mut reader = decompressed(&path, compression)?;
                let mut tail = Vec::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = reader
                        .read(&mut buf)
                        .map_err(|e| Error::io("cannot decompress the backup (is it damaged?)", e))?;
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 4096 {
                        tail.drain(..tail.len() - 4096);
                    }
                }
                Ok(String::from_utf8_lossy(&tail).contains("PostgreSQL database dump complete"))
            })
            .await
            .map_err(|e| Error::Tool(e.to_string()))?
            .map_err(fail)?;
            if !complete {
                return Err(Error::Verify {
                    backup: found.name(),
                    problems: vec!["the SQL script ends before pg_dump's closing line: it is truncated".into()],
                });
            }
        }
    }
    Ok(())
}

async fn compare(
    pg: &PostgresConfig,
    options: &VerifyOptions,
    found: &Found,
    path: &std::path::Path,
    scratch: &std::path::Path,
    report: &mut VerifyReport,
) -> Result<(), Error> {
    let admin = pg.with_dbname(&options.maintenance_db).connect().await?;
    report.warnings.extend(sweep_scratch(&admin, Utc::now()).await?);
    let name = backup_core::scratch_name(SCRATCH_PREFIX, Utc::now());
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await
        .map_err(|e| Error::db("cannot create the scratch database", e))?;
    // The mark a later sweep looks for, beside the name's shape.
    let marked = admin
        .batch_execute(&format!("COMMENT ON DATABASE {} IS '{SCRATCH_MARK}'", quote_ident(&name)))
        .await
        .map_err(|e| Error::db("cannot mark the scratch database", e));
    if let Err(e) = marked {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&name))).await;
        return Err(e);
    }
    let result = async {
        let settings =
            Load { jobs: options.jobs, no_owner: true, maintenance_work_mem: options.maintenance_work_mem.clone() };
        load(pg, found, path, &name, &settings, &options.tools, scratch).await?;
        let restored_client = pg.with_dbname(&name).connect().await?;
        restored_client
            .batch_execute("ANALYZE")
            .await
            .map_err(|e| Error::db("cannot analyze the scratch database", e))?;
        let restored: BTreeMap<String, i64> =
            count_all(&restored_client).await?.into_iter().map(|t| (t.table, t.rows)).collect();
        let source_db = found.manifest.as_ref().map(|m| m.database.clone()).unwrap_or_else(|| pg.dbname.clone());
        let manifest_counts: Option<BTreeMap<String, i64>> =
            found.manifest.as_ref().filter(|m| !m.tables.is_empty()).and_then(|m| {
                m.tables.iter().map(|t| t.rows.map(|r| (format!("{}.{}", t.schema, t.name), r))).collect()
            });
        let live = if options.against_live { Some(pg.with_dbname(&source_db).connect().await?) } else { None };
        let (expected, against) = match (&live, manifest_counts) {
            (Some(live), _) => (
                count_all(live).await?.into_iter().map(|t| (t.table, t.rows)).collect::<BTreeMap<_, _>>(),
                format!("the live database {source_db}"),
            ),
            (None, Some(counts)) => (counts, "the manifest's exact counts".to_owned()),
            (None, None) => {
                return Err(Error::Invalid(format!(
                    "{} records no exact row counts (it was made by an older pg-backup, or has no manifest): \
                     pass --against-live to compare with the live database {source_db} instead (a busy database \
                     differs from any backup of it)",
                    found.name()
                )));
            }
        };
        let mut problems = Vec::new();
        for (table, rows) in &expected {
            match restored.get(table) {
                None => problems.push(format!("{table}: missing from the restore")),
                Some(r) if r != rows => problems.push(format!("{table}: {r} rows restored, {rows} expected")),
                Some(_) => {}
            }
        }
        for table in restored.keys().filter(|t| !expected.contains_key(*t)) {
            problems.push(format!("{table}: restored but not expected"));
        }
        if options.checksums {
            let tables: Vec<(String, Option<String>, Option<String>)> = match &found.manifest {
                Some(m) if live.is_none() => m
                    .tables
                    .iter()
                    .map(|t| (format!("{}.{}", t.schema, t.name), t.columns.clone(), t.content_hash.clone()))
                    .collect(),
                _ => expected.keys().map(|t| (t.clone(), None, None)).collect(),
            };
            for (table, columns, recorded) in tables {
                if !restored.contains_key(&table) {
                    continue;
                }
                let got = table_hash(&restored_client, &table, columns.as_deref()).await?;
                let want = match (&live, recorded) {
                    (Some(live), _) => table_hash(live, &table, columns.as_deref()).await?,
                    (None, Some(hash)) => hash,
                    (None, None) => {
                        return Err(Error::Invalid(format!(
                            "{} records no content hash for {table}: pass --against-live to compare the content with \
                             the live database",
                            found.name()
                        )));
                    }
                };
                if got != want {
                    problems.push(format!("{table}: the restored rows differ from {against}'s (content hash)"));
                }
            }
        }
        report.compared_with = Some(against);
        report.tables_compared = expected.len();
        if problems.is_empty() { Ok(()) } else { Err(Error::Verify { backup: found.name(), problems }) }
    }
    .await;
    let dropped = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name))).await;
    result?;
    dropped.map_err(|e| Error::db("cannot drop the scratch database", e))?;
    report.checks.push(format!("restored into a scratch database; {} tables match", report.tables_compared));
    Ok(())
}

const SCRATCH_PREFIX: &str = "pgbackup_verify_";
/// The comment of a scratch database.
pub(crate) const SCRATCH_MARK: &str = "pg-backup: scratch database of verify --compare";

/// Drops the scratch databases of verifies killed more than a day before `now`: a name of the
/// scratch shape and the scratch mark. One still in use is not forced: it stays, with a warning.
async fn sweep_scratch(admin: &datastores::tokio_postgres::Client, now: DateTime<Utc>) -> Result<Vec<String>, Error> {
    let rows = admin
        .query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname::text, $1) \
             AND shobj_description(oid, 'pg_database') = $2",
            &[&SCRATCH_PREFIX, &SCRATCH_MARK],
        )
        .await
        .map_err(|e| Error::db("cannot list the databases", e))?;
    let mut swept = Vec::new();
    for name in rows.iter().map(|r| r.get::<_, String>(0)) {
        if !backup_core::is_stale_scratch(SCRATCH_PREFIX, &name, now) {
            continue;
        }
        let warning = match admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&name))).await {
            Ok(()) => format!("dropped {name}, left by an interrupted verify"),
            Err(e) => Error::db(format!("cannot drop {name}, left by an interrupted verify"), e).to_string(),
        };
        tracing::warn!("{warning}");
        swept.push(warning);
    }
    Ok(swept)
}

fn qualified(table: &str) -> String {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Writes the verification into the manifest, where the backup is stored.
async fn record(stores: &Stores, found: &Found, method: &str) -> Result<(), Error> {
    let Some(manifest) = &found.manifest else { return Ok(()) };
    Ok(backup_core::record_verification(stores, &found.location, manifest, method).await?)
}

/// The rows and content hash of `table` (`schema.name`) as pg_dump would write them: COPY text
/// with pg_dump's session settings, hashed as it streams.
pub(crate) async fn table_hash(
    client: &datastores::tokio_postgres::Client,
    table: &str,
    columns: Option<&str>,
) -> Result<String, Error> {
    use futures::StreamExt;
    client
        .batch_execute(
            "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; SET TimeZone = 'UTC'",
        )
        .await
        .map_err(|e| Error::db("cannot set up the session", e))?;
    let columns = columns.map(|c| format!(" ({c})")).unwrap_or_default();
    let sql = format!("COPY {}{columns} TO STDOUT", qualified(table));
    let stream = client.copy_out(&sql).await.map_err(|e| Error::db(format!("cannot read {table}"), e))?;
    futures::pin_mut!(stream);
    let mut hash = crate::archive::RowHash::default();
    while let Some(chunk) = stream.next().await {
        hash.feed(&chunk.map_err(|e| Error::db(format!("cannot read {table}"), e))?);
    }
    Ok(hash.finish().1)
}

/// Reads the archive's tables again and compares their rows and hashes with the manifest: the
/// stored backup holds what the manifest says. `None` when the manifest has nothing to compare.
async fn scan_against_manifest(found: &Found, path: &std::path::Path) -> Result<Option<String>, Error> {
    let Some(manifest) = &found.manifest else { return Ok(None) };
    if manifest.tables.iter().all(|t| t.content_hash.is_none()) {
        return Ok(None);
    }
    let (format, compression, path) = (found.format, found.compression, path.to_owned());
    let scanned = tokio::task::spawn_blocking(move || crate::archive::scan_stored(format, compression, &path))
        .await
        .map_err(|e| Error::Tool(e.to_string()))?
        .map_err(|e| Error::Verify {
            backup: found.name(),
            problems: vec![format!("the archive cannot be read: {e}")],
        })?;
    let mut problems = Vec::new();
    for table in manifest.tables.iter().filter(|t| t.content_hash.is_some()) {
        match scanned.iter().find(|s| s.schema == table.schema && s.name == table.name) {
            None => problems.push(format!("{}.{}: in the manifest, not in the archive", table.schema, table.name)),
            Some(s) if Some(s.rows) != table.rows || Some(&s.content_hash) != table.content_hash.as_ref() => problems
                .push(format!(
                    "{}.{}: the archive holds {} rows (hash {}), the manifest says {} (hash {})",
                    table.schema,
                    table.name,
                    s.rows,
                    s.content_hash,
                    table.rows.unwrap_or(-1),
                    table.content_hash.as_deref().unwrap_or("-")
                )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(Some(format!("the archive holds the manifest's {} tables, row for row", manifest.tables.len())))
    } else {
        Err(Error::Verify { backup: found.name(), problems })
    }
}
