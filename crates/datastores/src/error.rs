use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The datastores this crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datastore {
    Postgres,
    Redis,
    MongoDb,
    Kafka,
    Milvus,
    Weaviate,
    S3,
}

impl Datastore {
    pub const ALL: [Datastore; 7] = [
        Datastore::Postgres,
        Datastore::Redis,
        Datastore::MongoDb,
        Datastore::Kafka,
        Datastore::Milvus,
        Datastore::Weaviate,
        Datastore::S3,
    ];

    /// The lower-case name used on the command line and in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Datastore::Postgres => "postgres",
            Datastore::Redis => "redis",
            Datastore::MongoDb => "mongodb",
            Datastore::Kafka => "kafka",
            Datastore::Milvus => "milvus",
            Datastore::Weaviate => "weaviate",
            Datastore::S3 => "s3",
        }
    }

    pub fn from_key(key: &str) -> Option<Datastore> {
        Datastore::ALL.into_iter().find(|d| d.key() == key)
    }
}

impl fmt::Display for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Datastore::Postgres => "PostgreSQL",
            Datastore::Redis => "Redis",
            Datastore::MongoDb => "MongoDB",
            Datastore::Kafka => "Kafka",
            Datastore::Milvus => "Milvus",
            Datastore::Weaviate => "Weaviate",
            Datastore::S3 => "S3",
        })
    }
}

/// A configuration that cannot be used. Each message names the variable, flag or file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{first} and {second} are both set; set only one of them")]
    Conflict { first: String, second: String },
    #[error("cannot read the secret file {} named by {variable}", path.display())]
    SecretFile {
        variable: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("{datastore}: {reason}")]
    Incomplete { datastore: Datastore, reason: String },
}

/// A datastore that could not be reached or answered with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("{datastore} at {endpoint}: no answer within {timeout:?}")]
    Timeout { datastore: Datastore, endpoint: String, timeout: Duration },
    /// `message` holds the client library's error with its causes, on one line.
    #[error("{datastore} at {endpoint}: {message}")]
    Failed { datastore: Datastore, endpoint: String, message: String },
}

impl ConnectError {
    pub fn failed(datastore: Datastore, endpoint: &str, error: &(dyn std::error::Error + 'static)) -> ConnectError {
        ConnectError::Failed { datastore, endpoint: endpoint.to_owned(), message: chain(error) }
    }

    pub fn message(datastore: Datastore, endpoint: &str, message: impl Into<String>) -> ConnectError {
        ConnectError::Failed { datastore, endpoint: endpoint.to_owned(), message: message.into() }
    }
}

/// Runs `future` with a deadline, turning a timeout into [`ConnectError::Timeout`].
#[cfg_attr(not(feature = "health"), allow(dead_code))] // Used by some of the datastore features.
pub(crate) async fn with_timeout<T>(
    datastore: Datastore,
    endpoint: &str,
    timeout: Duration,
    future: impl Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout { datastore, endpoint: endpoint.to_owned(), timeout }),
    }
}

/// An error and its causes on one line, without repeating a cause that its parent already quotes.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = cause.source();
    }
    text
}

/// The variables whose presence means a datastore is configured.
pub const fn triggers(datastore: Datastore) -> &'static [&'static str] {
    match datastore {
        Datastore::Postgres => &["DATABASE_URL", "POSTGRES_URL", "POSTGRES_HOST"],
        Datastore::Redis => &["REDIS_URL", "REDIS_SENTINEL_NODES", "REDIS_CLUSTER_NODES"],
        Datastore::MongoDb => &["MONGODB_URI"],
        Datastore::Kafka => &["KAFKA_BOOTSTRAP_SERVERS"],
        Datastore::Milvus => &["MILVUS_URI", "MILVUS_HOST"],
        Datastore::Weaviate => &["WEAVIATE_URL"],
        Datastore::S3 => &["S3_BUCKET"],
    }
}
