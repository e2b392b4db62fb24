//! Index presets and parameter validation: pure functions, checked before any request is sent.
//!
//! Milvus 2.3.5 checks none of these ranges itself: `M = 1` is accepted and its build then fails
//! and is retried forever; `nprobe = 0` or above `nlist` runs. The ranges are the ones Milvus
//! documents and 2.4 enforces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How similarity is measured. Milvus names them `L2`, `IP`, `COSINE`; Weaviate `l2-squared`,
/// `dot`, `cosine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Metric {
    /// Euclidean distance (Weaviate's squared L2); smaller is nearer.
    L2,
    /// Inner product; larger is nearer.
    Ip,
    /// Cosine similarity; larger is nearer (Weaviate reports the cosine distance).
    Cosine,
}

impl Metric {
    /// Milvus' name: `L2`, `IP` or `COSINE`.
    pub fn milvus(self) -> &'static str {
        match self {
            Metric::L2 => "L2",
            Metric::Ip => "IP",
            Metric::Cosine => "COSINE",
        }
    }

    /// Weaviate's name: `l2-squared`, `dot` or `cosine`.
    pub fn weaviate(self) -> &'static str {
        match self {
            Metric::L2 => "l2-squared",
            Metric::Ip => "dot",
            Metric::Cosine => "cosine",
        }
    }

    /// Reads Milvus' or Weaviate's name, in any case; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Metric> {
        match name.to_ascii_lowercase().as_str() {
            "l2" | "l2-squared" => Some(Metric::L2),
            "ip" | "dot" => Some(Metric::Ip),
            "cosine" => Some(Metric::Cosine),
            _ => None,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.milvus())
    }
}

/// The index structures the presets use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexKind {
    /// `FLAT`: exact search over every vector, no build parameters.
    #[serde(rename = "FLAT")]
    Flat,
    /// `IVF_FLAT`: `nlist` clusters, of which a search scans `nprobe`.
    #[serde(rename = "IVF_FLAT")]
    IvfFlat,
    /// `IVF_SQ8`: IVF with vectors quantised to 8 bits (a quarter of the memory, less recall).
    #[serde(rename = "IVF_SQ8")]
    IvfSq8,
    /// `HNSW`: a graph with `M` links per node built with `efConstruction`; searched with `ef`.
    #[serde(rename = "HNSW")]
    Hnsw,
    /// `DISKANN`: a graph on disk, searched with `search_list`; needs a Milvus built with disk
    /// indexes.
    #[serde(rename = "DISKANN")]
    DiskAnn,
}

impl IndexKind {
    /// Milvus' `index_type` name (`FLAT`, `IVF_FLAT`, `IVF_SQ8`, `HNSW`, `DISKANN`).
    pub fn milvus(self) -> &'static str {
        match self {
            IndexKind::Flat => "FLAT",
            IndexKind::IvfFlat => "IVF_FLAT",
            IndexKind::IvfSq8 => "IVF_SQ8",
            IndexKind::Hnsw => "HNSW",
            IndexKind::DiskAnn => "DISKANN",
        }
    }

    /// Reads Milvus' `index_type` name, in any case; `None` for a type no preset uses.
    pub fn from_milvus(name: &str) -> Option<IndexKind> {
        [IndexKind::Flat, IndexKind::IvfFlat, IndexKind::IvfSq8, IndexKind::Hnsw, IndexKind::DiskAnn]
            .into_iter()
            .find(|k| k.milvus().eq_ignore_ascii_case(name))
    }

    fn is_ivf(self) -> bool {
        matches!(self, IndexKind::IvfFlat | IndexKind::IvfSq8)
    }
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.milvus())
    }
}

/// Vector compression where the backend offers it separately from the index (Weaviate's PQ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Vectors are stored as they are (the default).
    #[default]
    None,
    /// Product quantisation (Weaviate's `pq`), what IVF_SQ8 and DISKANN map to on Weaviate.
    Pq,
}

