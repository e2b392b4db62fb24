//! Matching scripts on disk with the history table: each migration's state, what is pending, and
//! what validation finds. Pure functions, tested without a server.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::config::{MigrateConfig, Target};
use crate::history::{Applied, TYPE_BASELINE, TYPE_SCHEMA, TYPE_SQL};
use crate::source::{Kind, Script};
use crate::version::Version;

/// A migration's state, as Flyway's `info` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Applied and matching its local script.
    Success,
    /// Local and not applied; `migrate` runs it.
    Pending,
    /// Recorded as failed; `migrate` refuses to run until `repair` removes the row.
    Failed,
    /// Applied, but not found locally.
    Missing,
    /// Applied, newer than every local script (another deployment got further).
    Future,
    /// Local, not applied, older than the latest applied version, and outOfOrder is off.
    Ignored,
    /// Local, not applied, at or below the baseline version: never applied.
    BelowBaseline,
    /// Local, not applied, above the configured `target`.
    AboveTarget,
    /// The baseline row.
    Baseline,
    /// A repeatable migration whose script changed since it was applied; it runs again.
    Outdated,
    /// An older application of a repeatable migration.
    Superseded,
    /// Applied after a higher version.
    OutOfOrder,
    /// The marker of schemas created by the migrator.
    Schema,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Success => "Success",
            State::Pending => "Pending",
            State::Failed => "Failed",
            State::Missing => "Missing",
            State::Future => "Future",
            State::Ignored => "Ignored",
            State::BelowBaseline => "Below Baseline",
            State::AboveTarget => "Above Target",
            State::Baseline => "Baseline",
            State::Outdated => "Outdated",
            State::Superseded => "Superseded",
            State::OutOfOrder => "Out of Order",
            State::Schema => "Success",
        })
    }
}

/// One line of `info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InfoRow {
    /// `Versioned`, `Repeatable`, `Baseline` or `Schema`.
    pub category: &'static str,
    /// The version as written (`1.2`); `None` for a repeatable migration or the schema marker.
    pub version: Option<String>,
    /// The migration's description.
    pub description: String,
    /// Flyway's `type` (`SQL`, `BASELINE`, `SCHEMA`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The script's path relative to its location, as the history records it.
    pub script: String,
    /// Flyway's checksum: the history's for an applied row, the local script's otherwise.
    pub checksum: Option<i32>,
    /// The history row's rank; `None` for a script not applied.
    pub installed_rank: Option<i32>,
    /// When it was applied (server time); `None` for a script not applied.
    pub installed_on: Option<NaiveDateTime>,
    /// Who applied it; `None` for a script not applied.
    pub installed_by: Option<String>,
    /// How long it ran, in milliseconds; `None` for a script not applied.
    pub execution_time_ms: Option<i32>,
    /// Its state, as Flyway's `info` shows it.
    pub state: State,
    /// For a pending script: whether it runs in a transaction (`false`: outside one, as its
    /// `.conf` says or because every statement must).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_transaction: Option<bool>,
}

/// What validation found, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// An applied migration's script changed since (`repair` accepts the change).
    ChecksumMismatch,
    /// An applied migration's description differs from its file name's.
    DescriptionMismatch,
    /// An applied version is recorded with another `type` than `SQL` (not a baseline).
    TypeMismatch,
    /// Applied, but its script is not found locally (and it is not newer than every script).
    Missing,
    /// The history records a failed migration; `migrate` refuses until `repair`.
    Failed,
    /// Not applied yet: not an error for `migrate`, which applies it, but `validate` lists it.
    Pending,
    /// Not applied and older than the applied version while `out_of_order` is off.
    Ignored,
}

/// One difference between the scripts and the history, with a message naming the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// What kind of difference.
    pub kind: IssueKind,
    /// The script, version and what to do, ready to show.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The comparison of local scripts with the history.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The lines of `info`: the history rows in rank order, then the scripts not applied.
    pub rows: Vec<InfoRow>,
    /// What `migrate` would run, in order.
    pub pending: Vec<&'a Script>,
    /// What `validate` reports: changed checksums, missing scripts, failed migrations, ...
    pub issues: Vec<Issue>,
    /// The highest applied (or baselined) version.
    pub current: Option<Version>,
}

