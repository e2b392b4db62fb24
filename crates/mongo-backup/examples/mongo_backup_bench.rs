//! The MongoDB backup benchmark (`bench/mongo-backup.sh`): backup against the floor of reading
//! every document with the same driver, restore against `insert_many` in batches of 1,000, on
//! the same documents of about 1 KB, in one process of one build.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use datastores::mongodb_driver::bson::{
    Binary, DateTime, Document, RawDocumentBuf, doc, oid::ObjectId, spec::BinarySubtype,
};
use datastores::{MongoConfig, Settings, Source};
use futures::TryStreamExt;

/// A document of about 1 KB with the types a platform stores.
fn document(i: u64) -> Document {
    let text: String = (0..12).map(|k| format!("{:x}", (i.wrapping_mul(2_654_435_761) >> k) & 0xffff_ffff)).collect();
    let status = ["queued", "running", "done", "failed"][(i % 4) as usize];
    doc! {
        "_id": ObjectId::new(),
        "seq": i as i64,
        "task": format!("task-{i}"),
        "status": status,
        "updated_at": DateTime::from_millis(1_700_000_000_000 + i as i64),
        "score": (i % 1000) as f64 / 7.0,
        "payload": { "model": "text-embedding", "params": { "temperature": 0.7, "top_p": 0.9 }, "tags": ["a", "b", format!("t{}", i % 50)] },
        "blob": Binary { subtype: BinarySubtype::Generic, bytes: (0..256).map(|b| (b as u64 ^ i) as u8).collect() },
        "text": text.repeat(5),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let documents: u64 = args.next().map(|a| a.parse().expect("DOCUMENTS is a number")).unwrap_or(1_000_000);
    let rounds: usize = args.next().map(|a| a.parse().expect("ROUNDS is a number")).unwrap_or(3);
    let settings = Settings::new().layer(Source::Environment, std::env::vars());
    let mongo = MongoConfig::from_settings(&settings).expect("MONGODB_URI: run `eval \"$(cargo xtask stack env)\"`");
    let client = mongo.client().await.unwrap();
    // What an interrupted run left: a gigabyte that would slow every later run and test.
    for name in client.list_database_names().await.unwrap() {
        if name.starts_with("bench_mongo_") {
            client.database(&name).drop().await.unwrap();
        }
    }
    let stamp = std::process::id();
    let source = format!("bench_mongo_source_{stamp}");
    let scratch = tempfile::tempdir().unwrap();
    let batch = 1000u64;

    // The documents, made once, as raw BSON: the insert floor and the restore load the same ones.
    let raw: Vec<RawDocumentBuf> =
        (0..documents).map(|i| RawDocumentBuf::from_document(&document(i)).unwrap()).collect();
    let bytes: usize = raw.iter().map(|d| d.as_bytes().len()).sum();
    println!(
        "documents: {documents}, average {:.0} bytes, {:.1} MiB of BSON, rounds: {rounds}",
        bytes as f64 / documents as f64,
        bytes as f64 / 1_048_576.0
    );

    // The source, loaded once (untimed).
    let db = client.database(&source);
    db.drop().await.unwrap();
    let collection = db.collection::<RawDocumentBuf>("tasks");
    for chunk in raw.chunks(batch as usize) {
        collection.insert_many(chunk.to_vec()).await.unwrap();
    }

    let mut insert_floor = Vec::new();
    let mut read_floor = Vec::new();
    let mut backup = Vec::new();
    let mut restore = Vec::new();
    let mut load = Vec::new();
    let mut stored = 0u64;
    for round in 0..rounds {
        // Each pair runs in alternating order, on a server holding the same data.
        let dir = scratch.path().join(format!("round{round}"));
        let mut manifest = None;
        for step in 0..2 {
            if (step + round) % 2 == 0 {
                // Read floor: every document through the same driver, to nothing.
                let t = Instant::now();
                let mut cursor = collection.find(doc! {}).await.unwrap();
                let mut seen = 0u64;
                while let Some(doc) = cursor.try_next().await.unwrap() {
                    std::hint::black_box(doc.as_bytes());
                    seen += 1;
                }
                read_floor.push(t.elapsed().as_secs_f64());
                assert_eq!(seen, documents);
            } else {
                let options = mongo_backup::BackupOptions {
                    databases: vec![source.clone()],
                    compression: backup_core::Compression::Zstd(3),
                    tier: backup_core::Tier::Daily,
                    local_dir: Some(dir.clone()),
                    s3: None,
                    part_size: 8 << 20,
                };
                let t = Instant::now();
                let made = mongo_backup::backup(&mongo, &options, &mut |_| {}).await.unwrap();
                backup.push(t.elapsed().as_secs_f64());
                stored = made.size_bytes;
                assert_eq!(made.documents(), documents);
                manifest = Some(made);
            }
        }
        let manifest = manifest.unwrap();
        let target = format!("bench_mongo_target_{stamp}");
        for step in 0..2 {
            client.database(&target).drop().await.unwrap();
            if (step + round) % 2 == 0 {
                // Insert floor: insert_many in batches of 1,000 into a new database.
                let copy = client.database(&target).collection::<RawDocumentBuf>("tasks");
                let t = Instant::now();
                for chunk in raw.chunks(batch as usize) {
                    copy.insert_many(chunk.to_vec()).await.unwrap();
                }
                insert_floor.push(t.elapsed().as_secs_f64());
            } else {
                let restore_options = mongo_backup::RestoreOptions {
                    selector: backup_core::Selector::Id(manifest.id.clone()),
                    name: None,
                    target_db: Some(target.clone()),
                    include: Vec::new(),
                    exclude: Vec::new(),
                    clean: false,
                    yes: false,
                    stores: backup_core::Stores { local_dir: Some(dir.clone()), s3: None },
                };
                let t = Instant::now();
                let report = mongo_backup::restore(&mongo, &restore_options).await.unwrap();
                restore.push(t.elapsed().as_secs_f64());
                load.push(t.elapsed().as_secs_f64() - report.swap_seconds);
                assert_eq!(report.documents, documents);
            }
        }
        client.database(&target).drop().await.unwrap();
        println!(
            "{}",
            serde_json::json!({
                "round": round, "documents": documents, "insert_floor_s": insert_floor[round],
                "read_floor_s": read_floor[round], "backup_s": backup[round], "restore_s": restore[round], "restore_without_rename_s": load[round],
                "stored_bytes": stored, "bson_bytes": bytes,
            })
        );
    }
    client.database(&source).drop().await.unwrap();
    let (b, r, i, rest) = (median(backup), median(read_floor), median(insert_floor), median(restore));
    println!("backup  {b:8.2} s  vs read floor  {r:8.2} s: ratio {:.2} (goal <= 1.3)", b / r);
    println!("restore {rest:8.2} s  vs insert floor {i:8.2} s: ratio {:.2} (goal <= 1.3)", rest / i);
    let l = median(load);
    println!("  of which loading {l:8.2} s (ratio {:.2}), renaming over the target {:.2} s", l / i, rest - l);
    println!(
        "compressed: {:.1} MiB from {:.1} MiB of BSON ({:.1}x)",
        stored as f64 / 1_048_576.0,
        bytes as f64 / 1_048_576.0,
        bytes as f64 / stored.max(1) as f64
    );
}
