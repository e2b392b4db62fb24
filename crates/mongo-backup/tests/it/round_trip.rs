//! A backup restored into another database gives back every document byte for byte, every
//! index and every collection's options.

use std::collections::BTreeMap;

use datastores::mongodb_driver::Client;
use datastores::mongodb_driver::bson::spec::BinarySubtype;
use datastores::mongodb_driver::bson::{
    Binary, Bson, DateTime, Decimal128, Document, Regex, Timestamp, doc, oid::ObjectId,
};
use mongo_backup::zipstream::ZipStreamReader;
use mongo_backup::{Consistency, Selector};
use testkit::TestMongoDatabase;

use crate::{
    client, collection_names, collection_specs, documents, indexes, local, options, restore_options, verify_options,
};

/// The platform's collections (seed 003) with their indexes, and two with options of their own.
async fn seed_collections(client: &Client, database: &str) {
    let db = client.database(database);
    let now = DateTime::now();
    db.collection::<Document>("model_logs")
        .insert_many((0..300).map(|i| {
            doc! {
                "model_id": format!("model-{}", i % 7),
                "level": (["info", "warn", "error"][i % 3]),
                "timestamp": DateTime::from_millis(now.timestamp_millis() - i as i64 * 1000),
                "message": format!("inference {i} done"),
                "latency_ms": i as f64 / 3.0,
            }
        }))
        .await
        .unwrap();
    db.collection::<Document>("configurations")
        .insert_many((0..40).map(|i| {
            doc! {
                "component": format!("component-{}", i % 20),
                "environment": if i % 2 == 0 { "production" } else { "staging" },
                "version": i / 20 + 1,
                "is_active": i % 3 != 0,
                "settings": { "temperature": 0.7, "max_tokens": 512 + i, "stop": ["\n\n", "###"] },
            }
        }))
        .await
        .unwrap();
    db.collection::<Document>("task_status_cache")
        .insert_many((0..120).map(|i| {
            doc! {
                "task_id": format!("task-{i:04}"),
                "task_type": (["embedding", "training", "ingestion"][i % 3]),
                "status": (["queued", "running", "done", "failed"][i % 4]),
                // Recent: the TTL index must not expire them while the test runs.
                "last_updated": now,
            }
        }))
        .await
        .unwrap();
    for (collection, indexes) in [
        ("model_logs", vec![doc! { "key": { "model_id": 1, "timestamp": -1 }, "name": "model_id_1_timestamp_-1" }]),
        (
            "configurations",
            vec![
                doc! {
                    "key": { "component": 1, "environment": 1, "version": 1 },
                    "name": "component_environment_version",
                    "unique": true,
                },
                doc! {
                    "key": { "is_active": 1 },
                    "name": "active_only",
                    "partialFilterExpression": { "is_active": true },
                },
            ],
        ),
        (
            "task_status_cache",
            vec![
                doc! { "key": { "task_id": 1 }, "name": "task_id_1", "unique": true },
                doc! { "key": { "status": 1, "last_updated": 1 }, "name": "status_1_last_updated_1" },
                doc! { "key": { "task_type": 1, "status": 1 }, "name": "task_type_1_status_1" },
                doc! { "key": { "last_updated": 1 }, "name": "last_updated_1", "expireAfterSeconds": 86_400 },
            ],
        ),
    ] {
        db.run_command(doc! { "createIndexes": collection, "indexes": indexes }).await.unwrap();
    }

    // A capped collection, and one with a validator and a collation.
    db.run_command(doc! { "create": "recent_events", "capped": true, "size": 1_048_576, "max": 1000 }).await.unwrap();
    db.collection::<Document>("recent_events")
        .insert_many((0..50).map(|i| doc! { "event": format!("event-{i}"), "at": now }))
        .await
        .unwrap();
    db.run_command(doc! {
        "create": "model_registry",
        "validator": { "$jsonSchema": { "bsonType": "object", "required": ["name"], "properties": { "name": { "bsonType": "string" } } } },
        "validationLevel": "strict",
        "validationAction": "error",
        "collation": { "locale": "en", "strength": 2 },
    })
    .await
    .unwrap();
    db.collection::<Document>("model_registry")
        .insert_many((0..10).map(|i| doc! { "name": format!("Model-{i}"), "stage": "production" }))
        .await
        .unwrap();
}

