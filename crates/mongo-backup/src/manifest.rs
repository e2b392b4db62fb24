//! A MongoDB backup's manifest, written last, beside the archive.

use backup_core::{BackupManifest, Compression, FileEntry, Tier, Verification};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How consistent a backup's view of the data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// Every collection was read at one point in time of its own (a snapshot read per
    /// collection); collections are not consistent with each other.
    SnapshotPerCollection,
    /// Some collections were read without a snapshot (the server refused snapshot reads):
    /// writes during the read may or may not be in it. `CollectionInfo::snapshot` says which.
    None,
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Consistency::SnapshotPerCollection => "snapshot-per-collection",
            Consistency::None => "none",
        })
    }
}

/// A collection (or view) of the backup as the manifest records it: verify and restore check
/// what they read against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// The database it belongs to.
    pub database: String,
    /// The collection's name.
    pub name: String,
    /// `collection` or `view` (a view has no documents: its definition is in the metadata).
    #[serde(rename = "type")]
    pub kind: String,
    /// Documents in the backup.
    pub documents: u64,
    /// BSON bytes of the documents.
    pub bytes: u64,
    /// An order-independent hash of the documents' bytes (the sum of their XXH3-128), which
    /// `verify` recomputes from the archive and `verify --compare` from a restored copy.
    pub content_hash: String,
    /// Read in a snapshot.
    pub snapshot: bool,
    /// Indexes recorded in the metadata, `_id_` included.
    pub indexes: usize,
    /// Something that happened to this collection during the backup (dropped while it was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The manifest of a MongoDB backup, `<tier>/<id>.manifest.json` beside the archive and written
/// after it.
///
/// A store may hold PostgreSQL's manifests too; [`BackupManifest::from_json_of_kind`] reads only
/// MongoDB's:
///
/// ```rust
/// use backup_core::{BackupManifest, Compression, Tier};
/// use mongo_backup::{Consistency, Manifest};
///
/// let json = br#"{
///   "datastore": "mongodb", "id": "mongodb-recommend_20261122T030000Z", "name": "recommend",
///   "deployment": "setName:rs0", "server_version": "8.0.4",
///   "compression": {"algorithm": "zstd", "level": 3}, "tier": "weekly",
///   "artifact": "mongodb-recommend_20261122T030000Z.zip.zst",
///   "size_bytes": 52311, "archive_bytes": 180224, "sha256": "2c26b46b68ffc68ff99b453c1d304134",
///   "consistency": "snapshot-per-collection",
///   "started_at": "2026-11-22T03:00:00Z", "finished_at": "2026-11-22T03:00:04Z", "duration_seconds": 4.2,
///   "databases": ["recommend"],
///   "collections": [
///     {"database": "recommend", "name": "events", "type": "collection", "documents": 1200, "bytes": 170000,
///      "content_hash": "0f3a9c2e4b6d8f10213243546576879a", "snapshot": true, "indexes": 2},
///     {"database": "recommend", "name": "sessions", "type": "collection", "documents": 40, "bytes": 9000,
///      "content_hash": "5e4d3c2b1a0918273645546372819a0b", "snapshot": true, "indexes": 1}
///   ],
///   "destinations": ["local"], "verified": null, "created_by": "mongo-backup 0.1.0"
/// }"#;
/// let manifest = Manifest::from_json_of_kind(json, "weekly/mongodb-recommend_20261122T030000Z.manifest.json")?
///     .expect("a MongoDB manifest");
/// assert_eq!((manifest.tier, manifest.compression), (Tier::Weekly, Compression::Zstd(3)));
/// assert_eq!(manifest.consistency, Consistency::SnapshotPerCollection);
/// assert_eq!(manifest.documents(), 1240);
/// assert!(!manifest.verified());
///
/// // A PostgreSQL manifest (no `datastore` field) is not MongoDB's: skipped, not an error.
/// let postgres = br#"{"id": "recommend_20261122T020000Z", "database": "recommend"}"#;
/// assert!(Manifest::from_json_of_kind(postgres, "daily/recommend_20261122T020000Z.manifest.json")?.is_none());
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `mongodb`: tells this manifest from PostgreSQL's in a shared store.
    pub datastore: String,
    /// The backup's id, `mongodb-<name>_<YYYYMMDDTHHMMSSZ>`.
    pub id: String,
    /// What was backed up, for `list` and retention: the database's name when one was named,
    /// else `all`.
    pub name: String,
    /// The deployment the backup came from (the replica set's id, else its name, else the
    /// server's address): prune only ever deletes backups of its own deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The server's version, as `buildInfo` reports it (`8.0.4`).
    pub server_version: String,
    /// How the archive is compressed, as a whole.
    pub compression: Compression,
    /// The tier the backup was taken for, which is also its folder.
    pub tier: Tier,
    /// The archive next to the manifest (`<id>.zip.zst`).
    pub artifact: String,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Bytes of the ZIP archive before compression.
    pub archive_bytes: u64,
    /// SHA-256 of the stored file.
    pub sha256: String,
    /// Whether every collection was read in a snapshot of its own.
    pub consistency: Consistency,
    /// When the backup started (UTC): the second its id names.
    pub started_at: DateTime<Utc>,
    /// When the data was complete, just before the manifest was written (UTC).
    pub finished_at: DateTime<Utc>,
    /// From start to finish, in seconds.
    pub duration_seconds: f64,
    /// The databases backed up.
    pub databases: Vec<String>,
    /// Every collection and view of those databases (`system.*` excluded), in archive order.
    pub collections: Vec<CollectionInfo>,
    /// Where the data was complete when the manifest was written: `local`, `s3`, or both.
    pub destinations: Vec<String>,
    /// The last verification that passed; `None` until `verify` records one.
    pub verified: Option<Verification>,
    /// What wrote the backup: `mongo-backup <version>`.
    pub created_by: String,
}

