use std::path::{Path, PathBuf};
use std::time::Duration;

use datastores::{ConfigError, ConnectError};

/// A migration source that cannot be used; nothing is applied when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct SourceError {
    pub path: PathBuf,
    pub reason: String,
}

impl SourceError {
    pub fn new(path: &Path, reason: impl Into<String>) -> SourceError {
        SourceError { path: path.to_owned(), reason: reason.into() }
    }
}

/// Who holds the migration lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    pub client: String,
    pub state: String,
}

/// Everything that can stop a command. Messages name the script, line, setting or server at
/// fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{context}: {message}")]
    Database { context: String, message: String },
    #[error("another migration holds the lock on {table} after waiting {waited:?}: {}", describe_holders(holders))]
    LockTimeout { table: String, waited: Duration, holders: Vec<LockHolder> },
    #[error("{script} line {line}: {message}")]
    Script { script: String, line: usize, message: String },
    /// A statement failed while a migration ran. Earlier migrations of the run stay applied
    /// (`applied`); this one was rolled back, or recorded as failed when it ran outside a
    /// transaction.
    #[error("{script} line {line} failed: {message}{}", if *rolled_back { " (rolled back; nothing of it was applied)" } else { " (it ran outside a transaction: fix the database by hand, then run repair)" })]
    Failed { script: String, line: usize, message: String, rolled_back: bool, applied: Vec<String> },
    #[error("validation failed:\n{}", issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Validation { issues: Vec<String> },
    #[error("{0}")]
    Refused(String),
    /// Another migrator recorded this migration while this one waited to run it.
    #[error("{script} was applied by another migrator meanwhile")]
    AppliedMeanwhile { script: String },
}

fn describe_holders(holders: &[LockHolder]) -> String {
    if holders.is_empty() {
        return "the holder has just let go, or is not visible to this user; try again".into();
    }
    holders
        .iter()
        .map(|h| {
            format!(
                "held by pid {} (application_name {:?}, client {}, state {})",
                h.pid, h.application_name, h.client, h.state
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl MigrateError {
    pub(crate) fn db(context: impl Into<String>, error: &tokio_postgres::Error) -> MigrateError {
        MigrateError::Database { context: context.into(), message: server_message(error) }
    }
}

/// The server's message with its detail and hint, or the client error.
pub(crate) fn server_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" (detail: {detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" (hint: {hint})"));
            }
            text.push_str(&format!(" [SQLSTATE {}]", db.code().code()));
            text
        }
        None => datastores::error_chain(error),
    }
}

use datastores::tokio_postgres;
