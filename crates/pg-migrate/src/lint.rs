//! `lint`: risky DDL in migrations, the kind that takes long locks or rewrites tables on a live
//! database. A table counts as existing unless a script linted in the same run creates it first
//! (the pending scripts of one deployment run in order, so such a table is new and small).
//!
//! Suppress a finding with a comment before (or inside) the statement:
//! `-- pg-migrate:lint-ignore PM001`, or for a whole script `-- pg-migrate:lint-ignore-file PM006`.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::source::Script;
use crate::sql::{self, Statement, Token, TokenKind};

/// How serious a [`Finding`] is; `Error` sorts above `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Risky but sometimes intended (dropping a table); reported, does not fail `lint`.
    Warning,
    /// Locks or breaks a live table; the `pg-migrate lint` command exits 1.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A rule: id, name, severity, and the fix.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The id a finding reports and an ignore comment names (`PM001`).
    pub id: &'static str,
    /// A short kebab-case name (`create-index-non-concurrently`).
    pub name: &'static str,
    /// How serious its findings are.
    pub severity: Severity,
    /// How to write the statement safely instead.
    pub hint: &'static str,
}

/// Every rule [`lint`] applies, `PM001` to `PM006`. A script that cannot be split into
/// statements gets a finding of its own, `PM000` (error), which is not in this list.
pub const RULES: &[Rule] = &[
    Rule {
        id: "PM001",
        name: "create-index-non-concurrently",
        severity: Severity::Error,
        hint: "CREATE INDEX blocks every write to the table while it builds; use CREATE INDEX CONCURRENTLY in a \
               script of its own with executeInTransaction=false in its .conf",
    },
    Rule {
        id: "PM002",
        name: "add-column-not-null-without-default",
        severity: Severity::Error,
        hint: "fails on a table with rows; give the column a DEFAULT, or add it nullable, backfill, then add a \
               CHECK (col IS NOT NULL) NOT VALID, validate it, and SET NOT NULL",
    },
    Rule {
        id: "PM003",
        name: "alter-column-type",
        severity: Severity::Error,
        hint: "changing a column's type rewrites the table under an ACCESS EXCLUSIVE lock; add a new column, \
               backfill it in batches, and switch readers over",
    },
    Rule {
        id: "PM004",
        name: "constraint-without-not-valid",
        severity: Severity::Error,
        hint: "adding a FOREIGN KEY or CHECK scans the table under a lock that blocks writes; add it NOT VALID, then \
               ALTER TABLE ... VALIDATE CONSTRAINT in a later migration",
    },
    Rule {
        id: "PM005",
        name: "drop-table-or-column",
        severity: Severity::Warning,
        hint: "running code that still reads it will fail; deploy code that no longer uses it first, and keep a \
               backup",
    },
    Rule {
        id: "PM006",
        name: "missing-lock-timeout",
        severity: Severity::Warning,
        hint: "without a lock_timeout, DDL queues behind any long transaction and every query queues behind it; \
               start the script with SET lock_timeout = '5s' and retry on failure",
    },
];

fn rule(id: &str) -> &'static Rule {
    RULES.iter().find(|r| r.id == id).unwrap_or(&RULES[0])
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's id (`PM001`).
    pub rule: &'static str,
    /// The rule's name (`create-index-non-concurrently`).
    pub name: &'static str,
    /// The rule's severity.
    pub severity: Severity,
    /// The script's name, as the history records it.
    pub script: String,
    /// The 1-based line where the statement starts.
    pub line: usize,
    /// What the statement does that is risky, naming the table or index.
    pub message: String,
    /// The rule's advice.
    pub hint: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} {} ({}): {}\n  hint: {}",
            self.script, self.line, self.severity, self.rule, self.name, self.message, self.hint
        )
    }
}

