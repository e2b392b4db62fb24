use std::path::{Path, PathBuf};
use std::time::Duration;

use datastores::{ConfigError, ConnectError, ErrorKind};

/// A migration source that cannot be used; nothing is applied when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct SourceError {
    /// The file or folder at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl SourceError {
    /// A problem with `path`.
    pub fn new(path: &Path, reason: impl Into<String>) -> SourceError {
        SourceError { path: path.to_owned(), reason: reason.into() }
    }
}

/// Who holds the migration lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// The backend's process id (`pg_cancel_backend` takes it).
    pub pid: i32,
    /// The holder's `application_name`.
    pub application_name: String,
    /// The holder's client address, or `local`.
    pub client: String,
    /// The holder's `state` in `pg_stat_activity`.
    pub state: String,
}

/// Everything that can stop a command. Messages name the script, line, setting or server at
/// fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A setting is wrong; nothing was done.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A migration source cannot be used; nothing was applied.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The server could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server answered a request of pg-migrate's own (not of a script) with an error.
    #[error("{context}: {}", server_message(error))]
    Database {
        /// What pg-migrate was doing.
        context: String,
        /// The server's error; [`MigrateError::sqlstate`] gives its code. Its text is part of
        /// this error's message already, so it is not repeated as a source.
        error: tokio_postgres::Error,
    },
    /// Another migrator held the lock for longer than the configured wait.
    #[error("another migration holds the lock on {table} after waiting {waited:?}: {}", describe_holders(holders))]
    LockTimeout {
        /// The history table whose lock was waited for.
        table: String,
        /// How long this migrator waited.
        waited: Duration,
        /// Who holds the lock, as far as this user can see.
        holders: Vec<LockHolder>,
    },
    /// A script cannot be run as written (a statement that cannot be split, a placeholder
    /// without a value, DDL mixed with CONCURRENTLY); nothing of it was applied.
    #[error("{script} line {line}: {message}")]
    Script {
        /// The script's file name.
        script: String,
        /// The line at fault (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A statement failed while a migration ran. Earlier migrations of the run stay applied
    /// (`applied`); this one was rolled back, or recorded as failed when it ran outside a
    /// transaction.
    #[error("{script} line {line} failed: {message}{}", if *rolled_back { " (rolled back; nothing of it was applied)" } else { " (it ran outside a transaction: fix the database by hand, then run repair)" })]
    Failed {
        /// The script's file name.
        script: String,
        /// The line of the failing statement (0 when it cannot be told, e.g. at COMMIT).
        line: usize,
        /// The server's message with its detail, hint and SQLSTATE.
        message: String,
        /// Whether the script's transaction was rolled back.
        rolled_back: bool,
        /// The migrations of this run applied before the failure.
        applied: Vec<String>,
        /// The server's error; [`MigrateError::sqlstate`] gives its code. Its text is part of
        /// this error's message already, so it is not repeated as a source.
        error: tokio_postgres::Error,
    },
    /// Applied migrations differ from the scripts (changed checksums, missing scripts, ...).
    #[error("validation failed:\n{}", issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Validation {
        /// One line per difference.
        issues: Vec<String>,
    },
    /// Refused because it would destroy data or change a database pg-migrate did not start:
    /// the message names the setting or command that gives consent.
    #[error("{0}")]
    NeedsConsent(String),
    /// Another migrator or session holds or changed what this run needs: the lock was lost,
    /// an earlier migrator's statement still runs, the history already records migrations.
    #[error("{0}")]
    Conflict(String),
    /// The server's state or answer is not what pg-migrate can work with (a history table of
    /// another shape, an unanswered lock query).
    #[error("{0}")]
    Unexpected(String),
    /// The server did not answer a check that takes it milliseconds, in minutes.
    #[error("{0}")]
    NoAnswer(String),
    /// Another migrator recorded this migration while this one waited to run it.
    #[error("{script} was applied by another migrator meanwhile")]
    AppliedMeanwhile {
        /// The script's file name.
        script: String,
    },
}

impl MigrateError {
    /// What kind of failure this is; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            MigrateError::Config(_) => ErrorKind::Config,
            MigrateError::Source(_) | MigrateError::Script { .. } => ErrorKind::Invalid,
            MigrateError::Connect(e) => e.kind(),
            MigrateError::Database { error, .. } if error.as_db_error().is_none() && error.is_closed() => {
                ErrorKind::Unavailable
            }
            MigrateError::Database { .. } | MigrateError::Failed { .. } => ErrorKind::Server,
            MigrateError::LockTimeout { .. } | MigrateError::NoAnswer(_) => ErrorKind::TimedOut,
            MigrateError::Validation { .. } => ErrorKind::Mismatch,
            MigrateError::NeedsConsent(_) => ErrorKind::NeedsConsent,
            MigrateError::Conflict(_) | MigrateError::AppliedMeanwhile { .. } => ErrorKind::Conflict,
            MigrateError::Unexpected(_) => ErrorKind::Invalid,
        }
    }

    /// PostgreSQL's SQLSTATE when the server refused a statement or the login (`23505` a
    /// unique violation, `42P01` an undefined table, `57014` a cancelled statement, ...).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            MigrateError::Database { error, .. } | MigrateError::Failed { error, .. } => {
                error.as_db_error().map(|db| db.code().code())
            }
            MigrateError::Connect(e) => e.sqlstate(),
            _ => None,
        }
    }
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
    pub(crate) fn db(context: impl Into<String>, error: tokio_postgres::Error) -> MigrateError {
        MigrateError::Database { context: context.into(), error }
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
