use datastores::ConnectError;

/// Everything the shared backup steps can fail with. Messages name the backup, file, key or
/// option at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The datastore refused or failed a request.
    #[error("{context}: {message}")]
    Database { context: String, message: String },
    /// A tool or a worker thread failed.
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
    /// The backup completed in some destinations, not all: `destinations` says where it is
    /// complete.
    #[error("{}; the backup is complete in {} ({id})", failures.join("; "), destinations.join(" and "))]
    Incomplete { failures: Vec<String>, id: String, destinations: Vec<String> },
    /// A verification found differences.
    #[error("verification of {backup} failed:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Verify { backup: String, problems: Vec<String> },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    pub fn s3(context: impl Into<String>, error: &(dyn std::error::Error + 'static)) -> Error {
        Error::S3 { context: context.into(), message: datastores::error_chain(error) }
    }
}
