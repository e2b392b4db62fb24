//! The commands: migrate, info, validate, repair, baseline, clean, and the dry run of migrate.
//! The order of `migrate` is fixed: lock, ensure schemas and history table, refuse on failed
//! migrations, validate, prepare every pending script (placeholders, splitting, transaction
//! checks), then apply them one by one, each in its own transaction unless marked otherwise.

use std::collections::BTreeMap;
use std::time::Instant;

use datastores::PostgresConfig;
use datastores::tokio_postgres::types::Type;
use datastores::tokio_postgres::{Client, error::ErrorPosition};
use futures::SinkExt;
use serde::Serialize;

use crate::config::MigrateConfig;
use crate::error::{MigrateError, server_message};
use crate::history::{self, Applied, NewRow, TYPE_BASELINE, TYPE_SCHEMA, TYPE_SQL, Table};
use crate::lock::MigrationLock;
use crate::placeholders::Placeholders;
use crate::plan::{InfoRow, IssueKind, plan};
use crate::source::{Event, Kind, Script};
use crate::sql::{self, Statement, quote_ident, quote_literal};

/// A connection set up for migrating: the default schema first on the `search_path`.
struct Session {
    client: Client,
    user: String,
    database: String,
    application_name: String,
    /// To stop a running statement when the migration lock is lost.
    cancel: datastores::tokio_postgres::CancelToken,
    pg: PostgresConfig,
    /// Set again inside each migration's transaction: behind a transaction-pooling proxy the
    /// session's own setting may be on another server connection.
    search_path: String,
}

