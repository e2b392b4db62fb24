use datastores::pgadmin::AdminError;
use datastores::{ConfigError, ConnectError, ErrorKind, tokio_postgres};

/// Everything the recommendation database's operations can fail with; messages name the step,
/// table or flag at fault, [`Error::kind`] the kind of failure and [`Error::sqlstate`]
/// PostgreSQL's code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is wrong; nothing was done.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// An administration statement (database, role, extension, grant) failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The migrations failed.
    #[error(transparent)]
    Migrate(#[from] pg_migrate::MigrateError),
    /// The server refused or failed a request.
    #[error("{context}: {message}")]
    Database {
        /// What was being done.
        context: String,
        /// The server's message with its SQLSTATE.
        message: String,
        /// The server's error (its text is in `message`).
        error: tokio_postgres::Error,
    },
    /// Bad options: nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// Refused because it would delete data without consent (`--clean --yes`): nothing was
    /// changed.
    #[error("{0}")]
    NeedsConsent(String),
    /// The database or schema the operation works on does not exist yet.
    #[error("{0}")]
    NotFound(String),
    /// The database is not in a state the operation can work on (a default partition holding
    /// rows of a month to create, a role owned by someone else); nothing was changed.
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    pub(crate) fn db(context: impl Into<String>, error: tokio_postgres::Error) -> Error {
        let message = match error.as_db_error() {
            Some(db) => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
            None => datastores::error_chain(&error),
        };
        Error::Database { context: context.into(), message, error }
    }

    /// What kind of failure this is; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(e) => e.kind(),
            Error::Connect(e) => e.kind(),
            Error::Admin(e) => e.kind(),
            Error::Migrate(e) => e.kind(),
            Error::Database { error, .. } if error.as_db_error().is_none() && error.is_closed() => {
                ErrorKind::Unavailable
            }
            Error::Database { .. } => ErrorKind::Server,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::NeedsConsent(_) => ErrorKind::NeedsConsent,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
        }
    }

    /// PostgreSQL's SQLSTATE when the server refused a statement or the login.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Connect(e) => e.sqlstate(),
            Error::Admin(e) => e.sqlstate(),
            Error::Migrate(e) => e.sqlstate(),
            Error::Database { error, .. } => error.as_db_error().map(|db| db.code().code()),
            _ => None,
        }
    }
}
