//! A restore never overwrites documents without consent, and changes nothing when it refuses.

use datastores::mongodb_driver::Client;
use datastores::mongodb_driver::bson::{Document, doc};
use mongo_backup::{Error, Selector};
use testkit::TestMongoDatabase;

use crate::{client, collection_names, documents, indexes, local, options, restore_options};

/// Every collection of a database with its documents and indexes.
async fn snapshot(
    client: &Client,
    database: &str,
) -> Vec<(String, Vec<Vec<u8>>, std::collections::BTreeMap<String, Document>)> {
    let mut out = Vec::new();
    for name in collection_names(client, database).await {
        out.push((name.clone(), documents(client, database, &name).await, indexes(client, database, &name).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_empty_target_is_refused_unchanged_and_replaced_only_with_consent() {
    let source = TestMongoDatabase::new();
    let client = client(&source).await;
    let db = client.database(&source.name);
    db.collection::<Document>("configurations")
        .insert_many((0..200).map(|i| doc! { "_id": i, "component": format!("c{i}"), "version": 2 }))
        .await
        .unwrap();
    db.collection::<Document>("model_logs")
        .insert_many((0..50).map(|i| doc! { "_id": i, "level": "info" }))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        mongo_backup::backup(&source.config, &options(&source.name, Some(dir.path().into()), None), &mut |_| {})
            .await
            .unwrap();
    let stores = local(dir.path());

    // The target holds documents of its own in one of the backup's collections, an index, and a
    // collection the backup does not have.
    let target = TestMongoDatabase::new();
    let tdb = client.database(&target.name);
    tdb.collection::<Document>("configurations")
        .insert_many((0..3).map(|i| doc! { "_id": i, "component": "precious", "version": 1 }))
        .await
        .unwrap();
    tdb.run_command(
        doc! { "createIndexes": "configurations", "indexes": [{ "key": { "component": 1 }, "name": "mine" }] },
    )
    .await
    .unwrap();
    tdb.collection::<Document>("unrelated").insert_one(doc! { "keep": true }).await.unwrap();
    let before = snapshot(&client, &target.name).await;

    let plain = restore_options(Selector::Id(manifest.id.clone()), &target.name, stores.clone());
    let err = mongo_backup::restore(&source.config, &plain).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::NeedsConsent(_)) && err.kind() == datastores::ErrorKind::NeedsConsent, "{message}");
    assert!(
        message.contains(&format!("{}.configurations", target.name)) && message.contains("--clean --yes"),
        "{message}"
    );
    assert_eq!(snapshot(&client, &target.name).await, before, "nothing changed, not even model_logs was created");

    // --clean without --yes: refused as well.
    let mut clean = plain.clone();
    clean.clean = true;
    let err = mongo_backup::restore(&source.config, &clean).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::NeedsConsent(_)) && message.contains("--yes"), "{message}");
    assert_eq!(snapshot(&client, &target.name).await, before, "nothing changed");

    // With consent: the backup's collections replace the target's, the others stay.
    clean.yes = true;
    let report = mongo_backup::restore(&source.config, &clean).await.unwrap();
    let replaced: Vec<(&str, bool, u64)> =
        report.collections.iter().map(|c| (c.collection.as_str(), c.replaced, c.documents)).collect();
    assert_eq!(replaced, [("configurations", true, 200), ("model_logs", false, 50)]);
    assert_eq!(collection_names(&client, &target.name).await, ["configurations", "model_logs", "unrelated"]);
    for name in ["configurations", "model_logs"] {
        assert!(
            documents(&client, &target.name, name).await == documents(&client, &source.name, name).await,
            "{name} holds the backup's documents"
        );
    }
    let kept: Vec<String> = indexes(&client, &target.name, "configurations").await.into_keys().collect();
    assert_eq!(kept, ["_id_"], "the replaced collection is the backup's, indexes included");
    assert_eq!(
        documents(&client, &target.name, "unrelated").await,
        before[1].1,
        "a collection not in the backup is untouched"
    );
}