async fn open(pg: &PostgresConfig, config: &MigrateConfig) -> Result<Session, MigrateError> {
    let mut attempt = 0;
    let client = loop {
        match pg.connect().await {
            Ok(client) => break client,
            Err(e) if attempt < config.connect_retries => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "cannot connect, retrying");
                tokio::time::sleep(config.connect_retries_interval).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let row = client
        .query_typed_one(
            "SELECT current_user::text, current_database()::text, current_setting('search_path'), \
             current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map_err(|e| MigrateError::db("cannot read the session", e))?;
    let (user, database, search_path, version): (String, String, String, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let path = format!("{}, {search_path}", quote_ident(&config.default_schema));
    client
        .query_typed_one("SELECT set_config('search_path', $1, false)", &[(&path, Type::TEXT)])
        .await
        .map_err(|e| MigrateError::db("cannot set the search_path", e))?;
    if version >= 140_000 {
        // When this process dies (a Job evicted mid-migration), the server stops the statement
        // within a second instead of running it to the end on its own, as it would otherwise:
        // an interrupted CREATE INDEX CONCURRENTLY then leaves an INVALID index that the next
        // run finds, not a build still going on.
        client
            .batch_execute("SET client_connection_check_interval = '1s'")
            .await
            .map_err(|e| MigrateError::db("cannot set client_connection_check_interval", e))?;
    }
    let cancel = client.cancel_token();
    Ok(Session {
        client,
        user,
        database,
        application_name: pg.application_name.clone(),
        cancel,
        pg: pg.clone(),
        search_path: path,
    })
}

impl Session {
    fn installed_by<'a>(&'a self, config: &'a MigrateConfig) -> &'a str {
        config.installed_by.as_deref().unwrap_or(&self.user)
    }
}

/// One migration that ran.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedScript {
    /// The script's path relative to its location, as the history records it.
    pub script: String,
    /// Its version as the history stores it (`1.2`); `None` for a repeatable migration.
    pub version: Option<String>,
    /// Its description, from the file name.
    pub description: String,
    /// How long it ran, in milliseconds.
    pub execution_time_ms: i32,
    /// Whether it ran in a transaction of its own.
    pub transactional: bool,
}

/// What `migrate` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MigrateReport {
    /// The migrations applied by this run, in order (callbacks are not listed).
    pub applied: Vec<AppliedScript>,
    /// The schema version before the run (the highest applied or baselined version); `None` on
    /// an empty history.
    pub version_before: Option<String>,
    /// The schema version after the run; equal to `version_before` when nothing was pending.
    pub version_after: Option<String>,
    /// Schemas of `MigrateConfig::schemas` that did not exist and were created.
    pub created_schemas: Vec<String>,
    /// The baseline version recorded, when `baseline_on_migrate` started the history of a
    /// non-empty schema.
    pub baselined: Option<String>,
    /// Things the caller should show: a transaction-pooling proxy, for one.
    pub warnings: Vec<String>,
    /// Migrations another migrator applied while this one waited (possible only where the lock
    /// does not hold, behind a transaction-pooling proxy): each was checked against the history
    /// inside its own transaction and not run twice.
    pub skipped: Vec<String>,
    /// INVALID indexes left by an interrupted `CREATE INDEX CONCURRENTLY`, dropped (with
    /// consent) so that their migration builds them again.
    pub rebuilt_indexes: Vec<String>,
}

fn lock_lost(script: &str) -> MigrateError {
    MigrateError::Conflict(format!(
        "the connection holding the migration lock was lost while {script} was to run or running; it was stopped \
         (another migrator may have taken the lock). Run migrate again"
    ))
}

/// Statements still running from an earlier migrator of this database: a process killed during
/// a migration leaves its statement to the server, which goes on with it (before PostgreSQL 14,
/// or until it notices). Waits for them within the lock timeout; else names them.
async fn wait_for_orphans(session: &Session, lock: &MigrationLock, config: &MigrateConfig) -> Result<(), MigrateError> {
    let deadline = Instant::now() + config.lock_timeout;
    let mut announced = false;
    loop {
        let rows = session
            .client
            .query_typed(
                "SELECT pid, coalesce(extract(epoch FROM now() - query_start)::int, 0), left(query, 200) \
                 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND pid <> $1 AND application_name = $2 AND backend_type = 'client backend' \
                 AND state NOT IN ('idle')",
                &[(&lock.pid, Type::INT4), (&session.application_name, Type::TEXT)],
            )
            .await
            .map_err(|e| MigrateError::db("cannot look for statements of an earlier migrator", e))?;
        if rows.is_empty() {
            return Ok(());
        }
        let running: Vec<String> = rows
            .iter()
            .map(|r| {
                let (pid, seconds, query): (i32, i32, String) = (r.get(0), r.get(1), r.get(2));
                format!(
                    "pid {pid}, running for {seconds} s: {}",
                    query.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            })
            .collect();
        if Instant::now() >= deadline {
            return Err(MigrateError::Conflict(format!(
                "statements of an earlier migrator ({} sessions named {:?}) are still running: {}. Wait for them, or \
                 stop them with SELECT pg_cancel_backend(pid)",
                running.len(),
                session.application_name,
                running.join("; ")
            )));
        }
        if !announced {
            announced = true;
            tracing::warn!(running = %running.join("; "), "waiting for statements of an earlier migrator to finish");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// An INVALID index of a pending `CREATE INDEX CONCURRENTLY`: what a migrator killed during the
/// build leaves. Dropped (concurrently) with `drop_invalid_indexes`, so that the migration
/// builds it again; otherwise named in the error.
async fn check_invalid_indexes(
    session: &Session,
    config: &MigrateConfig,
    script: &Script,
    statements: &[Statement],
) -> Result<Vec<String>, MigrateError> {
    let mut dropped = Vec::new();
    for statement in statements {
        let Some((schema, name)) = sql::concurrent_index(statement) else { continue };
        let schema = schema.unwrap_or_else(|| config.default_schema.clone());
        let row = session
            .client
            .query_typed_opt(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1 AND n.nspname = $2",
                &[(&name, Type::TEXT), (&schema, Type::TEXT)],
            )
            .await
            .map_err(|e| MigrateError::db(format!("cannot look up index {name}"), e))?;
        if row.is_none_or(|r| r.get::<_, bool>(0)) {
            continue;
        }
        let qualified = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        if !config.drop_invalid_indexes {
            return Err(MigrateError::NeedsConsent(format!(
                "{} line {}: index {qualified} exists and is INVALID: an earlier CREATE INDEX CONCURRENTLY of this \
                 migration was interrupted. Run migrate with --drop-invalid-indexes (PG_MIGRATE_DROP_INVALID_INDEXES=true) \
                 to drop it concurrently and build it again, or drop it yourself",
                script.name, statement.line
            )));
        }
        tracing::warn!(index = %qualified, "dropping the INVALID index of an interrupted build, to build it again");
        session
            .client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"))
            .await
            .map_err(|e| MigrateError::db(format!("cannot drop the invalid index {qualified}"), e))?;
        dropped.push(qualified);
    }
    Ok(dropped)
}

/// Applies the pending migrations of `scripts` (as [`load`](crate::load) returns them) to the
/// database `pg` points at. In this order: takes the migration lock, creates missing schemas and
/// the history table, refuses to go on over a failed migration (and, with `validate_on_migrate`,
/// over any difference between the history and the scripts), checks every pending script
/// (placeholders, statements, transaction mode) before the first runs, then runs the
/// `beforeMigrate` callbacks, each pending migration in a transaction of its own unless it must
/// run outside one, and the `afterMigrate` callbacks.
///
/// ```rust,no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use datastores::{PostgresConfig, Settings, Source};
///
/// let settings = Settings::new().layer(Source::Environment, [("DATABASE_URL", "postgres://app@db:5432/app")]);
/// let pg = PostgresConfig::from_settings(&settings)?;
/// let config = pg_migrate::MigrateConfig::from_settings(&settings)?;
/// let scripts = pg_migrate::load(&config.locations, config.encoding)?;
/// let report = pg_migrate::migrate(&pg, &config, &scripts).await?;
/// for applied in &report.applied {
///     println!("{} in {} ms", applied.script, applied.execution_time_ms);
/// }
/// # Ok(()) }
/// ```
pub async fn migrate(
    pg: &PostgresConfig,
    config: &MigrateConfig,
    scripts: &[Script],
) -> Result<MigrateReport, MigrateError> {
    let (mut report, warning) =
        locked(pg, config, async |session, table, lock| migrate_locked(session, config, scripts, table, lock).await)
            .await?;
    report.warnings.extend(warning);
    Ok(report)
}

/// Opens a session and runs `work` holding the migration lock. A transaction that `work` leaves
/// open on error is rolled back, and the lock is released whatever happens. Returns the lock's
/// warning (a transaction-pooling proxy) with the result.
async fn locked<T>(
    pg: &PostgresConfig,
    config: &MigrateConfig,
    work: impl AsyncFnOnce(&Session, &Table, &MigrationLock) -> Result<T, MigrateError>,
) -> Result<(T, Option<String>), MigrateError> {
    let session = open(pg, config).await?;
    let table = config.history_table();
    let lock = MigrationLock::acquire(pg, &table, config.lock_timeout).await?;
    let warning = lock.warning.clone();
    let result = work(&session, &table, &lock).await;
    if result.is_err() {
        // Harmless when no transaction is open.
        let _ = session.client.batch_execute("ROLLBACK").await;
    }
    let released = lock.release().await;
    let value = result?;
    released?;
    Ok((value, warning))
}

async fn migrate_locked(
    session: &Session,
    config: &MigrateConfig,
    scripts: &[Script],
    table: &Table,
    lock: &MigrationLock,
) -> Result<MigrateReport, MigrateError> {
    let mut report = MigrateReport::default();
    let placeholders = placeholder_values(config, &session.user, &session.database);
    let mut applied = history::read(&session.client, table).await?;
    if applied.iter().all(|r| r.kind == TYPE_SCHEMA) {
        // Check every script before writing anything, the history table included.
        for script in plan(scripts, &applied, config).pending {
            prepare(script, config, &placeholders)?;
        }
        // In one transaction holding a transaction-level advisory lock: that lock holds even
        // behind a transaction-pooling proxy, where two migrators may both pass the session lock.
        let key = crate::checksum::flyway_lock_key(&table.schema, &table.name).wrapping_add(1);
        session.client.batch_execute("BEGIN").await.map_err(|e| MigrateError::db("cannot begin", e))?;
        session
            .client
            .query_typed("SELECT pg_advisory_xact_lock($1)", &[(&key, Type::INT8)])
            .await
            .map_err(|e| MigrateError::db("cannot lock the history table's creation", e))?;
        prepare_history(session, config, table, &mut report).await?;
        session.client.batch_execute("COMMIT").await.map_err(|e| MigrateError::db("cannot create the history", e))?;
        applied = history::read(&session.client, table).await?;
    }
    let plan = plan(scripts, &applied, config);
    report.version_before = plan.current.as_ref().map(|v| v.to_string());
    let failed: Vec<String> =
        plan.issues.iter().filter(|i| i.kind == IssueKind::Failed).map(|i| i.message.clone()).collect();
    if !failed.is_empty() {
        return Err(MigrateError::Validation { issues: failed });
    }
    if config.validate_on_migrate {
        let issues: Vec<String> =
            plan.issues.iter().filter(|i| i.kind != IssueKind::Pending).map(|i| i.message.clone()).collect();
        if !issues.is_empty() {
            return Err(MigrateError::Validation { issues });
        }
    }
    let prepared: Vec<(&Script, Vec<Statement>)> = plan
        .pending
        .iter()
        .map(|script| Ok((*script, prepare(script, config, &placeholders)?)))
        .collect::<Result<_, MigrateError>>()?;
    let callbacks = |event: Event| -> Result<Vec<(&Script, Vec<Statement>)>, MigrateError> {
        scripts
            .iter()
            .filter(|s| s.kind == Kind::Callback(event))
            .map(|s| Ok((s, prepare(s, config, &placeholders)?)))
            .collect()
    };
    let (before, after) = (callbacks(Event::BeforeMigrate)?, callbacks(Event::AfterMigrate)?);
    if lock.warning.is_some()
        && let Some((script, _)) = prepared.iter().find(|(s, _)| !s.transactional)
    {
        return Err(MigrateError::Conflict(format!(
            "{} runs outside a transaction, and the migration lock does not hold on this connection (a \
             transaction-pooling proxy?): two migrators could both run it. Connect directly to PostgreSQL, or \
             through a session-pooling port, to apply it",
            script.name
        )));
    }
    if lock.warning.is_none() {
        // Behind a transaction-pooling proxy other live migrators run too: nothing to wait for.
        wait_for_orphans(session, lock, config).await?;
    }
    for (script, statements) in prepared.iter().filter(|(s, _)| !s.transactional) {
        report.rebuilt_indexes.extend(check_invalid_indexes(session, config, script, statements).await?);
    }
    for (script, statements) in &before {
        run_callback(&session.client, script, statements).await?;
    }
    let installed_by = session.installed_by(config).to_owned();
    for (script, statements) in prepared {
        if lock.is_lost() {
            return Err(lock_lost(&script.name));
        }
        tracing::info!(script = %script.name, "applying");
        let started = Instant::now();
        let apply = async {
            if script.transactional {
                let path = &session.search_path;
                apply_in_transaction(&session.client, table, script, &statements, &installed_by, path, started).await
            } else {
                let history = Some((table, installed_by.as_str(), session.search_path.as_str()));
                execute_script(&session.client, history, script, &statements, started).await
            }
        };
        let outcome = tokio::select! {
            outcome = apply => outcome,
            () = lock.lost() => {
                // Another migrator may take the lock now: stop the statement that is running.
                let _ = session.cancel.cancel_query(session.pg.tls()?).await;
                Err(lock_lost(&script.name))
            }
        };
        if let Err(MigrateError::AppliedMeanwhile { script }) = &outcome {
            tracing::warn!(script, "applied by another migrator meanwhile; skipped");
            report.skipped.push(script.clone());
            continue;
        }
        if let Err(mut error) = outcome {
            if let MigrateError::Failed { applied, .. } = &mut error {
                *applied = report.applied.iter().map(|a| a.script.clone()).collect();
            }
            return Err(error);
        }
        let ms = millis(started);
        tracing::info!(script = %script.name, ms, "applied");
        report.applied.push(AppliedScript {
            script: script.name.clone(),
            version: script.version().map(|v| v.as_str().to_owned()),
            description: script.description.clone(),
            execution_time_ms: ms,
            transactional: script.transactional,
        });
    }
    for (script, statements) in &after {
        run_callback(&session.client, script, statements).await?;
    }
    let history_after = history::read(&session.client, table).await?;
    report.version_after = plan_current(&history_after);
    Ok(report)
}

/// Runs a callback script (in a transaction unless marked otherwise); it is not recorded.
async fn run_callback(client: &Client, script: &Script, statements: &[Statement]) -> Result<(), MigrateError> {
    tracing::info!(script = %script.name, "running callback");
    execute_script(client, None, script, statements, Instant::now()).await
}

fn plan_current(applied: &[Applied]) -> Option<String> {
    applied
        .iter()
        .filter(|r| r.success && r.kind != TYPE_SCHEMA)
        .filter_map(|r| r.version.as_deref().and_then(|v| crate::version::Version::parse(v).ok()))
        .max()
        .map(|v| v.to_string())
}

/// Creates missing schemas and the history table; refuses (or baselines, when asked) a
/// non-empty schema without history.
async fn prepare_history(
    session: &Session,
    config: &MigrateConfig,
    table: &Table,
    report: &mut MigrateReport,
) -> Result<(), MigrateError> {
    let client = &session.client;
    let mut missing = Vec::new();
    for schema in &config.schemas {
        let row = client
            .query_typed_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[(schema, Type::TEXT)])
            .await
            .map_err(|e| MigrateError::db("cannot look up schemas", e))?;
        if !row.get::<_, bool>(0) {
            missing.push(schema.clone());
        }
    }
    if !missing.is_empty() && !config.create_schemas {
        return Err(MigrateError::NeedsConsent(format!(
            "schema(s) {} do not exist and createSchemas is false",
            missing.join(", ")
        )));
    }
    for schema in &missing {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))
            .await
            .map_err(|e| MigrateError::db(format!("cannot create schema {schema}"), e))?;
    }
    report.created_schemas = missing.clone();
    let table_exists = history::exists(client, table).await?;
    if !table_exists && !missing.contains(&config.default_schema) {
        let objects = user_objects(client, &config.default_schema).await?;
        if objects > 0 && !config.baseline_on_migrate {
            return Err(MigrateError::NeedsConsent(format!(
                "schema {:?} holds {objects} object(s) but has no history table {}: run baseline to start from the \
                 current state, or set baselineOnMigrate=true",
                config.default_schema,
                table.qualified()
            )));
        }
        if objects > 0 {
            history::create(client, table).await?;
            write_baseline(session, config, table).await?;
            report.baselined = Some(config.baseline_version.to_string());
            return Ok(());
        }
    }
    if !table_exists {
        history::create(client, table).await?;
        if !missing.is_empty() {
            history::insert_schema_marker(client, table, &missing, session.installed_by(config)).await?;
        }
    }
    Ok(())
}

/// Tables, views, sequences, functions and types in `schema` that no extension owns.
async fn user_objects(client: &Client, schema: &str) -> Result<i64, MigrateError> {
    let sql = "SELECT (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r','p','v','m','S','f') \
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')) \
             + (SELECT count(*) FROM pg_proc p WHERE p.pronamespace = n.oid \
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')) \
             FROM pg_namespace n WHERE n.nspname = $1";
    let row = client
        .query_typed_opt(sql, &[(&schema, Type::TEXT)])
        .await
        .map_err(|e| MigrateError::db("cannot inspect the schema", e))?;
    Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0))
}