/// Lints `scripts`, in the order they run; unparseable scripts yield an error-level finding of
/// their own. A table one of them creates counts as new for the scripts after it.
///
/// ```rust
/// use pg_migrate::{Severity, lint, script_from_text};
///
/// # fn main() -> Result<(), pg_migrate::SourceError> {
/// let create = "CREATE TABLE items (id bigint, title text);\nCREATE INDEX items_title ON items (title);\n";
/// let index = "SET lock_timeout = '5s';\nCREATE INDEX items_id ON items (id);\n";
/// let v1 = script_from_text("V1__items.sql", create, None)?;
/// let v2 = script_from_text("V2__index_ids.sql", index, None)?;
///
/// // Alone, V2 indexes a table that exists: the build blocks every write to it.
/// let findings = lint(&[&v2]);
/// assert_eq!(findings.len(), 1);
/// let finding = &findings[0];
/// assert_eq!((finding.rule, finding.severity, finding.line), ("PM001", Severity::Error, 2));
/// assert!(finding.to_string().starts_with("V2__index_ids.sql:2: error PM001"), "{finding}");
///
/// // Pending with V1, which creates the table in the same run, the table is new and small.
/// assert!(lint(&[&v1, &v2]).is_empty());
///
/// // A comment before the statement accepts the risk.
/// let accepted = "SET lock_timeout = '5s';\n-- pg-migrate:lint-ignore PM001\nCREATE INDEX items_id ON items (id);\n";
/// assert!(lint(&[&script_from_text("V2__index_ids.sql", accepted, None)?]).is_empty());
/// # Ok(()) }
/// ```
pub fn lint(scripts: &[&Script]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut created = BTreeSet::new();
    for script in scripts {
        match sql::split(&script.text) {
            Ok(statements) => lint_script(script, &statements, &mut created, &mut findings),
            Err(e) => findings.push(Finding {
                rule: "PM000",
                name: "unparseable",
                severity: Severity::Error,
                script: script.name.clone(),
                line: e.line,
                message: e.message,
                hint: "fix the SQL so that it can be split into statements",
            }),
        }
    }
    findings
}

/// A statement's words with their tokens, comments dropped.
struct Words<'a> {
    text: &'a str,
    tokens: Vec<Token>,
}

