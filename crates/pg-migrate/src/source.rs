//! Migration scripts on disk, named as Flyway names them: `V<version>__<description>.sql`,
//! `R__<description>.sql`, with an optional `<script>.conf` beside each.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::checksum::flyway_checksum;
use crate::error::SourceError;
use crate::version::Version;

/// Versioned, repeatable, or a Flyway SQL callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `V<version>__<description>.sql`: applied once, in version order.
    Versioned(Version),
    /// `R__<description>.sql`: applied after the versioned ones, and again whenever it changes.
    Repeatable,
    /// `beforeMigrate*.sql` / `afterMigrate*.sql`: run on every `migrate`, not recorded.
    Callback(Event),
}

/// When a callback runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// `beforeMigrate*.sql`: on every `migrate`, before the pending migrations.
    BeforeMigrate,
    /// `afterMigrate*.sql`: on every `migrate`, after the pending migrations (also when none were).
    AfterMigrate,
}

/// One migration script.
#[derive(Clone, Debug)]
pub struct Script {
    /// Versioned, repeatable or callback, from the file name.
    pub kind: Kind,
    /// From the file name, `_` turned into spaces, as Flyway records it.
    pub description: String,
    /// The path relative to its location, `/`-separated: what the history table records.
    pub name: String,
    /// The file it was read from; for a script built from text, its `name`.
    pub path: PathBuf,
    /// The script's text, decoded and without a byte-order mark, placeholders not replaced.
    pub text: String,
    /// Flyway's checksum of `text` ([`flyway_checksum`]).
    pub checksum: i32,
    /// Whether it runs in a transaction: as its `.conf` says (`executeInTransaction`), or, as
    /// Flyway decides without one, outside a transaction when every statement must run there
    /// (`CREATE INDEX CONCURRENTLY`, `VACUUM`, ...).
    pub transactional: bool,
    /// Where `transactional` comes from.
    pub transaction_source: TransactionSource,
}

/// Why a script runs in a transaction or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionSource {
    /// No `.conf`, and statements that can run in a transaction.
    Default,
    /// `executeInTransaction` in the script's `.conf`.
    Conf,
    /// No `.conf`, and every statement must run outside a transaction.
    Detected,
}

/// Whether a script without a `.conf` runs in a transaction: not when every statement must run
/// outside one (Flyway's rule). A script that does not split is left to fail later, with its line.
fn detect_transactional(text: &str) -> bool {
    match crate::sql::split(text) {
        Ok(statements) if !statements.is_empty() => {
            !statements.iter().all(|s| crate::sql::non_transactional(s).is_some())
        }
        _ => true,
    }
}

fn transaction_mode(conf: Option<bool>, text: &str) -> (bool, TransactionSource) {
    match conf {
        Some(transactional) => (transactional, TransactionSource::Conf),
        None if !detect_transactional(text) => (false, TransactionSource::Detected),
        None => (true, TransactionSource::Default),
    }
}

impl Script {
    /// The version of a versioned migration; `None` for repeatable migrations and callbacks.
    pub fn version(&self) -> Option<&Version> {
        match &self.kind {
            Kind::Versioned(v) => Some(v),
            Kind::Repeatable | Kind::Callback(_) => None,
        }
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Text encodings a script may be in (Flyway's `encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 (the default); a file that is not valid UTF-8 is an error naming its line.
    #[default]
    Utf8,
    /// ISO-8859-1: every byte is a character.
    Latin1,
}

impl Encoding {
    /// Reads Flyway's spelling: `UTF-8` / `UTF8`, or `ISO-8859-1` / `LATIN1` (any case, `_` for
    /// `-`). Another encoding is an error saying which are supported.
    pub fn parse(name: &str) -> Result<Encoding, String> {
        match name.trim().to_ascii_uppercase().replace('_', "-").as_str() {
            "UTF-8" | "UTF8" => Ok(Encoding::Utf8),
            "ISO-8859-1" | "LATIN1" | "LATIN-1" => Ok(Encoding::Latin1),
            other => Err(format!("encoding {other:?} is not supported; use UTF-8 or ISO-8859-1")),
        }
    }
}

/// Turns Flyway's `locations` (`filesystem:path,filesystem:other` or bare paths) into folders.
pub fn parse_locations(spec: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let path = match item.split_once(':') {
            Some(("filesystem", path)) => path,
            Some(("classpath", _)) => {
                return Err(format!("{item}: classpath locations need the JVM; point filesystem: at the folder"));
            }
            Some((scheme, _)) if scheme.len() > 1 && !scheme.contains('/') => {
                return Err(format!("{item}: unsupported location type {scheme:?}; use filesystem:"));
            }
            _ => item,
        };
        out.push(PathBuf::from(path));
    }
    if out.is_empty() {
        return Err("no location given".into());
    }
    Ok(out)
}

/// What a file name says, before its contents are read.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    Versioned(Version, String),
    Repeatable(String),
    Callback(Event, String),
    /// Not a migration (other suffixes, Flyway callbacks such as `afterMigrate.sql`, undo scripts).
    Other,
}