fn version_of(row: &Applied) -> Option<Version> {
    row.version.as_deref().and_then(|v| Version::parse(v).ok())
}

/// Compares `scripts` (ordered as [`load`](crate::load) returns them) with the history rows
/// `applied` (in rank order): the `info` rows, what `migrate` would run, and the issues
/// `validate` reports. Pure: reads nothing.
///
/// ```rust
/// use pg_migrate::{Applied, IssueKind, MigrateConfig, State, collect, plan, script_from_text};
///
/// # fn main() -> Result<(), pg_migrate::SourceError> {
/// let scripts = collect(vec![
///     script_from_text("V2__add_email.sql", "ALTER TABLE users ADD COLUMN email text;", None)?,
///     script_from_text("V1__users.sql", "CREATE TABLE users (id bigint PRIMARY KEY);", None)?,
///     script_from_text("R__user_ids.sql", "CREATE OR REPLACE VIEW user_ids AS SELECT id FROM users;", None)?,
/// ])?;
/// let config = MigrateConfig::new();
///
/// // An empty history: everything is pending, versions in order, then repeatables.
/// let fresh = plan(&scripts, &[], &config);
/// let pending: Vec<&str> = fresh.pending.iter().map(|s| s.name.as_str()).collect();
/// assert_eq!(pending, ["V1__users.sql", "V2__add_email.sql", "R__user_ids.sql"]);
/// assert!(fresh.rows.iter().all(|row| row.state == State::Pending));
///
/// // V1 was applied, but its script has been edited since.
/// let history = [Applied {
///     installed_rank: 1,
///     version: Some("1".into()),
///     description: "users".into(),
///     kind: "SQL".into(),
///     script: "V1__users.sql".into(),
///     checksum: Some(scripts[0].checksum.wrapping_add(1)),
///     installed_by: "app".into(),
///     installed_on: chrono::DateTime::UNIX_EPOCH.naive_utc(),
///     execution_time: 12,
///     success: true,
/// }];
/// let later = plan(&scripts, &history, &config);
/// assert_eq!(later.pending.len(), 2);
/// assert_eq!(later.current.map(|v| v.to_string()).as_deref(), Some("1"));
/// assert!(later.issues.iter().any(|issue| issue.kind == IssueKind::ChecksumMismatch));
/// # Ok(()) }
/// ```
pub fn plan<'a>(scripts: &'a [Script], applied: &[Applied], config: &MigrateConfig) -> Plan<'a> {
    let mut rows = Vec::new();
    let mut issues = Vec::new();
    let mut pending = Vec::new();

    let versioned: Vec<(&Version, &Script)> = scripts.iter().filter_map(|s| s.version().map(|v| (v, s))).collect();
    let find_local = |v: &Version| versioned.iter().find(|(lv, _)| *lv == v).map(|(_, s)| *s);
    let max_local = versioned.iter().map(|(v, _)| *v).max();

    let baseline = applied.iter().filter(|r| r.kind == TYPE_BASELINE).filter_map(version_of).max();
    let current = applied.iter().filter(|r| r.success && r.kind != TYPE_SCHEMA).filter_map(version_of).max();

    // Applied rows, in the order they were applied.
    let mut highest_so_far: Option<Version> = None;
    let mut applied_versions: Vec<Version> = Vec::new();
    let latest_repeatable: BTreeMap<&str, i32> = applied
        .iter()
        .filter(|r| r.version.is_none() && r.kind == TYPE_SQL && r.success)
        .map(|r| (r.description.as_str(), r.installed_rank))
        .collect();
    for row in applied {
        let version = version_of(row);
        let base = InfoRow {
            category: "Versioned",
            version: row.version.clone(),
            description: row.description.clone(),
            kind: row.kind.clone(),
            script: row.script.clone(),
            checksum: row.checksum,
            installed_rank: Some(row.installed_rank),
            installed_on: Some(row.installed_on),
            installed_by: Some(row.installed_by.clone()),
            execution_time_ms: Some(row.execution_time),
            state: State::Success,
            in_transaction: None,
        };
        if row.kind == TYPE_SCHEMA {
            rows.push(InfoRow { category: "Schema", state: State::Schema, ..base });
            continue;
        }
        if row.kind == TYPE_BASELINE {
            if let Some(v) = version {
                applied_versions.push(v.clone());
                highest_so_far = highest_so_far.max(Some(v));
            }
            rows.push(InfoRow { category: "Baseline", state: State::Baseline, ..base });
            continue;
        }
        match version {
            None => {
                // A repeatable migration.
                let local = scripts.iter().find(|s| s.kind == Kind::Repeatable && s.description == row.description);
                let state = if !row.success {
                    issues.push(Issue {
                        kind: IssueKind::Failed,
                        message: format!(
                            "{}: the history records a failed run; fix the script and run repair",
                            row.script
                        ),
                    });
                    State::Failed
                } else if latest_repeatable.get(row.description.as_str()) != Some(&row.installed_rank) {
                    State::Superseded
                } else {
                    match local {
                        None => {
                            issues.push(Issue {
                                kind: IssueKind::Missing,
                                message: format!(
                                    "{}: repeatable migration {:?} was applied but is not found locally",
                                    row.script, row.description
                                ),
                            });
                            State::Missing
                        }
                        Some(s) if Some(s.checksum) != row.checksum => State::Outdated,
                        Some(_) => State::Success,
                    }
                };
                rows.push(InfoRow { category: "Repeatable", state, ..base });
            }
            Some(v) => {
                let state = if !row.success {
                    issues.push(Issue {
                        kind: IssueKind::Failed,
                        message: format!(
                            "{} (version {v}): the history records a failed migration; fix the database and script, then run repair",
                            row.script
                        ),
                    });
                    State::Failed
                } else {
                    match find_local(&v) {
                        None if max_local.is_none_or(|m| &v > m) => State::Future,
                        None => {
                            issues.push(Issue {
                                kind: IssueKind::Missing,
                                message: format!(
                                    "{} (version {v}): applied to the database but not found locally",
                                    row.script
                                ),
                            });
                            State::Missing
                        }
                        Some(local) => {
                            compare(local, row, &mut issues);
                            if highest_so_far.as_ref().is_some_and(|h| h > &v) {
                                State::OutOfOrder
                            } else {
                                State::Success
                            }
                        }
                    }
                };
                if row.success {
                    highest_so_far = highest_so_far.max(Some(v.clone()));
                    applied_versions.push(v);
                }
                rows.push(InfoRow { state, ..base });
            }
        }
    }

    // Local versioned scripts not applied.
    for (v, script) in &versioned {
        let failed = applied.iter().any(|r| !r.success && version_of(r).as_ref() == Some(*v));
        if applied_versions.contains(v) || failed {
            continue;
        }
        let state = if baseline.as_ref().is_some_and(|b| *v <= b) {
            State::BelowBaseline
        } else if matches!(&config.target, Target::Version(t) if *v > t) {
            State::AboveTarget
        } else if current.as_ref().is_some_and(|c| *v < c) {
            if config.out_of_order {
                pending.push(*script);
                State::Pending
            } else {
                issues.push(Issue {
                    kind: IssueKind::Ignored,
                    message: format!(
                        "{} (version {v}): not applied, and older than the applied version {}; set outOfOrder=true to \
                         apply it, or give it a higher version",
                        script.name,
                        current.as_ref().map(Version::to_string).unwrap_or_default()
                    ),
                });
                State::Ignored
            }
        } else {
            pending.push(*script);
            State::Pending
        };
        rows.push(local_row(script, state));
    }

    // Repeatable scripts that never ran or changed since.
    for script in scripts.iter().filter(|s| s.kind == Kind::Repeatable) {
        let latest = applied
            .iter()
            .rev()
            .find(|r| r.version.is_none() && r.kind == TYPE_SQL && r.success && r.description == script.description);
        if latest.is_some_and(|r| r.checksum == Some(script.checksum)) {
            continue;
        }
        pending.push(script);
        rows.push(local_row(script, State::Pending));
    }

    for script in &pending {
        issues.push(Issue {
            kind: IssueKind::Pending,
            message: format!("{}: pending (resolved locally, not applied)", script.name),
        });
    }
    Plan { rows, pending, issues, current }
}

