//! Declarative bootstrap of the platform's datastores: a YAML manifest of the desired state, one
//! section per datastore, and `plan`, `apply` and `check` over it.
//!
//! Each section is read, compared and converged by its own module here (PostgreSQL, MongoDB,
//! Redis, Kafka); the vector sections (`weaviate`, `milvus`) are kept as they were written and
//! handed to `vector-admin`, which owns those specs. Every section reports on its own: an
//! unreachable server fails its section, not the others.
//!
//! The rules every section follows:
//! - `plan` and `check` read only; `apply` creates what is missing and converges what can be
//!   converged without losing anything, and never drops, shrinks or rebuilds;
//! - what cannot be converged safely is a [`State::Conflict`] that names both sides and changes
//!   nothing;
//! - a section's `expect` pins the cluster's identity (PostgreSQL system identifier, Kafka cluster
//!   id, MongoDB replica set or hosts); a server with another identity is refused before anything
//!   is read or written.

mod manifest;
pub mod mongodb;
pub mod postgres;
pub mod redis;

pub mod kafka;

use std::fmt;

use serde::Serialize;

use crate::error::Datastore;

pub use manifest::{BUILTIN, Manifest, ManifestError, expand};

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Read, compare, print what apply would do.
    Plan,
    /// Converge.
    Apply,
    /// Read, compare, report drift.
    Check,
}

impl Mode {
    /// Whether this mode changes anything on the servers (only [`Mode::Apply`] does).
    pub fn writes(self) -> bool {
        self == Mode::Apply
    }
}

/// The state of one object of a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// As the manifest says.
    Ok,
    /// Missing on the server; apply creates it.
    Missing,
    /// Differs from the manifest; apply converges it.
    Drift,
    /// Created by this apply.
    Created,
    /// Converged by this apply.
    Changed,
    /// Written, but takes effect only when the server restarts.
    NeedsRestart,
    /// Differs in a way apply does not change (it would drop, shrink or rebuild something, or the
    /// manifest asks for what the server cannot have): nothing was changed.
    Conflict,
    /// Reading or changing it failed.
    Failed,
}

impl State {
    /// Whether the object is not as the manifest says (after this run).
    pub fn is_drift(self) -> bool {
        !matches!(self, State::Ok | State::Created | State::Changed)
    }

    /// Whether the object needs attention that apply cannot give.
    pub fn is_error(self) -> bool {
        matches!(self, State::Conflict | State::Failed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Ok => "ok",
            State::Missing => "missing",
            State::Drift => "drift",
            State::Created => "created",
            State::Changed => "changed",
            State::NeedsRestart => "needs restart",
            State::Conflict => "conflict",
            State::Failed => "failed",
        })
    }
}

/// One object of a section and how it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    /// `database`, `role`, `grant`, `setting`, `collection`, `index`, `user`, `topic`, `config`, ...
    pub kind: &'static str,
    /// Which one, qualified as the datastore names it (`ai_platform.task_status_cache`).
    pub name: String,
    /// How it stands after this run.
    pub state: State,
    /// What differs (server against manifest), what was done, or why it failed.
    pub detail: String,
}

impl Item {
    /// An item of `kind` named `name` in `state`, with `detail` (empty when there is nothing to say).
    pub fn new(kind: &'static str, name: impl Into<String>, state: State, detail: impl Into<String>) -> Item {
        Item { kind, name: name.into(), state, detail: detail.into() }
    }

    /// An item that is as the manifest says.
    pub fn ok(kind: &'static str, name: impl Into<String>) -> Item {
        Item::new(kind, name, State::Ok, "")
    }
}

/// The outcome of one section.
#[derive(Clone, Debug, Serialize)]
pub struct SectionReport {
    /// The datastore of the section.
    pub datastore: Datastore,
    /// Where it ran (no credentials).
    pub endpoint: String,
    /// The cluster's identity as read from the server, when it was reached.
    pub identity: Option<String>,
    /// The mode it ran in.
    pub mode: Mode,
    /// Every object the section compared, in the order compared.
    pub items: Vec<Item>,
    /// Notes that are not drift (an identity that is not pinned, a check the server cannot do).
    pub warnings: Vec<String>,
    /// Set when the section could not run at all (unreachable server, identity refused).
    pub error: Option<String>,
    /// Set when the section was not run because its datastore is not configured.
    pub skipped: bool,
}

impl SectionReport {
    /// An empty report of a section that ran against `endpoint`.
    pub fn new(datastore: Datastore, endpoint: impl Into<String>, mode: Mode) -> SectionReport {
        SectionReport {
            datastore,
            endpoint: endpoint.into(),
            identity: None,
            mode,
            items: Vec::new(),
            warnings: Vec::new(),
            error: None,
            skipped: false,
        }
    }

    /// A section whose datastore is not configured: not run, and an error only when `required`.
    pub fn not_configured(datastore: Datastore, mode: Mode, required: bool) -> SectionReport {
        let hint = format!(
            "{datastore} is not configured (set {}): section not run",
            crate::error::triggers(datastore).join(" or ")
        );
        let mut report = SectionReport::new(datastore, "-", mode);
        report.skipped = true;
        if required {
            report.error = Some(hint);
        } else {
            report.warnings.push(hint);
        }
        report
    }

