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
//! This crate never reads the process environment, prints, or exits: the caller decides. Secrets
//! are held in [`Secret`], whose `Debug` and `Display` print `[redacted]`; configurations show
//! endpoints, never passwords. It is not a datastore administration tool: migrations, backups
//! and schema management live in their own crates.

pub mod bootstrap;
mod error;
mod health;
mod kafka;
mod kafka_ffi;
pub mod metrics;
mod milvus;
mod mongodb;
pub mod pgadmin;
mod postgres;
pub mod push;
mod redis;
mod s3;
mod settings;
pub mod tls;
mod weaviate;

pub use crate::error::{ConfigError, ConnectError, Datastore, chain as error_chain};
pub use crate::health::{CheckOptions, ConfigErrors, DatastoresConfig, HealthReport, Status, check, triggers};
pub use crate::kafka::{KafkaConfig, SaslCredentials, SaslMechanism, SecurityProtocol};
pub use crate::milvus::{GrpcMetadata, MilvusConfig, MilvusGrpc};
pub use crate::mongodb::MongoConfig;
pub use crate::postgres::{PoolConfig, PostgresConfig, SslMode};
pub use crate::redis::{Node as RedisNode, RedisConfig, RedisConnection, RedisTls, Topology as RedisTopology};
pub use crate::s3::{S3Config, S3Credentials, Sse, valid_bucket_name};
pub use crate::settings::{Origin, Secret, Settings, Source, Value, parse_bool, parse_duration};
pub use crate::weaviate::{
    Meta as WeaviateMeta, WeaviateClient, WeaviateConfig, error_detail as weaviate_error_detail,
};

/// Re-exported so callers use the same driver versions as this crate.
pub use {::mongodb as mongodb_driver, ::redis as redis_driver, deadpool_postgres, rdkafka, tokio_postgres};
