//! Streaming, verified MongoDB backups through the Rust driver, to a local folder and S3, with
//! the stores, retention, prune and notices of `backup-core` (shared with `pg-backup`).
//!
//! A backup is one ZIP archive, compressed as a whole (zstd by default), whose entries are
//! mongodump's directory layout: `<db>/<collection>.metadata.json` (options, indexes, uuid, in
//! canonical Extended JSON) then `<db>/<collection>.bson` (the documents, concatenated). Unpacked
//! with `zstd -d` and `unzip`, it is a folder `mongorestore --dir` restores. Each collection is
//! read at one point in time where the server supports snapshot reads; the manifest records the
//! consistency, every collection's documents, bytes and content hash, and the server version.
//!
//! The library does not print, exit or read the environment.
#![warn(missing_docs)]

mod backup;
mod job;
mod manifest;
mod ops;
mod restore;
mod verify;
pub mod zipstream;

pub use crate::backup::{BackupOptions, BackupProgress, backup, backup_name};
pub use crate::job::{BackupRun, backup_and_prune};
pub use crate::manifest::{CollectionInfo, Consistency, Manifest, artifact_name};
pub use crate::ops::{Deployment, Listed, backup_run, list, prune};
pub use crate::restore::{CollectionCount, RestoreOptions, RestoreReport, restore};
pub use crate::verify::{VerifyOptions, VerifyReport, verify};
pub use backup_core::{Error, Notices, Notifications, Policy, Retention, Selector, Stores};
