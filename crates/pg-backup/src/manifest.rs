//! The manifest: what a backup holds, written last. A backup without its manifest is not a
//! backup: `list`, `restore` and `prune` only ever see backups whose manifest exists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use backup_core::{BackupManifest, Compression, FileEntry, Tier, Verification, backup_id, manifest_name};

use crate::Error;

/// pg_dump's output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `pg_dump -Fc`: one archive, restored in parallel by `pg_restore -j`.
    Custom,
    /// `pg_dump -Fd -j N`: a folder, dumped and restored in parallel.
    Directory,
    /// `pg_dump -Fp`: SQL text, restored by psql.
    Plain,
}

impl Format {
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "custom" | "c" => Ok(Format::Custom),
            "directory" | "d" => Ok(Format::Directory),
            "plain" | "p" => Ok(Format::Plain),
            other => Err(format!("unknown format {other:?}; use custom, directory or plain")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// The planner's estimate at backup time.
    pub row_estimate: i64,
    /// Exact: the rows in the backup itself, counted as the dump streamed by.
    pub rows: Option<i64>,
    /// An order-independent hash of the table's rows as the dump holds them (COPY text), which
    /// `verify --compare --checksums` recomputes on the restored copy; see `archive::RowHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// The columns of the dump's COPY statement, in its order: what the hash covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub database: String,
    /// The cluster's system identifier (`pg_control_system()`): retention only ever prunes
    /// backups of the same cluster and database. Absent in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// The source database's own properties (owner, encoding, locale, privileges, settings), for
    /// a restore into a database that does not exist yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_properties: Option<datastores::pgadmin::DatabaseProperties>,
    pub server_version: String,
    pub pg_dump_version: String,
    pub format: Format,
    pub compression: Compression,
    pub tier: Tier,
    /// The file (or folder, for the directory format) next to the manifest.
    pub artifact: String,
    pub files: Vec<FileEntry>,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Bytes pg_dump wrote, before compression.
    pub dump_bytes: u64,
    /// SHA-256 of the stored file; for the directory format, of its file list.
    pub sha256: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub tables: Vec<TableInfo>,
    pub destinations: Vec<String>,
    pub verified: Option<Verification>,
    pub created_by: String,
}

impl Manifest {
    pub fn manifest_name(&self) -> String {
        manifest_name(&self.id)
    }

    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Invalid(format!("cannot encode the manifest: {e}")))
    }

    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Manifest, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Refused(format!("{origin} is not a valid manifest: {e}")))
    }
}

impl BackupManifest for Manifest {
    const DATASTORE: &'static str = "postgresql";

    fn id(&self) -> &str {
        &self.id
    }

    fn tier(&self) -> Tier {
        self.tier
    }

    fn artifact(&self) -> &str {
        &self.artifact
    }

    fn files(&self) -> &[FileEntry] {
        &self.files
    }

    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn finished_at(&self) -> DateTime<Utc> {
        self.finished_at
    }

    fn verification(&self) -> Option<&Verification> {
        self.verified.as_ref()
    }

    fn set_verification(&mut self, verification: Verification) {
        self.verified = Some(verification);
    }
}

/// The stored artifact's name for an id.
pub fn artifact_name(id: &str, format: Format, compression: Compression) -> String {
    match format {
        Format::Custom => format!("{id}.dump{}", compression.extension()),
        Format::Plain => format!("{id}.sql{}", compression.extension()),
        Format::Directory => format!("{id}.dir"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(Format::parse("directory").unwrap(), Format::Directory);
        assert!(Format::parse("tar").is_err());
    }

    #[test]
    fn names() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        let id = backup_id("recommend", at);
        assert_eq!(id, "recommend_20260102T030405Z");
        assert_eq!(artifact_name(&id, Format::Plain, Compression::Gzip(6)), "recommend_20260102T030405Z.sql.gz");
        assert_eq!(artifact_name(&id, Format::Custom, Compression::Zstd(3)), "recommend_20260102T030405Z.dump.zst");
    }
}