impl Manifest {
    /// The documents of all collections.
    pub fn documents(&self) -> u64 {
        self.collections.iter().map(|c| c.documents).sum()
    }
}

impl BackupManifest for Manifest {
    const DATASTORE: &'static str = "mongodb";

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
        &[]
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

/// `<id>.zip.zst` (`.zip.gz`, `.zip`).
///
/// ```rust
/// use backup_core::Compression;
/// use mongo_backup::{artifact_name, backup_name};
///
/// assert_eq!(backup_name(&["recommend".to_owned()]), "recommend");
/// assert_eq!(backup_name(&[]), "all");
/// assert_eq!(backup_name(&["recommend".to_owned(), "features".to_owned()]), "all");
/// let id = "mongodb-recommend_20261122T030000Z";
/// assert_eq!(artifact_name(id, Compression::Zstd(3)), "mongodb-recommend_20261122T030000Z.zip.zst");
/// assert_eq!(artifact_name(id, Compression::None), "mongodb-recommend_20261122T030000Z.zip");
/// ```
pub fn artifact_name(id: &str, compression: Compression) -> String {
    format!("{id}.zip{}", compression.extension())
}

/// The order-independent content hash of a collection: the wrapping sum of each document's
/// XXH3-128.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ContentHash {
    sum: u128,
}

impl ContentHash {
    pub(crate) fn add(&mut self, document: &[u8]) {
        self.sum = self.sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(document));
    }

    pub(crate) fn hex(self) -> String {
        format!("{:032x}", self.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_hash_ignores_order() {
        let (mut a, mut b) = (ContentHash::default(), ContentHash::default());
        a.add(b"one");
        a.add(b"two");
        b.add(b"two");
        b.add(b"one");
        assert_eq!(a.hex(), b.hex());
        b.add(b"two");
        assert_ne!(a.hex(), b.hex(), "a duplicate changes the hash");
    }
}
