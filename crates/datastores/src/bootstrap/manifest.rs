//! The manifest file: `${VAR}` expansion that keeps line numbers, and the typed sections.

use serde::Deserialize;

use crate::settings::Settings;

/// The built-in manifest: seed 003's platform.
pub const BUILTIN: &str = include_str!("platform.yaml");

/// The desired state of the platform's datastores. A section left out is not touched.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Databases, extensions, roles, grants and server settings of PostgreSQL.
    pub postgres: Option<super::postgres::Section>,
    /// MongoDB's databases, collections, indexes and users.
    pub mongodb: Option<super::mongodb::Section>,
    /// Redis' memory, eviction and persistence settings.
    pub redis: Option<super::redis::Section>,
    /// Kafka's topics and their configurations.
    pub kafka: Option<super::kafka::Section>,
    /// Weaviate classes as `vector-admin` specs: `{defaults: extend|replace, classes: [...]}`.
    pub weaviate: Option<serde_json::Value>,
    /// Milvus collections as `vector-admin` specs: `{defaults: extend|replace, collections: [...]}`.
    pub milvus: Option<serde_json::Value>,
}

/// A manifest that cannot be used, with the place named.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file cannot be read.
    #[error("cannot read manifest {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why it cannot be read.
        message: String,
    },
    /// A `${VAR}` that cannot be expanded: unset without a default, malformed, or a value that
    /// cannot stand where it is.
    #[error("{origin} line {line}{}: {message}", key.as_ref().map(|k| format!(" (key {k})")).unwrap_or_default())]
    Variable {
        /// The manifest's file, or `the built-in manifest`.
        origin: String,
        /// The line of the variable, from 1.
        line: usize,
        /// The key the line sets, where it sets one.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The expanded manifest is not valid YAML, has an unknown key, or breaks a section's rules.
    /// Secret values are redacted from `message`.
    #[error("{origin}: {message}")]
    Invalid {
        /// The manifest's file, or `the built-in manifest`.
        origin: String,
        /// What is wrong, with the line where the parser gives one.
        message: String,
    },
}

impl Manifest {
    /// Parses `text` (named `origin` in errors), expanding `${VAR}` and `${VAR:-default}` from
    /// `vars` (`VAR_FILE` reads a file, as everywhere in dbkit).
    ///
    /// ```rust
    /// use datastores::bootstrap::Manifest;
    /// use datastores::{Settings, Source};
    ///
    /// let text = "\
    /// kafka:
    ///   replication_factor: ${KAFKA_REPLICATION_FACTOR:-3}
    ///   topics:
    ///     - name: model-events
    ///       partitions: 6
    ///       configs:
    ///         retention.ms: 604800000
    /// ";
    /// let vars = Settings::new().layer(Source::Environment, [("KAFKA_REPLICATION_FACTOR", "1")]);
    /// let manifest = Manifest::parse(text, "platform.yaml", &vars)?;
    /// let kafka = manifest.kafka.as_ref().expect("a kafka section");
    /// assert_eq!(kafka.topics[0].partitions, 6);
    /// assert_eq!(kafka.factor(&kafka.topics[0]), 1);
    /// // A section left out is not touched.
    /// assert!(manifest.postgres.is_none());
    ///
    /// // A variable without a value or a default is an error naming the file, line and key.
    /// let error = Manifest::parse("redis:\n  maxmemory: ${REDIS_MAXMEMORY}\n", "platform.yaml", &Settings::new())
    ///     .unwrap_err();
    /// assert!(error.to_string().starts_with("platform.yaml line 2 (key maxmemory): ${REDIS_MAXMEMORY} is not set"));
    /// # Ok::<(), datastores::bootstrap::ManifestError>(())
    /// ```
    pub fn parse(text: &str, origin: &str, vars: &Settings) -> Result<Manifest, ManifestError> {
        let expanded = expand(text, origin, &|name| {
            let value = vars.get(name).map_err(|e| e.to_string())?.map(|v| {
                let from_file = v.origin.to_string().contains("_FILE");
                (v.text, from_file || looks_secret(name))
            });
            Ok(value)
        })?;
        let manifest: Manifest = serde_norway::from_str(&expanded.text).map_err(|e| ManifestError::Invalid {
            origin: origin.into(),
            message: expanded.redact(&locate(&e.to_string(), &expanded.text)),
        })?;
        manifest
            .validate()
            .map_err(|message| ManifestError::Invalid { origin: origin.into(), message: expanded.redact(&message) })?;
        Ok(manifest)
    }

