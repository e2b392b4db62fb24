//! The Milvus side of `bench/vector-admin.sh`: inserts, searches and index presets through
//! vector-admin on the data file the script shares with pymilvus.
//!
//! `milvus_bench data FILE ROWS DIM QUERIES` writes ROWS + QUERIES vectors (little-endian f32);
//! `milvus_bench insert FILE ROWS DIM BATCH COLLECTION` times inserts plus flush;
//! `milvus_bench search FILE ROWS DIM QUERIES COLLECTION` builds IVF_FLAT (nlist 1024), loads and
//! times QUERIES sequential top-10 searches (nprobe 16);
//! `milvus_bench presets FILE ROWS DIM QUERIES COLLECTION` builds each preset and reports build
//! time, p50/p99 latency and recall@10 against exact (FLAT) answers.
//! Every line printed is JSON.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use datastores::{MilvusConfig, Settings, Source};
use rand::{Rng, SeedableRng};
use vector_admin::workflow::{self, Waits};
use vector_admin::{Batch, CollectionSpec, Keys, Metric, MilvusStore, Preset, PresetChoice, VectorStore};

fn quiet(_: &str, _: u64, _: u64) {}

fn read(file: &str, rows: usize, dim: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
    let bytes = std::fs::read(file).unwrap();
    let all: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let (data, queries) = all.split_at(rows * dim);
    (data.to_vec(), queries.chunks(dim).map(<[f32]>::to_vec).collect())
}

fn spec(name: &str, dim: usize) -> CollectionSpec {
    CollectionSpec::new(name, "id", dim as u32, Metric::L2)
}

fn batch(data: &[f32], dim: usize) -> Batch {
    let rows = data.len() / dim;
    Batch { keys: Keys::Str((0..rows).map(|i| i.to_string()).collect()), dim, vectors: data.to_vec(), columns: vec![] }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn timed_searches(
    store: &MilvusStore,
    spec: &CollectionSpec,
    index: &vector_admin::ResolvedIndex,
    queries: &[Vec<f32>],
) -> (f64, f64, Vec<Vec<String>>) {
    let mut times = Vec::with_capacity(queries.len());
    let mut answers = Vec::with_capacity(queries.len());
    for q in queries {
        let started = Instant::now();
        let hits = store.search(spec, index, std::slice::from_ref(q), 10, &index.search).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        answers.push(hits[0].iter().map(|h| h.key.clone()).collect());
    }
    times.sort_by(f64::total_cmp);
    (percentile(&times, 0.5), percentile(&times, 0.99), answers)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args[i].parse::<usize>().unwrap();
    if args[1] == "data" {
        // Vectors around 2,000 centres with noise wider than their spread, so that a query's
        // neighbours lie in several clusters and approximate indexes differ in recall (with
        // noise of ±0.9 every preset found all ten).
        let (rows, dim, queries) = (arg(3), arg(4), arg(5));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let centres: Vec<Vec<f32>> =
            (0..2000).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
        let mut out = Vec::with_capacity((rows + queries) * dim * 4);
        for _ in 0..rows + queries {
            let c = &centres[rng.random_range(0..centres.len())];
            for x in c {
                out.extend_from_slice(&(x + rng.random_range(-1.6..1.6f32)).to_le_bytes());
            }
        }
        std::fs::write(&args[2], out).unwrap();
        return;
    }
    let settings = Settings::new().layer(Source::Environment, std::env::vars());
    let store = MilvusStore::connect(&MilvusConfig::from_settings(&settings).unwrap()).await.unwrap();
    let waits = Waits { index_stall: Duration::from_secs(300), ..Waits::default() };
    let (file, rows, dim) = (&args[2], arg(3), arg(4));
    let (data, queries) = read(file, rows, dim);
    match args[1].as_str() {
        "insert" => {
            let (size, name) = (arg(5), &args[6]);
            let spec = spec(name, dim);
            let _ = store.drop_collection(name).await;
            store.create(&spec, &workflow::wanted_index(&spec, None).unwrap()).await.unwrap();
            let all = batch(&data, dim);
            let started = Instant::now();
            let written = workflow::write_batches(&store, &spec, &all, size, false).await.unwrap();
            let inserted = started.elapsed().as_secs_f64();
            store.flush(std::slice::from_ref(name)).await.unwrap();
            let total = started.elapsed().as_secs_f64();
            assert_eq!(written, rows);
            println!(
                "{}",
                serde_json::json!({"side": "vector-admin", "rows": rows, "insert_s": inserted, "flush_s": total - inserted, "total_s": total, "rows_per_s": rows as f64 / total})
            );
        }
        "search" => {
            let name = &args[6];
            let mut spec = spec(name, dim);
            spec.index.preset = PresetChoice::Named(Preset::MediumIvf);
            spec.index.build.nlist = Some(1024);
            spec.index.search.nprobe = Some(16);
            let index = workflow::wanted_index(&spec, Some(rows as u64)).unwrap();
            workflow::replace_index(&store, &spec, &index, true, &waits, &quiet).await.unwrap();
            let q = &queries[..arg(5).min(queries.len())];
            let _ = timed_searches(&store, &spec, &index, &q[..q.len().min(50)]).await; // warm-up
            let (p50, p99, _) = timed_searches(&store, &spec, &index, q).await;
            println!(
                "{}",
                serde_json::json!({"side": "vector-admin", "searches": q.len(), "p50_ms": p50, "p99_ms": p99})
            );
        }
        "presets" => {
            let name = &args[6];
            let q = &queries[..arg(5).min(queries.len())];
            let mut spec = spec(name, dim);
            let mut exact: Vec<Vec<String>> = Vec::new();
            for preset in
                [Preset::SmallExact, Preset::MediumIvf, Preset::LargeHnsw, Preset::HighRecall, Preset::LowLatency]
            {
                spec.index.preset = PresetChoice::Named(preset);
                let index = workflow::wanted_index(&spec, Some(rows as u64)).unwrap();
                store.release(name).await.unwrap();
                store.drop_index(name).await.unwrap_or(());
                let started = Instant::now();
                store.create_index(name, &spec, &index).await.unwrap();
                workflow::wait_for_index(&store, name, &waits, &quiet).await.unwrap();
                let build = started.elapsed().as_secs_f64();
                store.load(name).await.unwrap();
                workflow::wait_for_load(&store, name, &waits, &quiet).await.unwrap();
                let _ = timed_searches(&store, &spec, &index, &q[..q.len().min(50)]).await;
                let (p50, p99, answers) = timed_searches(&store, &spec, &index, q).await;
                if preset == Preset::SmallExact {
                    exact = answers.clone();
                }
                let found: usize =
                    answers.iter().zip(&exact).map(|(a, e)| a.iter().filter(|k| e.contains(k)).count()).sum();
                let recall = found as f64 / (exact.len() * 10) as f64;
                println!(
                    "{}",
                    serde_json::json!({"preset": preset.name(), "index": workflow::describe_index(&index), "search": index.search, "build_s": build, "p50_ms": p50, "p99_ms": p99, "recall_at_10": recall})
                );
            }
            store.drop_collection(name).await.unwrap();
        }
        other => panic!("unknown command {other}"),
    }
}
