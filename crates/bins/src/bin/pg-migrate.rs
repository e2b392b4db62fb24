//! `pg-migrate`: Flyway-compatible PostgreSQL migrations.
//!
//! Settings, highest first: command-line flags (`--table x`, or Flyway's `-table=x`), `FLYWAY_*`
//! variables, `POSTGRES_*` / `DATABASE_URL` variables, config files (`--config-file`, Flyway's
//! `-configFiles=`; a later file wins over an earlier one; `./flyway.conf` when none is given),
//! defaults.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use bins::{Output, exit};
use clap::{Parser, Subcommand};
use datastores::{PostgresConfig, Settings, Source};
use pg_migrate::{MigrateConfig, MigrateError, Script, Severity};

#[derive(Parser, Debug)]
#[command(
    name = "pg-migrate",
    version,
    about = "Flyway-compatible PostgreSQL migrations",
    after_help = "Flyway's own option spelling works too: -configFiles=migrations/flyway.conf, -url=jdbc:postgresql://..., \
                  -user=..., -locations=filesystem:sql, -placeholders.owner=app, ..."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A flyway.conf file; repeat for several (a later one wins).
    #[arg(long = "config-file", value_name = "PATH", global = true)]
    config_files: Vec<PathBuf>,
    /// postgres:// or jdbc:postgresql:// URL [env: FLYWAY_URL, DATABASE_URL]
    #[arg(long, alias = "database-url", value_name = "URL", global = true)]
    url: Option<String>,
    /// [env: FLYWAY_USER, POSTGRES_USER]
    #[arg(long, value_name = "USER", global = true)]
    user: Option<String>,
    /// File holding the password [env: FLYWAY_PASSWORD(_FILE), POSTGRES_PASSWORD(_FILE)]
    #[arg(long, value_name = "PATH", global = true)]
    password_file: Option<String>,
    /// Folders of scripts: filesystem:path,... [default: filesystem:migrations]
    #[arg(long, value_name = "LOCATIONS", global = true)]
    locations: Option<String>,
    /// Schemas to manage, the first holding the history table [default: public]
    #[arg(long, value_name = "SCHEMAS", global = true)]
    schemas: Option<String>,
    #[arg(long, value_name = "SCHEMA", global = true)]
    default_schema: Option<String>,
    /// History table [default: flyway_schema_history]
    #[arg(long, value_name = "TABLE", global = true)]
    table: Option<String>,
    /// Migrate up to this version [default: latest]
    #[arg(long, value_name = "VERSION", global = true)]
    target: Option<String>,
    /// Apply pending migrations older than the latest applied one
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", global = true)]
    out_of_order: Option<String>,
    /// Baseline a non-empty schema that has no history, then migrate
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", global = true)]
    baseline_on_migrate: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", global = true)]
    validate_on_migrate: Option<String>,
    #[arg(long, value_name = "VERSION", global = true)]
    baseline_version: Option<String>,
    #[arg(long, value_name = "TEXT", global = true)]
    baseline_description: Option<String>,
    /// Placeholder value: --placeholder owner=app (repeatable)
    #[arg(long = "placeholder", value_name = "NAME=VALUE", global = true)]
    placeholders: Vec<String>,
    /// Leave ${...} in scripts as written
    #[arg(long, global = true)]
    no_placeholders: bool,
    /// clean is refused unless this is false
    #[arg(long, value_name = "BOOL", global = true)]
    clean_disabled: Option<String>,
    /// How long to wait for another migrator [default: 300s]
    #[arg(long, value_name = "DURATION", global = true)]
    lock_timeout: Option<String>,
    /// Drop (concurrently) an INVALID index left by an interrupted CREATE INDEX CONCURRENTLY of a
    /// pending migration, so that the migration builds it again [env: PG_MIGRATE_DROP_INVALID_INDEXES]
    #[arg(long, global = true)]
    drop_invalid_indexes: bool,
    #[arg(long, value_enum, default_value_t, global = true)]
    output: Output,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply pending migrations
    Migrate {
        /// Print the SQL that would run, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Show every migration and its state
    Info,
    /// Compare scripts with the history; exit 1 on any difference or pending migration
    Validate,
    /// Remove failed entries and accept changed checksums and descriptions
    Repair,
    /// Record the baseline version on a database that has no history
    Baseline,
    /// Drop every object in the managed schemas (refused unless cleanDisabled=false)
    Clean,
    /// Report risky DDL in pending migrations; exit 1 on error-level findings
    Lint {
        /// Lint every script without connecting to the database
        #[arg(long)]
        all: bool,
    },
}

