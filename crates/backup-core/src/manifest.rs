//! What every backup's manifest has, and the names in a store. A backup without its manifest is
//! not a backup: `list`, `restore` and `prune` only ever see backups whose manifest exists.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;

/// How the stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "algorithm", content = "level")]
pub enum Compression {
    /// zstd at this level (1 to 19; `zstd` alone means 3): `.zst`, the default.
    Zstd(i32),
    /// gzip at this level (1 to 9; `gzip` alone means 6): `.gz`, pg-backup's default for plain
    /// SQL dumps.
    Gzip(u32),
    /// Stored as it comes.
    None,
}

impl Compression {
    /// `zstd`, `zstd:9`, `gzip`, `gzip:6`, `none`. The error says what is wrong with `text`
    /// (an unknown algorithm, a level that is not a number or is out of range).
    ///
    /// ```rust
    /// use backup_core::Compression;
    ///
    /// assert_eq!(Compression::parse("zstd"), Ok(Compression::Zstd(3)));
    /// assert_eq!(Compression::parse("gzip:9"), Ok(Compression::Gzip(9)));
    /// assert_eq!(Compression::parse("none")?.extension(), "");
    /// assert!(Compression::parse("zstd:99").is_err());
    /// assert_eq!(Compression::Zstd(3).to_string(), "zstd:3");
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> Result<Compression, String> {
        let (name, level) = match text.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (text, None),
        };
        let level = |default: i64, range: std::ops::RangeInclusive<i64>| -> Result<i64, String> {
            let value = match level {
                Some(l) => l.parse::<i64>().map_err(|_| format!("compression level {l:?} is not a number"))?,
                None => default,
            };
            if range.contains(&value) { Ok(value) } else { Err(format!("{name} level {value} is outside {range:?}")) }
        };
        match name {
            "zstd" => Ok(Compression::Zstd(level(3, 1..=19)? as i32)),
            "gzip" => Ok(Compression::Gzip(level(6, 1..=9)? as u32)),
            "none" => Ok(Compression::None),
            other => Err(format!("unknown compression {other:?}; use zstd[:level], gzip[:level] or none")),
        }
    }

    /// What the compression adds to the artifact's file name: `.zst`, `.gz`, or nothing.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd(_) => ".zst",
            Compression::Gzip(_) => ".gz",
            Compression::None => "",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
            Compression::Gzip(l) => write!(f, "gzip:{l}"),
            Compression::None => f.write_str("none"),
        }
    }
}

/// The retention tier a backup was taken for; also its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Kept for [`Retention::daily`](crate::Retention::daily) days (30 by default).
    Daily,
    /// Kept for [`Retention::weekly`](crate::Retention::weekly) ISO weeks (12 by default).
    Weekly,
    /// Kept for [`Retention::monthly`](crate::Retention::monthly) months (12 by default).
    Monthly,
}

impl Tier {
    /// Every tier, shortest-lived first: the folders a store may hold.
    pub const ALL: [Tier; 3] = [Tier::Daily, Tier::Weekly, Tier::Monthly];

    /// `daily`, `weekly`, `monthly`, or `auto`: the tier of `today` by [`Tier::for_date`]. The
    /// error names the accepted words.
    ///
    /// ```rust
    /// use backup_core::Tier;
    /// use chrono::NaiveDate;
    ///
    /// let sunday = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    /// assert_eq!(Tier::parse("auto", sunday), Ok(Tier::Weekly));
    /// assert_eq!(Tier::parse("monthly", sunday), Ok(Tier::Monthly));
    /// assert_eq!(Tier::for_date(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()), Tier::Monthly);
    /// assert_eq!(Tier::Daily.as_str(), "daily");
    /// assert!(Tier::parse("hourly", sunday).is_err());
    /// ```
    pub fn parse(text: &str, today: NaiveDate) -> Result<Tier, String> {
        match text {
            "daily" => Ok(Tier::Daily),
            "weekly" => Ok(Tier::Weekly),
            "monthly" => Ok(Tier::Monthly),
            "auto" => Ok(Tier::for_date(today)),
            other => Err(format!("unknown tier {other:?}; use daily, weekly, monthly or auto")),
        }
    }

    /// The seed's schedule: monthly on the 1st, weekly on Sundays, daily otherwise.
    pub fn for_date(day: NaiveDate) -> Tier {
        if day.day() == 1 {
            Tier::Monthly
        } else if day.weekday() == Weekday::Sun {
            Tier::Weekly
        } else {
            Tier::Daily
        }
    }

