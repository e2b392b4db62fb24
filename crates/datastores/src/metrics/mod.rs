//! Prometheus metrics of the platform's datastores: one scrape reads every configured datastore
//! concurrently, each within its own deadline, and renders the Prometheus text format through
//! `metrics-exporter-prometheus`.
//!
//! Collectors are plain async functions that read a datastore and add [`Sample`]s; nothing is
//! recorded until every collector has answered or run out of time, and then into a recorder of
//! this scrape alone (no process-global recorder is installed). A datastore that fails or does
//! not answer in time gives `<prefix>_up 0` and its scrape duration, and holds nothing up.
//!
//! Names follow the established exporters (postgres_exporter, redis_exporter, Percona's
//! mongodb_exporter, kafka_exporter) wherever they have one, with Prometheus' rules applied:
//! counters end in `_total`, sizes are in bytes and times in seconds. The README lists every
//! series with the name it has in the exporter it replaces.

pub mod kafka;
pub mod milvus;
pub mod mongodb;
pub mod postgres;
pub mod redis;

use std::time::{Duration, Instant};

use metrics::{Label, Unit};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::error::Datastore;
use crate::health::DatastoresConfig;

pub use crate::push::Kind;

/// One value of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series' name, such as `pg_database_size_bytes`.
    pub name: String,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Gauge or counter. A counter whose name holds `_seconds` is rendered as a gauge, to keep its
    /// fractions.
    pub kind: Kind,
    /// The series' labels, as `(name, value)`.
    pub labels: Vec<(String, String)>,
    /// The value; a counter's is the absolute count the server reports.
    pub value: f64,
}

/// The samples a collector gathers.
#[derive(Debug, Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Adds a gauge.
    pub fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, Kind::Gauge, labels, value);
    }

    /// A counter read from the server (an absolute value). `name` must end in `_total`.
    pub fn counter(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        debug_assert!(name.ends_with("_total"), "{name}");
        self.push(name, help, Kind::Counter, labels, value);
    }

    fn push(&mut self, name: &str, help: &'static str, kind: Kind, labels: &[(&str, &str)], value: f64) {
        self.0.push(Sample {
            name: name.to_owned(),
            help,
            kind,
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            value,
        });
    }
}

/// The prefix of a datastore's `_up` and `_scrape_duration_seconds` series.
pub fn prefix(datastore: Datastore) -> &'static str {
    match datastore {
        Datastore::Postgres => "pg",
        Datastore::Redis => "redis",
        Datastore::MongoDb => "mongodb",
        Datastore::Kafka => "kafka",
        Datastore::Milvus => "milvus",
        Datastore::Weaviate => "weaviate",
        Datastore::S3 => "s3",
    }
}

/// How one datastore's collection went.
#[derive(Debug)]
pub struct Collected {
    /// The datastore read.
    pub datastore: Datastore,
    /// What was read, with `<prefix>_up` and `<prefix>_scrape_duration_seconds`; only these two
    /// when the datastore is down.
    pub samples: Samples,
    /// How long the collection took.
    pub duration: Duration,
    /// Why the datastore is reported down.
    pub error: Option<String>,
}

/// Runs `collect` within `deadline`, and adds the datastore's `_up` and
/// `_scrape_duration_seconds`.
pub async fn bounded<F>(datastore: Datastore, deadline: Duration, collect: F) -> Collected
where
    F: std::future::Future<Output = Result<Samples, String>>,
{
    let started = Instant::now();
    let outcome = match tokio::time::timeout(deadline, collect).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {deadline:?}")),
    };
    let duration = started.elapsed();
    let (mut samples, error) = match outcome {
        Ok(samples) => (samples, None),
        // What was read before the failure is dropped: a scrape shows a datastore whole or down.
        Err(e) => (Samples::default(), Some(e)),
    };
    let p = prefix(datastore);
    samples.gauge(
        &format!("{p}_up"),
        "Whether the last scrape of the datastore succeeded (1) or not (0).",
        &[],
        if error.is_none() { 1.0 } else { 0.0 },
    );
    samples.gauge(
        &format!("{p}_scrape_duration_seconds"),
        "How long the last scrape of the datastore took.",
        &[],
        duration.as_secs_f64(),
    );
    Collected { datastore, samples, duration, error }
}

/// Options of a scrape.
#[derive(Clone, Copy, Debug)]
pub struct ScrapeOptions {
    /// Each datastore's own deadline; the scrape ends when the slowest one does.
    pub deadline: Duration,
}

impl Default for ScrapeOptions {
    fn default() -> ScrapeOptions {
        ScrapeOptions { deadline: Duration::from_secs(5) }
    }
}

