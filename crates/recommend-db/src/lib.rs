//! The recommendation system's PostgreSQL database, as a library: the migrations in
//! `migrations/` (compiled in), initialisation of database, extensions, schema and least-privilege
//! roles, monthly partitions that never run out, reproducible seed data, and retention cleanup.
//! The `recommend-db` binary is a thin layer over it.
//!
//! It does not print or exit, and reads no environment: callers pass configurations in.
#![warn(missing_docs)]

mod cleanup;
mod error;
mod init;
pub mod migrations;
mod partitions;
mod seed;

/// Identifier quoting, shared by the modules that build SQL.
mod pgident {
    pub use datastores::pgadmin::quote_ident;
}

pub use crate::cleanup::{CleanupOptions, CleanupReport, PartitionAction, TablePlan, cleanup, plan as cleanup_plan};
pub use crate::error::Error;
pub use crate::init::{InitOptions, InitReport, Roles, StepReport, Steps, init};
pub use crate::partitions::{
    Missing, PARTITIONED_TABLES, Partition, ensure as ensure_partitions, list as list_partitions, missing_ahead,
};
pub use crate::seed::{MAX_ROWS, Phase, PhaseTime, Progress, SeedOptions, SeedReport, seed};

/// Extensions the schema needs; `init --install-extensions` installs them as a superuser.
pub const EXTENSIONS: [&str; 2] = ["pg_trgm", "vector"];
