use datastores::pgadmin::AdminError;
use datastores::{ConnectError, tokio_postgres};

/// Everything the recommendation database's operations can fail with; messages name the step,
/// table or flag at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Migrate(#[from] pg_migrate::MigrateError),
    #[error("{context}: {message}")]
    Database { context: String, message: String },
    /// Bad options: nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// The database is not in a state the operation can work on.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    pub(crate) fn db(context: impl Into<String>, error: &tokio_postgres::Error) -> Error {
        let message = match error.as_db_error() {
            Some(db) => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
            None => datastores::error_chain(error),
        };
        Error::Database { context: context.into(), message }
    }
}