/// The seed's six presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// `small_exact`: FLAT, exact; for fewer than 100K rows.
    SmallExact,
    /// `medium_ivf`: IVF_FLAT, `nlist` from the rows, `nprobe` = nlist/16; up to 10M rows.
    MediumIvf,
    /// `large_hnsw`: HNSW with `M` 16, `efConstruction` 200, `ef` 64; up to 100M rows.
    LargeHnsw,
    /// `xlarge_diskann`: DISKANN with `search_list` 100; above 100M rows.
    XlargeDiskann,
    /// `high_recall`: HNSW with `M` 32, `efConstruction` 400, `ef` 256.
    HighRecall,
    /// `low_latency`: IVF_SQ8, `nprobe` = nlist/32.
    LowLatency,
}

pub const PRESETS: [Preset; 6] = [
    Preset::SmallExact,
    Preset::MediumIvf,
    Preset::LargeHnsw,
    Preset::XlargeDiskann,
    Preset::HighRecall,
    Preset::LowLatency,
];

impl Preset {
    /// The preset's name in specs and flags (`medium_ivf`, ...); [`str::parse`] reads it back.
    pub fn name(self) -> &'static str {
        match self {
            Preset::SmallExact => "small_exact",
            Preset::MediumIvf => "medium_ivf",
            Preset::LargeHnsw => "large_hnsw",
            Preset::XlargeDiskann => "xlarge_diskann",
            Preset::HighRecall => "high_recall",
            Preset::LowLatency => "low_latency",
        }
    }

    /// The index structure the preset builds.
    pub fn kind(self) -> IndexKind {
        match self {
            Preset::SmallExact => IndexKind::Flat,
            Preset::MediumIvf => IndexKind::IvfFlat,
            Preset::LargeHnsw | Preset::HighRecall => IndexKind::Hnsw,
            Preset::XlargeDiskann => IndexKind::DiskAnn,
            Preset::LowLatency => IndexKind::IvfSq8,
        }
    }

    /// Build and search parameters for a collection of about `rows` rows. IVF's `nlist` follows
    /// the rows (4·√rows, within 64..=65536) when they are known, else 1024; `nprobe` is a
    /// fraction of it (1/16 for medium_ivf, 1/32 for low_latency, at least 8).
    pub fn params(self, rows: Option<u64>) -> (BuildParams, SearchParams) {
        let nlist = rows.map(nlist_for_rows).unwrap_or(1024);
        let ivf = |divisor: u32| {
            (
                BuildParams { nlist: Some(nlist), ..BuildParams::default() },
                SearchParams { nprobe: Some((nlist / divisor).clamp(8.min(nlist), nlist)), ..SearchParams::default() },
            )
        };
        match self {
            Preset::SmallExact => (BuildParams::default(), SearchParams::default()),
            Preset::MediumIvf => ivf(16),
            Preset::LowLatency => ivf(32),
            Preset::LargeHnsw => (
                BuildParams { m: Some(16), ef_construction: Some(200), ..BuildParams::default() },
                SearchParams { ef: Some(64), ..SearchParams::default() },
            ),
            Preset::HighRecall => (
                BuildParams { m: Some(32), ef_construction: Some(400), ..BuildParams::default() },
                SearchParams { ef: Some(256), ..SearchParams::default() },
            ),
            Preset::XlargeDiskann => {
                (BuildParams::default(), SearchParams { search_list: Some(100), ..SearchParams::default() })
            }
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Preset> {
        PRESETS.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            Error::invalid(format!(
                "unknown index preset {s:?}; expected auto or one of {}",
                PRESETS.map(Preset::name).join(", ")
            ))
        })
    }
}

/// A preset, or `auto`: chosen by row count as the seed's table says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PresetChoice {
    /// `auto` (the default): [`auto_preset`] of the collection's rows.
    #[default]
    Auto,
    /// A preset by name.
    Named(Preset),
}

impl FromStr for PresetChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<PresetChoice> {
        if s == "auto" { Ok(PresetChoice::Auto) } else { s.parse().map(PresetChoice::Named) }
    }
}

impl fmt::Display for PresetChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresetChoice::Auto => f.write_str("auto"),
            PresetChoice::Named(p) => p.fmt(f),
        }
    }
}

