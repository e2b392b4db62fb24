use std::time::Duration;

use datastores::{Datastore, MilvusConfig, Settings, Source};
use testkit::{expect_up, require, unique_name};
use vector_admin::workflow::{self, Action, Waits};
use vector_admin::{
    Error, IndexKind, IndexState, Keys, LoadState, Metric, MilvusStore, Preset, PresetChoice, SearchParams, VectorStore,
};

use crate::{test_batch, test_spec};

fn quiet(_: &str, _: u64, _: u64) {}

fn waits() -> Waits {
    Waits { index_stall: Duration::from_secs(60), poll: Duration::from_millis(200), ..Waits::default() }
}

async fn store() -> MilvusStore {
    let config = expect_up(MilvusConfig::from_settings(&require(Datastore::Milvus)));
    expect_up(MilvusStore::connect(&config).await)
}

/// Drops the collection when the test ends, whatever happened. It connects anew on a runtime
/// of its own: the test's channel is served by the test's runtime, which is blocked here.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let config = MilvusConfig::from_settings(&testkit::settings()).unwrap();
                if let Ok(store) = MilvusStore::connect(&config).await {
                    let _ = store.drop_collection(&name).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn every_operation_on_a_real_milvus() {
    let store = store().await;
    let name = unique_name("va_ops");
    let _cleanup = Cleanup(name.clone());
    let spec = test_spec(&name, 16, Metric::L2);
    let specs = [spec.clone()];

    let plan = workflow::plan(&store, &specs).await.unwrap();
    let actions: Vec<&str> = plan.collections[0]
        .actions
        .iter()
        .map(|a| match a {
            Action::Create => "create",
            Action::CreateIndex { .. } => "index",
            Action::Load => "load",
            _ => "other",
        })
        .collect();
    assert_eq!(actions, ["create", "index", "load"]);
    assert!(store.describe(&name).await.unwrap().is_none(), "plan must not create anything");

    let first = workflow::apply(&store, &specs, &waits(), &quiet).await.unwrap();
    assert_eq!(first.done.len(), 3, "{:?}", first.done);
    let second = workflow::apply(&store, &specs, &waits(), &quiet).await.unwrap();
    assert!(second.done.is_empty(), "the second apply changed {:?}", second.done);
    assert_eq!(second.plan.changes() + second.plan.drift(), 0);

    let observed = store.describe(&name).await.unwrap().unwrap();
    assert_eq!((observed.dim, &observed.key, &observed.fields), (Some(16), &spec.key, &spec.fields));
    assert!(store.list().await.unwrap().contains(&name));

    let batch = test_batch(1000, 16, 1);
    assert_eq!(workflow::write_batches(&store, &spec, &batch, 300, false).await.unwrap(), 1000);
    let mut changed = batch.slice(0, 10);
    changed.vectors.iter_mut().for_each(|v| *v += 10.0);
    assert_eq!(store.upsert(&spec, &changed).await.unwrap(), 10);
    store
        .delete(&spec, &Keys::Str(vec!["k995".into(), "k996".into(), "k997".into(), "k998".into(), "k999".into()]))
        .await
        .unwrap();
    let flushed = store.flush(std::slice::from_ref(&name)).await.unwrap();
    assert!(flushed.applicable && flushed.segments[0].1 >= 1, "{flushed:?}");
    assert_eq!(store.count_rows(&name).await.unwrap(), 995, "1000 inserted, 10 replaced, 5 deleted");

    let index = workflow::wanted_index(&spec, Some(1000)).unwrap();
    let query = batch.vector(500).to_vec();
    let hits = store
        .search(&spec, &index, &[query.clone(), changed.vector(3).to_vec()], 5, &SearchParams::default())
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0][0].key, "k500");
    assert!(hits[0][0].score.abs() < 1e-3, "{:?}", hits[0][0]);
    assert_eq!(hits[1][0].key, "k3", "the upserted vector is found");
    let gone = store.search(&spec, &index, &[batch.vector(997).to_vec()], 3, &SearchParams::default()).await.unwrap();
    assert!(gone[0].iter().all(|h| h.key != "k997"), "a deleted row was found: {gone:?}");

    let stats = store.stats(&name).await.unwrap();
    assert!(stats.rows >= 995 && stats.load == LoadState::Loaded && !stats.shards.is_empty(), "{stats:?}");
    assert_eq!(stats.index.unwrap().index.kind, IndexKind::Flat, "auto below 100K rows is FLAT");

    let compaction = workflow::compact(&store, &name, &waits(), &quiet).await.unwrap();
    assert!(compaction.applicable && compaction.completed, "{compaction:?}");

    store.release(&name).await.unwrap();
    assert_eq!(store.load_state(&name).await.unwrap(), LoadState::NotLoaded);
    let health = workflow::health(&store, &specs, false).await.unwrap();
    assert!(!health.healthy && health.collections[0].problems.iter().any(|p| p.contains("not loaded")), "{health:?}");
    let maintained = workflow::maintain(&store, &specs, &waits(), &quiet).await.unwrap();
    assert!(maintained.ok, "{maintained:?}");
    let steps: Vec<&str> = maintained.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "health",
            "flush",
            &format!("compact {name}"),
            &format!("index {name}"),
            &format!("load {name}"),
            "health after"
        ]
    );
    assert_eq!(store.load_state(&name).await.unwrap(), LoadState::Loaded, "maintain loads what is not loaded");
    assert!(workflow::health(&store, &specs, false).await.unwrap().healthy);

    let refused = workflow::drop_collection(&store, &name, false).await.unwrap_err();
    assert!(matches!(refused, Error::NeedsConsent(_)) && refused.to_string().contains("995 rows"), "{refused}");
    assert!(store.describe(&name).await.unwrap().is_some(), "a refused drop dropped the collection");
    workflow::drop_collection(&store, &name, true).await.unwrap();
    assert!(store.describe(&name).await.unwrap().is_none());
}