    /// Reads and parses the manifest at `path`.
    pub fn load(path: &std::path::Path, vars: &Settings) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ManifestError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Manifest::parse(&text, &path.display().to_string(), vars)
    }

    /// The built-in manifest.
    pub fn builtin(vars: &Settings) -> Result<Manifest, ManifestError> {
        Manifest::parse(BUILTIN, "the built-in manifest", vars)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(s) = &self.postgres {
            s.validate().map_err(|e| format!("postgres: {e}"))?;
        }
        if let Some(s) = &self.mongodb {
            s.validate().map_err(|e| format!("mongodb: {e}"))?;
        }
        if let Some(s) = &self.redis {
            s.validate().map_err(|e| format!("redis: {e}"))?;
        }
        if let Some(s) = &self.kafka {
            s.validate().map_err(|e| format!("kafka: {e}"))?;
        }
        Ok(())
    }
}

/// Adds the line to a message that names an unknown field but no place (the parser gives none
/// for the top level).
fn locate(message: &str, text: &str) -> String {
    if message.contains(" line ") {
        return message.to_owned();
    }
    let field = message.split_once("unknown field `").and_then(|(_, rest)| rest.split_once('`')).map(|(f, _)| f);
    let line = field.and_then(|field| {
        text.lines().position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.strip_prefix(field).is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
    });
    match line {
        Some(n) => format!("{message} at line {}", n + 1),
        None => message.to_owned(),
    }
}

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "CREDENTIAL", "PRIVATE"].iter().any(|w| upper.contains(w))
}

/// Expanded text, and the secret values put into it (to keep them out of error messages).
pub struct Expanded {
    pub text: String,
    secrets: Vec<String>,
}

impl std::fmt::Debug for Expanded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expanded").field("text", &"[redacted]").field("secrets", &self.secrets.len()).finish()
    }
}

impl Expanded {
    /// `message` without the secret values put into the text, as written or as a parser quotes
    /// them (escaped).
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            let escaped = format!("{secret:?}");
            out = out.replace(&escaped[1..escaped.len() - 1], "[redacted]");
            out = out.replace(secret.as_str(), "[redacted]");
        }
        out
    }
}

/// A variable's value and whether it is secret.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Result<Option<(String, bool)>, String>;