async fn write_baseline(session: &Session, config: &MigrateConfig, table: &Table) -> Result<(), MigrateError> {
    let version = config.baseline_version.to_string();
    history::insert(
        &session.client,
        table,
        &NewRow {
            version: Some(&version),
            description: &config.baseline_description,
            kind: TYPE_BASELINE,
            script: &config.baseline_description,
            checksum: None,
            installed_by: session.installed_by(config),
            execution_time: 0,
            success: true,
        },
    )
    .await
}

/// Flyway's built-in placeholders plus the configured ones.
fn placeholder_values(config: &MigrateConfig, user: &str, database: &str) -> BTreeMap<String, String> {
    let mut values = config.placeholders.clone();
    values.insert("flyway:defaultschema".into(), config.default_schema.clone());
    values.insert("flyway:user".into(), user.to_owned());
    values.insert("flyway:database".into(), database.to_owned());
    values.insert("flyway:table".into(), config.table.clone());
    values.insert("flyway:timestamp".into(), chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string());
    values
}

/// Placeholders replaced, split into statements, and checked against the transaction mode.
fn prepare(
    script: &Script,
    config: &MigrateConfig,
    values: &BTreeMap<String, String>,
) -> Result<Vec<Statement>, MigrateError> {
    let text = if config.placeholder_replacement {
        let mut values = values.clone();
        let file = script.name.rsplit('/').next().unwrap_or(&script.name).to_owned();
        values.insert("flyway:filename".into(), file);
        let placeholders =
            Placeholders { values, prefix: &config.placeholder_prefix, suffix: &config.placeholder_suffix };
        placeholders.replace(&script.text).map_err(|u| MigrateError::Script {
            script: script.name.clone(),
            line: u.line,
            message: format!(
                "no value for placeholder {}{}{}; set flyway.placeholders.{} (or FLYWAY_PLACEHOLDERS_{}), or turn \
                 placeholderReplacement off",
                config.placeholder_prefix,
                u.name,
                config.placeholder_suffix,
                u.name,
                u.name.to_ascii_uppercase()
            ),
        })?
    } else {
        script.text.clone()
    };
    let statements = sql::split(&text).map_err(|e| MigrateError::Script {
        script: script.name.clone(),
        line: e.line,
        message: e.message,
    })?;
    if script.transactional {
        for statement in &statements {
            if let Some(what) = sql::non_transactional(statement) {
                return Err(MigrateError::Script {
                    script: script.name.clone(),
                    line: statement.line,
                    message: format!(
                        "{what} cannot run inside a transaction, and this script mixes it with statements that run in \
                         one; move it to a script of its own (which then runs outside a transaction, as Flyway \
                         does), or mark this one with a {}.conf file holding executeInTransaction=false",
                        script.name.rsplit('/').next().unwrap_or(&script.name)
                    ),
                });
            }
            if let Some(what) = sql::transaction_control(statement) {
                return Err(MigrateError::Script {
                    script: script.name.clone(),
                    line: statement.line,
                    message: format!(
                        "{what}: each migration already runs in a transaction of its own; remove the statement \
                         (or mark the script executeInTransaction=false)"
                    ),
                });
            }
        }
    }
    Ok(statements)
}