    /// The tier's name, which is also its folder in a store: `daily`, `weekly`, `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Daily => "daily",
            Tier::Weekly => "weekly",
            Tier::Monthly => "monthly",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of a backup stored as several files (pg_dump's directory format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The file's name inside the backup's folder (`toc.dat`, `3456.dat.gz`).
    pub name: String,
    /// Its size as stored, in bytes.
    pub bytes: u64,
    /// SHA-256 of the file as stored, lowercase hex.
    pub sha256: String,
}

/// A successful verification of a backup, recorded in its manifest (see
/// [`record_verification`](crate::record_verification)). Retention never deletes the newest
/// verified backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// When the verification was recorded (UTC).
    pub at: DateTime<Utc>,
    /// `checksum`, `structure` or `restore`.
    pub method: String,
    /// Whether the backup passed; a failed verification is not recorded, so this is `true` in
    /// every manifest dbkit writes.
    pub ok: bool,
}

/// A datastore's manifest, as the stores, retention and prune see it. Manifests of several
/// datastores may share a store: each is told apart by its `datastore` field (absent means
/// `postgresql`, the first), and a store listed for one datastore skips the others' manifests.
pub trait BackupManifest: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The `datastore` field's value in this kind of manifest.
    const DATASTORE: &'static str;
    /// The backup's id, `<name>_<YYYYMMDDTHHMMSSZ>` (see [`backup_id`]); unique in a store.
    fn id(&self) -> &str;
    /// The tier the backup was taken for, which is also its folder.
    fn tier(&self) -> Tier;
    /// The file (or folder) next to the manifest.
    fn artifact(&self) -> &str;
    /// The files of a backup stored as a folder; empty for one file.
    fn files(&self) -> &[FileEntry];
    /// SHA-256 of the stored file (one-file backups).
    fn sha256(&self) -> &str;
    /// Bytes stored: the compressed file, or all the files of a folder.
    fn size_bytes(&self) -> u64;
    /// When the backup finished (UTC): lists are sorted by it, and retention dates the backup by
    /// it.
    fn finished_at(&self) -> DateTime<Utc>;
    /// The verification recorded in the manifest, if any.
    fn verification(&self) -> Option<&Verification>;
    /// Replaces the recorded verification.
    fn set_verification(&mut self, verification: Verification);

    /// Whether a verification that passed is recorded.
    fn verified(&self) -> bool {
        self.verification().is_some_and(|v| v.ok)
    }

    /// The manifest's file name: `<id>.manifest.json`.
    fn manifest_name(&self) -> String {
        manifest_name(self.id())
    }

    /// The manifest as stored: pretty-printed JSON. Fails with [`Error::Invalid`] when it cannot
    /// be encoded.
    fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Invalid(format!("cannot encode the manifest: {e}")))
    }

    /// Reads a manifest of this datastore; `Ok(None)` for another datastore's.
    fn from_json_of_kind(bytes: &[u8], origin: &str) -> Result<Option<Self>, Error> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Damaged(format!("{origin} is not a valid manifest: {e}")))?;
        if datastore_of(&value) != Self::DATASTORE {
            return Ok(None);
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| Error::Damaged(format!("{origin} is not a valid manifest: {e}")))
    }
}

/// The datastore a manifest (as JSON) belongs to: its `datastore` field, `postgresql` when absent.
pub fn datastore_of(manifest: &serde_json::Value) -> &str {
    manifest.get("datastore").and_then(|d| d.as_str()).unwrap_or("postgresql")
}

/// The file name of backup `id`'s manifest, `<id>.manifest.json`, beside the artifact in its
/// tier's folder.
pub fn manifest_name(id: &str) -> String {
    format!("{id}.manifest.json")
}

/// `<name>_<YYYYMMDDTHHMMSSZ>`: sorts by time within a name.
pub fn backup_id(name: &str, at: DateTime<Utc>) -> String {
    format!("{name}_{}", at.format("%Y%m%dT%H%M%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(Compression::parse("zstd").unwrap(), Compression::Zstd(3));
        assert_eq!(Compression::parse("gzip:9").unwrap(), Compression::Gzip(9));
        assert!(Compression::parse("zstd:99").unwrap_err().contains("outside"));
        assert!(Compression::parse("lz4").is_err());
    }

    #[test]
    fn tiers_follow_the_seed_schedule() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(Tier::for_date(day(2026, 11, 1)), Tier::Monthly, "the 1st wins even on a Sunday");
        assert_eq!(Tier::for_date(day(2026, 11, 22)), Tier::Weekly);
        assert_eq!(Tier::for_date(day(2026, 11, 23)), Tier::Daily);
    }

    #[test]
    fn ids_sort_by_time() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        assert_eq!(backup_id("recommend", at), "recommend_20260102T030405Z");
    }
}