#[tokio::test]
async fn drift_is_reported_and_left_alone() {
    let store = store().await;
    let name = unique_name("va_drift");
    let _cleanup = Cleanup(name.clone());
    let existing = test_spec(&name, 8, Metric::L2);
    workflow::apply(&store, std::slice::from_ref(&existing), &waits(), &quiet).await.unwrap();
    store.insert(&existing, &test_batch(20, 8, 2)).await.unwrap();

    let mut wanted = test_spec(&name, 16, Metric::Ip);
    wanted.fields.push(vector_admin::FieldSpec::new("extra", vector_admin::FieldKind::Int64));
    let report = workflow::apply(&store, &[wanted], &waits(), &quiet).await.unwrap();
    assert!(report.done.is_empty(), "{:?}", report.done);
    let drift: Vec<&str> = report.plan.collections[0].drift.iter().map(|d| d.what.as_str()).collect();
    assert_eq!(drift, ["dimension", "fields", "metric"]);
    let observed = store.describe(&name).await.unwrap().unwrap();
    assert_eq!((observed.dim, observed.metric), (Some(8), Metric::L2), "drift must be left alone");

    // A collection of the wrong shape without an index gets none: it must be recreated first.
    let bare = unique_name("va_drift_bare");
    let _cleanup_bare = Cleanup(bare.clone());
    let small = test_spec(&bare, 8, Metric::L2);
    store.create(&small, &workflow::wanted_index(&small, None).unwrap()).await.unwrap();
    let report = workflow::apply(&store, &[test_spec(&bare, 16, Metric::L2)], &waits(), &quiet).await.unwrap();
    assert!(report.done.is_empty(), "{:?}", report.done);
    assert_eq!(report.plan.collections[0].drift[0].needs, "recreate collection");
    assert!(store.describe_index(&bare).await.unwrap().is_none(), "an index was built on a collection to recreate");
    assert_eq!(store.load_state(&bare).await.unwrap(), LoadState::NotLoaded);
}

#[tokio::test]
async fn every_preset_this_milvus_builds_is_built_and_searched() {
    let store = store().await;
    let name = unique_name("va_presets");
    let _cleanup = Cleanup(name.clone());
    let mut spec = test_spec(&name, 32, Metric::L2);
    spec.index.preset = PresetChoice::Named(Preset::SmallExact);
    workflow::apply(&store, std::slice::from_ref(&spec), &waits(), &quiet).await.unwrap();
    let batch = test_batch(3000, 32, 3);
    workflow::write_batches(&store, &spec, &batch, 1000, false).await.unwrap();
    store.flush(std::slice::from_ref(&name)).await.unwrap();

    for preset in [Preset::SmallExact, Preset::MediumIvf, Preset::LargeHnsw, Preset::HighRecall, Preset::LowLatency] {
        spec.index.preset = PresetChoice::Named(preset);
        let index = workflow::wanted_index(&spec, Some(3000)).unwrap();
        let steps = workflow::replace_index(&store, &spec, &index, true, &waits(), &quiet).await.unwrap();
        assert!(steps.last().unwrap().contains("loaded"), "{preset}: {steps:?}");
        let info = store.describe_index(&name).await.unwrap().unwrap();
        assert_eq!((info.index.kind, info.state), (preset.kind(), IndexState::Finished), "{preset}");
        assert_eq!(info.index.build, index.build, "{preset}: the server holds the preset's parameters");
        let hits = store.search(&spec, &index, &[batch.vector(42).to_vec()], 10, &index.search).await.unwrap();
        assert_eq!(hits[0].len(), 10, "{preset}");
        assert_eq!(hits[0][0].key, "k42", "{preset}: a stored vector finds itself");
    }
}