/// One document of the big collection: every BSON type the platform stores.
fn typed(i: u32) -> Document {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&0x6650_0000u32.to_be_bytes());
    id[8..].copy_from_slice(&i.to_be_bytes());
    let mut uuid = [0u8; 16];
    uuid[..4].copy_from_slice(&i.to_le_bytes());
    uuid[6] = 0x40;
    uuid[8] = 0x80;
    let score = match i {
        1 => f64::NAN,
        2 => -0.0,
        3 => f64::INFINITY,
        4 => f64::MIN_POSITIVE,
        _ => f64::from(i) / 7.0,
    };
    let text = if i % 2000 == 7 {
        // About 100 KB.
        crate::noise(u64::from(i), 100_000)
    } else {
        format!("document {i}: ünïcødé ✓ {}", "x".repeat((i % 50) as usize))
    };
    doc! {
        "_id": ObjectId::from_bytes(id),
        "n": i as i32,
        "big": i64::from(i) * 1_000_000_007 - i64::from(i32::MAX),
        "score": score,
        "flag": i.is_multiple_of(2),
        "nothing": Bson::Null,
        "at": DateTime::from_millis(1_700_000_000_000 + i64::from(i) * 1000),
        "price": format!("{}.{:02}", i, i % 100).parse::<Decimal128>().unwrap(),
        "blob": Binary { subtype: BinarySubtype::Generic, bytes: i.to_le_bytes().repeat(1 + (i % 5) as usize) },
        "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: uuid.to_vec() },
        "ts": Timestamp { time: 1_700_000_000 + i, increment: i % 7 + 1 },
        "pattern": Regex { pattern: format!("^model-{}\\d+$", i % 10), options: "im".into() },
        "text": text,
        "meta": {
            "model": format!("model-{}", i % 13),
            "tags": ["llm", i % 3, { "weight": 0.25 }],
            "nested": { "deep": [ { "k": i64::from(i) }, [1, 2.5, "x", Bson::Null] ], "empty": {}, "none": [] },
        },
    }
}