impl<'a> Words<'a> {
    fn new(statement: &'a Statement) -> Words<'a> {
        Words {
            text: &statement.text,
            tokens: statement.tokens.iter().copied().filter(|t| t.kind != TokenKind::Comment).collect(),
        }
    }

    fn upper(&self, i: usize) -> String {
        self.tokens.get(i).map(|t| self.text[t.start..t.end].to_ascii_uppercase()).unwrap_or_default()
    }

    fn is(&self, i: usize, word: &str) -> bool {
        self.tokens
            .get(i)
            .is_some_and(|t| t.kind == TokenKind::Word && self.text[t.start..t.end].eq_ignore_ascii_case(word))
    }

    /// A possibly schema-qualified name starting at `i`: (normalized name, index after it).
    fn name(&self, mut i: usize) -> (String, usize) {
        let mut parts = Vec::new();
        while let Some(t) = self.tokens.get(i) {
            let part = match t.kind {
                TokenKind::Word => self.text[t.start..t.end].to_ascii_lowercase(),
                TokenKind::QuotedIdent => self.text[t.start + 1..t.end - 1].replace("\"\"", "\""),
                _ => break,
            };
            parts.push(part);
            i += 1;
            if self.tokens.get(i).is_some_and(|t| t.kind == TokenKind::Symbol('.')) {
                i += 1;
            } else {
                break;
            }
        }
        // Match on the unqualified name: `public.users` and `users` are the same table here.
        (parts.last().cloned().unwrap_or_default(), i)
    }

    /// Skips `IF [NOT] EXISTS` and `ONLY` at `i`.
    fn skip_noise(&self, mut i: usize) -> usize {
        loop {
            if self.is(i, "IF") && self.is(i + 1, "NOT") && self.is(i + 2, "EXISTS") {
                i += 3;
            } else if self.is(i, "IF") && self.is(i + 1, "EXISTS") {
                i += 2;
            } else if self.is(i, "ONLY") {
                i += 1;
            } else {
                return i;
            }
        }
    }

    /// Splits the tokens from `start` at top-level commas.
    fn clauses(&self, start: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let (mut depth, mut from) = (0i32, start);
        for i in start..self.tokens.len() {
            match self.tokens[i].kind {
                TokenKind::Symbol('(') => depth += 1,
                TokenKind::Symbol(')') => depth -= 1,
                TokenKind::Symbol(',') if depth == 0 => {
                    out.push((from, i));
                    from = i + 1;
                }
                _ => {}
            }
        }
        out.push((from, self.tokens.len()));
        out
    }

    fn has_between(&self, from: usize, to: usize, word: &str) -> bool {
        (from..to).any(|i| self.is(i, word))
    }
}

fn suppressed(comments: &[String], id: &str, marker: &str) -> bool {
    comments.iter().any(|comment| {
        comment.split(marker).skip(1).any(|rest| rest.split(|c: char| c.is_whitespace() || c == ',').any(|w| w == id))
    })
}

fn lint_script(script: &Script, statements: &[Statement], created: &mut BTreeSet<String>, findings: &mut Vec<Finding>) {
    let mut lock_timeout_set = false;
    let mut warned_lock_timeout = false;
    let file_comments: Vec<String> = statements
        .iter()
        .flat_map(|s| s.leading_comments.iter().cloned().chain(inner_comments(s)))
        .filter(|c| c.contains("pg-migrate:lint-ignore-file"))
        .collect();
    for statement in statements {
        let w = Words::new(statement);
        let mut local: Vec<(&'static str, String)> = Vec::new();
        let first = w.upper(0);
        let mut touches_existing = false;

        if first == "SET" || first == "RESET" {
            let at = if w.is(1, "LOCAL") || w.is(1, "SESSION") { 2 } else { 1 };
            if w.is(at, "lock_timeout") {
                lock_timeout_set = true;
            }
        }
        if statement.text.to_ascii_lowercase().contains("set_config('lock_timeout'") {
            lock_timeout_set = true;
        }
        if first == "CREATE" {
            let mut i = 1;
            while ["GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED", "OR", "REPLACE"].contains(&w.upper(i).as_str()) {
                i += 1;
            }
            if w.is(i, "MATERIALIZED") {
                i += 1;
            }
            if w.is(i, "TABLE") || w.is(i, "VIEW") {
                let (name, _) = w.name(w.skip_noise(i + 1));
                created.insert(name);
            }
            let index_at = if w.is(1, "UNIQUE") { 2 } else { 1 };
            if w.is(index_at, "INDEX") {
                let concurrently = w.is(index_at + 1, "CONCURRENTLY");
                let on = (index_at..w.tokens.len()).find(|&i| w.is(i, "ON"));
                if let Some(on) = on {
                    let (table, _) = w.name(w.skip_noise(on + 1));
                    if !created.contains(&table) {
                        touches_existing = !concurrently;
                        if !concurrently {
                            local.push((
                                "PM001",
                                format!("CREATE INDEX on existing table {table} without CONCURRENTLY"),
                            ));
                        }
                    }
                }
            }
        }
        if first == "DROP" && w.is(1, "TABLE") {
            let (table, _) = w.name(w.skip_noise(2));
            local.push(("PM005", format!("DROP TABLE {table}")));
            touches_existing = !created.contains(&table);
        }
        if first == "ALTER" && w.is(1, "TABLE") {
            let at = w.skip_noise(2);
            let (table, after) = w.name(at);
            let existing = !created.contains(&table);
            touches_existing = existing;
            for (from, to) in w.clauses(after) {
                let action = w.upper(from);
                if action == "ADD" {
                    let mut i = from + 1;
                    let is_constraint = w.is(i, "CONSTRAINT") || w.is(i, "FOREIGN") || w.is(i, "CHECK");
                    if w.is(i, "CONSTRAINT") {
                        i += 2;
                    }
                    if is_constraint {
                        let kind = if w.is(i, "FOREIGN") {
                            Some("FOREIGN KEY")
                        } else if w.is(i, "CHECK") {
                            Some("CHECK")
                        } else {
                            None
                        };
                        if let Some(kind) = kind
                            && existing
                            && !(w.has_between(from, to, "NOT") && w.has_between(from, to, "VALID"))
                        {
                            local.push(("PM004", format!("ADD {kind} on existing table {table} without NOT VALID")));
                        }
                    } else if existing {
                        if w.is(i, "COLUMN") {
                            i += 1;
                        }
                        let i = w.skip_noise(i);
                        let (column, _) = w.name(i);
                        let not_null = (from..to).any(|k| w.is(k, "NOT") && w.is(k + 1, "NULL"));
                        let default = w.has_between(from, to, "DEFAULT") || w.has_between(from, to, "GENERATED");
                        if not_null && !default {
                            local.push((
                                "PM002",
                                format!("ADD COLUMN {column} NOT NULL without a DEFAULT on existing table {table}"),
                            ));
                        }
                    }
                } else if action == "ALTER" && existing {
                    let mut i = from + 1;
                    if w.is(i, "COLUMN") {
                        i += 1;
                    }
                    let (column, next) = w.name(i);
                    if w.is(next, "TYPE") || (w.is(next, "SET") && w.is(next + 1, "DATA") && w.is(next + 2, "TYPE")) {
                        local.push(("PM003", format!("ALTER COLUMN {column} TYPE on existing table {table}")));
                    }
                } else if action == "DROP" {
                    let mut i = from + 1;
                    if w.is(i, "CONSTRAINT") {
                        continue;
                    }
                    if w.is(i, "COLUMN") {
                        i += 1;
                    }
                    let (column, _) = w.name(w.skip_noise(i));
                    local.push(("PM005", format!("DROP COLUMN {column} of table {table}")));
                }
            }
        }
        if touches_existing && !lock_timeout_set && !warned_lock_timeout && script.transactional {
            warned_lock_timeout = true;
            local.push(("PM006", "DDL on an existing table without SET lock_timeout earlier in the script".into()));
        }
        let comments: Vec<String> =
            statement.leading_comments.iter().cloned().chain(inner_comments(statement)).collect();
        for (id, message) in local {
            if suppressed(&comments, id, "pg-migrate:lint-ignore ")
                || suppressed(&file_comments, id, "pg-migrate:lint-ignore-file")
            {
                continue;
            }
            let r = rule(id);
            findings.push(Finding {
                rule: r.id,
                name: r.name,
                severity: r.severity,
                script: script.name.clone(),
                line: statement.line,
                message,
                hint: r.hint,
            });
        }
    }
}

fn inner_comments(statement: &Statement) -> Vec<String> {
    statement
        .tokens
        .iter()
        .filter(|t| t.kind == TokenKind::Comment)
        .map(|t| statement.text[t.start..t.end].to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Kind;
    use crate::version::Version;

    fn script(text: &str) -> Script {
        Script {
            kind: Kind::Versioned(Version::parse("1").unwrap()),
            description: "t".into(),
            name: "V1__t.sql".into(),
            path: "V1__t.sql".into(),
            text: text.into(),
            checksum: 0,
            transactional: true,
            transaction_source: crate::source::TransactionSource::Default,
        }
    }

    fn ids(text: &str) -> Vec<&'static str> {
        lint(&[&script(text)]).into_iter().map(|f| f.rule).collect()
    }

    const SAFE: &str = "SET lock_timeout = '5s';\n";

    #[test]
    fn pm001_index_without_concurrently() {
        assert_eq!(ids(&format!("{SAFE}CREATE INDEX idx ON users (email);")), ["PM001"]);
        assert_eq!(
            ids(&format!("{SAFE}create unique index if not exists idx on public.users using btree (email);")),
            ["PM001"]
        );
        assert!(ids(&format!("{SAFE}CREATE INDEX CONCURRENTLY idx ON users (email);")).is_empty());
        assert!(ids("CREATE TABLE users (id int);\nCREATE INDEX idx ON users (id);").is_empty());
        assert!(ids("CREATE MATERIALIZED VIEW mv AS SELECT 1 AS a;\nCREATE UNIQUE INDEX mv_a ON mv (a);").is_empty());
    }

    #[test]
    fn pm002_not_null_without_default() {
        assert_eq!(ids(&format!("{SAFE}ALTER TABLE users ADD COLUMN age int NOT NULL;")), ["PM002"]);
        assert!(ids(&format!("{SAFE}ALTER TABLE users ADD COLUMN age int NOT NULL DEFAULT 0;")).is_empty());
        assert!(ids(&format!("{SAFE}ALTER TABLE users ADD COLUMN age int;")).is_empty());
    }

    #[test]
    fn pm003_alter_column_type() {
        assert_eq!(ids(&format!("{SAFE}ALTER TABLE users ALTER COLUMN age TYPE bigint;")), ["PM003"]);
        assert_eq!(ids(&format!("{SAFE}ALTER TABLE users ALTER age SET DATA TYPE bigint;")), ["PM003"]);
        assert!(ids(&format!("{SAFE}ALTER TABLE users ALTER COLUMN age SET DEFAULT 1;")).is_empty());
    }

    #[test]
    fn pm004_constraints_need_not_valid() {
        assert_eq!(
            ids(&format!("{SAFE}ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id);")),
            ["PM004"]
        );
        assert_eq!(ids(&format!("{SAFE}ALTER TABLE orders ADD CHECK (total > 0);")), ["PM004"]);
        assert!(
            ids(&format!(
                "{SAFE}ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;"
            ))
            .is_empty()
        );
        assert!(ids(&format!("{SAFE}ALTER TABLE orders VALIDATE CONSTRAINT fk;")).is_empty());
    }

    #[test]
    fn pm005_drops() {
        assert_eq!(ids(&format!("{SAFE}DROP TABLE old_things;")), ["PM005"]);
        assert_eq!(ids(&format!("{SAFE}ALTER TABLE users DROP COLUMN legacy;")), ["PM005"]);
        assert!(ids(&format!("{SAFE}ALTER TABLE users DROP CONSTRAINT c;")).is_empty());
    }

    #[test]
    fn pm006_lock_timeout() {
        assert_eq!(ids("ALTER TABLE users ADD COLUMN note text;"), ["PM006"]);
        assert!(ids("SET LOCAL lock_timeout TO '2s';\nALTER TABLE users ADD COLUMN note text;").is_empty());
        assert!(ids("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN note text;").is_empty());
    }

    #[test]
    fn suppressions() {
        assert!(ids("-- pg-migrate:lint-ignore PM001, PM006\nCREATE INDEX idx ON users (email);").is_empty());
        assert!(ids("-- pg-migrate:lint-ignore-file PM006\nALTER TABLE users ADD COLUMN note text;").is_empty());
        assert_eq!(ids("-- pg-migrate:lint-ignore PM006\nCREATE INDEX idx ON users (email);"), ["PM001"]);
    }

    #[test]
    fn tables_created_by_an_earlier_script_of_the_run_are_new() {
        let create = script("CREATE TABLE events (id int);");
        let mut index = script("CREATE INDEX e ON events (id);");
        index.name = "V2__t.sql".into();
        assert!(lint(&[&create, &index]).is_empty());
        assert_eq!(lint(&[&index]).iter().map(|f| f.rule).collect::<Vec<_>>(), ["PM001", "PM006"]);
    }

    #[test]
    fn findings_carry_file_line_and_hint() {
        let findings = lint(&[&script("SET lock_timeout = '1s';\n\nCREATE INDEX i ON t (a);")]);
        assert_eq!(findings[0].line, 3);
        assert!(findings[0].to_string().starts_with("V1__t.sql:3: error PM001"));
    }
}