fn parse_name(file_name: &str) -> Result<Name, String> {
    let Some(stem) = file_name.strip_suffix(".sql") else { return Ok(Name::Other) };
    let describe = |d: &str| d.replace('_', " ").trim().to_owned();
    for (prefix, event) in [("beforeMigrate", Event::BeforeMigrate), ("afterMigrate", Event::AfterMigrate)] {
        if let Some(rest) = stem.strip_prefix(prefix) {
            if rest.is_empty() {
                return Ok(Name::Callback(event, String::new()));
            }
            if let Some(description) = rest.strip_prefix("__") {
                return Ok(Name::Callback(event, describe(description)));
            }
        }
    }
    if let Some(rest) = stem.strip_prefix("R__") {
        if rest.trim_matches('_').is_empty() {
            return Err("a repeatable migration needs a description: R__<description>.sql".into());
        }
        return Ok(Name::Repeatable(describe(rest)));
    }
    let looks_versioned = stem.starts_with('V') && stem[1..].starts_with(|c: char| c.is_ascii_digit());
    let looks_repeatable = stem.starts_with("R_");
    if !looks_versioned {
        if looks_repeatable {
            return Err("a repeatable migration is named R__<description>.sql (two underscores)".into());
        }
        return Ok(Name::Other);
    }
    let Some((version, description)) = stem[1..].split_once("__") else {
        return Err(
            "expected V<version>__<description>.sql: the version and description are separated by two underscores"
                .into(),
        );
    };
    let version = Version::parse(version)?;
    if description.trim_matches('_').is_empty() {
        return Err("a versioned migration needs a description: V<version>__<description>.sql".into());
    }
    Ok(Name::Versioned(version, describe(description)))
}

/// Reads every migration under `locations` (recursively). Nothing is returned unless every
/// script is well-formed: a bad name, a duplicate version, unreadable text or a bad `.conf`
/// is an error naming the file.
pub fn load(locations: &[PathBuf], encoding: Encoding) -> Result<Vec<Script>, SourceError> {
    let mut scripts = Vec::new();
    for location in locations {
        if !location.is_dir() {
            return Err(SourceError::new(location, "the migrations location is not a folder (or does not exist)"));
        }
        let mut files = Vec::new();
        walk(location, &mut files).map_err(|e| SourceError::new(location, format!("cannot list: {e}")))?;
        files.sort();
        for path in files {
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let name = parse_name(&file_name).map_err(|reason| SourceError::new(&path, reason))?;
            let (kind, description) = match name {
                Name::Other => continue,
                Name::Versioned(v, d) => (Kind::Versioned(v), d),
                Name::Repeatable(d) => (Kind::Repeatable, d),
                Name::Callback(e, d) => (Kind::Callback(e), d),
            };
            let bytes = std::fs::read(&path).map_err(|e| SourceError::new(&path, format!("cannot read: {e}")))?;
            let text = decode(&bytes, encoding).map_err(|reason| SourceError::new(&path, reason))?;
            let (transactional, transaction_source) = transaction_mode(read_conf(&path)?, &text);
            let relative = path.strip_prefix(location).unwrap_or(&path);
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            scripts.push(Script {
                kind,
                description,
                name,
                path: path.clone(),
                checksum: flyway_checksum(&text),
                text,
                transactional,
                transaction_source,
            });
        }
    }
    check_duplicates(&scripts)?;
    scripts.sort_by(|a, b| order(a).cmp(&order(b)));
    Ok(scripts)
}