/// A long-lived exporter: keeps its PostgreSQL session and Redis connection between scrapes (a
/// new session per scrape would cost more than the scrape), and opens one again after a failure.
/// The other datastores are read over a connection of each scrape.
pub struct Exporter {
    config: DatastoresConfig,
    options: ScrapeOptions,
    /// One scrape at a time: a burst of requests (two Prometheus replicas, a curl loop) queues
    /// instead of multiplying the load on the datastores.
    running: tokio::sync::Mutex<()>,
    postgres: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    redis: tokio::sync::Mutex<Option<crate::RedisConnection>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter of the datastores `config` has; nothing connects before the first scrape.
    pub fn new(config: DatastoresConfig, options: ScrapeOptions) -> Exporter {
        Exporter {
            config,
            options,
            running: Default::default(),
            postgres: Default::default(),
            redis: Default::default(),
        }
    }

    /// The configuration of the datastores it reads.
    pub fn config(&self) -> &DatastoresConfig {
        &self.config
    }

    /// Reads every configured datastore, each within the deadline.
    pub async fn collect(&self) -> Vec<Collected> {
        let _one_at_a_time = self.running.lock().await;
        let d = self.options.deadline;
        let postgres = async {
            let config = self.config.postgres.as_ref()?;
            Some(
                bounded(Datastore::Postgres, d, async {
                    let mut slot = self.postgres.lock().await;
                    // Taken out while in use: a scrape cut off by its deadline drops the session
                    // instead of leaving one with a statement half-read.
                    let client = match slot.take().filter(|c| !c.is_closed()) {
                        Some(c) => c,
                        None => {
                            let client = config.connect().await.map_err(|e| e.to_string())?;
                            // A statement cut off by the deadline must not run on in the server.
                            let limit = format!(
                                "SET statement_timeout = {}; SET lock_timeout = {}",
                                d.as_millis().max(1),
                                d.as_millis().max(1)
                            );
                            client.batch_execute(&limit).await.map_err(|e| crate::error::chain(&e))?;
                            client
                        }
                    };
                    let samples = postgres::collect_with(&client).await?;
                    *slot = Some(client);
                    Ok(samples)
                })
                .await,
            )
        };
        let redis = async {
            let config = self.config.redis.as_ref()?;
            Some(
                bounded(Datastore::Redis, d, async {
                    let mut slot = self.redis.lock().await;
                    let mut connection = match slot.take() {
                        Some(c) => c,
                        None => config.connect().await.map_err(|e| e.to_string())?,
                    };
                    let samples = redis::collect_with(&mut connection).await?;
                    *slot = Some(connection);
                    Ok(samples)
                })
                .await,
            )
        };
        let mongodb = async {
            let config = self.config.mongodb.as_ref()?;
            Some(bounded(Datastore::MongoDb, d, mongodb::collect(config)).await)
        };
        let kafka = async {
            // librdkafka's calls run on blocking threads that the deadline cannot stop: their
            // own timeouts are kept within it, so that none outlives the scrape by much.
            let mut config = self.config.kafka.clone()?;
            config.request_timeout = config.request_timeout.min(d);
            Some(bounded(Datastore::Kafka, d, kafka::collect(&config)).await)
        };
        let milvus = async {
            let config = self.config.milvus.as_ref()?;
            Some(bounded(Datastore::Milvus, d, milvus::collect(config)).await)
        };
        let (a, b, c, e, f) = futures::join!(postgres, redis, mongodb, kafka, milvus);
        [a, b, c, e, f].into_iter().flatten().collect()
    }

    /// One scrape, in the Prometheus text format.
    pub async fn scrape(&self) -> String {
        render(&self.collect().await)
    }
}

/// Renders samples in the Prometheus text format (0.0.4).
pub fn render(collected: &[Collected]) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for sample in collected.iter().flat_map(|c| &c.samples.0) {
            let labels: Vec<Label> = sample.labels.iter().map(|(k, v)| Label::new(k.clone(), v.clone())).collect();
            let name = sample.name.clone();
            // The metrics crate's counters hold integers: cumulative seconds keep their
            // fractions as a gauge (rate() reads it the same).
            if sample.kind == Kind::Gauge || name.contains("_seconds") {
                metrics::describe_gauge!(name.clone(), unit_of(&name), sample.help);
                metrics::gauge!(name, labels).set(sample.value);
            } else {
                metrics::describe_counter!(name.clone(), unit_of(&name), sample.help);
                metrics::counter!(name, labels).absolute(sample.value.max(0.0).round() as u64);
            }
        }
    });
    handle.render()
}

fn unit_of(name: &str) -> Unit {
    let base = name.trim_end_matches("_total");
    if base.ends_with("_bytes") {
        Unit::Bytes
    } else if base.ends_with("_seconds") {
        Unit::Seconds
    } else {
        Unit::Count
    }
}

/// Reads every configured datastore once and renders the result: one scrape without keeping
/// any connection.
pub async fn scrape(config: &DatastoresConfig, options: &ScrapeOptions) -> String {
    Exporter::new(config.clone(), *options).scrape().await
}
