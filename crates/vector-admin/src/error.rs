//! One error type for the crate: what failed, on which backend and collection, and what to do.

use std::fmt;
use std::time::Duration;

/// Which backend an error or report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Milvus, through its gRPC service ([`MilvusStore`](crate::MilvusStore)).
    Milvus,
    /// Weaviate, through its REST and GraphQL API ([`WeaviateStore`](crate::WeaviateStore)).
    Weaviate,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Milvus => "Milvus",
            Backend::Weaviate => "Weaviate",
        })
    }
}

/// The crate's result type, with [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the crate: what failed, on which backend and collection, and what to do next.
///
/// [`Error::is_usage`] and [`Error::kind`] classify it for exit codes and retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input (a spec, a preset, a parameter, vectors of the wrong dimension): nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// The collection does not exist.
    #[error("{backend}: collection {collection} does not exist")]
    NotFound {
        /// The backend that was asked.
        backend: Backend,
        /// The collection (Milvus) or class (Weaviate) name.
        collection: String,
    },
    /// The operation would destroy or rebuild something and was not allowed to.
    #[error("{0}")]
    NeedsConsent(String),
    /// The backend has no such operation (Weaviate has no separate index to drop, ...).
    #[error("{backend}: {what} is not supported: {why}")]
    Unsupported {
        /// The backend that lacks the operation.
        backend: Backend,
        /// The operation that was asked for.
        what: String,
        /// Why the backend cannot do it, and what to do instead.
        why: String,
    },
    /// The server could not be reached or its connection failed.
    #[error(transparent)]
    Connect(#[from] datastores::ConnectError),
    /// The server answered with an error.
    #[error("{backend}: {operation} failed: {message}")]
    Server {
        /// The backend that answered.
        backend: Backend,
        /// The request that failed (`create collection`, `insert`, ...).
        operation: String,
        /// The server's own message.
        message: String,
    },
    /// The server answered something this client cannot read.
    #[error("{backend}: {operation}: unexpected answer: {message}")]
    Protocol {
        /// The backend that answered.
        backend: Backend,
        /// The request whose answer could not be read.
        operation: String,
        /// What was wrong with the answer.
        message: String,
    },
    /// A wait ran out of time; `progress` says how far it got.
    #[error("{what} did not finish within {waited:?} ({progress})")]
    Timeout {
        /// What was waited for (`index build on items`, `load of items`, ...).
        what: String,
        /// How long the wait lasted before giving up.
        waited: Duration,
        /// The last state seen (rows indexed, load percentage, ...).
        progress: String,
    },
    /// An index build made no progress for longer than its stall limit.
    #[error("index build on {collection} is stuck at {progress}{hint}")]
    IndexStuck {
        /// The collection whose index is being built.
        collection: String,
        /// Rows indexed so far and for how long nothing moved.
        progress: String,
        /// What to check or change next, appended to the message as written (`; check the index node's log`).
        hint: String,
    },
    /// A multi-step operation stopped part-way: what was done and how to finish.
    #[error("{source}; done before it failed: {done}; {next}")]
    Interrupted {
        /// The steps that completed, joined with `; `.
        done: String,
        /// What to run to finish the operation.
        next: String,
        /// The failure that stopped it.
        source: Box<Error>,
    },
    /// Some objects of a batch were refused (Weaviate answers 200 and reports them per object).
    #[error("{backend}: {failed} of {total} objects were refused, first: {first}")]
    Rejected {
        /// The backend that refused them.
        backend: Backend,
        /// How many objects or rows were refused.
        failed: usize,
        /// How many the batch held.
        total: usize,
        /// The first refused row or object: its position and key, and Weaviate's reason.
        first: String,
    },
}

impl Error {
    /// Whether the caller's input was at fault (the binaries' usage exit code).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Invalid(_) | Error::NeedsConsent(_))
    }

    /// What kind of failure this is; see [`datastores::ErrorKind`].
    pub fn kind(&self) -> datastores::ErrorKind {
        use datastores::ErrorKind;
        match self {
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::NeedsConsent(_) => ErrorKind::NeedsConsent,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Connect(e) => e.kind(),
            Error::Server { .. } | Error::Rejected { .. } => ErrorKind::Server,
            Error::Protocol { .. } => ErrorKind::Invalid,
            Error::Timeout { .. } | Error::IndexStuck { .. } => ErrorKind::TimedOut,
            Error::Interrupted { .. } => ErrorKind::Partial,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    pub(crate) fn server(backend: Backend, operation: impl Into<String>, message: impl fmt::Display) -> Error {
        Error::Server { backend, operation: operation.into(), message: message.to_string() }
    }

    pub(crate) fn protocol(backend: Backend, operation: impl Into<String>, message: impl fmt::Display) -> Error {
        Error::Protocol { backend, operation: operation.into(), message: message.to_string() }
    }
}