/// Splits Flyway-style `-key=value` arguments from the rest.
fn split_flyway_args(args: Vec<String>) -> (Vec<String>, Vec<(String, String)>) {
    let mut rest = Vec::new();
    let mut flyway = Vec::new();
    for arg in args {
        let is_flyway = arg.starts_with('-')
            && !arg.starts_with("--")
            && arg[1..].starts_with(|c: char| c.is_ascii_alphabetic())
            && arg.contains('=');
        match arg[1..].split_once('=') {
            Some((key, value)) if is_flyway => flyway.push((key.to_owned(), value.to_owned())),
            _ => rest.push(arg),
        }
    }
    (rest, flyway)
}

fn main() -> ExitCode {
    bins::init();
    let (args, flyway_args) = split_flyway_args(std::env::args().collect());
    let cli = Cli::parse_from(args);
    let output = cli.output;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return bins::fail(&anyhow!(e).context("cannot start the async runtime"), exit::FAILURE),
    };
    let loaded = load(&cli, flyway_args);
    let (pg, config) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return bins::fail_as(&e, exit::USAGE, output),
    };
    match runtime.block_on(run(&cli.command, pg, &config, output)) {
        Ok(code) => code,
        Err(e) => {
            // Bad scripts, flags or configuration: refused before anything ran.
            let bad_input = e.downcast_ref::<pg_migrate::SourceError>().is_some()
                || e.downcast_ref::<datastores::ConfigError>().is_some()
                || matches!(
                    e.downcast_ref::<MigrateError>(),
                    Some(MigrateError::Config(_) | MigrateError::Source(_) | MigrateError::Script { .. })
                );
            let code = if bad_input { exit::USAGE } else { exit::FAILURE };
            bins::fail_as(&e, code, output)
        }
    }
}

