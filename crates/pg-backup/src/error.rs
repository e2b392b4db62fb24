use datastores::{BoxError, ConnectError, ErrorKind};

/// Everything a backup command can fail with. Messages name the backup, file, key, tool or
/// option at fault; [`Error::kind`] tells callers which kind of failure it is, and
/// [`Error::sqlstate`] PostgreSQL's code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server refused or failed a request.
    #[error("{context}: {message}")]
    Database {
        /// What was being done.
        context: String,
        /// The server's message with its SQLSTATE.
        message: String,
        /// The client's error, where there is one (its text is in `message`).
        error: Option<BoxError>,
    },
    /// A PostgreSQL client tool is missing, too old, or failed; or a worker thread failed.
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
    /// Bad options: nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// The backup asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Refused to replace a database without consent (`--clean --yes`, `--terminate-connections`):
    /// nothing was changed.
    #[error("{0}")]
    NeedsConsent(String),
    /// A file, archive or manifest is damaged or not what it claims to be: nothing was changed.
    #[error("{0}")]
    Damaged(String),
    /// Another process changed or holds what this one needs (a backup pruned while it was
    /// verified).
    #[error("{0}")]
    Conflict(String),
    /// The backup completed in some destinations, not all: `manifest.destinations` says where
    /// it is complete.
    #[error("{}; the backup is complete in {} ({})", failures.join("; "), manifest.destinations.join(" and "), manifest.id)]
    Incomplete {
        /// What failed, one entry per destination.
        failures: Vec<String>,
        /// The backup's manifest.
        manifest: Box<crate::Manifest>,
    },
    /// A verification found differences.
    #[error("verification of {backup} failed:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Verify {
        /// The backup verified.
        backup: String,
        /// One line per difference.
        problems: Vec<String>,
    },
    /// A failure of the steps every datastore's backups share that has no variant of its own
    /// here, such as a backup complete in some destinations reported without its manifest
    /// (pg-backup's own writer reports that as [`Error::Incomplete`]). Its kind is the shared
    /// error's.
    #[error(transparent)]
    Shared(backup_core::Error),
}

impl Error {
    pub(crate) fn db(context: impl Into<String>, error: datastores::tokio_postgres::Error) -> Error {
        let message = match error.as_db_error() {
            Some(db) => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
            None => datastores::error_chain(&error),
        };
        Error::Database { context: context.into(), message, error: Some(Box::new(error)) }
    }

    pub(crate) fn admin(error: datastores::pgadmin::AdminError) -> Error {
        Error::Database {
            context: error.what,
            message: error.message,
            error: error.error.map(|e| Box::new(e) as BoxError),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    /// What kind of failure this is; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Connect(e) => e.kind(),
            // The client's error without a server's answer: the connection broke.
            Error::Database { error: Some(error), .. }
                if error
                    .downcast_ref::<datastores::tokio_postgres::Error>()
                    .is_some_and(|e| e.as_db_error().is_none() && e.is_closed()) =>
            {
                ErrorKind::Unavailable
            }
            Error::Database { .. } | Error::S3 { .. } => ErrorKind::Server,
            Error::Tool(_) | Error::Io { .. } => ErrorKind::Io,
            Error::Invalid(_) | Error::Damaged(_) => ErrorKind::Invalid,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::NeedsConsent(_) => ErrorKind::NeedsConsent,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Incomplete { .. } => ErrorKind::Partial,
            Error::Verify { .. } => ErrorKind::Mismatch,
            Error::Shared(e) => e.kind(),
        }
    }

    /// PostgreSQL's SQLSTATE when the server refused a request or the login.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Connect(e) => e.sqlstate(),
            Error::Database { error: Some(error), .. } => datastores::sqlstate(&**error),
            Error::Shared(e) => e.sqlstate(),
            _ => None,
        }
    }
}

impl From<backup_core::Error> for Error {
    fn from(error: backup_core::Error) -> Error {
        use backup_core::Error as Core;
        match error {
            Core::Connect(e) => Error::Connect(e),
            Core::Database { context, message, error } => Error::Database { context, message, error },
            Core::Tool(m) => Error::Tool(m),
            Core::Io { context, source } => Error::Io { context, source },
            Core::S3 { context, message } => Error::S3 { context, message },
            Core::Invalid(m) => Error::Invalid(m),
            Core::NotFound(m) => Error::NotFound(m),
            Core::NeedsConsent(m) => Error::NeedsConsent(m),
            Core::Damaged(m) => Error::Damaged(m),
            Core::Conflict(m) => Error::Conflict(m),
            Core::Verify { backup, problems } => Error::Verify { backup, problems },
            // Without the manifest that `Error::Incomplete` carries; pg-backup's own writer
            // reports an incomplete backup with it.
            incomplete @ Core::Incomplete { .. } => Error::Shared(incomplete),
            // Variants the shared crate adds later keep their kind.
            other => Error::Shared(other),
        }
    }
}