/// Expands `${VAR}` and `${VAR:-default}` (default when unset or empty) in `text`, line by line,
/// so that line numbers stay those of the file. `$${` is a literal `${`. Comment lines are left
/// alone. A value YAML would read as structure is written quoted when the variable is the whole
/// value, and refused otherwise.
pub fn expand(text: &str, origin: &str, lookup: Lookup<'_>) -> Result<Expanded, ManifestError> {
    let mut out = String::with_capacity(text.len());
    let mut secrets = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let fail = |message: String| ManifestError::Variable {
            origin: origin.into(),
            line: number,
            key: line_key(line),
            message,
        };
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut done = String::new();
        let mut quote: Option<char> = None;
        while let Some(pos) = rest.find(['$', '\'', '"', '#']) {
            let (before, at) = rest.split_at(pos);
            done.push_str(before);
            let c = at.chars().next().unwrap_or('$');
            match c {
                '\'' if quote == Some('\'') && at.starts_with("''") => {
                    // An escaped quote inside a single-quoted scalar.
                    done.push_str("''");
                    rest = &at[2..];
                }
                '\'' | '"' => {
                    quote = match quote {
                        // A quote opens a quoted scalar only where a scalar starts; elsewhere
                        // (`it's`) it is text.
                        None if scalar_starts(&done) => Some(c),
                        None => None,
                        Some(q) if q == c => None,
                        other => other,
                    };
                    done.push(c);
                    rest = &at[1..];
                }
                '#' if quote.is_none() && (done.is_empty() || done.ends_with([' ', '\t'])) => {
                    // A comment: the rest of the line is not expanded.
                    done.push_str(at);
                    rest = "";
                }
                '#' => {
                    done.push('#');
                    rest = &at[1..];
                }
                _ if at.starts_with("$${") => {
                    done.push_str("${");
                    rest = &at[3..];
                }
                _ if at.starts_with("${") => {
                    let end = at.find('}').ok_or_else(|| fail("an unclosed ${".into()))?;
                    let inner = &at[2..end];
                    let (name, default) = match inner.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (inner, None),
                    };
                    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        return Err(fail(format!(
                            "${{{inner}}} is not a variable (use ${{NAME}} or ${{NAME:-default}})"
                        )));
                    }
                    let found = lookup(name).map_err(fail)?;
                    let (value, secret) = match (found, default) {
                        (Some((v, _)), Some(d)) if v.is_empty() => (d.to_owned(), false),
                        (Some((v, secret)), _) => (v, secret),
                        (None, Some(d)) => (d.to_owned(), false),
                        (None, None) => {
                            return Err(fail(format!(
                                "${{{name}}} is not set: set {name} (or {name}_FILE), or give a default as ${{{name}:-...}}"
                            )));
                        }
                    };
                    let after = &at[end + 1..];
                    let whole = quote.is_none()
                        && scalar_starts(&done)
                        && (after.trim().is_empty()
                            || (after.starts_with([' ', '\t']) && after.trim_start().starts_with('#')));
                    let inserted = match quote {
                        None if whole && !secret && plain_safe(&value) => value.clone(),
                        None if !whole && structure_safe(&value) => value.clone(),
                        Some(_) if structure_safe(&value) => value.clone(),
                        None if whole => serde_json::to_string(&value).unwrap_or_default(),
                        Some('"') => {
                            let quoted = serde_json::to_string(&value).unwrap_or_default();
                            quoted[1..quoted.len() - 1].to_owned()
                        }
                        Some(_) if value.contains(['\n', '\r']) => {
                            return Err(fail(format!(
                                "the value of {name} spans lines, which a single-quoted value cannot hold; make \
                                 ${{{name}}} the whole value"
                            )));
                        }
                        Some(_) => value.replace('\'', "''"),
                        None => {
                            return Err(fail(format!(
                                "the value of {name} has characters YAML reads as structure; make ${{{name}}} the \
                                 whole value, or put it in quotes"
                            )));
                        }
                    };
                    if secret {
                        secrets.push(value);
                    }
                    done.push_str(&inserted);
                    rest = after;
                }
                _ => {
                    done.push('$');
                    rest = &at[1..];
                }
            }
        }
        done.push_str(rest);
        out.push_str(&done);
    }
    Ok(Expanded { text: out, secrets })
}

/// Whether `value` can stand inside a scalar without YAML reading any of it as structure.
fn structure_safe(value: &str) -> bool {
    value.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/@+=%:".contains(c)) && !value.ends_with(':')
}

/// Whether a scalar starts after `done`: at the start of the line, or after `key: `, `- `, or
/// an opening `[`/`{` or `,` of a flow collection.
fn scalar_starts(done: &str) -> bool {
    let trimmed = done.trim_end();
    trimmed.is_empty()
        || trimmed.ends_with(['[', '{', ','])
        || (trimmed.ends_with([':', '-']) && done.len() > trimmed.len())
}

/// Whether `value` reads back as itself when written plain: a plain string, or a number or
/// boolean in the form YAML writes it (`0x1F`, `1e3`, `True`, `~` and `null` do not).
fn plain_safe(value: &str) -> bool {
    structure_safe(value)
        && !value.starts_with(['@', '%', '-', ':'])
        && !value.is_empty()
        && match serde_norway::from_str::<serde_norway::Value>(value) {
            Ok(serde_norway::Value::String(s)) => s == value,
            Ok(serde_norway::Value::Number(n)) => n.to_string() == value,
            Ok(serde_norway::Value::Bool(b)) => b.to_string() == value,
            _ => false,
        }
}

