//! The primitives a backend implements. Workflows over them live in [`crate::workflow`].

use std::fmt;

use serde::Serialize;

use crate::error::{Backend, Result};
use crate::preset::SearchParams;
use crate::spec::{CollectionSpec, ResolvedIndex};

/// The server as a whole.
#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo {
    pub backend: Backend,
    pub version: String,
    pub healthy: bool,
    /// Why the server is unhealthy, or other notes (Weaviate's nodes).
    pub notes: Vec<String>,
}

/// The build state of a collection's vector index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum IndexState {
    /// Built over every row.
    Finished,
    /// Building: `indexed` of `total` rows so far.
    Building {
        indexed: u64,
        total: u64,
    },
    Failed {
        reason: String,
    },
}

/// A collection's index as the server describes it.
#[derive(Clone, Debug, Serialize)]
pub struct IndexInfo {
    pub index: ResolvedIndex,
    pub state: IndexState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "percent")]
pub enum LoadState {
    NotLoaded,
    Loading(u8),
    Loaded,
}

/// One shard or segment of a collection.
#[derive(Clone, Debug, Serialize)]
pub struct ShardInfo {
    pub name: String,
    pub rows: u64,
    pub state: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub collection: String,
    pub rows: u64,
    pub index: Option<IndexInfo>,
    pub load: LoadState,
    /// Milvus segments, Weaviate shards.
    pub shards: Vec<ShardInfo>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FlushReport {
    /// Segments sealed and persisted per collection (0 where there was nothing to flush).
    pub segments: Vec<(String, usize)>,
    /// Whether the backend has a flush at all (Weaviate persists on its own).
    pub applicable: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompactionReport {
    pub collection: String,
    pub applicable: bool,
    pub completed: bool,
    /// Plans executed, and segments merged into fewer.
    pub plans: u64,
    pub segments_before: usize,
    pub segments_after: usize,
}

/// Primary keys of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Keys {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Keys {
    pub fn len(&self) -> usize {
        match self {
            Keys::Int(k) => k.len(),
            Keys::Str(k) => k.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> String {
        match self {
            Keys::Int(k) => k[i].to_string(),
            Keys::Str(k) => k[i].clone(),
        }
    }

    pub fn slice(&self, from: usize, to: usize) -> Keys {
        match self {
            Keys::Int(k) => Keys::Int(k[from..to].to_vec()),
            Keys::Str(k) => Keys::Str(k[from..to].to_vec()),
        }
    }
}

/// A scalar column of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Str(Vec<String>),
    Json(Vec<serde_json::Value>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Bool(v) => v.len(),
            Column::Int32(v) => v.len(),
            Column::Int64(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Double(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::Json(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` as JSON (for the REST backend).
    pub fn json(&self, i: usize) -> serde_json::Value {
        match self {
            Column::Bool(v) => v[i].into(),
            Column::Int32(v) => v[i].into(),
            Column::Int64(v) => v[i].into(),
            Column::Float(v) => v[i].into(),
            Column::Double(v) => v[i].into(),
            Column::Str(v) => v[i].clone().into(),
            Column::Json(v) => v[i].clone(),
        }
    }

    fn slice(&self, from: usize, to: usize) -> Column {
        match self {
            Column::Bool(v) => Column::Bool(v[from..to].to_vec()),
            Column::Int32(v) => Column::Int32(v[from..to].to_vec()),
            Column::Int64(v) => Column::Int64(v[from..to].to_vec()),
            Column::Float(v) => Column::Float(v[from..to].to_vec()),
            Column::Double(v) => Column::Double(v[from..to].to_vec()),
            Column::Str(v) => Column::Str(v[from..to].to_vec()),
            Column::Json(v) => Column::Json(v[from..to].to_vec()),
        }
    }
}

/// Rows to write, column by column: keys, vectors as one flat array of `rows × dim` floats, and
/// named scalar columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub keys: Keys,
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub columns: Vec<(String, Column)>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.keys.len()
    }

    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Rows `from..to` as a batch of their own.
    pub fn slice(&self, from: usize, to: usize) -> Batch {
        Batch {
            keys: self.keys.slice(from, to),
            dim: self.dim,
            vectors: self.vectors[from * self.dim..to * self.dim].to_vec(),
            columns: self.columns.iter().map(|(n, c)| (n.clone(), c.slice(from, to))).collect(),
        }
    }

    /// Checks the shape against `spec` before anything is sent: vector dimension, row counts,
    /// column names.
    pub fn check(&self, spec: &CollectionSpec) -> Result<()> {
        let invalid = |why: String| Err(crate::Error::invalid(format!("collection {}: {why}", spec.name)));
        if let Some(dim) = spec.dim
            && self.dim != dim as usize
        {
            return invalid(format!("vectors have dimension {}, the collection has {dim}", self.dim));
        }
        if self.dim == 0 || self.vectors.len() != self.rows() * self.dim {
            return invalid(format!(
                "{} floats are not {} vectors of dimension {}",
                self.vectors.len(),
                self.rows(),
                self.dim
            ));
        }
        if let Some(i) = self.vectors.iter().position(|v| !v.is_finite()) {
            return invalid(format!("vector {} holds a value that is not a finite number", i / self.dim));
        }
        for (name, column) in &self.columns {
            if column.len() != self.rows() {
                return invalid(format!("column {name} has {} values for {} rows", column.len(), self.rows()));
            }
            if !spec.fields.iter().any(|f| &f.name == name) {
                return invalid(format!("column {name} is not a field of the collection"));
            }
        }
        Ok(())
    }
}

/// Checks query vectors against the collection's dimension before a search is sent.
pub(crate) fn check_queries(spec: &CollectionSpec, queries: &[Vec<f32>]) -> Result<()> {
    match (spec.dim, queries.iter().find(|q| Some(q.len()) != spec.dim.map(|d| d as usize))) {
        (Some(dim), Some(q)) => Err(crate::Error::invalid(format!(
            "collection {}: a query vector has dimension {}, the collection has {dim}",
            spec.name,
            q.len()
        ))),
        _ => Ok(()),
    }
}

/// One search hit: the key and the distance or score the backend reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub key: String,
    pub score: f32,
}

/// Reports progress of long waits: (what, done, total).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Send + Sync);

/// What a vector database backend can do. Everything a workflow needs is here; what only one
/// backend can do is on that backend's type ([`crate::MilvusStore`], [`crate::WeaviateStore`]).
#[allow(async_fn_in_trait)]
pub trait VectorStore: fmt::Debug + Send + Sync {
    fn backend(&self) -> Backend;

    /// The index this backend builds for `index` (Weaviate maps presets onto its own types).
    fn native_index(&self, index: &ResolvedIndex) -> ResolvedIndex {
        *index
    }

    /// Checks what creating `spec` needs from the server (Weaviate: its vectorizer module).
    async fn preflight(&self, spec: &CollectionSpec) -> Result<()> {
        let _ = spec;
        Ok(())
    }

    /// Server version and health.
    async fn server(&self) -> Result<ServerInfo>;

    async fn list(&self) -> Result<Vec<String>>;

    /// The collection as the server has it, normalised into a spec (`None` when missing). The
    /// index is left at its defaults: read it with [`VectorStore::describe_index`].
    async fn describe(&self, name: &str) -> Result<Option<CollectionSpec>>;

    /// Creates a collection that does not exist (without its index on Milvus; with it on Weaviate,
    /// whose index belongs to the class).
    async fn create(&self, spec: &CollectionSpec, index: &ResolvedIndex) -> Result<()>;

    /// Adds fields to an existing collection. Backends that cannot add fields refuse.
    async fn add_fields(&self, name: &str, fields: &[crate::FieldSpec]) -> Result<()>;

    /// Drops a collection and its data. Callers ask for consent first.
    async fn drop_collection(&self, name: &str) -> Result<()>;

    async fn create_index(&self, name: &str, spec: &CollectionSpec, index: &ResolvedIndex) -> Result<()>;

    async fn describe_index(&self, name: &str) -> Result<Option<IndexInfo>>;

    async fn drop_index(&self, name: &str) -> Result<()>;

    /// Starts loading a collection into memory for search; [`VectorStore::load_state`] follows it.
    async fn load(&self, name: &str) -> Result<()>;

    async fn release(&self, name: &str) -> Result<()>;

    async fn load_state(&self, name: &str) -> Result<LoadState>;

    /// Persists what was written to these collections and waits until it is.
    async fn flush(&self, names: &[String]) -> Result<FlushReport>;

    /// Starts a compaction; returns an id for [`VectorStore::compaction_done`], or `None` when the
    /// backend compacts on its own.
    async fn start_compaction(&self, name: &str) -> Result<Option<i64>>;

    /// Whether compaction `id` has finished, the plans it completed, and those that failed or
    /// timed out.
    async fn compaction_done(&self, id: i64) -> Result<(bool, u64, u64)>;

    async fn stats(&self, name: &str) -> Result<Stats>;

    /// Inserts one batch (callers split large ones). Returns the rows written.
    async fn insert(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize>;

    /// Inserts or replaces rows by key.
    async fn upsert(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize>;

    async fn delete(&self, spec: &CollectionSpec, keys: &Keys) -> Result<()>;

    /// Top-`k` search of each query vector; `index` says which parameters apply (pass what
    /// [`VectorStore::describe_index`] returned: an `nprobe` is checked against its `nlist`).
    async fn search(
        &self,
        spec: &CollectionSpec,
        index: &ResolvedIndex,
        queries: &[Vec<f32>],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Hit>>>;
}
