//! The configuration of every datastore at once, and a concurrent health check over them.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{ConfigError, ConnectError, Datastore, triggers};
use crate::kafka::KafkaConfig;
use crate::milvus::MilvusConfig;
use crate::mongodb::MongoConfig;
use crate::postgres::PostgresConfig;
use crate::redis::RedisConfig;
use crate::s3::S3Config;
use crate::settings::Settings;
use crate::weaviate::WeaviateConfig;

/// Each datastore's configuration, `None` where none of its variables is set.
#[derive(Clone, Debug, Default)]
pub struct DatastoresConfig {
    /// PostgreSQL, when `DATABASE_URL`, `POSTGRES_URL` or `POSTGRES_HOST` is set.
    pub postgres: Option<PostgresConfig>,
    /// Redis, when `REDIS_URL`, `REDIS_SENTINEL_NODES` or `REDIS_CLUSTER_NODES` is set.
    pub redis: Option<RedisConfig>,
    /// MongoDB, when `MONGODB_URI` is set.
    pub mongodb: Option<MongoConfig>,
    /// Kafka, when `KAFKA_BOOTSTRAP_SERVERS` is set.
    pub kafka: Option<KafkaConfig>,
    /// Milvus, when `MILVUS_URI` or `MILVUS_HOST` is set.
    pub milvus: Option<MilvusConfig>,
    /// Weaviate, when `WEAVIATE_URL` is set.
    pub weaviate: Option<WeaviateConfig>,
    /// S3, when `S3_BUCKET` is set.
    pub s3: Option<S3Config>,
}

/// Every configuration error found, not only the first.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl DatastoresConfig {
    /// Reads the configuration of each datastore whose variables are set, collecting all errors.
    ///
    /// ```rust
    /// use datastores::{Datastore, DatastoresConfig, Settings, Source};
    ///
    /// let vars = [("POSTGRES_HOST", "db"), ("REDIS_URL", "redis://cache:6380/1")];
    /// let settings = Settings::new().layer(Source::Environment, vars);
    /// let config = DatastoresConfig::from_settings(&settings)?;
    /// assert_eq!(config.endpoint(Datastore::Postgres).as_deref(), Some("db:5432"));
    /// assert_eq!(config.endpoint(Datastore::Redis).as_deref(), Some("cache:6380"));
    /// // A datastore none of whose variables is set is not configured, and not an error.
    /// assert!(!config.is_configured(Datastore::Kafka));
    ///
    /// // Every datastore's errors are reported at once.
    /// let bad = Settings::new().layer(
    ///     Source::Environment,
    ///     [("POSTGRES_HOST", "db"), ("POSTGRES_PORT", "x"), ("KAFKA_BOOTSTRAP_SERVERS", "broker")],
    /// );
    /// let errors = DatastoresConfig::from_settings(&bad).unwrap_err();
    /// assert_eq!(errors.0.len(), 2);
    /// # Ok::<(), datastores::ConfigErrors>(())
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<DatastoresConfig, ConfigErrors> {
        let mut errors = Vec::new();
        let configured = |d: Datastore| triggers(d).iter().any(|name| settings.is_set(name));
        fn load<T>(on: bool, errors: &mut Vec<ConfigError>, f: impl FnOnce() -> Result<T, ConfigError>) -> Option<T> {
            if !on {
                return None;
            }
            f().map_err(|e| errors.push(e)).ok()
        }
        let config = DatastoresConfig {
            postgres: load(configured(Datastore::Postgres), &mut errors, || PostgresConfig::from_settings(settings)),
            redis: load(configured(Datastore::Redis), &mut errors, || RedisConfig::from_settings(settings)),
            mongodb: load(configured(Datastore::MongoDb), &mut errors, || MongoConfig::from_settings(settings)),
            kafka: load(configured(Datastore::Kafka), &mut errors, || KafkaConfig::from_settings(settings)),
            milvus: load(configured(Datastore::Milvus), &mut errors, || MilvusConfig::from_settings(settings)),
            weaviate: load(configured(Datastore::Weaviate), &mut errors, || WeaviateConfig::from_settings(settings)),
            s3: load(configured(Datastore::S3), &mut errors, || S3Config::from_settings(settings)),
        };
        if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
    }

    /// Whether `datastore` has a configuration.
    pub fn is_configured(&self, datastore: Datastore) -> bool {
        self.endpoint(datastore).is_some()
    }

    /// Where `datastore` is (hosts and ports, never credentials); `None` when it is not configured.
    pub fn endpoint(&self, datastore: Datastore) -> Option<String> {
        match datastore {
            Datastore::Postgres => self.postgres.as_ref().map(PostgresConfig::endpoint),
            Datastore::Redis => self.redis.as_ref().map(RedisConfig::endpoint),
            Datastore::MongoDb => self.mongodb.as_ref().map(MongoConfig::endpoint),
            Datastore::Kafka => self.kafka.as_ref().map(KafkaConfig::endpoint),
            Datastore::Milvus => self.milvus.as_ref().map(MilvusConfig::endpoint),
            Datastore::Weaviate => self.weaviate.as_ref().map(WeaviateConfig::endpoint),
            Datastore::S3 => self.s3.as_ref().map(S3Config::endpoint),
        }
    }

    async fn check_one(&self, datastore: Datastore, options: &CheckOptions) -> Option<Result<String, ConnectError>> {
        Some(match datastore {
            Datastore::Postgres => self.postgres.as_ref()?.health().await,
            Datastore::Redis => self.redis.as_ref()?.health().await,
            Datastore::MongoDb => self.mongodb.as_ref()?.health().await,
            Datastore::Kafka => self.kafka.as_ref()?.health().await,
            Datastore::Milvus => self.milvus.as_ref()?.health().await,
            Datastore::Weaviate => self.weaviate.as_ref()?.health().await,
            Datastore::S3 => self.s3.as_ref()?.health(options.s3_write_probe).await,
        })
    }
}

