//! The primitives a backend implements. Workflows over them live in [`crate::workflow`].

use std::fmt;

use serde::Serialize;

use crate::error::{Backend, Result};
use crate::preset::SearchParams;
use crate::spec::{CollectionSpec, ResolvedIndex};

/// The server as a whole.
#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo {
    /// The backend that answered.
    pub backend: Backend,
    /// The server's version as it reports it (`v2.4.13`, `1.22.13`).
    pub version: String,
    /// Milvus' health check passed; for Weaviate, ready and every node `HEALTHY`.
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
        /// Rows indexed so far.
        indexed: u64,
        /// Rows to index.
        total: u64,
    },
    /// The build failed; it does not resume on its own.
    Failed {
        /// The server's reason.
        reason: String,
    },
}

/// A collection's index as the server describes it.
#[derive(Clone, Debug, Serialize)]
pub struct IndexInfo {
    /// Kind, metric and parameters of the index on the server.
    pub index: ResolvedIndex,
    /// How far its build is.
    pub state: IndexState,
}

/// Whether a collection is in memory and searchable (Weaviate's classes always are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "percent")]
pub enum LoadState {
    /// Released or never loaded: searches fail.
    NotLoaded,
    /// Loading, with the percentage done (0 to 100).
    Loading(u8),
    /// Loaded: searchable.
    Loaded,
}

/// One shard or segment of a collection.
#[derive(Clone, Debug, Serialize)]
pub struct ShardInfo {
    /// Milvus' segment id, or Weaviate's shard name.
    pub name: String,
    /// Rows in the segment (Weaviate does not report rows per shard: 0).
    pub rows: u64,
    /// Milvus' segment state (`growing`, `sealed`, `flushed`, ...) or Weaviate's shard status
    /// (`READY`, `READONLY`, ...).
    pub state: String,
}

/// What a collection holds and how ready it is: [`VectorStore::stats`].
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// The collection or class name.
    pub collection: String,
    /// Rows: exact (`count(*)`) for a loaded Milvus collection, otherwise Milvus' statistics,
    /// which count deleted and replaced rows until a compaction; Weaviate's object count.
    pub rows: u64,
    /// The vector index, `None` when there is none.
    pub index: Option<IndexInfo>,
    /// Whether the collection is loaded for search.
    pub load: LoadState,
    /// Milvus segments, Weaviate shards.
    pub shards: Vec<ShardInfo>,
}

/// What [`VectorStore::flush`] persisted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlushReport {
    /// Segments sealed and persisted per collection (0 where there was nothing to flush).
    pub segments: Vec<(String, usize)>,
    /// Whether the backend has a flush at all (Weaviate persists on its own).
    pub applicable: bool,
}

/// The outcome of compacting one collection ([`workflow::compact`](crate::workflow::compact)).
#[derive(Clone, Debug, Serialize)]
pub struct CompactionReport {
    /// The collection compacted.
    pub collection: String,
    /// Whether the backend has a compaction to start (Weaviate compacts on its own).
    pub applicable: bool,
    /// Whether the compaction finished within the wait.
    pub completed: bool,
    /// Plans executed, and segments merged into fewer.
    pub plans: u64,
    /// Persisted segments before the compaction.
    pub segments_before: usize,
    /// Persisted segments after it.
    pub segments_after: usize,
}

/// Primary keys of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Keys {
    /// `INT64` primary keys.
    Int(Vec<i64>),
    /// `VARCHAR` primary keys (on Weaviate, UUIDs or keys mapped to UUID v5).
    Str(Vec<String>),
}

