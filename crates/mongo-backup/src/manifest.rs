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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    pub database: String,
    pub name: String,
    /// `collection` or `view` (a view has no documents: its definition is in the metadata).
    #[serde(rename = "type")]
    pub kind: String,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `mongodb`: tells this manifest from PostgreSQL's in a shared store.
    pub datastore: String,
    pub id: String,
    /// What was backed up, for `list` and retention: the database's name when one was named,
    /// else `all`.
    pub name: String,
    /// The deployment the backup came from (the replica set's id, else its name, else the
    /// server's address): prune only ever deletes backups of its own deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub server_version: String,
    pub compression: Compression,
    pub tier: Tier,
    /// The archive next to the manifest (`<id>.zip.zst`).
    pub artifact: String,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Bytes of the ZIP archive before compression.
    pub archive_bytes: u64,
    /// SHA-256 of the stored file.
    pub sha256: String,
    pub consistency: Consistency,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub databases: Vec<String>,
    pub collections: Vec<CollectionInfo>,
    pub destinations: Vec<String>,
    pub verified: Option<Verification>,
    pub created_by: String,
}

impl Manifest {
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