/// The key a line sets (`  replication_factor: ...` or `- name: ...`), for error messages.
fn line_key(line: &str) -> Option<String> {
    let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
    let (key, _) = trimmed.split_once(':')?;
    let key = key.trim().trim_matches(['"', '\'']);
    (!key.is_empty() && !key.contains(char::is_whitespace)).then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Result<Option<(String, bool)>, String> {
        move |name| Ok(pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| ((*v).to_owned(), looks_secret(name))))
    }

    #[test]
    fn expansion_keeps_lines_and_quotes_what_needs_it() {
        let lookup = vars(&[("RF", "1"), ("PASSWORD", "p: a#ss'\"x"), ("EMPTY", "")]);
        let text = "# ${NOT_EXPANDED}\na: ${RF}\nb: ${MISSING:-3} # ${ALSO_NOT}\nc: ${PASSWORD}\nd: \"x ${PASSWORD} y\"\ne: $${RF}\nf: ${EMPTY:-dflt}\n";
        let out = expand(text, "m.yaml", &lookup).unwrap();
        assert_eq!(
            out.text,
            "# ${NOT_EXPANDED}\na: 1\nb: 3 # ${ALSO_NOT}\nc: \"p: a#ss'\\\"x\"\nd: \"x p: a#ss'\\\"x y\"\ne: ${RF}\nf: \
             dflt\n"
        );
        let parsed: serde_json::Value = serde_norway::from_str(&out.text).unwrap();
        assert_eq!(parsed["c"], "p: a#ss'\"x");
        assert_eq!(parsed["d"], "x p: a#ss'\"x y");
        assert_eq!(parsed["a"], 1);
        assert_eq!(out.redact("bad p: a#ss'\"x here"), "bad [redacted] here");
    }

    #[test]
    fn values_yaml_would_retype_or_misread_are_quoted() {
        let lookup = vars(&[("HEX", "0x1F"), ("EXP", "1e3"), ("NUL", "~"), ("TRUE", "True"), ("DB_PASSWORD", "12345")]);
        let text = "a: ${HEX}\nb: ${EXP}\nc: ${NUL}\nd: ${TRUE}\ne: ${DB_PASSWORD}\nf: it's ${HEX}\n";
        let out = expand(text, "m.yaml", &lookup).unwrap();
        let parsed: serde_json::Value = serde_norway::from_str(&out.text).unwrap();
        assert_eq!(parsed["a"], "0x1F");
        assert_eq!(parsed["b"], "1e3");
        assert_eq!(parsed["c"], "~");
        assert_eq!(parsed["d"], "True");
        assert_eq!(parsed["e"], "12345", "a secret stays a string");
        assert_eq!(parsed["f"], "it's 0x1F", "an apostrophe in plain text opens no quote");
        let lookup = vars(&[("RF", "1"), ("COST", "1.1")]);
        let parsed: serde_json::Value =
            serde_norway::from_str(&expand("a: ${RF}\nb: ${COST}\n", "m.yaml", &lookup).unwrap().text).unwrap();
        assert_eq!((parsed["a"].as_u64(), parsed["b"].as_f64()), (Some(1), Some(1.1)));
        let lookup = vars(&[("ML", "a\nb: c")]);
        let err = expand("a: 'x ${ML}'\n", "m.yaml", &lookup).err().unwrap().to_string();
        assert!(err.contains("spans lines"), "{err}");
        let out = expand("a: ${ML}\n", "m.yaml", &lookup).unwrap();
        assert_eq!(out.text.lines().count(), 1);
        let debug = format!("{out:?}");
        assert!(!debug.contains("b: c"), "{debug}");
    }

    #[test]
    fn undefined_and_malformed_variables_name_line_and_key() {
        let lookup = vars(&[]);
        let err = expand("kafka:\n  topics:\n    - replication_factor: ${KAFKA_RF}\n", "m.yaml", &lookup)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("m.yaml line 3 (key replication_factor): ${KAFKA_RF} is not set"), "{err}");
        let err = expand("a:\n  b: ${1X}\n", "m.yaml", &lookup).err().unwrap().to_string();
        assert!(err.contains("line 2 (key b)") && err.contains("not a variable"), "{err}");
        let err = expand("a: ${OPEN\n", "m.yaml", &lookup).err().unwrap().to_string();
        assert!(err.contains("line 1") && err.contains("unclosed"), "{err}");
        let lookup = vars(&[("V", "a: b")]);
        let err = expand("a: x${V}\n", "m.yaml", &lookup).err().unwrap().to_string();
        assert!(err.contains("line 1 (key a)") && err.contains("quotes"), "{err}");
    }

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(crate::Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn the_builtin_manifest_is_seed_003s_platform() {
        let m = Manifest::builtin(&settings(&[])).unwrap();
        let pg = m.postgres.unwrap();
        assert_eq!(pg.databases[0].name, "ai_platform");
        assert_eq!(pg.databases[0].extensions, ["vector"]);
        assert_eq!(pg.settings.len(), 8);
        assert_eq!(pg.settings["shared_buffers"].0, "1GB");
        assert_eq!(pg.settings["max_connections"].0, "200");
        let mongo = m.mongodb.unwrap();
        let indexes: usize = mongo.databases[0].collections.iter().map(|c| c.indexes.len()).sum();
        assert_eq!(indexes, 9);
        let ttl = &mongo.databases[0].collections[2].indexes[3];
        assert_eq!(ttl.expire_after_seconds, Some(86_400));
        let kafka = m.kafka.unwrap();
        assert_eq!(
            kafka.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["data-ingestion", "model-events", "system-logs"]
        );
        assert!(kafka.topics.iter().all(|t| t.partitions == 3 && kafka.factor(t) == 2));
        let redis = m.redis.unwrap();
        assert_eq!(redis.persistence.unwrap().save.unwrap().0, "3600 1 300 100 60 10000");
        assert!(m.weaviate.is_some());

        // The one-broker stack overrides what it cannot have.
        let m =
            Manifest::builtin(&settings(&[("KAFKA_REPLICATION_FACTOR", "1"), ("AI_PLATFORM_APP_PASSWORD", "p: w#d")]))
                .unwrap();
        let kafka = m.kafka.unwrap();
        assert!(kafka.topics.iter().all(|t| kafka.factor(t) == 1));
        let pg = m.postgres.unwrap();
        assert_eq!(pg.roles[1].password.as_ref().unwrap().expose(), "p: w#d");
        assert!(!format!("{pg:?}").contains("w#d"));
    }

    #[test]
    fn bad_manifests_name_the_line_and_key() {
        let vars = settings(&[("SECRET_PASSWORD", "hunter2-not-a-number")]);
        let err = Manifest::parse("kafka:\n  topics:\n    - name: t\n      partitons: 3\n", "m.yaml", &vars)
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.yaml") && err.contains("line 4") && err.contains("partitons"), "{err}");
        let err = Manifest::parse("kafka:\n  topics:\n    - name: t\n      partitions: three\n", "m.yaml", &vars)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("partitions"), "{err}");
        let err = Manifest::parse("redis:\n  maxmemory: ${REDIS_LIMIT}\n", "m.yaml", &vars).unwrap_err().to_string();
        assert!(err.contains("line 2 (key maxmemory)") && err.contains("REDIS_LIMIT"), "{err}");
        let err = Manifest::parse("cassandra: {}\n", "m.yaml", &vars).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("cassandra"), "{err}");
        // A secret put where a number belongs is not echoed.
        let err = Manifest::parse("kafka:\n  replication_factor: ${SECRET_PASSWORD}\n", "m.yaml", &vars)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && !err.contains("hunter2"), "{err}");
        let err = Manifest::parse("redis:\n  maxmemory: 0\n", "m.yaml", &vars).unwrap_err().to_string();
        assert!(err.contains("redis: maxmemory must not be 0"), "{err}");
    }
}
