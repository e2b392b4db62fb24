//! Streaming, verified PostgreSQL backups to a local folder and S3, with grandfather-father-son
//! retention, restore and verify; the `pg-backup` binary is a thin layer over it.
//!
//! A backup streams pg_dump's output through compression (zstd by default, gzip for `.sql.gz`)
//! and SHA-256 into a local file and an S3 multipart upload at the same time, with no temporary
//! full copy. Its JSON manifest (database, versions, format, sizes, checksum, times, tables) is
//! written last, and a backup without one does not exist for `list`, `restore` or `prune`.
//!
//! What is not about PostgreSQL (the stores, the streaming sink, retention, prune, notices) is
//! `backup-core`, shared with `mongo-backup`; the names this crate always had are re-exported.
//!
//! The library does not print, exit or read the environment.
#![warn(missing_docs)]

mod archive;
mod backup;
mod error;
mod job;
mod manifest;
mod ops;
mod restore;
mod tools;
mod verify;

pub use crate::archive::{RowHash, TableData};
pub use crate::backup::{BackupOptions, BackupProgress, backup};
pub use crate::error::Error;
pub use crate::job::{BackupRun, backup_and_prune};
pub use crate::manifest::{
    Compression, FileEntry, Format, Manifest, TableInfo, Tier, Verification, artifact_name, backup_id, manifest_name,
};
pub use crate::ops::{Cluster, Listed, backup_run, list, prune, prune_replaced_databases};
pub use crate::restore::{
    DEFAULT_MAINTENANCE_WORK_MEM, OLD_DATABASE_MARK, RestoreOptions, RestoreReport, TableCount, restore,
};
pub use crate::tools::Tools;
pub use crate::verify::{VerifyOptions, VerifyReport, verify};
pub use backup_core::{
    Candidate, Location, Notices, Notifications, Policy, PruneReport, Retention, STALE_UPLOAD_AGE, keep, part_size,
    slack, sweep_partials,
};
pub use backup_core::{Selector, Stores};
