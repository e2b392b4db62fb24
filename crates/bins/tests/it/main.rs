//! The binaries, run as a user runs them, against the local stack.

#![allow(clippy::unwrap_used)]

mod bootstrap_cli;
mod datastores_cli;
mod deploy_manifests;
mod metrics_cli;
mod mongo_backup_cli;
mod pg_backup_cli;
mod pg_migrate_cli;
mod push_cli;
mod recommend_db_cli;
mod secrets;
mod vector_admin_cli;
