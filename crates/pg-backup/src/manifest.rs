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
    /// `custom`, `directory` or `plain`, or pg_dump's letters `c`, `d`, `p`. The error names the
    /// accepted words.
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "custom" | "c" => Ok(Format::Custom),
            "directory" | "d" => Ok(Format::Directory),
            "plain" | "p" => Ok(Format::Plain),
            other => Err(format!("unknown format {other:?}; use custom, directory or plain")),
        }
    }
}

/// A table of the backup as the manifest records it: restore and verify check the restored
/// copy against it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    /// The table's schema.
    pub schema: String,
    /// The table's name, unquoted.
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

/// The manifest of a PostgreSQL backup, `<tier>/<id>.manifest.json` beside the artifact and
/// written after it. It has no `datastore` field, which means `postgresql`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The backup's id, `<database>_<YYYYMMDDTHHMMSSZ>`.
    pub id: String,
    /// The database backed up.
    pub database: String,
    /// The cluster's system identifier (`pg_control_system()`): retention only ever prunes
    /// backups of the same cluster and database. Absent in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// The source database's own properties (owner, encoding, locale, privileges, settings), for
    /// a restore into a database that does not exist yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_properties: Option<datastores::pgadmin::DatabaseProperties>,
    /// The server's `server_version` setting (`17.2`, with a distribution's suffix where it has
    /// one).
    pub server_version: String,
    /// The major version of the pg_dump that wrote the backup (`18`).
    pub pg_dump_version: String,
    /// pg_dump's format.
    pub format: Format,
    /// How the artifact is compressed; for the directory format, how pg_dump compressed each
    /// file (gzip where zstd was asked of a pg_dump that lacks it).
    pub compression: Compression,
    /// The tier the backup was taken for, which is also its folder.
    pub tier: Tier,
    /// The file (or folder, for the directory format) next to the manifest.
    pub artifact: String,
    /// The files of a directory-format backup, each with its size and SHA-256; empty for the
    /// other formats.
    pub files: Vec<FileEntry>,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Bytes pg_dump wrote, before compression.
    pub dump_bytes: u64,
    /// SHA-256 of the stored file; for the directory format, of its file list.
    pub sha256: String,
    /// When the backup started (UTC): the second its id names.
    pub started_at: DateTime<Utc>,
    /// When the data was complete, just before the manifest was written (UTC).
    pub finished_at: DateTime<Utc>,
    /// From start to finish, in seconds.
    pub duration_seconds: f64,
    /// Every ordinary table outside the system schemas, with its rows and content hash.
    pub tables: Vec<TableInfo>,
    /// Where the data was complete when the manifest was written: `local`, `s3`, or both.
    pub destinations: Vec<String>,
    /// The last verification that passed; `None` until `verify` records one.
    pub verified: Option<Verification>,
    /// What wrote the backup: `pg-backup <version>`.
    pub created_by: String,
}

impl Manifest {
    /// The manifest's file name, `<id>.manifest.json`.
    pub fn manifest_name(&self) -> String {
        manifest_name(&self.id)
    }

    /// The manifest as stored: pretty-printed JSON. Fails with [`Error::Invalid`] when it cannot
    /// be encoded.
    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Invalid(format!("cannot encode the manifest: {e}")))
    }

    /// Reads a manifest. `origin` (a path, an `s3://` address) names it in the error, which is
    /// [`Error::Damaged`] for anything that is not a PostgreSQL manifest. Unlike
    /// [`BackupManifest::from_json_of_kind`], it does not look at the `datastore` field.
    ///
    /// ```rust
    /// use pg_backup::{Compression, Format, Manifest, Tier};
    ///
    /// let json = br#"{
    ///   "id": "recommend_20261122T030000Z", "database": "recommend",
    ///   "system_identifier": "7301234567890123456",
    ///   "server_version": "17.2", "pg_dump_version": "17",
    ///   "format": "custom", "compression": {"algorithm": "zstd", "level": 3}, "tier": "weekly",
    ///   "artifact": "recommend_20261122T030000Z.dump.zst", "files": [],
    ///   "size_bytes": 1048576, "dump_bytes": 4194304, "sha256": "9f86d081884c7d659a2feaa0c55ad015",
    ///   "started_at": "2026-11-22T03:00:00Z", "finished_at": "2026-11-22T03:00:42Z",
    ///   "duration_seconds": 42.0,
    ///   "tables": [{"schema": "public", "name": "items", "row_estimate": 1000, "rows": 1024}],
    ///   "destinations": ["local", "s3"], "verified": null, "created_by": "pg-backup 0.1.0"
    /// }"#;
    /// let manifest = Manifest::from_json(json, "weekly/recommend_20261122T030000Z.manifest.json")?;
    /// assert_eq!(manifest.format, Format::Custom);
    /// assert_eq!((manifest.compression, manifest.tier), (Compression::Zstd(3), Tier::Weekly));
    /// assert_eq!(manifest.tables[0].rows, Some(1024));
    /// assert_eq!(manifest.manifest_name(), "recommend_20261122T030000Z.manifest.json");
    ///
    /// let error = Manifest::from_json(b"{}", "broken.manifest.json").unwrap_err();
    /// assert!(error.to_string().starts_with("broken.manifest.json is not a valid manifest"));
    /// # Ok::<(), pg_backup::Error>(())
    /// ```
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Manifest, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Damaged(format!("{origin} is not a valid manifest: {e}")))
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

    fn size_bytes(&self) -> u64 {
        self.size_bytes
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

/// The stored artifact's name for an id: `<id>.dump<ext>` (custom), `<id>.sql<ext>` (plain),
/// `<id>.dir` (directory), `<ext>` being the compression's extension.
///
/// ```rust
/// use chrono::{DateTime, Utc};
/// use pg_backup::{Compression, Format, artifact_name, backup_id};
///
/// let at: DateTime<Utc> = "2026-01-02T03:04:05Z".parse()?;
/// let id = backup_id("recommend", at);
/// assert_eq!(id, "recommend_20260102T030405Z");
/// let format = Format::parse("plain")?;
/// assert_eq!(artifact_name(&id, format, Compression::Gzip(6)), "recommend_20260102T030405Z.sql.gz");
/// assert_eq!(artifact_name(&id, Format::Custom, Compression::Zstd(3)), "recommend_20260102T030405Z.dump.zst");
/// assert_eq!(artifact_name(&id, Format::Directory, Compression::Zstd(3)), "recommend_20260102T030405Z.dir");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