impl Serialize for PresetChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PresetChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The seed's table: under 100K rows FLAT, under 10M IVF_FLAT, under 100M HNSW, above DISKANN.
///
/// ```rust
/// use vector_admin::{IndexKind, Preset, auto_preset, validate_search};
///
/// let preset = auto_preset(1_000_000);
/// assert_eq!(preset, Preset::MediumIvf);
/// assert_eq!(preset.kind(), IndexKind::IvfFlat);
///
/// // nlist follows the rows (4·√rows), nprobe is nlist/16.
/// let (build, search) = preset.params(Some(1_000_000));
/// assert_eq!((build.nlist, search.nprobe), (Some(4000), Some(250)));
/// validate_search(preset.kind(), &build, &search, 10)?;
///
/// // Presets are named in specs and flags.
/// assert_eq!("high_recall".parse::<Preset>()?, Preset::HighRecall);
/// assert!("fastest".parse::<Preset>().is_err());
/// # Ok::<(), vector_admin::Error>(())
/// ```
pub fn auto_preset(rows: u64) -> Preset {
    match rows {
        r if r < 100_000 => Preset::SmallExact,
        r if r < 10_000_000 => Preset::MediumIvf,
        r if r < 100_000_000 => Preset::LargeHnsw,
        _ => Preset::XlargeDiskann,
    }
}

fn nlist_for_rows(rows: u64) -> u32 {
    ((4.0 * (rows as f64).sqrt()) as u32).clamp(64, 65_536)
}

/// Parameters of an index build. Unset ones are the preset's or the server's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildParams {
    /// IVF: the number of clusters, 1..=65536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlist: Option<u32>,
    /// HNSW: links per node (`M`), 4..=64.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "M")]
    pub m: Option<u32>,
    /// HNSW: candidate list size while building (`efConstruction`), 8..=512.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "efConstruction")]
    pub ef_construction: Option<u32>,
}

impl BuildParams {
    /// `b`'s values where set, else `self`'s.
    pub fn overlay(self, b: BuildParams) -> BuildParams {
        BuildParams {
            nlist: b.nlist.or(self.nlist),
            m: b.m.or(self.m),
            ef_construction: b.ef_construction.or(self.ef_construction),
        }
    }

    /// Checks the parameters `kind` uses against Milvus' documented ranges, and that none is
    /// set that `kind` does not use.
    pub fn validate(&self, kind: IndexKind) -> Result<()> {
        let unused = |name: &str| Err(Error::invalid(format!("{name} does not apply to a {kind} index")));
        match kind {
            k if k.is_ivf() => {
                range("nlist", self.nlist, 1, 65_536)?;
                if self.m.is_some() || self.ef_construction.is_some() {
                    return unused("M/efConstruction");
                }
            }
            IndexKind::Hnsw => {
                range("M", self.m, 4, 64)?;
                range("efConstruction", self.ef_construction, 8, 512)?;
                if self.nlist.is_some() {
                    return unused("nlist");
                }
            }
            _ => {
                if *self != BuildParams::default() {
                    return unused("nlist/M/efConstruction");
                }
            }
        }
        Ok(())
    }
}

/// Parameters of a search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// IVF: clusters scanned per query, 1..=nlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nprobe: Option<u32>,
    /// HNSW: candidate list size per query, top-k..=32768 (a class setting on Weaviate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<u32>,
    /// DISKANN: candidate list size per query, top-k..=65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_list: Option<u32>,
}

impl SearchParams {
    /// `b`'s values where set, else `self`'s.
    pub fn overlay(self, b: SearchParams) -> SearchParams {
        SearchParams {
            nprobe: b.nprobe.or(self.nprobe),
            ef: b.ef.or(self.ef),
            search_list: b.search_list.or(self.search_list),
        }
    }
}

