//! The Milvus series, from Milvus' gRPC service: ShowCollections, then for every collection (at
//! most eight at a time) GetCollectionStatistics and GetLoadState together, and
//! GetLoadingProgress only for a collection that is loading. These read the coordinators'
//! bookkeeping; no query runs.
//!
//! | our name | established exporter's name | meaning |
//! |---|---|---|
//! | `milvus_collections` | — | collections in the configured database |
//! | `milvus_collection_rows{collection}` | — | rows of the collection as its statistics count them (`row_count`): deleted or replaced rows still count until a compaction removes them, and rows not yet flushed may be missing |
//! | `milvus_collection_loaded{collection}` | — | 1 when the collection is loaded (searchable), else 0 |
//! | `milvus_collection_load_progress{collection}` | — | how far loading has got, in percent: 100 when loaded, 0 when not loaded |
//!
//! There is no established exporter for these: Milvus' own `/metrics` describes its components,
//! not its collections. Only the database of the configuration (`MILVUS_DB_NAME`, else
//! `default`) is read. A collection dropped while the scrape runs is left out.

use futures::{StreamExt, TryStreamExt};
use milvus::proto::common::{LoadState, Status};
use milvus::proto::milvus as pm;

use super::Samples;
use crate::{MilvusConfig, MilvusGrpc};

/// How many collections are read at once.
const CONCURRENCY: usize = 8;

/// Reads the server's figures. Cheap: no query reads a table.
pub async fn collect(config: &MilvusConfig) -> Result<Samples, String> {
    let grpc = config.grpc().await.map_err(|e| e.to_string())?;
    let answer = grpc
        .clone()
        .show_collections(pm::ShowCollectionsRequest::default())
        .await
        .map_err(|s| format!("list collections: {}", s.message()))?
        .into_inner();
    check(answer.status, "list collections")?;
    let mut names = answer.collection_names;
    names.sort();

    // Owned names and a client per request: a future borrowing from the stream's items is not
    // `Send` for every lifetime, which a server handler needs.
    let mut collections = futures::stream::iter(names)
        .map(|name| {
            let grpc = grpc.clone();
            async move { collection(&grpc, &name).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|found| async move { Ok(found) })
        .try_collect::<Vec<Collection>>()
        .await?;
    collections.sort_by(|a, b| a.name.cmp(&b.name));

    let mut samples = Samples::default();
    samples.gauge("milvus_collections", "Collections in the configured database.", &[], collections.len() as f64);
    for c in &collections {
        let labels = [("collection", c.name.as_str())];
        if let Some(rows) = c.rows {
            samples.gauge(
                "milvus_collection_rows",
                "Rows of the collection as its statistics count them (deleted rows count until a compaction).",
                &labels,
                rows as f64,
            );
        }
        samples.gauge(
            "milvus_collection_loaded",
            "1 when the collection is loaded (searchable), else 0.",
            &labels,
            if c.loaded { 1.0 } else { 0.0 },
        );
        samples.gauge(
            "milvus_collection_load_progress",
            "How far loading the collection has got, in percent (100 when loaded, 0 when not).",
            &labels,
            c.progress as f64,
        );
    }
    Ok(samples)
}

#[derive(Debug)]
struct Collection {
    name: String,
    rows: Option<i64>,
    loaded: bool,
    progress: i64,
}

/// One collection's figures; `None` when it no longer exists.
async fn collection(grpc: &MilvusGrpc, name: &str) -> Result<Option<Collection>, String> {
    let stats = async {
        let request = pm::GetCollectionStatisticsRequest { collection_name: name.into(), ..Default::default() };
        let answer = grpc
            .clone()
            .get_collection_statistics(request)
            .await
            .map_err(|s| format!("statistics of {name}: {}", s.message()))?
            .into_inner();
        if gone(answer.status.as_ref()) {
            return Ok(None);
        }
        check(answer.status, &format!("statistics of {name}"))?;
        let rows = answer.stats.iter().find(|p| p.key == "row_count").and_then(|p| p.value.parse::<i64>().ok());
        Ok::<_, String>(Some(rows))
    };
    let state = async {
        let request = pm::GetLoadStateRequest { collection_name: name.into(), ..Default::default() };
        let answer = grpc
            .clone()
            .get_load_state(request)
            .await
            .map_err(|s| format!("load state of {name}: {}", s.message()))?
            .into_inner();
        if gone(answer.status.as_ref()) {
            return Ok(None);
        }
        check(answer.status, &format!("load state of {name}"))?;
        Ok::<_, String>(Some(LoadState::try_from(answer.state).unwrap_or(LoadState::NotLoad)))
    };
    let (rows, state) = tokio::try_join!(stats, state)?;
    let (Some(rows), Some(state)) = (rows, state) else { return Ok(None) };
    let progress = match state {
        LoadState::NotExist => return Ok(None),
        LoadState::Loaded => 100,
        LoadState::NotLoad => 0,
        LoadState::Loading => {
            let request = pm::GetLoadingProgressRequest { collection_name: name.into(), ..Default::default() };
            let answer = grpc
                .clone()
                .get_loading_progress(request)
                .await
                .map_err(|s| format!("load progress of {name}: {}", s.message()))?
                .into_inner();
            if gone(answer.status.as_ref()) {
                return Ok(None);
            }
            check(answer.status, &format!("load progress of {name}"))?;
            answer.progress.clamp(0, 100)
        }
    };
    Ok(Some(Collection { name: name.to_owned(), rows, loaded: state == LoadState::Loaded, progress }))
}

// Milvus 2.3 reports many errors in the deprecated `error_code` alone.
#[allow(deprecated)]
fn check(status: Option<Status>, operation: &str) -> Result<(), String> {
    let status = status.unwrap_or_default();
    if status.error_code == 0 && status.code == 0 { Ok(()) } else { Err(format!("{operation}: {}", status.reason)) }
}

/// Whether the answer says the collection does not exist (2.3.5 answers error_code
/// CollectionNotExists (4) or code 100, "can't find collection").
#[allow(deprecated)]
fn gone(status: Option<&Status>) -> bool {
    status.is_some_and(|s| {
        s.error_code == 4
            || s.code == 100
            || s.reason.contains("can't find collection")
            || s.reason.contains("collection not found")
    })
}