/// Versioned by version, then repeatables by description, then callbacks by event and name.
fn order(script: &Script) -> (u8, Option<&Version>, Option<Event>, &str) {
    match &script.kind {
        Kind::Versioned(v) => (0, Some(v), None, ""),
        Kind::Repeatable => (1, None, None, &script.description),
        Kind::Callback(e) => (2, None, Some(*e), &script.name),
    }
}

/// A script from text rather than a file, e.g. migrations compiled into a binary. `name` is the
/// file name (`V1__init.sql`), or its `/`-separated path relative to the location
/// (`2024/V1__init.sql`), which is what the history records; `conf` the text of its `.conf`, if any.
pub fn script_from_text(name: &str, text: &str, conf: Option<&str>) -> Result<Script, SourceError> {
    let path = PathBuf::from(name);
    let file_name = name.rsplit('/').next().unwrap_or(name);
    let (kind, description) = match parse_name(file_name).map_err(|r| SourceError::new(&path, r))? {
        Name::Other => {
            return Err(SourceError::new(
                &path,
                "not a migration name (V<version>__<description>.sql, R__<description>.sql)",
            ));
        }
        Name::Versioned(v, d) => (Kind::Versioned(v), d),
        Name::Repeatable(d) => (Kind::Repeatable, d),
        Name::Callback(e, d) => (Kind::Callback(e), d),
    };
    let conf = match conf {
        None => None,
        Some(conf) => Some(parse_conf(conf).map_err(|r| SourceError::new(&path, format!("{name}.conf: {r}")))?),
    };
    // A UTF-8 byte-order mark is not part of the script (Flyway and psql skip it too).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (transactional, transaction_source) = transaction_mode(conf, text);
    Ok(Script {
        kind,
        description,
        name: name.to_owned(),
        path,
        checksum: flyway_checksum(text),
        text: text.to_owned(),
        transactional,
        transaction_source,
    })
}

/// Orders scripts built with [`script_from_text`] and checks them for duplicates, as [`load`] does.
pub fn collect(mut scripts: Vec<Script>) -> Result<Vec<Script>, SourceError> {
    check_duplicates(&scripts)?;
    scripts.sort_by(|a, b| order(a).cmp(&order(b)));
    Ok(scripts)
}

/// The scripts among the files of one location, given as (`/`-separated path relative to the
/// location, text), read as [`load`] reads the folder: a file that is not a migration is skipped,
/// `<script>.conf` configures its script, and a misnamed script or a duplicate is an error.
pub(crate) fn from_files(files: &[(&str, &str)]) -> Result<Vec<Script>, SourceError> {
    let mut scripts = Vec::new();
    for (name, text) in files {
        let file_name = name.rsplit('/').next().unwrap_or(name);
        match parse_name(file_name) {
            Ok(Name::Other) => continue,
            Ok(_) => {}
            Err(reason) => return Err(SourceError::new(Path::new(name), reason)),
        }
        let conf_name = format!("{name}.conf");
        let conf = files.iter().find(|(other, _)| *other == conf_name).map(|(_, conf)| *conf);
        scripts.push(script_from_text(name, text, conf)?);
    }
    collect(scripts)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn decode(bytes: &[u8], encoding: Encoding) -> Result<String, String> {
    // A UTF-8 byte-order mark is not part of the script (Flyway and psql skip it too).
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match encoding {
        Encoding::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        Encoding::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            format!("not valid UTF-8 (line {line}, byte {at}); convert the file or set the encoding")
        }),
    }
}

/// Reads `<script>.conf`: Flyway's per-script settings. Only `executeInTransaction` is known.
fn read_conf(script: &Path) -> Result<Option<bool>, SourceError> {
    let mut conf = script.as_os_str().to_owned();
    conf.push(".conf");
    let conf = PathBuf::from(conf);
    let text = match std::fs::read_to_string(&conf) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SourceError::new(&conf, format!("cannot read: {e}"))),
    };
    parse_conf(&text).map(Some).map_err(|r| SourceError::new(&conf, r))
}

