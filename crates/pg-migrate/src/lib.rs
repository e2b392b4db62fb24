//! Flyway-compatible PostgreSQL migrations, as a library and the `pg-migrate` binary.
//!
//! Scripts are named and checksummed as Flyway does (`V1_2__add_users.sql`, `R__views.sql`, an
//! optional `V1_2__add_users.sql.conf`), and the history lives in Flyway's
//! `flyway_schema_history` table, so a database migrated by Flyway can be taken over and back.
//! What it does differently from Flyway:
//!
//! - a malformed script name is an error, not a silently skipped file;
//! - the lock is an advisory lock polled with `pg_try_advisory_xact_lock` in a transaction of
//!   its own connection, so concurrent migrators never deadlock with `CREATE INDEX
//!   CONCURRENTLY`, a pooling proxy cannot leak it, and a timeout names the holder;
//! - a statement that cannot run in a transaction, in a script that runs in one, is caught
//!   before anything runs;
//! - a failure names the script, the line and the server's message;
//! - `lint` finds risky DDL before it reaches production.
//!
//! ```rust,no_run
//! # async fn example(pg: datastores::PostgresConfig) -> Result<(), pg_migrate::MigrateError> {
//! let config = pg_migrate::MigrateConfig::new();
//! let scripts = pg_migrate::load(&config.locations, config.encoding)?;
//! let report = pg_migrate::migrate(&pg, &config, &scripts).await?;
//! println!("applied {} migration(s)", report.applied.len());
//! # Ok(()) }
//! ```
//!
//! A service can compile its `migrations/` folder in with [`embed_migrations!`] and migrate at
//! start-up in one call, [`Embedded::migrate`].
//!
//! This crate does not print or exit; the binary does.
#![warn(missing_docs)]

mod checksum;
mod config;
mod embedded;
mod engine;
mod error;
mod history;
mod lint;
mod lock;
mod placeholders;
mod plan;
mod source;
mod sql;
mod version;

pub use crate::checksum::{flyway_checksum, flyway_lock_key};
pub use crate::config::{
    Layer, MigrateConfig, Target, canonical_name, flyway_env_layer, flyway_layer, parse_properties,
};
pub use crate::embedded::Embedded;
pub use crate::engine::{
    AppliedScript, CleanReport, MigrateReport, RepairReport, baseline, clean, dry_run, info, migrate, repair, validate,
};
pub use crate::error::{LockHolder, MigrateError, SourceError};
pub use crate::history::{Applied, Table as HistoryTable};
pub use crate::lint::{Finding, RULES, Rule, Severity, lint};
pub use crate::plan::{InfoRow, Issue, IssueKind, Plan, State, plan};
pub use crate::source::{
    Encoding, Event, Kind, Script, TransactionSource, collect, load, parse_locations, script_from_text,
};
pub use crate::sql::{Statement, concurrent_index, split as split_statements};
pub use crate::version::Version;

/// The proc-macro behind [`embed_migrations!`]; use that instead.
#[doc(hidden)]
pub use pg_migrate_macros::embedded_files as __embedded_files;
