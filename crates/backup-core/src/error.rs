use datastores::{BoxError, ConnectError, ErrorKind};

/// Everything the shared backup steps can fail with. Messages name the backup, file, key or
/// option at fault; [`Error::kind`] tells callers which kind of failure it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The datastore could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The datastore refused or failed a request.
    #[error("{context}: {message}")]
    Database {
        /// What was being done.
        context: String,
        /// The datastore's message (with PostgreSQL's SQLSTATE).
        message: String,
        /// The client library's error, where there is one (its text is in `message`);
        /// [`Error::sqlstate`] reads PostgreSQL's code from it.
        error: Option<BoxError>,
    },
    /// A child process (pg_dump, pg_restore, psql), a worker thread or an HTTP peer failed.
    #[error("{0}")]
    Tool(String),
    /// A local file or folder cannot be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed a request.
    #[error("S3 {context}: {message}")]
    S3 {
        /// What was being done, naming the key.
        context: String,
        /// The client's error with its causes.
        message: String,
    },
    /// Bad options or settings: nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// The backup, database or collection asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Refused to replace or destroy data without consent (`--clean --yes`, ...): nothing was
    /// changed.
    #[error("{0}")]
    NeedsConsent(String),
    /// A file, archive or manifest is damaged or not what it claims to be: nothing was changed.
    #[error("{0}")]
    Damaged(String),
    /// Another process changed or holds what this one needs (a backup pruned while it was
    /// verified, every backup id of a minute taken, sessions on a database to replace).
    #[error("{0}")]
    Conflict(String),
    /// The backup completed in some destinations, not all: `destinations` says where it is
    /// complete.
    #[error("{}; the backup is complete in {} ({id})", failures.join("; "), destinations.join(" and "))]
    Incomplete {
        /// What failed, one entry per destination.
        failures: Vec<String>,
        /// The backup's id.
        id: String,
        /// Where the backup is complete.
        destinations: Vec<String>,
    },
    /// A verification found differences.
    #[error("verification of {backup} failed:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Verify {
        /// The backup verified.
        backup: String,
        /// One line per difference.
        problems: Vec<String>,
    },
}

impl Error {
    /// An [`Error::Io`] with `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    /// An [`Error::S3`] with `context` and the client's error with its causes.
    pub fn s3(context: impl Into<String>, error: &(dyn std::error::Error + 'static)) -> Error {
        Error::S3 { context: context.into(), message: datastores::error_chain(error) }
    }

    /// An [`Error::Database`] keeping the client's `error`.
    pub fn database(context: impl Into<String>, error: impl Into<BoxError>) -> Error {
        let error = error.into();
        let message = match datastores::sqlstate(&*error) {
            Some(code) if !datastores::error_chain(&*error).contains(code) => {
                format!("{} [SQLSTATE {code}]", datastores::error_chain(&*error))
            }
            _ => datastores::error_chain(&*error),
        };
        Error::Database { context: context.into(), message, error: Some(error) }
    }

    /// What kind of failure this is; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Connect(e) => e.kind(),
            Error::Database { .. } | Error::S3 { .. } => ErrorKind::Server,
            Error::Tool(_) | Error::Io { .. } => ErrorKind::Io,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::NeedsConsent(_) => ErrorKind::NeedsConsent,
            Error::Damaged(_) => ErrorKind::Invalid,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Incomplete { .. } => ErrorKind::Partial,
            Error::Verify { .. } => ErrorKind::Mismatch,
        }
    }

    /// PostgreSQL's SQLSTATE when the server refused a request or the login.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Connect(e) => e.sqlstate(),
            Error::Database { error: Some(error), .. } => datastores::sqlstate(&**error),
            _ => None,
        }
    }
}