async fn run_statement(client: &Client, statement: &Statement) -> Result<(), datastores::tokio_postgres::Error> {
    match &statement.copy_data {
        None => client.batch_execute(&statement.text).await,
        Some(data) => {
            let sink = client.copy_in::<_, bytes::Bytes>(statement.text.as_str()).await?;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(data.clone().into_bytes())).await?;
            sink.finish().await.map(drop)
        }
    }
}

/// The line of the failing token when the server says where, else the statement's first line.
fn failing_line(statement: &Statement, error: &datastores::tokio_postgres::Error) -> usize {
    let position = error.as_db_error().and_then(|db| match db.position() {
        Some(ErrorPosition::Original(p)) => Some(*p as usize),
        _ => None,
    });
    match position {
        Some(chars) => {
            let upto: String = statement.text.chars().take(chars.saturating_sub(1)).collect();
            statement.line + upto.matches('\n').count()
        }
        None => statement.line,
    }
}

fn millis(started: Instant) -> i32 {
    i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)
}

fn sql_row<'a>(
    script: &'a Script,
    installed_by: &'a str,
    version: &'a Option<String>,
    ms: i32,
    success: bool,
) -> NewRow<'a> {
    NewRow {
        version: version.as_deref(),
        description: &script.description,
        kind: TYPE_SQL,
        script: &script.name,
        checksum: Some(script.checksum),
        installed_by,
        execution_time: ms,
        success,
    }
}