async fn fill_typed(client: &Client, database: &str, count: u32) {
    let coll = client.database(database).collection::<Document>("platform_records");
    let mut batch = Vec::new();
    for i in 0..count {
        batch.push(typed(i));
        if batch.len() == 2000 {
            coll.insert_many(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        coll.insert_many(batch).await.unwrap();
    }
}

/// What a restore must carry of an index.
fn index_summary(index: &Document) -> Document {
    let mut out = Document::new();
    for field in ["name", "key", "unique", "partialFilterExpression", "expireAfterSeconds", "sparse", "collation"] {
        if let Some(value) = index.get(field) {
            out.insert(field, value.clone());
        }
    }
    out
}

/// The `*.metadata.json` entries of an archive, by name, read with the crate's own reader.
fn archive_metadata(
    path: &std::path::Path,
    compression: backup_core::Compression,
) -> BTreeMap<String, serde_json::Value> {
    let mut zip = ZipStreamReader::new(backup_core::decompressed(path, compression).unwrap());
    let mut out = BTreeMap::new();
    while let Some(entry) = zip.next_entry().unwrap() {
        let mut bytes = Vec::new();
        zip.read_entry(&mut |chunk| {
            if entry.name.ends_with(".metadata.json") {
                bytes.extend_from_slice(chunk);
            }
            Ok(())
        })
        .unwrap();
        if entry.name.ends_with(".metadata.json") {
            out.insert(entry.name.clone(), serde_json::from_slice(&bytes).unwrap());
        }
    }
    zip.finish().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_index_and_option_round_trips() {
    let source = TestMongoDatabase::new();
    let client = client(&source).await;
    seed_collections(&client, &source.name).await;
    fill_typed(&client, &source.name, 100_000).await;
    let expected_names =
        ["configurations", "model_logs", "model_registry", "platform_records", "recent_events", "task_status_cache"];
    assert_eq!(collection_names(&client, &source.name).await, expected_names);

    // What the server kept of the indexes and options: the test asserts on these.
    let source_specs = collection_specs(&client, &source.name).await;
    let capped = &source_specs["recent_events"].1;
    assert_eq!(capped.get_bool("capped"), Ok(true), "{capped}");
    let registry = &source_specs["model_registry"].1;
    assert!(registry.get_document("validator").is_ok(), "{registry}");
    assert_eq!(registry.get_document("collation").and_then(|c| c.get_str("locale")), Ok("en"), "{registry}");
    let ttl = indexes(&client, &source.name, "task_status_cache").await;
    let expire = ttl["last_updated_1"].get("expireAfterSeconds").cloned();
    assert!(matches!(expire, Some(Bson::Int32(86_400) | Bson::Int64(86_400))), "{expire:?}");
    let configurations = indexes(&client, &source.name, "configurations").await;
    assert_eq!(configurations["component_environment_version"].get_bool("unique"), Ok(true));
    assert_eq!(configurations["active_only"].get_document("partialFilterExpression"), Ok(&doc! { "is_active": true }));

    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    let manifest =
        mongo_backup::backup(&source.config, &options(&source.name, Some(dir.path().into()), None), &mut |p| {
            reports.push(p.collection)
        })
        .await
        .unwrap();
    assert_eq!(manifest.datastore, "mongodb");
    assert_eq!(manifest.name, source.name);
    assert_eq!(manifest.databases, std::slice::from_ref(&source.name));
    assert_eq!(manifest.destinations, ["local"]);
    assert!(manifest.artifact.ends_with(".zip.zst"), "{}", manifest.artifact);
    let archive = dir.path().join("daily").join(&manifest.artifact);
    let metadata = archive_metadata(&archive, manifest.compression);
    let names: Vec<&str> = metadata.keys().map(String::as_str).collect();
    let expected_entries: Vec<String> =
        expected_names.iter().map(|n| format!("{}/{n}.metadata.json", source.name)).collect();
    assert_eq!(names, expected_entries, "mongodump's layout");
    let options_of = |name: &str| metadata[&format!("{}/{name}.metadata.json", source.name)]["options"].clone();
    assert_eq!(options_of("recent_events")["capped"], true, "the archive holds the options");
    assert_eq!(options_of("model_registry")["collation"]["locale"], "en");
    assert!(options_of("model_registry")["validator"]["$jsonSchema"].is_object());
    assert!(manifest.deployment.is_some());
    let listed: Vec<(&str, u64, usize, Option<&String>)> =
        manifest.collections.iter().map(|c| (c.name.as_str(), c.documents, c.indexes, c.note.as_ref())).collect();
    assert_eq!(
        listed,
        [
            ("configurations", 40, 3, None),
            ("model_logs", 300, 2, None),
            ("model_registry", 10, 1, None),
            ("platform_records", 100_000, 1, None),
            ("recent_events", 50, 1, None),
            ("task_status_cache", 120, 5, None),
        ]
    );
    assert!(manifest.collections.iter().all(|c| c.kind == "collection" && c.database == source.name));
    assert_eq!(manifest.documents(), 100_520);
    assert_eq!(
        manifest.consistency == Consistency::SnapshotPerCollection,
        manifest.collections.iter().all(|c| c.snapshot)
    );
    for name in expected_names {
        assert!(reports.contains(&format!("{}.{name}", source.name)), "progress named {name}: {reports:?}");
    }

    // Restored into another database.
    let target = TestMongoDatabase::new();
    let stores = local(dir.path());
    let report = mongo_backup::restore(
        &source.config,
        &restore_options(Selector::Id(manifest.id.clone()), &target.name, stores.clone()),
    )
    .await
    .unwrap();
    assert_eq!(report.backup, manifest.id);
    assert_eq!(report.documents, 100_520);
    assert!(report.collections.iter().all(|c| c.database == target.name && !c.replaced), "{:?}", report.collections);
    assert_eq!(collection_names(&client, &target.name).await, expected_names, "no scratch collection is left");

    for name in expected_names {
        let (from, to) = (documents(&client, &source.name, name).await, documents(&client, &target.name, name).await);
        assert_eq!(from.len(), to.len(), "{name}: document count");
        assert!(from == to, "{name}: the restored documents differ from the source's");
        let (from, to) = (indexes(&client, &source.name, name).await, indexes(&client, &target.name, name).await);
        let summary = |all: &BTreeMap<String, Document>| -> Vec<Document> { all.values().map(index_summary).collect() };
        assert_eq!(summary(&to), summary(&from), "{name}: indexes");
    }
    // verify reads every document back from the archive; list shows the backup, verified.
    let verified =
        mongo_backup::verify(None, &verify_options(Selector::Id(manifest.id.clone()), stores.clone(), false))
            .await
            .unwrap();
    assert!(verified.checksum);
    assert_eq!((verified.collections, verified.documents), (6, 100_520));
    let listed = mongo_backup::list(&stores).await.unwrap();
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert_eq!(entry.id, manifest.id);
    assert_eq!(entry.name, source.name);
    assert_eq!((entry.collections, entry.documents), (6, 100_520));
    assert_eq!(entry.stored_in, ["local"]);
    assert!(entry.verified, "verify recorded its result");

    // Last, as the server's renameCollection is the step at stake: each collection's options
    // (capped, validator, collation) came back, or the report names every one the server did not
    // keep across the rename (mongod keeps them; the stack's MongoDB-compatible server drops
    // them), so a loss is never silent.
    let target_specs = collection_specs(&client, &target.name).await;
    assert_eq!(target_specs.keys().collect::<Vec<_>>(), source_specs.keys().collect::<Vec<_>>());
    for (name, (kind, options)) in &source_specs {
        let (target_kind, target_options) = &target_specs[name];
        assert_eq!(target_kind, kind, "{name}: type");
        for (key, value) in options {
            if target_options.get(key) == Some(value) {
                continue;
            }
            let named = report.warnings.iter().any(|w| {
                w.starts_with(&format!("{}.{name}:", target.name))
                    && w.contains(key.as_str())
                    && w.contains("renameCollection")
            });
            assert!(named, "{name}: option {key} was lost without a warning: {:?}", report.warnings);
        }
    }
    if target_specs["model_registry"].1.contains_key("validator") {
        // The validator is in force in the copy.
        let refused = client
            .database(&target.name)
            .collection::<Document>("model_registry")
            .insert_one(doc! { "stage": "x" })
            .await;
        assert!(refused.is_err(), "a document without a name is refused");
    }
}
