//! Configuration, connections and health checks for the platform's datastores: PostgreSQL
//! (with pgvector), Redis, MongoDB, Kafka, Milvus, Weaviate and S3.
//!
//! A service builds a [`Settings`] from its own sources (flags, then environment), reads the
//! typed configuration of the datastores it uses, and connects:
//!
//! ```rust,no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use datastores::{PostgresConfig, Settings, Source};
//!
//! let settings = Settings::new().layer(Source::Environment, std::env::vars());
//! let config = PostgresConfig::from_settings(&settings)?;
//! let pool = config.pool().await?;
//! let client = pool.get().await?;
//! client.execute("SELECT 1", &[]).await?;
//! # Ok(()) }
//! ```
//!
//! Each datastore is a Cargo feature (`postgres`, `redis`, `mongodb`, `kafka`, `milvus`,
//! `weaviate`, `s3`), none on by default, so that a crate builds only the drivers it uses; `push`
//! adds the Jobs' Pushgateway pushes, `health` the configuration of every datastore at once and
//! its health check, `bootstrap` the declarative bootstrap, `metrics` the exporter, `full` all;
//! `sqlx` adds `PostgresConfig::sqlx_pool`, a sqlx pool from the same configuration.
//!
//! This crate never reads the process environment (sqlx does, for the settings a configuration
//! leaves unset; see `PostgresConfig::sqlx_options`), prints, or exits: the caller decides.
//! Secrets are held in [`Secret`], whose `Debug` and `Display` print `[redacted]`;
//! configurations show endpoints, never passwords. It is not a datastore administration tool:
//! migrations, backups and schema management live in their own crates.
#![warn(missing_docs)]

#[cfg(feature = "bootstrap")]
pub mod bootstrap;
mod error;
#[cfg(feature = "health")]
mod health;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(any(feature = "bootstrap", feature = "metrics"))]
mod kafka_ffi;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "milvus")]
mod milvus;
#[cfg(feature = "mongodb")]
mod mongodb;
#[cfg(feature = "postgres")]
pub mod pgadmin;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "push")]
pub mod push;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "s3")]
mod s3;
mod settings;
pub mod tls;
#[cfg(feature = "weaviate")]
mod weaviate;

pub use crate::error::{
    BoxError, ConfigError, ConnectError, Datastore, ErrorKind, chain as error_chain, sqlstate, triggers,
};
#[cfg(feature = "health")]
pub use crate::health::{CheckOptions, ConfigErrors, DatastoresConfig, HealthReport, Status, check};
#[cfg(feature = "kafka")]
pub use crate::kafka::{KafkaConfig, SaslCredentials, SaslMechanism, SecurityProtocol};
#[cfg(feature = "milvus")]
pub use crate::milvus::{GrpcMetadata, MilvusConfig, MilvusGrpc};
#[cfg(feature = "mongodb")]
pub use crate::mongodb::MongoConfig;
#[cfg(feature = "postgres")]
pub use crate::postgres::{PoolConfig, PostgresConfig, SslMode};
#[cfg(feature = "redis")]
pub use crate::redis::{
    Node as RedisNode, RedisConfig, RedisConnection, RedisManager, RedisTls, Topology as RedisTopology,
};
#[cfg(feature = "s3")]
pub use crate::s3::{S3Config, S3Credentials, Sse, valid_bucket_name};
pub use crate::settings::{Origin, Secret, Settings, Source, Value, parse_bool, parse_duration};
#[cfg(feature = "weaviate")]
pub use crate::weaviate::{
    Meta as WeaviateMeta, WeaviateClient, WeaviateConfig, error_detail as weaviate_error_detail,
};

/// Re-exported so callers use the same driver versions as this crate.
#[cfg(feature = "mongodb")]
pub use ::mongodb as mongodb_driver;
#[cfg(feature = "redis")]
pub use ::redis as redis_driver;
#[cfg(feature = "kafka")]
pub use rdkafka;
#[cfg(feature = "sqlx")]
pub use sqlx;
#[cfg(feature = "postgres")]
pub use {deadpool_postgres, tokio_postgres};