/// Builds the layered settings and reads both configurations.
fn load(cli: &Cli, flyway_args: Vec<(String, String)>) -> anyhow::Result<(Option<PostgresConfig>, MigrateConfig)> {
    let mut config_files = cli.config_files.clone();
    let mut command_line = Vec::new();
    for (key, value) in flyway_args {
        if key == "configFiles" {
            config_files.extend(value.split(',').map(|s| PathBuf::from(s.trim())));
        } else {
            command_line.push((key, value));
        }
    }
    if config_files.is_empty() && std::path::Path::new("flyway.conf").is_file() {
        tracing::info!("reading ./flyway.conf (as Flyway does); pass --config-file to choose another");
        config_files.push(PathBuf::from("flyway.conf"));
    }

    // Our flags and Flyway's -key=value options form the command-line layer.
    let mut flags: Vec<(String, String, String)> = Vec::new();
    let mut flag = |var: &str, name: &str, value: &Option<String>| {
        if let Some(v) = value {
            flags.push((var.to_owned(), format!("flag {name}"), v.clone()));
        }
    };
    flag("DATABASE_URL", "--url", &cli.url);
    flag("POSTGRES_USER", "--user", &cli.user);
    flag("POSTGRES_PASSWORD_FILE", "--password-file", &cli.password_file);
    flag("FLYWAY_LOCATIONS", "--locations", &cli.locations);
    flag("FLYWAY_SCHEMAS", "--schemas", &cli.schemas);
    flag("FLYWAY_DEFAULT_SCHEMA", "--default-schema", &cli.default_schema);
    flag("FLYWAY_TABLE", "--table", &cli.table);
    flag("FLYWAY_TARGET", "--target", &cli.target);
    flag("FLYWAY_OUT_OF_ORDER", "--out-of-order", &cli.out_of_order);
    flag("FLYWAY_BASELINE_ON_MIGRATE", "--baseline-on-migrate", &cli.baseline_on_migrate);
    flag("FLYWAY_VALIDATE_ON_MIGRATE", "--validate-on-migrate", &cli.validate_on_migrate);
    flag("FLYWAY_BASELINE_VERSION", "--baseline-version", &cli.baseline_version);
    flag("FLYWAY_BASELINE_DESCRIPTION", "--baseline-description", &cli.baseline_description);
    flag("FLYWAY_CLEAN_DISABLED", "--clean-disabled", &cli.clean_disabled);
    flag("PG_MIGRATE_LOCK_TIMEOUT", "--lock-timeout", &cli.lock_timeout);
    if cli.drop_invalid_indexes {
        flag("PG_MIGRATE_DROP_INVALID_INDEXES", "--drop-invalid-indexes", &Some("true".into()));
    }
    if cli.no_placeholders {
        flag("FLYWAY_PLACEHOLDER_REPLACEMENT", "--no-placeholders", &Some("false".into()));
    }
    for item in &cli.placeholders {
        let (name, value) =
            item.split_once('=').ok_or_else(|| anyhow!("flag --placeholder {item:?}: expected NAME=VALUE"))?;
        flags.push((format!("FLYWAY_PLACEHOLDERS_{name}"), "flag --placeholder".into(), value.to_owned()));
    }
    let flyway_cli = pg_migrate::flyway_layer(&command_line, |key| format!("option -{key}")).map_err(|e| anyhow!(e))?;
    let mut descriptions: BTreeMap<String, String> = flyway_cli.descriptions;
    let mut values: BTreeMap<String, String> = flyway_cli.values;
    for (var, description, value) in flags {
        descriptions.insert(var.clone(), description);
        values.insert(var, value);
    }

    let mut settings = Settings::new().layer(Source::Described(descriptions), values);
    settings = pg_migrate::flyway_env_layer(std::env::vars()).apply(settings);
    settings = settings.layer(Source::Environment, std::env::vars());
    for file in config_files.iter().rev() {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read config file {}", file.display()))?;
        let pairs = pg_migrate::parse_properties(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let shown = file.display().to_string();
        let layer = pg_migrate::flyway_layer(&pairs, |key| format!("{key} in {shown}")).map_err(|e| anyhow!(e))?;
        settings = layer.apply(settings);
    }
    settings = settings.layer(Source::Other("default".into()), [("POSTGRES_APPLICATION_NAME", "pg-migrate")]);

    let config = MigrateConfig::from_settings(&settings)?;
    let pg_configured = datastores::triggers(datastores::Datastore::Postgres).iter().any(|name| settings.is_set(name));
    let pg = if pg_configured { Some(PostgresConfig::from_settings(&settings)?) } else { None };
    Ok((pg, config))
}

fn require_pg(pg: Option<PostgresConfig>) -> anyhow::Result<PostgresConfig> {
    pg.ok_or_else(|| {
        anyhow!("no database configured: set --url (or flyway.url in a config file, FLYWAY_URL, DATABASE_URL) or POSTGRES_HOST")
    })
}

async fn run(
    command: &Command,
    pg: Option<PostgresConfig>,
    config: &MigrateConfig,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let scripts = pg_migrate::load(&config.locations, config.encoding)?;
    match command {
        Command::Lint { all: true } => return print_lint(&scripts.iter().collect::<Vec<_>>(), output),
        Command::Lint { all: false } => {
            let pg = require_pg(pg)?;
            let rows = pg_migrate::info(&pg, config, &scripts).await?;
            let pending: Vec<&Script> = scripts
                .iter()
                .filter(|s| rows.iter().any(|r| r.script == s.name && r.state == pg_migrate::State::Pending))
                .collect();
            return print_lint(&pending, output);
        }
        _ => {}
    }
    let pg = require_pg(pg)?;
    match command {
        Command::Migrate { dry_run: true } => {
            bins::print(&pg_migrate::dry_run(&pg, config, &scripts).await?)?;
        }
        Command::Migrate { dry_run: false } => {
            let report = pg_migrate::migrate(&pg, config, &scripts).await?;
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            for index in &report.rebuilt_indexes {
                eprintln!(
                    "warning: dropped the INVALID index {index} of an interrupted build; its migration built it again"
                );
            }
            for script in &report.skipped {
                eprintln!("warning: {script} was applied by another migrator meanwhile; not run twice");
            }
            match output {
                Output::Json => bins::print(&(serde_json::to_string_pretty(&report)? + "\n"))?,
                Output::Table => {
                    let mut text = String::new();
                    if let Some(v) = &report.baselined {
                        text.push_str(&format!("Baselined schema {:?} at version {v}\n", config.default_schema));
                    }
                    for a in &report.applied {
                        text.push_str(&format!("Applied {} ({} ms)\n", a.script, a.execution_time_ms));
                    }
                    let now = report.version_after.as_deref().unwrap_or("<< empty >>");
                    if report.applied.is_empty() {
                        text.push_str(&format!(
                            "Schema {:?} is up to date at version {now}; nothing to migrate\n",
                            config.default_schema
                        ));
                    } else {
                        text.push_str(&format!(
                            "Applied {} migration(s) to schema {:?}; now at version {now}\n",
                            report.applied.len(),
                            config.default_schema
                        ));
                    }
                    bins::print(&text)?;
                }
            }
        }
        Command::Info => {
            let rows = pg_migrate::info(&pg, config, &scripts).await?;
            match output {
                Output::Json => bins::print(&(serde_json::to_string_pretty(&rows)? + "\n"))?,
                Output::Table => {
                    let cells: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            vec![
                                r.category.to_owned(),
                                r.version.clone().unwrap_or_default(),
                                r.description.clone(),
                                r.kind.clone(),
                                r.installed_on.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default(),
                                match r.in_transaction {
                                    Some(true) => "yes".into(),
                                    Some(false) => "no".into(),
                                    None => String::new(),
                                },
                                r.state.to_string(),
                            ]
                        })
                        .collect();
                    bins::print(&bins::table(
                        &["CATEGORY", "VERSION", "DESCRIPTION", "TYPE", "INSTALLED ON", "IN TRANSACTION", "STATE"],
                        &cells,
                    ))?;
                }
            }
        }
        Command::Validate => {
            let issues = pg_migrate::validate(&pg, config, &scripts).await?;
            match output {
                Output::Json => bins::print(&(serde_json::to_string_pretty(&issues)? + "\n"))?,
                Output::Table if issues.is_empty() => {
                    bins::print(&format!("Validated {} migration(s): no differences\n", scripts.len()))?
                }
                Output::Table => {
                    eprintln!("error: validation failed:");
                    for issue in &issues {
                        eprintln!("  - {issue}");
                    }
                }
            }
            if !issues.is_empty() {
                return Ok(ExitCode::from(exit::FAILURE));
            }
        }
        Command::Repair => {
            let report = pg_migrate::repair(&pg, config, &scripts).await?;
            match output {
                Output::Json => bins::print(&(serde_json::to_string_pretty(&report)? + "\n"))?,
                Output::Table => {
                    let mut text = format!("Removed {} failed migration(s)\n", report.removed_failed);
                    for line in &report.realigned {
                        text.push_str(&format!("Realigned {line}\n"));
                    }
                    if report.removed_failed == 0 && report.realigned.is_empty() {
                        text.push_str("Nothing to repair\n");
                    }
                    bins::print(&text)?;
                }
            }
        }
        Command::Baseline => {
            let version = pg_migrate::baseline(&pg, config).await?;
            bins::print(&format!("Baselined schema {:?} at version {version}\n", config.default_schema))?;
        }
        Command::Clean => {
            let report = pg_migrate::clean(&pg, config).await?;
            match output {
                Output::Json => bins::print(&(serde_json::to_string_pretty(&report)? + "\n"))?,
                Output::Table => bins::print(&format!(
                    "Cleaned: dropped schema(s) [{}], emptied schema(s) [{}], {} relation(s) dropped\n",
                    report.dropped_schemas.join(", "),
                    report.emptied_schemas.join(", "),
                    report.dropped_relations
                ))?,
            }
        }
        Command::Lint { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn print_lint(scripts: &[&Script], output: Output) -> anyhow::Result<ExitCode> {
    let findings = pg_migrate::lint(scripts);
    match output {
        Output::Json => bins::print(&(serde_json::to_string_pretty(&findings)? + "\n"))?,
        Output::Table => {
            let mut text = String::new();
            for f in &findings {
                text.push_str(&format!("{f}\n"));
            }
            let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
            text.push_str(&format!(
                "{} script(s) checked: {errors} error(s), {} warning(s)\n",
                scripts.len(),
                findings.len() - errors
            ));
            bins::print(&text)?;
        }
    }
    let failed = findings.iter().any(|f| f.severity == Severity::Error);
    Ok(if failed { ExitCode::from(exit::FAILURE) } else { ExitCode::SUCCESS })
}
