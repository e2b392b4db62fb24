//! Tests of vector-admin against the stack's Milvus and a stateful fake Weaviate checked against
//! Weaviate's OpenAPI documents.

#![allow(clippy::unwrap_used)]

mod milvus;
mod weaviate;

use rand::{Rng, SeedableRng};
use vector_admin::{Batch, CollectionSpec, Column, FieldKind, FieldSpec, Keys, Metric};

/// A spec with a VarChar key, `dim`-dimensional vectors and two scalar fields.
pub fn test_spec(name: &str, dim: u32, metric: Metric) -> CollectionSpec {
    let mut spec = CollectionSpec::new(name, "id", dim, metric);
    spec.fields = vec![FieldSpec::new("category", FieldKind::Varchar), FieldSpec::new("updated_at", FieldKind::Int64)];
    // Searches see every write acknowledged before them (Bounded lags by a few seconds).
    spec.consistency = vector_admin::Consistency::Strong;
    spec
}

/// `rows` rows keyed `k0..`, vectors around 20 centres with noise (so presets' recall differs),
/// and both scalar columns.
pub fn test_batch(rows: usize, dim: usize, seed: u64) -> Batch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let mut vectors = Vec::with_capacity(rows * dim);
    for i in 0..rows {
        let c = &centres[i % centres.len()];
        vectors.extend(c.iter().map(|x| x + rng.random_range(-0.5..0.5f32)));
    }
    Batch {
        keys: Keys::Str((0..rows).map(|i| format!("k{i}")).collect()),
        dim,
        vectors,
        columns: vec![
            ("category".into(), Column::Str((0..rows).map(|i| format!("c{}", i % 7)).collect())),
            ("updated_at".into(), Column::Int64((0..rows).map(|i| 1_700_000_000 + i as i64).collect())),
        ],
    }
}
