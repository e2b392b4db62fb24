//! The MongoDB series: one `serverStatus`, plus `listDatabases` and one `dbStats` per database
//! (at most eight at a time). All of them read counters the server keeps; none reads a
//! collection. `serverStatus` and the database statistics are read concurrently.
//!
//! Names are those of Percona's mongodb_exporter with Prometheus' rules applied: counters end in
//! `_total`, sizes are in bytes (`_bytes`) and times in seconds (`_seconds`).
//!
//! | our name | mongodb_exporter's name | meaning |
//! |---|---|---|
//! | `mongodb_ss_opcounters_total{legacy_op_type}` | `mongodb_ss_opcounters` | operations since the server started, by type (`insert`, `query`, `update`, `delete`, `getmore`, `command`) |
//! | `mongodb_ss_opcountersRepl_total{legacy_op_type}` | `mongodb_ss_opcountersRepl` | operations applied by replication, by type |
//! | `mongodb_ss_opLatencies_latency_seconds_total{op_type}` | `mongodb_ss_opLatencies_latency` (microseconds) | total time spent in operations, by kind (`reads`, `writes`, `commands`, `transactions`) |
//! | `mongodb_ss_opLatencies_ops_total{op_type}` | `mongodb_ss_opLatencies_ops` | operations timed in the latency above, by kind |
//! | `mongodb_ss_connections{conn_type}` | `mongodb_ss_connections` | connections by state: `current` (open), `available` (still possible), `active` (running an operation) |
//! | `mongodb_ss_connections_totalCreated_total` | `mongodb_ss_connections{conn_type="totalCreated"}` | connections opened since the server started |
//! | `mongodb_ss_mem_resident_bytes` | `mongodb_ss_mem_resident` (MiB) | resident memory of the server process |
//! | `mongodb_ss_mem_virtual_bytes` | `mongodb_ss_mem_virtual` (MiB) | virtual memory of the server process |
//! | `mongodb_ss_globalLock_currentQueue{count_type}` | `mongodb_ss_globalLock_currentQueue` | operations waiting for a lock: `total`, `readers`, `writers` |
//! | `mongodb_ss_globalLock_activeClients{count_type}` | `mongodb_ss_globalLock_activeClients_total`, `_readers`, `_writers` | clients running or queued for reads and writes: `total`, `readers`, `writers` (one series with a label, as for the queue, so that no gauge ends in `_total`) |
//! | `mongodb_ss_uptime_seconds` | `mongodb_ss_uptime` | time since the server started |
//! | `mongodb_ss_network_bytesIn_bytes_total` | `mongodb_ss_network_bytesIn` | bytes received |
//! | `mongodb_ss_network_bytesOut_bytes_total` | `mongodb_ss_network_bytesOut` | bytes sent |
//! | `mongodb_ss_network_numRequests_total` | `mongodb_ss_network_numRequests` | requests received |
//! | `mongodb_ss_asserts_total{assert_type}` | `mongodb_ss_asserts` | assertions raised, by type |
//! | `mongodb_ss_metrics_cursor_open{csr_type}` | `mongodb_ss_metrics_cursor_open` | open cursors: `total`, `pinned`, `noTimeout` |
//! | `mongodb_dbstats_collections{database}` | `mongodb_dbstats_collections` | collections in the database |
//! | `mongodb_dbstats_objects{database}` | `mongodb_dbstats_objects` | documents in the database |
//! | `mongodb_dbstats_indexes{database}` | `mongodb_dbstats_indexes` | indexes in the database |
//! | `mongodb_dbstats_dataSize_bytes{database}` | `mongodb_dbstats_dataSize` | uncompressed size of the documents |
//! | `mongodb_dbstats_storageSize_bytes{database}` | `mongodb_dbstats_storageSize` | space allocated to the documents |
//! | `mongodb_dbstats_indexSize_bytes{database}` | `mongodb_dbstats_indexSize` | space allocated to the indexes |
//! | `mongodb_dbstats_totalSize_bytes{database}` | `mongodb_dbstats_totalSize` | space allocated to documents and indexes |
//!
//! A series whose field the server does not report is left out. secantusdb 0.7 (the stack's
//! MongoDB-compatible server) reports no `opLatencies`, `opcountersRepl`, `globalLock` or
//! `asserts`, so those series are absent there; it reports 0 for `mem.virtual`,
//! `connections.available`, `network.bytesIn` and `network.bytesOut`, which are shown as read.
//! It counts one insert per `insert` command, where mongod counts one per document.
//!
//! A user without the right to list databases (or to read one database's statistics) gets no
//! `mongodb_dbstats_*` series for them; the rest of the scrape stands.

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};

