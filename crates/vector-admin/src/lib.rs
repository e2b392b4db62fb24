//! Milvus and Weaviate behind one trait.
//!
//! A backend implements the primitives of [`VectorStore`] (describe, create, index, load, flush,
//! write, search, ...). The workflows that users run are written once over the trait in
//! [`workflow`]: `plan` and `apply` of [`CollectionSpec`]s, replacing an index with consent,
//! waits with deadlines, `health` and the seed's `maintain` routine. Index [`Preset`]s and every
//! parameter are validated by pure functions before a request is sent.
//!
//! The library never prints or exits: long waits report through a [`Progress`] callback and
//! every outcome is a value or a typed [`Error`].
#![warn(missing_docs)]

#[cfg(feature = "bootstrap")]
pub mod bootstrap;
mod error;
mod milvus;
mod preset;
mod spec;
mod store;
mod weaviate;
pub mod workflow;

pub use crate::error::{Backend, Error, Result};
pub use crate::milvus::MilvusStore;
pub use crate::preset::{
    BuildParams, Compression, IndexKind, Metric, Preset, PresetChoice, SearchParams, auto_preset, validate_search,
};
pub use crate::spec::{
    CollectionSpec, Consistency, FieldKind, FieldSpec, IndexSpec, ResolvedIndex, SpecFile, Vectorizer, builtin_milvus,
    builtin_weaviate,
};
pub use crate::store::{
    Batch, Column, CompactionReport, FlushReport, Hit, IndexInfo, IndexState, Keys, LoadState, Progress, ServerInfo,
    ShardInfo, Stats, VectorStore,
};
pub use crate::weaviate::WeaviateStore;
