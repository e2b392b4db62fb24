//! The manifest: what a backup holds, written last. A backup without its manifest is not a
//! backup: `list`, `restore` and `prune` only ever see backups whose manifest exists.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

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

/// How the stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "algorithm", content = "level")]
pub enum Compression {
    Zstd(i32),
    Gzip(u32),
    None,
}

impl Compression {
    /// `zstd`, `zstd:9`, `gzip`, `gzip:6`, `none`.
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
    Daily,
    Weekly,
    Monthly,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Daily, Tier::Weekly, Tier::Monthly];

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

/// One file of a directory-format backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub at: DateTime<Utc>,
    /// `checksum`, `structure` or `restore`.
    pub method: String,
    pub ok: bool,
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

pub fn manifest_name(id: &str) -> String {
    format!("{id}.manifest.json")
}

/// `<database>_<YYYYMMDDTHHMMSSZ>`: sorts by time within a database.
pub fn backup_id(database: &str, at: DateTime<Utc>) -> String {
    format!("{database}_{}", at.format("%Y%m%dT%H%M%SZ"))
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
        assert_eq!(Compression::parse("zstd").unwrap(), Compression::Zstd(3));
        assert_eq!(Compression::parse("gzip:9").unwrap(), Compression::Gzip(9));
        assert!(Compression::parse("zstd:99").unwrap_err().contains("outside"));
        assert!(Compression::parse("lz4").is_err());
        assert_eq!(Format::parse("directory").unwrap(), Format::Directory);
        assert!(Format::parse("tar").is_err());
    }

    #[test]
    fn tiers_follow_the_seed_schedule() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(Tier::for_date(day(2026, 11, 1)), Tier::Monthly, "the 1st wins even on a Sunday");
        assert_eq!(Tier::for_date(day(2026, 11, 22)), Tier::Weekly);
        assert_eq!(Tier::for_date(day(2026, 11, 23)), Tier::Daily);
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
