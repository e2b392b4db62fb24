//! What every dbkit backup shares, whatever the datastore: the stores (a local folder and an S3
//! bucket, laid out `<tier>/<id>.<ext>` beside `<tier>/<id>.manifest.json`), the streaming sink
//! that compresses and hashes a backup into both at once, the manifest written last, retention
//! by tier, list and prune, and the notices (Slack, Pushgateway). A backup job (backup, prune
//! by the [`Policy`], notices) is written once here, over the [`BackupJob`] a datastore implements.
//!
//! A datastore's backup crate brings its own manifest type, implementing [`BackupManifest`], and
//! the steps that read or load its datastore; `pg-backup` and `mongo-backup` are the two.
//!
//! The library does not print, exit or read the environment.
#![warn(missing_docs)]

mod error;
mod job;
mod manifest;
mod notify;
mod ops;
mod policy;
mod retention;
mod scratch;
mod sink;
pub mod store;

pub use crate::error::Error;
pub use crate::job::{
    BackupJob, BackupRun, NOTICE_TIMEOUT, NoticeError, Notices, backup_and_prune, human_bytes, notify, push_run,
};
pub use crate::manifest::{
    BackupManifest, Compression, FileEntry, Tier, Verification, backup_id, datastore_of, manifest_name,
};
pub use crate::notify::{job_run, slack};
pub use crate::ops::{
    Found, Owner, PruneReport, STALE_UPLOAD_AGE, Selector, Stores, check_sha256, decompressed, fetch, find_listed,
    listed, prune, record_verification, sha256_file,
};
pub use crate::policy::{DEFAULT_REPLACED_DAYS, Notifications, Policy, replaced_days};
pub use crate::retention::{Candidate, Retention, keep};
pub use crate::scratch::{is_stale_scratch, scratch_name};
pub use crate::sink::{Prepared, Sink, Streamed, free_id, prepare, publish};
pub use crate::store::{Location, Stored, part_size, sweep_partials};