use super::Samples;
use crate::MongoConfig;

/// MongoDB reports memory in MiB.
const MIB: f64 = 1024.0 * 1024.0;
/// `Unauthorized`.
const UNAUTHORIZED: i32 = 13;
/// How many `dbStats` run at once.
const DBSTATS_CONCURRENCY: usize = 8;

/// Reads the server's figures. Cheap: no query reads a collection.
pub async fn collect(config: &MongoConfig) -> Result<Samples, String> {
    let client = config.client().await.map_err(|e| e.to_string())?;
    let admin = client.database("admin");
    // The WiredTiger and tcmalloc sections are most of the answer and no series reads them.
    let status = admin.run_command(doc! { "serverStatus": 1, "wiredTiger": 0, "tcmalloc": 0 });
    let (status, databases) =
        tokio::try_join!(async { status.await.map_err(|e| format!("serverStatus: {e}")) }, database_stats(&client),)?;
    let mut samples = Samples::default();
    server_status(&status, &mut samples);
    for (name, stats) in &databases {
        db_stats(name, stats, &mut samples);
    }
    Ok(samples)
}

/// `dbStats` of every database the user may list.
async fn database_stats(client: &mongodb::Client) -> Result<Vec<(String, Document)>, String> {
    let Some(names) = database_names(client).await? else { return Ok(Vec::new()) };
    let stats = futures::stream::iter(names)
        .map(|name| async move {
            match client.database(&name).run_command(doc! { "dbStats": 1, "scale": 1 }).await {
                Ok(stats) => Ok(Some((name, stats))),
                Err(e) if code_of(&e) == Some(UNAUTHORIZED) => Ok(None),
                Err(e) => {
                    // Dropped since it was listed (an application's scratch database): not a
                    // fault of the server, and not a database any more.
                    let dropped =
                        code_of(&e).is_some() && database_names(client).await?.is_some_and(|now| !now.contains(&name));
                    if dropped { Ok(None) } else { Err(format!("dbStats of {name}: {e}")) }
                }
            }
        })
        .buffer_unordered(DBSTATS_CONCURRENCY)
        .try_filter_map(|found| async move { Ok(found) })
        .try_collect::<Vec<_>>()
        .await?;
    Ok(stats)
}

/// The databases the user may list; `None` when it may list none.
async fn database_names(client: &mongodb::Client) -> Result<Option<Vec<String>>, String> {
    let command = doc! { "listDatabases": 1, "nameOnly": true, "authorizedDatabases": true };
    let listed = match client.database("admin").run_command(command).await {
        Ok(listed) => listed,
        Err(e) if code_of(&e) == Some(UNAUTHORIZED) => return Ok(None),
        Err(e) => return Err(format!("listDatabases: {e}")),
    };
    Ok(Some(
        listed
            .get_array("databases")
            .map(|dbs| dbs.iter().filter_map(|db| db.as_document()?.get_str("name").ok().map(str::to_owned)).collect())
            .unwrap_or_default(),
    ))
}

