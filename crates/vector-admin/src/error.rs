//! One error type for the crate: what failed, on which backend and collection, and what to do.

use std::fmt;
use std::time::Duration;

/// Which backend an error or report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Milvus,
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input (a spec, a preset, a parameter, vectors of the wrong dimension): nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// The collection does not exist.
    #[error("{backend}: collection {collection} does not exist")]
    NotFound { backend: Backend, collection: String },
    /// The operation would destroy or rebuild something and was not allowed to.
    #[error("{0}")]
    NeedsConsent(String),
    /// The backend has no such operation (Weaviate has no separate index to drop, ...).
    #[error("{backend}: {what} is not supported: {why}")]
    Unsupported { backend: Backend, what: String, why: String },
    /// The server could not be reached or its connection failed.
    #[error(transparent)]
    Connect(#[from] datastores::ConnectError),
    /// The server answered with an error.
    #[error("{backend}: {operation} failed: {message}")]
    Server { backend: Backend, operation: String, message: String },
    /// The server answered something this client cannot read.
    #[error("{backend}: {operation}: unexpected answer: {message}")]
    Protocol { backend: Backend, operation: String, message: String },
    /// A wait ran out of time; `progress` says how far it got.
    #[error("{what} did not finish within {waited:?} ({progress})")]
    Timeout { what: String, waited: Duration, progress: String },
    /// An index build made no progress for longer than its stall limit.
    #[error("index build on {collection} is stuck at {progress}{hint}")]
    IndexStuck { collection: String, progress: String, hint: String },
    /// A multi-step operation stopped part-way: what was done and how to finish.
    #[error("{source}; done before it failed: {done}; {next}")]
    Interrupted { done: String, next: String, source: Box<Error> },
    /// Some objects of a batch were refused (Weaviate answers 200 and reports them per object).
    #[error("{backend}: {failed} of {total} objects were refused, first: {first}")]
    Rejected { backend: Backend, failed: usize, total: usize, first: String },
}

impl Error {
    /// Whether the caller's input was at fault (the binaries' usage exit code).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Invalid(_) | Error::NeedsConsent(_))
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
