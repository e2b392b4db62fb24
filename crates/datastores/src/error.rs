use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The datastores this crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datastore {
    /// PostgreSQL (with pgvector).
    Postgres,
    /// Redis: standalone, Sentinel or Cluster.
    Redis,
    /// MongoDB.
    MongoDb,
    /// Kafka.
    Kafka,
    /// Milvus, the vector database, over gRPC.
    Milvus,
    /// Weaviate, the vector database, over HTTP.
    Weaviate,
    /// S3 or an S3-compatible object store.
    S3,
}

impl Datastore {
    /// Every datastore, in the order of the variants (PostgreSQL first, S3 last).
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

    /// The datastore whose [`Datastore::key`] is `key` (exact, lower case); `None` for any other text.
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

/// What kind of failure an error is: the part of it callers match on. Every library of the
/// workspace gives its error a `kind()` returning this, so a service handles "not found",
/// "needs consent" or "timed out" the same way whichever crate failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting, flag or configuration file is wrong; the message names its origin.
    Config,
    /// The datastore could not be reached, refused the login, or the connection broke.
    Unavailable,
    /// No answer within the time allowed.
    TimedOut,
    /// The datastore answered a request with an error (for PostgreSQL, `sqlstate()` tells
    /// which).
    Server,
    /// What was asked for does not exist: a backup, database, collection, migration.
    NotFound,
    /// Refused because it would destroy or replace data without the explicit consent the
    /// caller can give (`--yes`, `--clean`, `--drop-old`, ...).
    NeedsConsent,
    /// Input that cannot be used: an option, a file, an archive, a manifest or a server answer
    /// that breaks the rules. Nothing was changed.
    Invalid,
    /// Another process holds what is needed or changed it meanwhile (a lock, a concurrent
    /// migrator, a backup pruned while it was read).
    Conflict,
    /// A local file, a child process or a worker failed.
    Io,
    /// A check found differences (verification of a backup, a validation of migrations).
    Mismatch,
    /// Part of the work is done and part is not; the error says which.
    Partial,
    /// The datastore or its version cannot do what was asked.
    Unsupported,
}

/// A configuration that cannot be used. Each message names the variable, flag or file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Two settings that exclude each other are both set.
    #[error("{first} and {second} are both set; set only one of them")]
    Conflict {
        /// The first setting, as its origin names it (`environment variable X`, `--flag`).
        first: String,
        /// The second setting.
        second: String,
    },
    /// A `_FILE` variable names a file that cannot be read.
    #[error("cannot read the secret file {} named by {variable}", path.display())]
    SecretFile {
        /// The variable naming the file.
        variable: String,
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// A value that cannot be used.
    #[error("{origin}: {reason}")]
    Invalid {
        /// Where the value came from (`environment variable REDIS_URL`, `--port`, a file).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A datastore whose settings are partly given.
    #[error("{datastore}: {reason}")]
    Incomplete {
        /// The datastore.
        datastore: Datastore,
        /// What is missing.
        reason: String,
    },
}

impl ConfigError {
    /// Always [`ErrorKind::Config`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }

    /// The setting at fault, as its origin names it, where there is one.
    pub fn origin(&self) -> Option<&str> {
        match self {
            ConfigError::Conflict { first, .. } => Some(first),
            ConfigError::SecretFile { variable, .. } => Some(variable),
            ConfigError::Invalid { origin, .. } => Some(origin),
            ConfigError::Incomplete { .. } => None,
        }
    }
}

/// The error a client library gave, kept as the source of a [`ConnectError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A datastore that could not be reached or answered with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No answer within `timeout`.
    #[error("{datastore} at {endpoint}: no answer within {timeout:?}")]
    Timeout {
        /// The datastore.
        datastore: Datastore,
        /// Where it was asked (host and port, never credentials).
        endpoint: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The datastore could not be reached or answered with an error. `message` holds the client
    /// library's error with its causes, on one line; `error` the error itself where there is
    /// one (its text is in `message`, so it is not repeated as a source).
    #[error("{datastore} at {endpoint}: {message}")]
    Failed {
        /// The datastore.
        datastore: Datastore,
        /// Where it was asked (host and port, never credentials).
        endpoint: String,
        /// What failed, on one line.
        message: String,
        /// The client library's error.
        error: Option<BoxError>,
    },
}

impl ConnectError {
    /// A failure with the client library's `error` as its source.
    pub fn failed(datastore: Datastore, endpoint: &str, error: impl Into<BoxError>) -> ConnectError {
        let error = error.into();
        ConnectError::Failed { datastore, endpoint: endpoint.to_owned(), message: chain(&*error), error: Some(error) }
    }

    /// A failure this crate found itself (a bad answer, an unusable certificate file).
    pub fn message(datastore: Datastore, endpoint: &str, message: impl Into<String>) -> ConnectError {
        ConnectError::Failed { datastore, endpoint: endpoint.to_owned(), message: message.into(), error: None }
    }

    /// The datastore at fault.
    pub fn datastore(&self) -> Datastore {
        match self {
            ConnectError::Timeout { datastore, .. } | ConnectError::Failed { datastore, .. } => *datastore,
        }
    }

    /// [`ErrorKind::TimedOut`], [`ErrorKind::Server`] when the datastore answered with an error
    /// code (see [`ConnectError::sqlstate`]), else [`ErrorKind::Unavailable`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnectError::Timeout { .. } => ErrorKind::TimedOut,
            ConnectError::Failed { .. } if self.sqlstate().is_some() => ErrorKind::Server,
            ConnectError::Failed { .. } => ErrorKind::Unavailable,
        }
    }

    /// PostgreSQL's SQLSTATE when the server refused (for example `28P01`, a wrong password, or
    /// `3D000`, no such database).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ConnectError::Failed { error: Some(error), .. } => sqlstate(&**error),
            _ => None,
        }
    }
}

/// PostgreSQL's SQLSTATE of `error` or of one of its causes, when the server gave one.
pub fn sqlstate<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a str> {
    #[cfg(feature = "postgres")]
    {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(db) = e.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.as_db_error()) {
                return Some(db.code().code());
            }
            #[cfg(feature = "sqlx")]
            if let Some(db) = e
                .downcast_ref::<sqlx::Error>()
                .and_then(|e| e.as_database_error())
                .and_then(|db| db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
            {
                return Some(db.code());
            }
            current = e.source();
        }
    }
    #[cfg(not(feature = "postgres"))]
    let _ = error;
    None
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