/// Applies a migration and records it in one transaction. Without COPY data, the whole
/// migration travels as one message (BEGIN, the statements, the history row, COMMIT): one round
/// trip instead of one per statement. On failure the statements are run again one by one inside
/// a transaction that is rolled back, to name the line that fails.
async fn apply_in_transaction(
    client: &Client,
    table: &Table,
    script: &Script,
    statements: &[Statement],
    installed_by: &str,
    search_path: &str,
    started: Instant,
) -> Result<(), MigrateError> {
    let version = script.version().map(|v| v.as_str().to_owned());
    if statements.iter().any(|s| s.copy_data.is_some()) {
        return execute_script(client, Some((table, installed_by, search_path)), script, statements, started).await;
    }
    let mut batch = format!("BEGIN;\n{}\n", applied_guard(table, script, search_path));
    let mut starts = Vec::with_capacity(statements.len());
    let mut chars = batch.chars().count();
    for statement in statements {
        starts.push(chars);
        batch.push_str(&terminated(&statement.text));
        batch.push('\n');
        chars = batch.chars().count();
    }
    batch.push_str(&sql_row(script, installed_by, &version, 0, true).insert_sql_timed(table));
    batch.push_str("\nCOMMIT;");
    let Err(e) = client.batch_execute(&batch).await else { return Ok(()) };
    let _ = client.batch_execute("ROLLBACK").await;
    if is_applied_meanwhile(&e) {
        return Err(MigrateError::AppliedMeanwhile { script: script.name.clone() });
    }
    let position = e.as_db_error().and_then(|db| match db.position() {
        Some(ErrorPosition::Original(p)) => Some(*p as usize),
        _ => None,
    });
    // The server says where: find the statement that holds that character.
    let located = position.and_then(|p| {
        let index = starts.iter().rposition(|start| *start < p)?;
        let statement = &statements[index];
        let within: String = statement.text.chars().take(p - 1 - starts[index]).collect();
        (p - starts[index] <= statement.text.chars().count()).then(|| statement.line + within.matches('\n').count())
    });
    let line = match located {
        Some(line) => line,
        None => locate_failure(client, statements).await.unwrap_or(0),
    };
    Err(MigrateError::Failed {
        script: script.name.clone(),
        line,
        message: server_message(&e),
        rolled_back: true,
        applied: Vec::new(),
        error: e,
    })
}