fn local_row(script: &Script, state: State) -> InfoRow {
    InfoRow {
        category: if script.kind == Kind::Repeatable { "Repeatable" } else { "Versioned" },
        version: script.version().map(|v| v.as_str().to_owned()),
        description: script.description.clone(),
        kind: TYPE_SQL.into(),
        script: script.name.clone(),
        checksum: Some(script.checksum),
        installed_rank: None,
        installed_on: None,
        installed_by: None,
        execution_time_ms: None,
        state,
        in_transaction: Some(script.transactional),
    }
}

fn compare(local: &Script, row: &Applied, issues: &mut Vec<Issue>) {
    let v = local.version().map(Version::to_string).unwrap_or_default();
    if row.kind != TYPE_SQL {
        issues.push(Issue {
            kind: IssueKind::TypeMismatch,
            message: format!(
                "{} (version {v}): type mismatch: applied {:?}, resolved locally \"SQL\"",
                local.name, row.kind
            ),
        });
    }
    if row.checksum != Some(local.checksum) {
        let applied = row.checksum.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
        issues.push(Issue {
            kind: IssueKind::ChecksumMismatch,
            message: format!(
                "{} (version {v}): checksum mismatch: applied to the database {applied}, resolved locally {}; \
                 revert the file, or run repair to accept the change",
                local.name, local.checksum
            ),
        });
    }
    if row.description != local.description {
        issues.push(Issue {
            kind: IssueKind::DescriptionMismatch,
            message: format!(
                "{} (version {v}): description mismatch: applied {:?}, resolved locally {:?}",
                local.name, row.description, local.description
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::flyway_checksum;

    fn script(name: &str, text: &str) -> Script {
        let (kind, description) = if let Some(rest) = name.strip_prefix("R__") {
            (Kind::Repeatable, rest.trim_end_matches(".sql").replace('_', " "))
        } else {
            let (v, d) = name[1..].trim_end_matches(".sql").split_once("__").unwrap();
            (Kind::Versioned(Version::parse(v).unwrap()), d.replace('_', " "))
        };
        Script {
            kind,
            description,
            name: name.into(),
            path: name.into(),
            text: text.into(),
            checksum: flyway_checksum(text),
            transactional: true,
            transaction_source: crate::source::TransactionSource::Default,
        }
    }

    fn applied(rank: i32, s: &Script, success: bool) -> Applied {
        Applied {
            installed_rank: rank,
            version: s.version().map(|v| v.as_str().to_owned()),
            description: s.description.clone(),
            kind: TYPE_SQL.into(),
            script: s.name.clone(),
            checksum: Some(s.checksum),
            installed_by: "u".into(),
            installed_on: NaiveDateTime::default(),
            execution_time: 1,
            success,
        }
    }

    fn names(p: &Plan<'_>) -> Vec<String> {
        p.pending.iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn fresh_database_runs_everything_in_order() {
        let scripts = vec![script("V1__a.sql", "1"), script("V2__b.sql", "2"), script("R__v.sql", "r")];
        let p = plan(&scripts, &[], &MigrateConfig::new());
        assert_eq!(names(&p), ["V1__a.sql", "V2__b.sql", "R__v.sql"]);
        assert!(p.issues.iter().all(|i| i.kind == IssueKind::Pending));
    }

    #[test]
    fn applied_tampered_missing_and_ignored() {
        let s1 = script("V1__a.sql", "1");
        let s2 = script("V2__b.sql", "2");
        let s3 = script("V3__c.sql", "3");
        let gone = script("V4__gone.sql", "4");
        let mut tampered = s2.clone();
        tampered.text = "changed".into();
        tampered.checksum = flyway_checksum("changed");
        let scripts = vec![s1.clone(), tampered, script("V1_5__late.sql", "x"), s3.clone(), script("V5__new.sql", "5")];
        let history = [applied(1, &s1, true), applied(2, &s2, true), applied(3, &gone, true), applied(4, &s3, true)];
        let p = plan(&scripts, &history, &MigrateConfig::new());
        let kinds: Vec<IssueKind> = p.issues.iter().map(|i| i.kind).collect();
        assert!(kinds.contains(&IssueKind::ChecksumMismatch), "{:?}", p.issues);
        assert!(kinds.contains(&IssueKind::Missing), "{:?}", p.issues);
        assert!(kinds.contains(&IssueKind::Ignored), "{:?}", p.issues);
        assert_eq!(names(&p), ["V5__new.sql"]);
        let mismatch = p.issues.iter().find(|i| i.kind == IssueKind::ChecksumMismatch).unwrap();
        assert!(mismatch.message.contains("V2__b.sql") && mismatch.message.contains(&s2.checksum.to_string()));

        let mut config = MigrateConfig::new();
        config.out_of_order = true;
        assert_eq!(names(&plan(&scripts, &history, &config)), ["V1_5__late.sql", "V5__new.sql"]);
    }

    #[test]
    fn future_failed_target_and_baseline() {
        let s1 = script("V1__a.sql", "1");
        let s9 = script("V9__later.sql", "9");
        let p = plan(std::slice::from_ref(&s1), &[applied(1, &s1, true), applied(2, &s9, true)], &MigrateConfig::new());
        assert_eq!(p.rows[1].state, State::Future);
        assert!(p.issues.is_empty(), "{:?}", p.issues);

        let s2 = script("V2__b.sql", "2");
        let both = [s1.clone(), s2.clone()];
        let p = plan(&both, &[applied(1, &s1, true), applied(2, &s2, false)], &MigrateConfig::new());
        assert!(p.issues.iter().any(|i| i.kind == IssueKind::Failed));
        assert!(p.pending.is_empty());

        let mut config = MigrateConfig::new();
        config.target = Target::Version(Version::parse("1").unwrap());
        let p = plan(&both, &[], &config);
        assert_eq!(names(&p), ["V1__a.sql"]);
        assert_eq!(p.rows[1].state, State::AboveTarget);

        let mut base = applied(1, &s1, true);
        base.kind = TYPE_BASELINE.into();
        base.checksum = None;
        let three = [script("V0_5__older.sql", "0"), s1.clone(), s2.clone()];
        let p = plan(&three, &[base], &MigrateConfig::new());
        assert_eq!(names(&p), ["V2__b.sql"]);
        assert_eq!(p.rows[0].state, State::Baseline);
        assert_eq!(p.rows.iter().find(|r| r.script == "V0_5__older.sql").unwrap().state, State::BelowBaseline);
        assert!(!p.rows.iter().any(|r| r.script == "V1__a.sql" && r.installed_rank.is_none()));
    }

    #[test]
    fn repeatables_rerun_when_changed() {
        let r = script("R__views.sql", "v1");
        let mut changed = r.clone();
        changed.text = "v2".into();
        changed.checksum = flyway_checksum("v2");
        assert!(plan(std::slice::from_ref(&r), &[applied(1, &r, true)], &MigrateConfig::new()).pending.is_empty());
        let p = plan(std::slice::from_ref(&changed), &[applied(1, &r, true)], &MigrateConfig::new());
        assert_eq!(names(&p), ["R__views.sql"]);
        assert_eq!(p.rows[0].state, State::Outdated);
        let p = plan(
            std::slice::from_ref(&changed),
            &[applied(1, &r, true), applied(2, &changed, true)],
            &MigrateConfig::new(),
        );
        assert!(p.pending.is_empty());
        assert_eq!((p.rows[0].state, p.rows[1].state), (State::Superseded, State::Success));
    }

    #[test]
    fn equal_versions_spelled_differently_match() {
        let local = script("V001__a.sql", "1");
        let mut row = applied(1, &local, true);
        row.version = Some("1".into());
        let p = plan(std::slice::from_ref(&local), &[row], &MigrateConfig::new());
        assert!(p.pending.is_empty() && p.issues.is_empty(), "{:?}", p.issues);
    }
}