#[tokio::test]
async fn a_diskann_build_that_cannot_finish_is_reported_stuck() {
    let store = store().await;
    let name = unique_name("va_diskann");
    let _cleanup = Cleanup(name.clone());
    let mut spec = test_spec(&name, 16, Metric::L2);
    spec.index.preset = PresetChoice::Named(Preset::XlargeDiskann);
    store.create(&spec, &workflow::wanted_index(&spec, None).unwrap()).await.unwrap();
    store.insert(&spec, &test_batch(2000, 16, 4)).await.unwrap();
    store.flush(std::slice::from_ref(&name)).await.unwrap();
    let short = Waits { index_stall: Duration::from_secs(8), ..waits() };
    let err = workflow::apply(&store, std::slice::from_ref(&spec), &short, &quiet).await.unwrap_err();
    match &err {
        Error::IndexStuck { collection, hint, progress } => {
            assert_eq!(collection, &name);
            assert!(progress.contains("rows indexed") && progress.contains("no progress"), "{err}");
            assert!(hint.contains("DISKANN"), "{err}");
        }
        other => panic!("expected a stuck build, got {other}"),
    }
}

#[tokio::test]
async fn replacing_an_index_needs_consent() {
    let store = store().await;
    let name = unique_name("va_replace");
    let _cleanup = Cleanup(name.clone());
    let mut spec = test_spec(&name, 8, Metric::L2);
    workflow::apply(&store, std::slice::from_ref(&spec), &waits(), &quiet).await.unwrap();
    spec.index.preset = PresetChoice::Named(Preset::LargeHnsw);
    let index = workflow::wanted_index(&spec, Some(0)).unwrap();
    let err = workflow::replace_index(&store, &spec, &index, false, &waits(), &quiet).await.unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("--replace"), "{err}");
    let info = store.describe_index(&name).await.unwrap().unwrap();
    assert_eq!(info.index.kind, IndexKind::Flat, "the index was changed without consent");
    assert_eq!(
        store.load_state(&name).await.unwrap(),
        LoadState::Loaded,
        "the collection was released without consent"
    );
    let plan = workflow::plan(&store, std::slice::from_ref(&spec)).await.unwrap();
    assert_eq!(plan.collections[0].drift[0].needs, "rebuild index");
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_changes() {
    let store = store().await;
    let name = unique_name("va_bad");
    let _cleanup = Cleanup(name.clone());
    let mut spec = test_spec(&name, 8, Metric::L2);
    assert!("fastest".parse::<PresetChoice>().unwrap_err().to_string().contains("unknown index preset"));

    spec.index.preset = PresetChoice::Named(Preset::LargeHnsw);
    spec.index.build.m = Some(1);
    let err = workflow::apply(&store, std::slice::from_ref(&spec), &waits(), &quiet).await.unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("M = 1"), "{err}");
    assert!(store.describe(&name).await.unwrap().is_none(), "an invalid spec created the collection");

    spec.index.build.m = None;
    workflow::apply(&store, std::slice::from_ref(&spec), &waits(), &quiet).await.unwrap();
    let wrong = test_batch(10, 16, 5);
    let err = store.insert(&spec, &wrong).await.unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("dimension 16"), "{err}");
    store.flush(std::slice::from_ref(&name)).await.unwrap();
    assert_eq!(store.count_rows(&name).await.unwrap(), 0);

    let index = workflow::wanted_index(&spec, Some(0)).unwrap();
    let err = store
        .search(&spec, &index, &[vec![0.0; 8]], 10, &SearchParams { ef: Some(5), ..Default::default() })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least top-k"), "{err}");

    let missing = unique_name("va_missing");
    for err in [store.stats(&missing).await.unwrap_err(), store.load(&missing).await.unwrap_err()] {
        assert!(matches!(err, Error::NotFound { .. }) && err.to_string().contains(&missing), "{err}");
    }
    let err = workflow::drop_collection(&store, &missing, true).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_an_error_not_a_hang() {
    let silent = testkit::SilentServer::start();
    for port in [silent.port, testkit::closed_port()] {
        let port = port.to_string();
        let settings = Settings::new().layer(
            Source::Other("test".into()),
            [
                ("MILVUS_HOST", "127.0.0.1"),
                ("MILVUS_PORT", port.as_str()),
                ("MILVUS_CONNECT_TIMEOUT", "2s"),
                ("MILVUS_TIMEOUT", "2s"),
            ],
        );
        let config = MilvusConfig::from_settings(&settings).unwrap();
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            let store = MilvusStore::connect(&config).await?;
            store.list().await
        })
        .await
        .expect("the client hung on a server that does not answer");
        let err = outcome.unwrap_err().to_string();
        assert!(err.contains(&port), "the error names the endpoint: {err}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