    /// The report with `error` as the reason the section could not run.
    pub fn failed(mut self, error: impl Into<String>) -> SectionReport {
        self.error = Some(error.into());
        self
    }

    /// Objects not as the manifest says, counting a section that could not run as one.
    pub fn drift(&self) -> usize {
        self.items.iter().filter(|i| i.state.is_drift()).count() + usize::from(self.error.is_some())
    }

    /// Objects created or changed by this run (a setting waiting for a restart is counted among
    /// the drift, whether this run wrote it or an earlier one).
    pub fn changes(&self) -> usize {
        self.items.iter().filter(|i| matches!(i.state, State::Created | State::Changed)).count()
    }

    /// Whether the section has a conflict, a failure, or could not run.
    pub fn has_errors(&self) -> bool {
        self.error.is_some() || self.items.iter().any(|i| i.state.is_error())
    }

    /// Adds an object's outcome.
    pub fn push(&mut self, item: Item) {
        self.items.push(item);
    }
}

/// Which sections run, and what becomes of one whose datastore is not configured: also for the
/// sections other crates own (`vector-admin`'s).
#[derive(Clone, Copy, Debug)]
pub struct Selection<'a> {
    /// What the sections do.
    pub mode: Mode,
    /// The sections to run; all when empty.
    pub selected: &'a [Datastore],
    /// Sections that fail, instead of being skipped, when their datastore is not configured.
    pub required: &'a [Datastore],
}

impl Selection<'_> {
    /// Runs `work` on the section and the configuration when both are there and the section is
    /// selected; a section without configuration is skipped (or fails when required).
    pub async fn run<'s, S, C, F>(
        &self,
        datastore: Datastore,
        section: Option<&'s S>,
        config: Option<&'s C>,
        work: impl FnOnce(&'s C, &'s S) -> F,
    ) -> Option<SectionReport>
    where
        F: std::future::Future<Output = SectionReport>,
    {
        let section = section.filter(|_| self.selected.is_empty() || self.selected.contains(&datastore))?;
        Some(match config {
            Some(config) => work(config, section).await,
            None => SectionReport::not_configured(datastore, self.mode, self.required.contains(&datastore)),
        })
    }
}

/// Runs the sections this crate owns (PostgreSQL, MongoDB, Redis, Kafka) that the manifest has
/// and `selected` names, concurrently. A section whose datastore `config` lacks is skipped, or
/// fails when `required` names it. The vector sections are `vector-admin`'s.
pub async fn run(
    manifest: &Manifest,
    config: &crate::DatastoresConfig,
    mode: Mode,
    selected: &[Datastore],
    required: &[Datastore],
) -> Vec<SectionReport> {
    let pick = Selection { mode, selected, required };
    let (postgres, mongodb, redis, kafka) = futures::join!(
        pick.run(Datastore::Postgres, manifest.postgres.as_ref(), config.postgres.as_ref(), |c, s| postgres::run(
            c, s, mode
        )),
        pick.run(Datastore::MongoDb, manifest.mongodb.as_ref(), config.mongodb.as_ref(), |c, s| mongodb::run(
            c, s, mode
        )),
        pick.run(Datastore::Redis, manifest.redis.as_ref(), config.redis.as_ref(), |c, s| redis::run(c, s, mode)),
        pick.run(Datastore::Kafka, manifest.kafka.as_ref(), config.kafka.as_ref(), |c, s| kafka::run(c, s, mode)),
    );
    [postgres, mongodb, redis, kafka].into_iter().flatten().collect()
}

/// Checks a pinned identity. `expected` empty means not pinned: a warning is recorded and the
/// run goes on.
pub(crate) fn guard_identity(
    report: &mut SectionReport,
    what: &str,
    expected: Option<&str>,
    actual: &str,
) -> Result<(), String> {
    report.identity = Some(format!("{what} {actual}"));
    match expected.map(str::trim).filter(|e| !e.is_empty()) {
        None => {
            report.warnings.push(format!(
                "the manifest does not pin the {what} (expect); this run would act on any {} it reaches",
                report.datastore
            ));
            Ok(())
        }
        Some(expected) if expected == actual => Ok(()),
        Some(expected) => Err(format!(
            "refused: the manifest is for the {} with {what} {expected}, but {} has {what} {actual}; nothing was read \
             or changed",
            report.datastore, report.endpoint
        )),
    }
}

/// The verdict of a section's comparison of one object: `Ok` when equal, else `Missing`/`Drift`
/// in plan and check, and the state after the change in apply.
pub fn converge_state(mode: Mode, missing: bool) -> State {
    match (mode.writes(), missing) {
        (false, true) => State::Missing,
        (false, false) => State::Drift,
        (true, true) => State::Created,
        (true, false) => State::Changed,
    }
}

/// A scalar of the manifest that the server holds as text (a setting, a topic config): YAML's
/// `1000`, `1.1`, `yes` and `"1000"` are all accepted and kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password in a manifest: empty means none given.
pub(crate) fn secret_opt<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::settings::Secret>, D::Error> {
    let text: Option<Scalar> = serde::Deserialize::deserialize(deserializer)?;
    Ok(text.filter(|t| !t.0.is_empty()).map(|t| crate::settings::Secret::new(t.0)))
}