fn parse_conf(text: &str) -> Result<bool, String> {
    let mut transactional = true;
    for (key, value) in crate::config::parse_properties(text)? {
        match key.as_str() {
            "executeInTransaction" => {
                transactional = datastores::parse_bool(&value).map_err(|r| format!("executeInTransaction: {r}"))?;
            }
            other => return Err(format!("unknown setting {other:?}; only executeInTransaction is known")),
        }
    }
    Ok(transactional)
}

fn check_duplicates(scripts: &[Script]) -> Result<(), SourceError> {
    let mut versions: BTreeMap<String, &Script> = BTreeMap::new();
    let mut repeatables: BTreeMap<&str, &Script> = BTreeMap::new();
    for script in scripts {
        match &script.kind {
            Kind::Versioned(v) => {
                // Equal versions may be spelled differently (V1 and V001): compare numerically.
                if let Some(other) = versions.values().find(|o| o.version() == Some(v)) {
                    return Err(SourceError::new(
                        &script.path,
                        format!("version {v} is also used by {}; each version must be unique", other.path.display()),
                    ));
                }
                versions.insert(v.as_str().to_owned(), script);
            }
            Kind::Callback(_) => {}
            Kind::Repeatable => {
                if let Some(other) = repeatables.insert(&script.description, script) {
                    return Err(SourceError::new(
                        &script.path,
                        format!(
                            "repeatable description {:?} is also used by {}",
                            script.description,
                            other.path.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("V1__init.sql").unwrap(), Name::Versioned(Version::parse("1").unwrap(), "init".into()));
        let Name::Versioned(v, d) = parse_name("V1_2_3__add_user_behaviors.sql").unwrap() else { panic!() };
        assert_eq!((v.as_str(), d.as_str()), ("1.2.3", "add user behaviors"));
        assert_eq!(parse_name("R__refresh_views.sql").unwrap(), Name::Repeatable("refresh views".into()));
        assert_eq!(parse_name("README.md").unwrap(), Name::Other);
        assert_eq!(parse_name("afterMigrate.sql").unwrap(), Name::Callback(Event::AfterMigrate, String::new()));
        assert_eq!(
            parse_name("beforeMigrate__check.sql").unwrap(),
            Name::Callback(Event::BeforeMigrate, "check".into())
        );
        assert_eq!(parse_name("afterEachMigrate.sql").unwrap(), Name::Other);
        assert!(parse_name("V1_init.sql").unwrap_err().contains("two underscores"));
        assert!(parse_name("V1a__x.sql").is_err());
        assert!(parse_name("V2__.sql").is_err());
        assert!(parse_name("R_views.sql").is_err());
    }

    #[test]
    fn locations() {
        assert_eq!(
            parse_locations("filesystem:migrations, filesystem:/abs/sql").unwrap(),
            [PathBuf::from("migrations"), PathBuf::from("/abs/sql")]
        );
        assert_eq!(parse_locations("db").unwrap(), [PathBuf::from("db")]);
        assert!(parse_locations("classpath:db/migration").unwrap_err().contains("JVM"));
        assert!(parse_locations("s3:bucket/x").is_err());
    }

    fn write(dir: &Path, name: &str, text: &[u8]) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn loads_sorted_with_conf() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "V1_10__b.sql", b"SELECT 2;");
        write(dir.path(), "V1_2__a.sql", b"SELECT 1;");
        write(dir.path(), "R__z.sql", b"SELECT 3;");
        write(dir.path(), "V2__c.sql", b"CREATE INDEX CONCURRENTLY i ON t (a);");
        write(dir.path(), "V2__c.sql.conf", b"# comment\nexecuteInTransaction=false\n");
        write(dir.path(), "notes.txt", b"ignored");
        let scripts = load(&[dir.path().to_owned()], Encoding::Utf8).unwrap();
        let names: Vec<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["V1_2__a.sql", "V1_10__b.sql", "V2__c.sql", "R__z.sql"]);
        assert!(!scripts[2].transactional && scripts[0].transactional);
        assert_eq!(scripts[2].transaction_source, TransactionSource::Conf);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_script() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "V1__bom.sql", b"\xef\xbb\xbfCREATE TABLE t (id int);\n");
        let scripts = load(&[dir.path().to_owned()], Encoding::Utf8).unwrap();
        assert_eq!(scripts[0].text, "CREATE TABLE t (id int);\n");
        assert_eq!(scripts[0].checksum, crate::checksum::flyway_checksum("CREATE TABLE t (id int);\n"));
        let from_text = script_from_text("V1__bom.sql", "\u{feff}SELECT 1;", None).unwrap();
        assert_eq!(from_text.text, "SELECT 1;");
    }

    #[test]
    fn scripts_that_cannot_run_in_a_transaction_are_detected_as_flyway_does() {
        let script = |text: &str| script_from_text("V1__x.sql", text, None).unwrap();
        let cic = script("-- builds online\nCREATE INDEX CONCURRENTLY i ON t (a);\nDROP INDEX CONCURRENTLY j;\n");
        assert!(!cic.transactional);
        assert_eq!(cic.transaction_source, TransactionSource::Detected);
        let vacuum = script("VACUUM ANALYZE t;");
        assert!(!vacuum.transactional);
        let plain = script("CREATE TABLE t (a int); CREATE INDEX i ON t (a);");
        assert!(plain.transactional && plain.transaction_source == TransactionSource::Default);
        // Mixed scripts stay transactional here and are refused before anything runs.
        assert!(script("CREATE TABLE t (a int); CREATE INDEX CONCURRENTLY i ON t (a);").transactional);
        // A .conf wins.
        let conf = script_from_text("V1__x.sql", "SELECT 1;", Some("executeInTransaction=false")).unwrap();
        assert!(!conf.transactional && conf.transaction_source == TransactionSource::Conf);
    }

    #[test]
    fn files_read_as_the_folder_is() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("more")).unwrap();
        let files = [
            ("V1__a.sql", "SELECT 1;"),
            ("V2__b.sql", "CREATE INDEX CONCURRENTLY i ON t (a);"),
            ("V2__b.sql.conf", "executeInTransaction=true"),
            ("afterMigrate.sql", "\u{feff}SELECT 2;"),
            ("more/R__views.sql", "SELECT 3;"),
            ("flyway.conf", "flyway.table=x"),
            ("notes.sql", "not read"),
        ];
        for (name, text) in files {
            write(dir.path(), name, text.as_bytes());
        }
        let key = |s: &Script| (s.name.clone(), s.kind.clone(), s.description.clone(), s.checksum, s.transactional);
        let on_disk: Vec<_> = load(&[dir.path().to_owned()], Encoding::Utf8).unwrap().iter().map(key).collect();
        let embedded: Vec<_> = from_files(&files).unwrap().iter().map(key).collect();
        assert_eq!(embedded, on_disk);
        assert_eq!(embedded.len(), 4);
        assert!(embedded[1].4, "the .conf applies");

        let err = from_files(&[("sql/V1_init.sql", "SELECT 1;")]).unwrap_err().to_string();
        assert!(err.contains("sql/V1_init.sql") && err.contains("two underscores"), "{err}");
        let err = from_files(&[("V1__a.sql", "SELECT 1;"), ("V001__b.sql", "SELECT 1;")]).unwrap_err().to_string();
        assert!(err.contains("V001__b.sql") && err.contains("V1__a.sql"), "{err}");
    }

    #[test]
    fn bad_sources_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "V1__a.sql", b"SELECT 1;");
        write(dir.path(), "V001__b.sql", b"SELECT 1;");
        let err = load(&[dir.path().to_owned()], Encoding::Utf8).unwrap_err().to_string();
        assert!(err.contains("V001__b.sql") || err.contains("V1__a.sql"), "{err}");
        assert!(err.contains("version"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "V1__a.sql", b"SELECT '\xff';");
        let err = load(&[dir.path().to_owned()], Encoding::Utf8).unwrap_err().to_string();
        assert!(err.contains("V1__a.sql") && err.contains("UTF-8"), "{err}");
        let latin = load(&[dir.path().to_owned()], Encoding::Latin1).unwrap();
        assert_eq!(latin[0].text, "SELECT 'ÿ';");

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "V1__a.sql", b"SELECT 1;");
        write(dir.path(), "V1__a.sql.conf", b"executeInTransaction=maybe\n");
        let err = load(&[dir.path().to_owned()], Encoding::Utf8).unwrap_err().to_string();
        assert!(err.contains("V1__a.sql.conf"), "{err}");
    }
}
