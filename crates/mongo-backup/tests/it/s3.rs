//! A backup to S3 alone: listed there, restored from there, verified there.

use datastores::mongodb_driver::bson::{DateTime, Document, doc};
use mongo_backup::{Selector, Stores};
use testkit::{TestMongoDatabase, TestS3Prefix};

use crate::{client, collection_names, documents, fill, indexes, options, restore_options, verify_options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_s3_alone_lists_restores_and_verifies() {
    let source = TestMongoDatabase::new();
    let client = client(&source).await;
    // Over one 5 MiB part once compressed: a multipart upload of several parts.
    fill(&client, &source.name, "model_logs", 1500, 8_000).await;
    let db = client.database(&source.name);
    db.collection::<Document>("task_status_cache")
        .insert_many((0..20).map(|i| doc! { "task_id": i, "last_updated": DateTime::now() }))
        .await
        .unwrap();
    db.run_command(doc! {
        "createIndexes": "task_status_cache",
        "indexes": [{ "key": { "last_updated": 1 }, "name": "ttl", "expireAfterSeconds": 86_400 }],
    })
    .await
    .unwrap();
    let prefix = TestS3Prefix::new();
    let manifest =
        mongo_backup::backup(&source.config, &options(&source.name, None, Some(prefix.config.clone())), &mut |_| {})
            .await
            .unwrap();
    assert_eq!(manifest.destinations, ["s3"]);
    assert!(manifest.size_bytes > 5 << 20, "{}", manifest.size_bytes);

    let stores = Stores { local_dir: None, s3: Some(prefix.config.clone()) };
    let listed = mongo_backup::list(&stores).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.as_str(), listed[0].stored_in.as_slice()), (manifest.id.as_str(), &["s3".to_owned()][..]));
    assert_eq!(listed[0].documents, 1520);
    assert!(!listed[0].verified);

    let target = TestMongoDatabase::new();
    let mut restore = restore_options(Selector::Latest, &target.name, stores.clone());
    restore.name = Some(source.name.clone());
    let report = mongo_backup::restore(&source.config, &restore).await.unwrap();
    assert_eq!(report.documents, 1520);
    assert_eq!(collection_names(&client, &target.name).await, ["model_logs", "task_status_cache"]);
    for name in ["model_logs", "task_status_cache"] {
        assert!(documents(&client, &target.name, name).await == documents(&client, &source.name, name).await, "{name}");
    }
    assert_eq!(
        indexes(&client, &target.name, "task_status_cache")
            .await
            .get("ttl")
            .and_then(|i| i.get("expireAfterSeconds"))
            .cloned(),
        indexes(&client, &source.name, "task_status_cache")
            .await
            .get("ttl")
            .and_then(|i| i.get("expireAfterSeconds"))
            .cloned(),
    );

    // What killed verifies left: a scratch database two days old, which verify drops, and one of
    // a verify that may still run, which it leaves.
    let stale = format!("mongobackup_verify_{}_{:08x}_0", stamp(2), rand::random::<u32>());
    let recent = format!("mongobackup_verify_{}_{:08x}_0", stamp(0), rand::random::<u32>());
    for name in [&stale, &recent] {
        client.database(name).collection::<Document>("c").insert_one(doc! { "x": 1 }).await.unwrap();
    }

    // verify --compare: restored into scratch databases, read back, and the scratch dropped.
    let report = mongo_backup::verify(
        Some(&source.config),
        &verify_options(Selector::Id(manifest.id.clone()), stores.clone(), true),
    )
    .await
    .unwrap();
    assert_eq!((report.collections, report.documents, report.compared), (2, 1520, 2));
    assert_eq!(report.scratch_databases.len(), 1, "one source database, one scratch: {report:?}");
    assert!(report.scratch_databases.iter().all(|d| d.starts_with("mongobackup_verify_")), "{report:?}");
    let left: Vec<String> = client
        .list_database_names()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| report.scratch_databases.contains(d))
        .collect();
    assert!(left.is_empty(), "verify's scratch databases are dropped: {left:?}");
    let names = client.list_database_names().await.unwrap();
    assert!(!names.contains(&stale), "a day-old scratch database is swept");
    assert!(names.contains(&recent), "a recent one is left to its verify");
    client.database(&recent).drop().await.unwrap();
    let listed = mongo_backup::list(&stores).await.unwrap();
    assert!(listed[0].verified && listed[0].stored_in == ["s3"], "{listed:?}");
}

/// The date part of a scratch database name, `days` ago.
fn stamp(days: i64) -> String {
    (chrono::Utc::now() - chrono::TimeDelta::days(days)).format("%Y%m%dT%H%M%S").to_string()
}
