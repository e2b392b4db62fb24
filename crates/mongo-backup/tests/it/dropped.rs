//! Collections dropped while a backup runs are reported in the manifest, not a crash.

use std::sync::mpsc;
use std::time::Duration;

use backup_core::Compression;
use datastores::mongodb_driver::bson::{Document, doc};
use mongo_backup::Selector;
use testkit::TestMongoDatabase;

use crate::{client, documents, fill, local, options, restore_options, verify_options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_dropped_during_the_backup_are_noted() {
    let source = TestMongoDatabase::new();
    let client = client(&source).await;
    // Read in name order: a_current is dropped while it is read (after the first progress
    // report with bytes stored), c_later when b_trigger starts, before its turn comes.
    fill(&client, &source.name, "a_current", 4000, 10_000).await;
    let db = client.database(&source.name);
    for name in ["b_trigger", "c_later", "d_kept"] {
        db.collection::<Document>(name).insert_many((0..100).map(|i| doc! { "_id": i, "name": name })).await.unwrap();
    }
    db.run_command(doc! { "createIndexes": "c_later", "indexes": [{ "key": { "name": 1 }, "name": "by_name" }] })
        .await
        .unwrap();

    // The callback runs inside the backup: it asks a task of its own to drop a collection, and
    // waits for the drop to be done.
    let (drop_tx, mut drop_rx) = tokio::sync::mpsc::unbounded_channel::<(String, mpsc::Sender<()>)>();
    let dropper = {
        let db = db.clone();
        tokio::spawn(async move {
            while let Some((name, done)) = drop_rx.recv().await {
                db.collection::<Document>(&name).drop().await.unwrap();
                let _ = done.send(());
            }
        })
    };
    let drop_now = move |name: &str| {
        let (done_tx, done_rx) = mpsc::channel();
        drop_tx.send((name.to_owned(), done_tx)).unwrap();
        done_rx.recv_timeout(Duration::from_secs(60)).expect("the collection was dropped");
    };
    let (current, trigger) = (format!("{}.a_current", source.name), format!("{}.b_trigger", source.name));
    let mut dropped = Vec::new();
    let mut progress = |p: mongo_backup::BackupProgress| {
        if p.collection == current && p.documents > 0 && !dropped.contains(&"a_current") {
            drop_now("a_current");
            dropped.push("a_current");
        }
        if p.collection == trigger && !dropped.contains(&"c_later") {
            drop_now("c_later");
            dropped.push("c_later");
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&source.name, Some(dir.path().into()), None);
    opts.compression = Compression::None;
    let manifest = mongo_backup::backup(&source.config, &opts, &mut progress).await.unwrap();
    let _ = progress;
    drop(drop_now);
    assert_eq!(dropped, ["a_current", "c_later"], "both drops happened during the backup");
    dropper.await.unwrap();

    let collections: Vec<&str> = manifest.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(collections, ["a_current", "b_trigger", "c_later", "d_kept"]);
    let a = &manifest.collections[0];
    let note = a.note.as_deref().unwrap_or_else(|| panic!("a_current has a note: {a:?}"));
    assert!(note.contains("dropped during the backup"), "{note}");
    assert!(a.documents > 0 && a.documents <= 4000, "{a:?}");
    let c = &manifest.collections[2];
    let note = c.note.as_deref().unwrap_or_else(|| panic!("c_later has a note: {c:?}"));
    assert!(note.contains("dropped during the backup"), "{note}");
    assert_eq!(c.documents, 0, "{c:?}");
    for kept in [&manifest.collections[1], &manifest.collections[3]] {
        assert_eq!((kept.note.as_deref(), kept.documents), (None, 100), "{kept:?}");
    }

    // The backup is whole: it verifies, and restores what it read.
    let stores = local(dir.path());
    mongo_backup::verify(None, &verify_options(Selector::Latest, stores.clone(), false)).await.unwrap();
    let target = TestMongoDatabase::new();
    let report =
        mongo_backup::restore(&source.config, &restore_options(Selector::Latest, &target.name, stores)).await.unwrap();
    assert_eq!(report.documents, a.documents + 200);
    for name in ["b_trigger", "d_kept"] {
        assert!(documents(&client, &target.name, name).await == documents(&client, &source.name, name).await, "{name}");
    }
    assert_eq!(documents(&client, &target.name, "a_current").await.len() as u64, a.documents);
}
