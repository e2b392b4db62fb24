//! A damaged archive never passes verify and never reaches a database.

use backup_core::Compression;
use datastores::mongodb_driver::bson::{Document, doc};
use mongo_backup::{Error, Manifest, Selector};
use testkit::TestMongoDatabase;

use crate::{client, collection_names, fill, local, options, restore_options, verify_options};

const MARKER: &str = "the-one-document-that-gets-damaged";

async fn source_with_marker() -> TestMongoDatabase {
    let source = TestMongoDatabase::new();
    let client = client(&source).await;
    fill(&client, &source.name, "records", 3000, 500).await;
    client
        .database(&source.name)
        .collection::<Document>("records")
        .insert_one(doc! { "_id": "marked", "note": MARKER })
        .await
        .unwrap();
    source
}

pub(crate) fn flip(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, &bytes).unwrap();
}

/// A restore of the damaged backup fails and leaves the target database without a collection.
async fn restore_is_refused(source: &TestMongoDatabase, stores: mongo_backup::Stores, needle: &str) {
    let target = TestMongoDatabase::new();
    let err = mongo_backup::restore(&source.config, &restore_options(Selector::Latest, &target.name, stores))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(needle), "{err}");
    let client = client(&target).await;
    assert_eq!(
        collection_names(&client, &target.name).await,
        Vec::<String>::new(),
        "nothing was restored, no scratch collection left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flipped_byte_fails_verify_on_its_sha256() {
    let source = source_with_marker().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        mongo_backup::backup(&source.config, &options(&source.name, Some(dir.path().into()), None), &mut |_| {})
            .await
            .unwrap();
    let stores = local(dir.path());
    mongo_backup::verify(None, &verify_options(Selector::Latest, stores.clone(), false)).await.unwrap();

    let file = dir.path().join("daily").join(&manifest.artifact);
    flip(&file, std::fs::metadata(&file).unwrap().len() as usize / 2);
    let err = mongo_backup::verify(None, &verify_options(Selector::Latest, stores.clone(), false)).await.unwrap_err();
    let Error::Verify { backup, problems } = &err else { panic!("not a verification failure: {err}") };
    assert_eq!(backup, &manifest.id);
    assert!(problems.len() == 1 && problems[0].contains("SHA-256"), "{problems:?}");
    assert!(problems[0].contains(&manifest.sha256), "names the expected SHA-256: {problems:?}");
    restore_is_refused(&source, stores, "SHA-256").await;
}

/// Rewrites the manifest's SHA-256 to the damaged file's, as if the damage happened before the
/// checksum was taken.
pub(crate) fn forge_sha256(dir: &std::path::Path, manifest: &Manifest) {
    let file = dir.join("daily").join(&manifest.artifact);
    let path = dir.join("daily").join(format!("{}.manifest.json", manifest.id));
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["sha256"] = backup_core::sha256_file(&file).unwrap().into();
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_behind_a_matching_sha256_is_still_caught() {
    let source = source_with_marker().await;

    // Uncompressed: the byte lands inside a document, which stays well-formed BSON.
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&source.name, Some(dir.path().into()), None);
    opts.compression = Compression::None;
    let manifest = mongo_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let file = dir.path().join("daily").join(&manifest.artifact);
    let bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(MARKER.len()).position(|w| w == MARKER.as_bytes()).expect("the marker is in the archive");
    flip(&file, at + 3);
    forge_sha256(dir.path(), &manifest);
    let stores = local(dir.path());
    let err = mongo_backup::verify(None, &verify_options(Selector::Latest, stores.clone(), false))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("CRC-32") && err.contains("records.bson"), "{err}");
    restore_is_refused(&source, stores, "CRC-32").await;

    // zstd: the damaged frame does not decode to the archive that was written.
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        mongo_backup::backup(&source.config, &options(&source.name, Some(dir.path().into()), None), &mut |_| {})
            .await
            .unwrap();
    let file = dir.path().join("daily").join(&manifest.artifact);
    flip(&file, std::fs::metadata(&file).unwrap().len() as usize / 2);
    forge_sha256(dir.path(), &manifest);
    let stores = local(dir.path());
    let err = mongo_backup::verify(None, &verify_options(Selector::Latest, stores.clone(), false)).await.unwrap_err();
    assert!(!matches!(&err, Error::Verify { problems, .. } if problems.iter().any(|p| p.contains("SHA-256"))), "{err}");
    let listed = mongo_backup::list(&stores).await.unwrap();
    assert!(!listed[0].verified, "{err}");
}

/// A replacing restore is all or nothing: when a later collection of the archive turns out
/// damaged, the earlier ones, loaded already, replace nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacing_restore_that_fails_late_replaces_nothing() {
    let source = source_with_marker().await;
    let client = client(&source).await;
    // `configurations` sorts before `records` (the damaged one), so it is loaded first.
    client
        .database(&source.name)
        .collection::<Document>("configurations")
        .insert_many((0..20).map(|i| doc! { "_id": i, "from": "backup" }))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&source.name, Some(dir.path().into()), None);
    opts.compression = Compression::None;
    let manifest = mongo_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let file = dir.path().join("daily").join(&manifest.artifact);
    let bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(MARKER.len()).position(|w| w == MARKER.as_bytes()).unwrap();
    flip(&file, at + 3);
    forge_sha256(dir.path(), &manifest);

    let target = TestMongoDatabase::new();
    let tdb = client.database(&target.name);
    tdb.collection::<Document>("configurations").insert_one(doc! { "_id": "live", "from": "target" }).await.unwrap();
    tdb.collection::<Document>("records").insert_one(doc! { "_id": "live", "from": "target" }).await.unwrap();
    let mut consent = restore_options(Selector::Latest, &target.name, local(dir.path()));
    consent.clean = true;
    consent.yes = true;
    let err = mongo_backup::restore(&source.config, &consent).await.unwrap_err().to_string();
    assert!(err.contains("CRC-32"), "{err}");
    for name in ["configurations", "records"] {
        let left: Vec<Document> =
            futures::TryStreamExt::try_collect(tdb.collection::<Document>(name).find(doc! {}).await.unwrap())
                .await
                .unwrap();
        assert_eq!(left, [doc! { "_id": "live", "from": "target" }], "{name} is as it was");
    }
    assert_eq!(collection_names(&client, &target.name).await, ["configurations", "records"], "no scratch left");
}