/// A statement's text with its terminating semicolon. The semicolon goes on a line of its own
/// when the text lacks one, so that a trailing `-- comment` cannot swallow it.
fn terminated(text: &str) -> String {
    if text.trim_end().ends_with(';') { text.to_owned() } else { format!("{text}\n;") }
}

const APPLIED_MEANWHILE: &str = "pg-migrate: applied meanwhile by another migrator";

/// The start of a migration's transaction: the history table locked against other migrators'
/// transactions, and the transaction aborted when this migration has been applied meanwhile.
/// This holds where advisory locks do not (behind a transaction-pooling proxy): whatever the
/// lock says, a transactional migration never runs twice.
fn applied_guard(table: &Table, script: &Script, search_path: &str) -> String {
    let t = table.qualified();
    let condition = match script.version() {
        Some(v) => format!("\"version\" = {} AND \"success\"", quote_literal(v.as_str())),
        None => format!(
            "\"installed_rank\" = (SELECT max(\"installed_rank\") FROM {t} WHERE \"version\" IS NULL AND \
             \"description\" = {d} AND \"type\" = 'SQL') AND \"checksum\" = {c} AND \"success\"",
            d = quote_literal(&script.description),
            c = script.checksum
        ),
    };
    format!(
        "SELECT set_config('search_path', {}, true);\nLOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE;\n\
         DO $pg_migrate$ BEGIN IF EXISTS (SELECT 1 FROM {t} WHERE {condition}) THEN \
         RAISE EXCEPTION '{APPLIED_MEANWHILE}'; END IF; END $pg_migrate$;",
        quote_literal(search_path)
    )
}

fn is_applied_meanwhile(error: &datastores::tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| db.message() == APPLIED_MEANWHILE)
}

/// Runs `statements` one by one in a transaction that is always rolled back; the line of the
/// first that fails.
async fn locate_failure(client: &Client, statements: &[Statement]) -> Option<usize> {
    client.batch_execute("BEGIN").await.ok()?;
    let mut line = None;
    for statement in statements {
        if let Err(e) = client.batch_execute(&statement.text).await {
            line = Some(failing_line(statement, &e));
            break;
        }
    }
    let _ = client.batch_execute("ROLLBACK").await;
    line
}

/// Runs `statements` one by one, in a transaction when the script is transactional, and records
/// the outcome in `history` when given. A failure outside a transaction cannot be undone: it is
/// recorded as failed, as Flyway does, so that the next migrate stops until someone has looked
/// (and run repair).
async fn execute_script(
    client: &Client,
    history: Option<(&Table, &str, &str)>,
    script: &Script,
    statements: &[Statement],
    started: Instant,
) -> Result<(), MigrateError> {
    let transactional = script.transactional;
    let version = script.version().map(|v| v.as_str().to_owned());
    let record = async |success: bool| match history {
        Some((table, installed_by, _)) => {
            history::insert(client, table, &sql_row(script, installed_by, &version, millis(started), success)).await
        }
        None => Ok(()),
    };
    if transactional {
        client.batch_execute("BEGIN").await.map_err(|e| MigrateError::db("cannot begin a transaction", e))?;
        if let Some((table, _, search_path)) = history
            && let Err(e) = client.batch_execute(&applied_guard(table, script, search_path)).await
        {
            let _ = client.batch_execute("ROLLBACK").await;
            if is_applied_meanwhile(&e) {
                return Err(MigrateError::AppliedMeanwhile { script: script.name.clone() });
            }
            return Err(MigrateError::db("cannot check the history", e));
        }
    }
    for statement in statements {
        if let Err(e) = run_statement(client, statement).await {
            if transactional {
                let _ = client.batch_execute("ROLLBACK").await;
            } else {
                record(false).await?;
            }
            return Err(MigrateError::Failed {
                script: script.name.clone(),
                line: failing_line(statement, &e),
                message: server_message(&e),
                rolled_back: transactional,
                applied: Vec::new(),
                error: e,
            });
        }
    }
    if let Err(e) = record(true).await {
        if transactional {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        return Err(e);
    }
    if transactional {
        client.batch_execute("COMMIT").await.map_err(|e| MigrateError::Failed {
            script: script.name.clone(),
            line: 0,
            message: format!("COMMIT failed: {}", server_message(&e)),
            rolled_back: true,
            applied: Vec::new(),
            error: e,
        })?;
    }
    Ok(())
}

/// `info`: every migration with its state.
pub async fn info(
    pg: &PostgresConfig,
    config: &MigrateConfig,
    scripts: &[Script],
) -> Result<Vec<InfoRow>, MigrateError> {
    let session = open(pg, config).await?;
    let applied = history::read(&session.client, &config.history_table()).await?;
    Ok(plan(scripts, &applied, config).rows)
}

/// `validate`: every difference between the scripts and the history, pending ones included.
/// Returns the issues; an empty list means valid.
pub async fn validate(
    pg: &PostgresConfig,
    config: &MigrateConfig,
    scripts: &[Script],
) -> Result<Vec<String>, MigrateError> {
    let session = open(pg, config).await?;
    let applied = history::read(&session.client, &config.history_table()).await?;
    Ok(plan(scripts, &applied, config).issues.into_iter().map(|i| i.message).collect())
}

/// What `repair` changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// History rows of failed migrations that were removed.
    pub removed_failed: u64,
    /// Applied versioned migrations whose checksum, description or type were set to the local
    /// script's, one line each naming the script and what changed.
    pub realigned: Vec<String>,
}