fn code_of(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// The series of one `serverStatus` answer.
fn server_status(status: &Document, samples: &mut Samples) {
    for (op, value) in numbers(status, "opcounters") {
        samples.counter(
            "mongodb_ss_opcounters_total",
            "Operations since the server started, by type.",
            &[("legacy_op_type", op)],
            value,
        );
    }
    for (op, value) in numbers(status, "opcountersRepl") {
        samples.counter(
            "mongodb_ss_opcountersRepl_total",
            "Operations applied by replication since the server started, by type.",
            &[("legacy_op_type", op)],
            value,
        );
    }
    if let Ok(latencies) = status.get_document("opLatencies") {
        for (op_type, entry) in latencies {
            let Some(entry) = entry.as_document() else { continue };
            if let Some(micros) = number(entry.get("latency")) {
                samples.counter(
                    "mongodb_ss_opLatencies_latency_seconds_total",
                    "Total time spent in operations since the server started, by kind.",
                    &[("op_type", op_type)],
                    micros / 1e6,
                );
            }
            if let Some(ops) = number(entry.get("ops")) {
                samples.counter(
                    "mongodb_ss_opLatencies_ops_total",
                    "Operations timed in mongodb_ss_opLatencies_latency_seconds_total, by kind.",
                    &[("op_type", op_type)],
                    ops,
                );
            }
        }
    }
    if let Ok(connections) = status.get_document("connections") {
        for conn_type in ["current", "available", "active"] {
            if let Some(value) = number(connections.get(conn_type)) {
                samples.gauge(
                    "mongodb_ss_connections",
                    "Connections: current (open), available (still possible), active (running an operation).",
                    &[("conn_type", conn_type)],
                    value,
                );
            }
        }
        if let Some(value) = number(connections.get("totalCreated")) {
            samples.counter(
                "mongodb_ss_connections_totalCreated_total",
                "Connections opened since the server started.",
                &[],
                value,
            );
        }
    }
    if let Ok(mem) = status.get_document("mem") {
        if let Some(mib) = number(mem.get("resident")) {
            samples.gauge("mongodb_ss_mem_resident_bytes", "Resident memory of the server process.", &[], mib * MIB);
        }
        if let Some(mib) = number(mem.get("virtual")) {
            samples.gauge("mongodb_ss_mem_virtual_bytes", "Virtual memory of the server process.", &[], mib * MIB);
        }
    }
    if let Ok(lock) = status.get_document("globalLock") {
        for (count_type, value) in numbers(lock, "currentQueue") {
            samples.gauge(
                "mongodb_ss_globalLock_currentQueue",
                "Operations waiting for a lock: total, readers, writers.",
                &[("count_type", count_type)],
                value,
            );
        }
        for (count_type, value) in numbers(lock, "activeClients") {
            samples.gauge(
                "mongodb_ss_globalLock_activeClients",
                "Clients running or queued for reads and writes: total, readers, writers.",
                &[("count_type", count_type)],
                value,
            );
        }
    }
    if let Some(uptime) = number(status.get("uptime")) {
        samples.gauge("mongodb_ss_uptime_seconds", "Time since the server started.", &[], uptime);
    }
    if let Ok(network) = status.get_document("network") {
        if let Some(value) = number(network.get("bytesIn")) {
            samples.counter("mongodb_ss_network_bytesIn_bytes_total", "Bytes the server received.", &[], value);
        }
        if let Some(value) = number(network.get("bytesOut")) {
            samples.counter("mongodb_ss_network_bytesOut_bytes_total", "Bytes the server sent.", &[], value);
        }
        if let Some(value) = number(network.get("numRequests")) {
            samples.counter("mongodb_ss_network_numRequests_total", "Requests the server received.", &[], value);
        }
    }
    for (assert_type, value) in numbers(status, "asserts") {
        samples.counter(
            "mongodb_ss_asserts_total",
            "Assertions raised since the server started, by type.",
            &[("assert_type", assert_type)],
            value,
        );
    }
    if let Ok(open) = status.get_document("metrics").and_then(|m| m.get_document("cursor")) {
        for (csr_type, value) in numbers(open, "open") {
            samples.gauge(
                "mongodb_ss_metrics_cursor_open",
                "Open cursors: total, pinned, noTimeout.",
                &[("csr_type", csr_type)],
                value,
            );
        }
    }
}

/// The series of one database's `dbStats` answer.
fn db_stats(database: &str, stats: &Document, samples: &mut Samples) {
    let labels = [("database", database)];
    let gauges: [(&str, &str, &'static str); 7] = [
        ("collections", "mongodb_dbstats_collections", "Collections in the database."),
        ("objects", "mongodb_dbstats_objects", "Documents in the database."),
        ("indexes", "mongodb_dbstats_indexes", "Indexes in the database."),
        ("dataSize", "mongodb_dbstats_dataSize_bytes", "Uncompressed size of the database's documents."),
        ("storageSize", "mongodb_dbstats_storageSize_bytes", "Space allocated to the database's documents."),
        ("indexSize", "mongodb_dbstats_indexSize_bytes", "Space allocated to the database's indexes."),
        ("totalSize", "mongodb_dbstats_totalSize_bytes", "Space allocated to the database's documents and indexes."),
    ];
    for (field, name, help) in gauges {
        if let Some(value) = number(stats.get(field)) {
            samples.gauge(name, help, &labels, value);
        }
    }
}

/// The numeric fields of the sub-document `key`, in the server's order.
fn numbers<'a>(parent: &'a Document, key: &str) -> Vec<(&'a str, f64)> {
    parent
        .get_document(key)
        .map(|d| d.iter().filter_map(|(k, v)| Some((k.as_str(), number(Some(v))?))).collect())
        .unwrap_or_default()
}

fn number(value: Option<&Bson>) -> Option<f64> {
    match value? {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Kind;

    fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .0
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
    }

    /// The shape of a mongod 7 `serverStatus`, with the units it reports.
    fn mongod_status() -> Document {
        doc! {
            "uptime": 3600.0,
            "asserts": { "regular": 0, "warning": 1, "msg": 0, "user": 7, "tripwire": 0, "rollovers": 0 },
            "connections": { "current": 5, "available": 838_855, "totalCreated": 40_i64, "rejected": 0, "active": 2 },
            "globalLock": {
                "totalTime": 3_600_000_000_i64,
                "currentQueue": { "total": 3, "readers": 1, "writers": 2 },
                "activeClients": { "total": 4, "readers": 3, "writers": 1 },
            },
            "mem": { "bits": 64, "resident": 120, "virtual": 2700, "supported": true },
            "network": { "bytesIn": 1000_i64, "bytesOut": 2000_i64, "numRequests": 30_i64 },
            "opLatencies": {
                "reads": { "latency": 1_500_000_i64, "ops": 10_i64, "queryableEncryptionLatencyMicros": 0_i64 },
                "writes": { "latency": 250_i64, "ops": 2_i64 },
            },
            "opcounters": { "insert": 4_i64, "query": 9_i64, "update": 1_i64, "delete": 0_i64, "getmore": 0_i64, "command": 77_i64 },
            "metrics": { "cursor": { "open": { "noTimeout": 0_i64, "pinned": 1_i64, "total": 2_i64 } } },
        }
    }

    #[test]
    fn server_status_units_and_labels() {
        let mut samples = Samples::default();
        server_status(&mongod_status(), &mut samples);
        let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
        assert_eq!(v("mongodb_ss_opcounters_total", &[("legacy_op_type", "insert")]), Some(4.0));
        assert_eq!(v("mongodb_ss_opLatencies_latency_seconds_total", &[("op_type", "reads")]), Some(1.5));
        assert_eq!(v("mongodb_ss_opLatencies_ops_total", &[("op_type", "writes")]), Some(2.0));
        assert_eq!(v("mongodb_ss_connections", &[("conn_type", "current")]), Some(5.0));
        assert_eq!(v("mongodb_ss_connections", &[("conn_type", "active")]), Some(2.0));
        assert_eq!(v("mongodb_ss_connections", &[("conn_type", "totalCreated")]), None);
        assert_eq!(v("mongodb_ss_connections_totalCreated_total", &[]), Some(40.0));
        assert_eq!(v("mongodb_ss_mem_resident_bytes", &[]), Some(120.0 * MIB));
        assert_eq!(v("mongodb_ss_mem_virtual_bytes", &[]), Some(2700.0 * MIB));
        assert_eq!(v("mongodb_ss_globalLock_currentQueue", &[("count_type", "writers")]), Some(2.0));
        assert_eq!(v("mongodb_ss_globalLock_activeClients", &[("count_type", "total")]), Some(4.0));
        assert_eq!(v("mongodb_ss_uptime_seconds", &[]), Some(3600.0));
        assert_eq!(v("mongodb_ss_network_bytesIn_bytes_total", &[]), Some(1000.0));
        assert_eq!(v("mongodb_ss_asserts_total", &[("assert_type", "user")]), Some(7.0));
        assert_eq!(v("mongodb_ss_metrics_cursor_open", &[("csr_type", "total")]), Some(2.0));
        assert!(samples.0.iter().all(|s| (s.kind == Kind::Counter) == s.name.ends_with("_total")));
    }

    #[test]
    fn missing_sections_give_no_series() {
        let mut samples = Samples::default();
        server_status(&doc! { "uptime": 5, "opcounters": { "insert": 1 } }, &mut samples);
        let names: Vec<&str> = samples.0.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["mongodb_ss_opcounters_total", "mongodb_ss_uptime_seconds"]);
    }

    #[test]
    fn db_stats_in_bytes() {
        let mut samples = Samples::default();
        let stats = doc! { "db": "app", "collections": 2, "objects": 10_i64, "dataSize": 123.0, "indexSize": 52, "scaleFactor": 1 };
        db_stats("app", &stats, &mut samples);
        assert_eq!(value(&samples, "mongodb_dbstats_objects", &[("database", "app")]), Some(10.0));
        assert_eq!(value(&samples, "mongodb_dbstats_dataSize_bytes", &[("database", "app")]), Some(123.0));
        assert_eq!(value(&samples, "mongodb_dbstats_totalSize_bytes", &[("database", "app")]), None);
    }
}
