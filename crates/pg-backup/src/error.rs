use datastores::ConnectError;

/// Everything a backup command can fail with. Messages name the backup, file, key, tool or
/// option at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{context}: {message}")]
    Database { context: String, message: String },
    /// A PostgreSQL client tool is missing, too old, or failed.
    #[error("{0}")]
    Tool(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("S3 {context}: {message}")]
    S3 { context: String, message: String },
    /// Bad options: nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// Refused to protect data (a non-empty target, a failed checksum, ...).
    #[error("{0}")]
    Refused(String),
    /// The backup completed in some destinations, not all: `manifest.destinations` says where
    /// it is complete.
    #[error("{}; the backup is complete in {} ({})", failures.join("; "), manifest.destinations.join(" and "), manifest.id)]
    Incomplete { failures: Vec<String>, manifest: Box<crate::Manifest> },
    /// A verification found differences.
    #[error("verification of {backup} failed:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Verify { backup: String, problems: Vec<String> },
}

impl Error {
    pub(crate) fn db(context: impl Into<String>, error: &datastores::tokio_postgres::Error) -> Error {
        let message = match error.as_db_error() {
            Some(db) => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
            None => datastores::error_chain(error),
        };
        Error::Database { context: context.into(), message }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

impl From<backup_core::Error> for Error {
    fn from(error: backup_core::Error) -> Error {
        use backup_core::Error as Core;
        match error {
            Core::Connect(e) => Error::Connect(e),
            Core::Database { context, message } => Error::Database { context, message },
            Core::Tool(m) => Error::Tool(m),
            Core::Io { context, source } => Error::Io { context, source },
            Core::S3 { context, message } => Error::S3 { context, message },
            Core::Invalid(m) => Error::Invalid(m),
            Core::Refused(m) => Error::Refused(m),
            Core::Verify { backup, problems } => Error::Verify { backup, problems },
            other => Error::Tool(other.to_string()),
        }
    }
}