/// `repair`: removes failed rows and realigns checksums, descriptions and types of applied
/// versioned migrations with the local scripts.
pub async fn repair(
    pg: &PostgresConfig,
    config: &MigrateConfig,
    scripts: &[Script],
) -> Result<RepairReport, MigrateError> {
    let work = async |session: &Session, table: &Table, _lock: &MigrationLock| {
        let client = &session.client;
        if !history::exists(client, table).await? {
            return Ok(RepairReport::default());
        }
        client.batch_execute("BEGIN").await.map_err(|e| MigrateError::db("cannot begin", e))?;
        let mut report =
            RepairReport { removed_failed: history::delete_failed(client, table).await?, realigned: Vec::new() };
        for row in history::read(client, table).await? {
            if row.kind == TYPE_BASELINE || row.kind == TYPE_SCHEMA {
                continue;
            }
            let Some(version) = row.version.as_deref().and_then(|v| crate::version::Version::parse(v).ok()) else {
                continue;
            };
            let Some(local) = scripts.iter().find(|s| s.version() == Some(&version)) else { continue };
            if row.checksum != Some(local.checksum) || row.description != local.description || row.kind != TYPE_SQL {
                history::realign(client, table, row.installed_rank, &local.description, TYPE_SQL, local.checksum)
                    .await?;
                let mut changes = Vec::new();
                if row.checksum != Some(local.checksum) {
                    let old = row.checksum.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
                    changes.push(format!("checksum {old} -> {}", local.checksum));
                }
                if row.description != local.description {
                    changes.push(format!("description {:?} -> {:?}", row.description, local.description));
                }
                if row.kind != TYPE_SQL {
                    changes.push(format!("type {:?} -> \"SQL\"", row.kind));
                }
                report.realigned.push(format!("{} (version {version}): {}", local.name, changes.join(", ")));
            }
        }
        client.batch_execute("COMMIT").await.map_err(|e| MigrateError::db("cannot commit the repair", e))?;
        Ok(report)
    };
    Ok(locked(pg, config, work).await?.0)
}

/// `baseline`: records `baselineVersion` as the starting point of a database that already holds
/// the schema. Only on an empty history.
pub async fn baseline(pg: &PostgresConfig, config: &MigrateConfig) -> Result<String, MigrateError> {
    let work = async |session: &Session, table: &Table, _lock: &MigrationLock| {
        let applied = history::read(&session.client, table).await?;
        let rows = applied.iter().filter(|r| r.kind != TYPE_SCHEMA).count();
        if rows > 0 {
            return Err(MigrateError::Conflict(format!(
                "{} already records {rows} migration(s); baseline only starts an empty history",
                table.qualified()
            )));
        }
        if !history::exists(&session.client, table).await? {
            for schema in &config.schemas {
                session
                    .client
                    .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))
                    .await
                    .map_err(|e| MigrateError::db(format!("cannot create schema {schema}"), e))?;
            }
            history::create(&session.client, table).await?;
        }
        write_baseline(session, config, table).await?;
        Ok(config.baseline_version.to_string())
    };
    Ok(locked(pg, config, work).await?.0)
}

/// What `clean` dropped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CleanReport {
    /// Schemas dropped entirely (pg-migrate or Flyway created them).
    pub dropped_schemas: Vec<String>,
    /// Schemas emptied and recreated with their owner, privileges and comment.
    pub emptied_schemas: Vec<String>,
    /// Relations (tables, views, sequences, ...) that were in them.
    pub dropped_relations: i64,
}

/// `clean`: drops every object in the configured schemas, the history table included. Refused
/// unless `cleanDisabled` is false. Runs in one transaction: all or nothing.
pub async fn clean(pg: &PostgresConfig, config: &MigrateConfig) -> Result<CleanReport, MigrateError> {
    if config.clean_disabled {
        return Err(MigrateError::NeedsConsent(format!(
            "clean is disabled; it would drop every object in schema(s) {}. Set cleanDisabled=false \
             (flyway.cleanDisabled, FLYWAY_CLEAN_DISABLED or -cleanDisabled=false) to allow it",
            config.schemas.join(", ")
        )));
    }
    Ok(locked(pg, config, async |session, table, _lock| clean_locked(session, config, table).await).await?.0)
}

