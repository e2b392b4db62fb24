//! The Milvus metrics collector against the stack's server, on a collection of the test's own
//! (dropped afterwards).

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use datastores::metrics;
use datastores::{Datastore, MilvusConfig};
use futures::FutureExt;
use milvus::v2::prelude::*;
use testkit::{closed_port, expect_up, require, unique_name};

use crate::metrics_mongodb::{assert_follows_naming_rules, value};

const ROWS: i64 = 7;
const DIM: u32 = 4;

fn config() -> MilvusConfig {
    expect_up(MilvusConfig::from_settings(&require(Datastore::Milvus)))
}

/// Creates `name` with `ROWS` flushed rows and no index.
async fn create_collection(client: &ClientV2, name: &str) {
    let schema = CollectionSchema::new()
        .add_field(FieldSchema::new().name("id").data_type(DataType::Int64).primary_key(true))
        .add_field(FieldSchema::new().name("v").data_type(DataType::FloatVector).dimension(DIM));
    let request = CreateCollectionRequest::builder().collection_name(name).schema(schema).build().unwrap();
    client.create_collection(request).await.unwrap();
    let ids: Vec<i64> = (0..ROWS).collect();
    let vectors: Vec<Vec<f32>> = ids.iter().map(|i| vec![*i as f32; DIM as usize]).collect();
    let insert = InsertRequest::builder()
        .collection_name(name)
        .columns(vec![FieldData::int64("id", ids), FieldData::float_vector("v", vectors)])
        .build()
        .unwrap();
    client.insert(insert).await.unwrap();
    let flush = FlushRequest::builder().collection_names([name]).wait_flushed_ms(60_000).build().unwrap();
    client.flush(flush).await.unwrap();
}

async fn load(client: &ClientV2, name: &str) {
    let index = CreateIndexRequest::builder()
        .collection_name(name)
        .index_params(vec![IndexParam::new().field_name("v").index_type(IndexType::Flat).metric_type(MetricType::L2)])
        .build()
        .unwrap();
    client.create_index(index).await.unwrap();
    let load = LoadCollectionRequest::builder().collection_name(name).sync(true).timeout_ms(120_000).build().unwrap();
    client.load_collection(load).await.unwrap();
}

#[tokio::test]
async fn rows_and_load_state_of_a_collection() {
    let config = config();
    let client = expect_up(config.connect().await);
    let name = unique_name("metrics");
    let outcome = AssertUnwindSafe(async {
        create_collection(&client, &name).await;
        let labels = [("collection", name.as_str())];

        let samples = expect_up(metrics::milvus::collect(&config).await);
        assert_eq!(value(&samples, "milvus_collection_rows", &labels), Some(ROWS as f64), "{samples:?}");
        assert_eq!(value(&samples, "milvus_collection_loaded", &labels), Some(0.0));
        assert_eq!(value(&samples, "milvus_collection_load_progress", &labels), Some(0.0));
        let listed = samples.0.iter().filter(|s| s.name == "milvus_collection_loaded").count();
        assert!(value(&samples, "milvus_collections", &[]).unwrap() >= 1.0);
        assert_eq!(value(&samples, "milvus_collections", &[]), Some(listed as f64));

        load(&client, &name).await;
        let samples = expect_up(metrics::milvus::collect(&config).await);
        assert_eq!(value(&samples, "milvus_collection_rows", &labels), Some(ROWS as f64));
        assert_eq!(value(&samples, "milvus_collection_loaded", &labels), Some(1.0));
        assert_eq!(value(&samples, "milvus_collection_load_progress", &labels), Some(100.0));
        assert_follows_naming_rules(&samples, "milvus_");
    })
    .catch_unwind()
    .await;
    let drop = DropCollectionRequest::builder().collection_name(&name).build().unwrap();
    if let Err(e) = client.drop_collection(drop).await {
        eprintln!("warning: cannot drop Milvus collection {name}: {e}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn unreachable_server_is_an_error() {
    let mut config = config();
    config.uri = format!("http://127.0.0.1:{}", closed_port());
    config.connect_timeout = Duration::from_millis(500);
    assert!(metrics::milvus::collect(&config).await.is_err());
    let collected =
        metrics::bounded(Datastore::Milvus, Duration::from_secs(30), metrics::milvus::collect(&config)).await;
    assert!(collected.error.is_some());
    assert_eq!(value(&collected.samples, "milvus_up", &[]), Some(0.0));
}