/// The outcome of one datastore's health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It answered within the timeout.
    Healthy,
    /// It could not be reached, refused, failed the check, or did not answer within the timeout.
    Unhealthy,
    /// None of its variables is set; it was not checked.
    NotConfigured,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
            Status::NotConfigured => "not configured",
        })
    }
}

/// The outcome of checking one datastore.
#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    /// The datastore checked.
    pub datastore: Datastore,
    /// The outcome.
    pub status: Status,
    /// Where it was checked (hosts and ports, never credentials); `None` when not configured.
    pub endpoint: Option<String>,
    /// The server's version, or what the protocol tells instead (Kafka, S3).
    pub version: Option<String>,
    /// How long the check took (in JSON `latency_ms`, milliseconds to 0.1); `None` when not
    /// configured.
    #[serde(rename = "latency_ms", serialize_with = "as_millis")]
    pub latency: Option<Duration>,
    /// Why it is unhealthy, with the error's causes; `None` otherwise.
    pub error: Option<String>,
}

fn as_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&((d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0)),
        None => s.serialize_none(),
    }
}

/// How to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// The time each datastore's check may take.
    pub timeout: Duration,
    /// Write and delete an object in S3, instead of only reading the bucket.
    pub s3_write_probe: bool,
}

impl CheckOptions {
    /// Checks each datastore within `timeout`, reading S3 without writing to it.
    pub fn new(timeout: Duration) -> CheckOptions {
        CheckOptions { timeout, s3_write_probe: false }
    }
}

/// Checks `datastores` concurrently, each within `options.timeout`; unconfigured ones are
/// reported as such without any network traffic. Reports come back in the order asked.
///
/// ```rust,no_run
/// # async fn example() -> Result<(), datastores::ConfigErrors> {
/// use std::time::Duration;
/// use datastores::{CheckOptions, Datastore, DatastoresConfig, Settings, Source, Status, check};
///
/// let settings = Settings::new().layer(Source::Environment, std::env::vars());
/// let config = DatastoresConfig::from_settings(&settings)?;
/// let reports = check(&config, &Datastore::ALL, &CheckOptions::new(Duration::from_secs(5))).await;
/// for report in reports.iter().filter(|r| r.status == Status::Unhealthy) {
///     eprintln!("{}: {}", report.datastore, report.error.as_deref().unwrap_or_default());
/// }
/// # Ok(()) }
/// ```
pub async fn check(config: &DatastoresConfig, datastores: &[Datastore], options: &CheckOptions) -> Vec<HealthReport> {
    let timeout = options.timeout;
    let checks = datastores.iter().map(|&datastore| async move {
        let endpoint = config.endpoint(datastore);
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, config.check_one(datastore, options)).await;
        let latency = Some(started.elapsed());
        let (status, version, error) = match outcome {
            Ok(None) => {
                return HealthReport {
                    datastore,
                    status: Status::NotConfigured,
                    endpoint,
                    version: None,
                    latency: None,
                    error: None,
                };
            }
            Ok(Some(Ok(version))) => (Status::Healthy, Some(version), None),
            Ok(Some(Err(e))) => (Status::Unhealthy, None, Some(e.to_string())),
            Err(_) => {
                let e = ConnectError::Timeout { datastore, endpoint: endpoint.clone().unwrap_or_default(), timeout };
                (Status::Unhealthy, None, Some(e.to_string()))
            }
        };
        HealthReport { datastore, status, endpoint, version, latency, error }
    });
    futures::future::join_all(checks).await
}