async fn clean_locked(session: &Session, config: &MigrateConfig, table: &Table) -> Result<CleanReport, MigrateError> {
    let client = &session.client;
    let created: Vec<String> = history::read(client, table)
        .await?
        .iter()
        .filter(|r| r.kind == TYPE_SCHEMA)
        .flat_map(|r| r.script.split(',').map(|s| s.trim().trim_matches('"').replace("\"\"", "\"")).collect::<Vec<_>>())
        .collect();
    let mut report = CleanReport::default();
    client.batch_execute("BEGIN").await.map_err(|e| MigrateError::db("cannot begin", e))?;
    for schema in &config.schemas {
        let row = client
            .query_typed_opt(
                "SELECT r.rolname::text, coalesce(obj_description(n.oid, 'pg_namespace'), ''), \
                 (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid) FROM pg_namespace n \
                 JOIN pg_roles r ON r.oid = n.nspowner WHERE nspname = $1",
                &[(schema, Type::TEXT)],
            )
            .await
            .map_err(|e| MigrateError::db("cannot inspect schemas", e))?;
        let Some(row) = row else { continue };
        let (owner, comment, relations): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        report.dropped_relations += relations;
        let q = quote_ident(schema);
        if created.contains(schema) {
            client
                .batch_execute(&format!("DROP SCHEMA {q} CASCADE"))
                .await
                .map_err(|e| MigrateError::db(format!("cannot drop schema {schema}"), e))?;
            report.dropped_schemas.push(schema.clone());
            continue;
        }
        // Keep the schema itself as it was: owner, privileges, comment.
        let grants = client
            .query_typed(
                "SELECT r.rolname::text, a.privilege_type, a.is_grantable \
                 FROM pg_namespace n CROSS JOIN aclexplode(n.nspacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee \
                 WHERE n.nspname = $1",
                &[(schema, Type::TEXT)],
            )
            .await
            .map_err(|e| MigrateError::db("cannot read schema privileges", e))?;
        let mut sql = format!("DROP SCHEMA {q} CASCADE; CREATE SCHEMA {q} AUTHORIZATION {};", quote_ident(&owner));
        for g in &grants {
            let (grantee, privilege, grantable): (Option<String>, String, bool) = (g.get(0), g.get(1), g.get(2));
            let grantee = grantee.map(|r| quote_ident(&r)).unwrap_or_else(|| "PUBLIC".into());
            sql.push_str(&format!(
                "GRANT {privilege} ON SCHEMA {q} TO {grantee}{};",
                if grantable { " WITH GRANT OPTION" } else { "" }
            ));
        }
        if !comment.is_empty() {
            sql.push_str(&format!("COMMENT ON SCHEMA {q} IS {};", sql::quote_literal(&comment)));
        }
        client.batch_execute(&sql).await.map_err(|e| MigrateError::db(format!("cannot clean schema {schema}"), e))?;
        report.emptied_schemas.push(schema.clone());
    }
    client.batch_execute("COMMIT").await.map_err(|e| MigrateError::db("cannot commit clean", e))?;
    Ok(report)
}

/// `migrate --dry-run`: the SQL migrate would run, without running anything or taking the lock.
pub async fn dry_run(pg: &PostgresConfig, config: &MigrateConfig, scripts: &[Script]) -> Result<String, MigrateError> {
    let session = open(pg, config).await?;
    let table = config.history_table();
    let applied = history::read(&session.client, &table).await?;
    let mut out = format!("-- pg-migrate dry run against database {:?} as {:?}\n", session.database, session.user);
    if !history::exists(&session.client, &table).await? {
        for schema in &config.schemas {
            out.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};\n", quote_ident(schema)));
        }
        out.push_str(&table.create_sql());
        out.push('\n');
    }
    let plan = plan(scripts, &applied, config);
    if config.validate_on_migrate {
        let issues: Vec<String> =
            plan.issues.iter().filter(|i| i.kind != IssueKind::Pending).map(|i| i.message.clone()).collect();
        if !issues.is_empty() {
            return Err(MigrateError::Validation { issues });
        }
    }
    let values = placeholder_values(config, &session.user, &session.database);
    let installed_by = session.installed_by(config).to_owned();
    let callbacks = |event| scripts.iter().filter(move |s: &&Script| s.kind == Kind::Callback(event));
    let order =
        callbacks(Event::BeforeMigrate).chain(plan.pending.iter().copied()).chain(callbacks(Event::AfterMigrate));
    for script in order {
        let statements = prepare(script, config, &values)?;
        let version = script.version().map(|v| v.as_str().to_owned());
        let mode = match (script.transactional, script.transaction_source) {
            (true, _) => "in a transaction",
            (false, crate::source::TransactionSource::Detected) => {
                "outside a transaction: every statement must run outside one"
            }
            (false, _) => "outside a transaction: executeInTransaction=false",
        };
        let callback = matches!(script.kind, Kind::Callback(_));
        out.push_str(&format!(
            "\n-- {} ({mode}{})\n",
            script.name,
            if callback { ", callback, not recorded" } else { "" }
        ));
        if script.transactional {
            out.push_str("BEGIN;\n");
        }
        for statement in &statements {
            out.push_str(&terminated(&statement.text));
            out.push('\n');
            if let Some(data) = &statement.copy_data {
                out.push_str(data);
                out.push_str("\\.\n");
            }
        }
        if !callback {
            out.push_str(&sql_row(script, &installed_by, &version, 0, true).insert_sql(&table));
            out.push('\n');
        }
        if script.transactional {
            out.push_str("COMMIT;\n");
        }
    }
    if plan.pending.is_empty() {
        out.push_str("-- nothing to migrate\n");
    }
    Ok(out)
}
