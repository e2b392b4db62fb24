//! Integration tests against the real servers of the local stack (`cargo xtask test`).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod bootstrap_kafka;
mod bootstrap_mongodb;
mod bootstrap_postgres;
mod bootstrap_redis;
mod health;
mod kafka;
mod live_topologies;
mod metrics_kafka;
mod metrics_milvus;
mod metrics_mongodb;
mod milvus;
mod mongodb;
mod postgres;
mod postgres_sqlx;
mod push;
mod redis;
mod s3;
mod weaviate;
