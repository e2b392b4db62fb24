//! mongo-backup against the stack's MongoDB-compatible server (a one-node replica set) and S3.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod corruption;
mod dropped;
mod interrupted;
mod job;
mod prune;
mod restore_safety;
mod round_trip;
mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::{Compression, Tier};
use datastores::S3Config;
use datastores::mongodb_driver::Client;
use datastores::mongodb_driver::bson::{Document, RawDocumentBuf, doc};
use futures::TryStreamExt;
use mongo_backup::{BackupOptions, RestoreOptions, Selector, Stores, VerifyOptions};
use testkit::TestMongoDatabase;

/// A backup of `db` alone, zstd, daily.
pub fn options(db: &str, local: Option<PathBuf>, s3: Option<S3Config>) -> BackupOptions {
    BackupOptions {
        databases: vec![db.to_owned()],
        compression: Compression::Zstd(3),
        tier: Tier::Daily,
        local_dir: local,
        s3,
        part_size: 5 << 20,
    }
}

pub fn local(dir: &Path) -> Stores {
    Stores { local_dir: Some(dir.to_owned()), s3: None }
}

/// A restore of the backup `selector` picks into the database `target`, without consent to
/// replace anything.
pub fn restore_options(selector: Selector, target: &str, stores: Stores) -> RestoreOptions {
    RestoreOptions {
        selector,
        name: None,
        target_db: Some(target.to_owned()),
        include: Vec::new(),
        exclude: Vec::new(),
        clean: false,
        yes: false,
        stores,
    }
}

pub fn verify_options(selector: Selector, stores: Stores, compare: bool) -> VerifyOptions {
    VerifyOptions { selector, name: None, compare, stores }
}

pub async fn client(db: &TestMongoDatabase) -> Client {
    testkit::expect_up(db.config.client().await)
}

/// Every document of a collection as its raw BSON bytes, sorted: equal lists, equal documents,
/// byte for byte.
pub async fn documents(client: &Client, database: &str, collection: &str) -> Vec<Vec<u8>> {
    let cursor = client.database(database).collection::<RawDocumentBuf>(collection).find(doc! {}).await.unwrap();
    let docs: Vec<RawDocumentBuf> = cursor.try_collect().await.unwrap();
    let mut bytes: Vec<Vec<u8>> = docs.into_iter().map(RawDocumentBuf::into_bytes).collect();
    bytes.sort();
    bytes
}

/// The names of a database's collections (and views), sorted.
pub async fn collection_names(client: &Client, database: &str) -> Vec<String> {
    let mut names = client.database(database).list_collection_names().await.unwrap();
    names.sort();
    names
}

/// `listCollections`: each collection's type and options.
pub async fn collection_specs(client: &Client, database: &str) -> BTreeMap<String, (String, Document)> {
    let cursor = client.database(database).run_cursor_command(doc! { "listCollections": 1 }).await.unwrap();
    let specs: Vec<Document> = cursor.try_collect().await.unwrap();
    specs
        .into_iter()
        .map(|s| {
            (
                s.get_str("name").unwrap().to_owned(),
                (
                    s.get_str("type").unwrap_or("collection").to_owned(),
                    s.get_document("options").cloned().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// `listIndexes` by index name, without `ns` (which names the database).
pub async fn indexes(client: &Client, database: &str, collection: &str) -> BTreeMap<String, Document> {
    let cursor = client.database(database).run_cursor_command(doc! { "listIndexes": collection }).await.unwrap();
    let specs: Vec<Document> = cursor.try_collect().await.unwrap();
    specs
        .into_iter()
        .map(|mut s| {
            s.remove("ns");
            (s.get_str("name").unwrap().to_owned(), s)
        })
        .collect()
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A string of `len` bytes that zstd cannot shrink much (an xorshift sequence of letters).
pub fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// Fills `collection` with `count` documents of about `size` bytes of noise each.
pub async fn fill(client: &Client, database: &str, collection: &str, count: u32, size: usize) {
    let coll = client.database(database).collection::<Document>(collection);
    let mut batch = Vec::new();
    for i in 0..count {
        batch.push(doc! { "_id": i as i32, "payload": noise(u64::from(i) + 1, size) });
        if batch.len() == 500 {
            coll.insert_many(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        coll.insert_many(batch).await.unwrap();
    }
}