impl Keys {
    /// The number of keys, which is the number of rows.
    pub fn len(&self) -> usize {
        match self {
            Keys::Int(k) => k.len(),
            Keys::Str(k) => k.len(),
        }
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Key `i` as text. Panics when `i` is out of range.
    pub fn get(&self, i: usize) -> String {
        match self {
            Keys::Int(k) => k[i].to_string(),
            Keys::Str(k) => k[i].clone(),
        }
    }

    /// Keys `from..to`. Panics when the range is out of bounds.
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
    /// A `BOOL` field.
    Bool(Vec<bool>),
    /// An `INT32` field.
    Int32(Vec<i32>),
    /// An `INT64` field.
    Int64(Vec<i64>),
    /// A `FLOAT` field.
    Float(Vec<f32>),
    /// A `DOUBLE` field.
    Double(Vec<f64>),
    /// A `VARCHAR` (Weaviate `text`) field.
    Str(Vec<String>),
    /// A `JSON` field.
    Json(Vec<serde_json::Value>),
}

impl Column {
    /// The number of values.
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

    /// Whether the column has no values.
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
    /// One primary key per row; their number is the number of rows.
    pub keys: Keys,
    /// The dimension of every vector.
    pub dim: usize,
    /// All vectors, row after row: `rows × dim` floats.
    pub vectors: Vec<f32>,
    /// Scalar columns by field name, each with one value per row.
    pub columns: Vec<(String, Column)>,
}

impl Batch {
    /// The number of rows (keys).
    pub fn rows(&self) -> usize {
        self.keys.len()
    }

    /// The vector of row `i`. Panics when `i` is out of range.
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
    /// The row's primary key (Milvus) or object UUID (Weaviate).
    pub key: String,
    /// Milvus' score (a distance for `L2`, a similarity for `IP` and `COSINE`) or Weaviate's
    /// distance (smaller is nearer).
    pub score: f32,
}

/// Reports progress of long waits: (what, done, total); `total` is 0 when unknown. A binary draws
/// it as a progress bar; pass `&|_, _, _| {}` to ignore it.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Send + Sync);

/// What a vector database backend can do. Everything a workflow needs is here; what only one
/// backend can do is on that backend's type ([`crate::MilvusStore`], [`crate::WeaviateStore`]).
#[allow(async_fn_in_trait)]
pub trait VectorStore: fmt::Debug + Send + Sync {
    /// Which backend this is.
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

    /// The names of every collection (Milvus) or class (Weaviate) on the server.
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

    /// Starts building `index` on the vector field of collection `name`; follow it with
    /// [`VectorStore::describe_index`]. Weaviate's index comes with the class: it changes only `ef`
    /// in place and refuses any other change.
    async fn create_index(&self, name: &str, spec: &CollectionSpec, index: &ResolvedIndex) -> Result<()>;

    /// The collection's vector index and its build state, `None` when it has none.
    async fn describe_index(&self, name: &str) -> Result<Option<IndexInfo>>;

    /// Drops the vector index (Milvus refuses while the collection is loaded). Weaviate refuses:
    /// its index goes only with the class.
    async fn drop_index(&self, name: &str) -> Result<()>;

    /// Starts loading a collection into memory for search; [`VectorStore::load_state`] follows it.
    async fn load(&self, name: &str) -> Result<()>;

    /// Releases a collection from memory: searches fail until it is loaded again. Weaviate refuses
    /// (its classes are always searchable).
    async fn release(&self, name: &str) -> Result<()>;

    /// Whether the collection is loaded, loading or not loaded.
    async fn load_state(&self, name: &str) -> Result<LoadState>;

    /// Persists what was written to these collections and waits until it is.
    async fn flush(&self, names: &[String]) -> Result<FlushReport>;

    /// Starts a compaction; returns an id for [`VectorStore::compaction_done`], or `None` when the
    /// backend compacts on its own.
    async fn start_compaction(&self, name: &str) -> Result<Option<i64>>;

    /// Whether compaction `id` has finished, the plans it completed, and those that failed or
    /// timed out.
    async fn compaction_done(&self, id: i64) -> Result<(bool, u64, u64)>;

    /// Rows, index, load state and segments or shards of a collection.
    async fn stats(&self, name: &str) -> Result<Stats>;

    /// Inserts one batch (callers split large ones). Returns the rows written.
    async fn insert(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize>;

    /// Inserts or replaces rows by key.
    async fn upsert(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize>;

    /// Deletes rows by key; keys that do not exist are ignored.
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
