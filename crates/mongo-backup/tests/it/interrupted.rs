//! A backup killed half-way leaves no manifest, is not listed, and the next backup sweeps its
//! leftovers.

use std::sync::mpsc;
use std::time::Duration;

use backup_core::Compression;
use mongo_backup::Selector;
use testkit::TestMongoDatabase;

use crate::{client, documents, files, fill, local, options, restore_options, verify_options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_half_way_leaves_no_manifest_and_is_swept() {
    let source = TestMongoDatabase::new();
    let client = client(&source).await;
    // About 40 MB stored uncompressed: several progress reports.
    fill(&client, &source.name, "big", 4000, 10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&source.name, Some(dir.path().into()), None);
    opts.compression = Compression::None;

    // The progress callback says when bytes are stored, then holds the backup until the test
    // has aborted it: the abort lands in the middle of the collection, however fast the machine.
    let (reached_tx, reached_rx) = mpsc::channel::<u64>();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let (config, running_opts) = (source.config.clone(), opts.clone());
    let running = tokio::spawn(async move {
        let mut held = false;
        let mut progress = move |p: mongo_backup::BackupProgress| {
            if !held && p.documents > 0 && p.stored_bytes > 0 {
                held = true;
                let _ = reached_tx.send(p.stored_bytes);
                let _ = resume_rx.recv_timeout(Duration::from_secs(60));
            }
        };
        mongo_backup::backup(&config, &running_opts, &mut progress).await
    });
    let stored = tokio::task::spawn_blocking(move || reached_rx.recv_timeout(Duration::from_secs(120)))
        .await
        .unwrap()
        .expect("the backup reported stored bytes");
    assert!(stored > 0);
    running.abort();
    resume_tx.send(()).unwrap();
    let outcome = running.await;
    assert!(outcome.as_ref().is_err_and(|e| e.is_cancelled()), "the backup was aborted, not finished: {outcome:?}");

    let left = files(dir.path());
    assert!(!left.iter().any(|f| f.ends_with(".manifest.json")), "no manifest: {left:?}");
    assert!(left.iter().any(|f| f.ends_with(".partial")), "the interrupted artifact is a .partial file: {left:?}");
    let stores = local(dir.path());
    assert!(mongo_backup::list(&stores).await.unwrap().is_empty(), "an interrupted backup is not listed");
    let err = mongo_backup::restore(
        &source.config,
        &restore_options(Selector::Latest, &testkit::unique_name("never"), stores.clone()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("no complete backup"), "{err}");

    // The next backup completes and removes the leftover.
    let manifest = mongo_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    assert_eq!(manifest.documents(), 4000);
    let left = files(dir.path());
    assert!(!left.iter().any(|f| f.ends_with(".partial") || f.ends_with(".lock")), "no leftovers: {left:?}");
    assert_eq!(
        left,
        [format!("daily/{}.manifest.json", manifest.id), format!("daily/{}", manifest.artifact)],
        "only the complete backup"
    );
    let listed = mongo_backup::list(&stores).await.unwrap();
    assert_eq!(listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), [manifest.id.as_str()]);
    mongo_backup::verify(None, &verify_options(Selector::Latest, stores.clone(), false)).await.unwrap();

    let target = TestMongoDatabase::new();
    mongo_backup::restore(&source.config, &restore_options(Selector::Latest, &target.name, stores)).await.unwrap();
    assert!(documents(&client, &target.name, "big").await == documents(&client, &source.name, "big").await);
}