/// Checks search parameters for a top-`k` search on an index of `kind` built with `build`:
/// `nprobe` within 1..=nlist, `ef` within k..=32768, `search_list` within k..=65535, and none
/// that `kind` does not use. `k` must be within 1..=16384.
///
/// # Errors
///
/// [`Error::Invalid`] naming the parameter and its range.
///
/// ```rust
/// use vector_admin::{BuildParams, IndexKind, SearchParams, validate_search};
///
/// let build = BuildParams { nlist: Some(128), ..BuildParams::default() };
/// let search = SearchParams { nprobe: Some(129), ..SearchParams::default() };
/// let err = validate_search(IndexKind::IvfFlat, &build, &search, 10).unwrap_err();
/// assert_eq!(err.to_string(), "nprobe = 129 is out of range: expected 1..=128");
///
/// // HNSW's ef must cover the top-k.
/// let search = SearchParams { ef: Some(5), ..SearchParams::default() };
/// assert!(validate_search(IndexKind::Hnsw, &BuildParams::default(), &search, 10).is_err());
/// ```
pub fn validate_search(kind: IndexKind, build: &BuildParams, search: &SearchParams, k: usize) -> Result<()> {
    if k == 0 || k > 16_384 {
        return Err(Error::invalid(format!("top-k {k} is out of range (1..=16384)")));
    }
    let k = k as u32;
    if kind.is_ivf() {
        range("nprobe", search.nprobe, 1, build.nlist.unwrap_or(65_536))?;
    } else if search.nprobe.is_some() {
        return Err(Error::invalid(format!("nprobe does not apply to a {kind} index")));
    }
    if kind == IndexKind::Hnsw {
        range("ef", search.ef, k, 32_768).map_err(|e| Error::invalid(format!("{e} (ef must be at least top-k)")))?;
    } else if search.ef.is_some() {
        return Err(Error::invalid(format!("ef does not apply to a {kind} index")));
    }
    if kind == IndexKind::DiskAnn {
        range("search_list", search.search_list, k, 65_535)?;
    } else if search.search_list.is_some() {
        return Err(Error::invalid(format!("search_list does not apply to a {kind} index")));
    }
    Ok(())
}

fn range(name: &str, value: Option<u32>, low: u32, high: u32) -> Result<()> {
    match value {
        Some(v) if v < low || v > high => {
            Err(Error::invalid(format!("{name} = {v} is out of range: expected {low}..={high}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_with_its_own_parameters() {
        for preset in PRESETS {
            for rows in [None, Some(1_000), Some(1_000_000), Some(1_000_000_000)] {
                let (build, search) = preset.params(rows);
                build.validate(preset.kind()).unwrap();
                validate_search(preset.kind(), &build, &search, 10).unwrap();
            }
        }
    }

    #[test]
    fn auto_follows_the_seed_table() {
        assert_eq!(auto_preset(99_999), Preset::SmallExact);
        assert_eq!(auto_preset(100_000), Preset::MediumIvf);
        assert_eq!(auto_preset(9_999_999), Preset::MediumIvf);
        assert_eq!(auto_preset(10_000_000), Preset::LargeHnsw);
        assert_eq!(auto_preset(100_000_000), Preset::XlargeDiskann);
        assert_eq!(Preset::MediumIvf.params(Some(1_000_000)).0.nlist, Some(4000));
        assert_eq!(Preset::MediumIvf.params(Some(10)).0.nlist, Some(64));
    }

    #[test]
    fn out_of_range_parameters_are_refused_with_their_names() {
        let err = BuildParams { m: Some(1), ..Default::default() }.validate(IndexKind::Hnsw).unwrap_err();
        assert!(err.to_string().contains("M = 1 is out of range: expected 4..=64"), "{err}");
        let err =
            BuildParams { ef_construction: Some(1000), ..Default::default() }.validate(IndexKind::Hnsw).unwrap_err();
        assert!(err.to_string().contains("efConstruction = 1000"), "{err}");
        let err = BuildParams { nlist: Some(0), ..Default::default() }.validate(IndexKind::IvfFlat).unwrap_err();
        assert!(err.to_string().contains("nlist = 0"), "{err}");
        let err = BuildParams { nlist: Some(128), ..Default::default() }.validate(IndexKind::Hnsw).unwrap_err();
        assert!(err.to_string().contains("does not apply"), "{err}");
        let build = BuildParams { nlist: Some(128), ..Default::default() };
        for nprobe in [0, 129] {
            let search = SearchParams { nprobe: Some(nprobe), ..Default::default() };
            let err = validate_search(IndexKind::IvfFlat, &build, &search, 10).unwrap_err();
            assert!(err.to_string().contains(&format!("nprobe = {nprobe}")), "{err}");
        }
        let search = SearchParams { ef: Some(5), ..Default::default() };
        let err = validate_search(IndexKind::Hnsw, &BuildParams::default(), &search, 10).unwrap_err();
        assert!(err.to_string().contains("at least top-k"), "{err}");
        assert!("fastest".parse::<Preset>().unwrap_err().to_string().contains("small_exact"));
    }
}
