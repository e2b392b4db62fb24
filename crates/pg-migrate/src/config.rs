//! pg-migrate's settings and Flyway's ways of giving them: `flyway.conf` files, `FLYWAY_*`
//! environment variables and `-key=value` command-line options, all mapped to one set of
//! canonical variable names so that [`datastores::Settings`] can layer them.
//!
//! Canonical names: `DATABASE_URL`, `POSTGRES_USER`, `POSTGRES_PASSWORD` for the connection (so
//! `POSTGRES_*` variables work as everywhere in dbkit), and `FLYWAY_<KEY>` for the rest
//! (`flyway.defaultSchema` -> `FLYWAY_DEFAULT_SCHEMA`, `flyway.placeholders.x` ->
//! `FLYWAY_PLACEHOLDERS_x`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use datastores::{ConfigError, Settings, Source, Value};

use crate::source::{Encoding, parse_locations};
use crate::version::Version;

/// Which versions `migrate` goes up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every pending migration (Flyway's `target=latest`, the default).
    Latest,
    /// Versions up to and including this one; higher ones stay pending (`Above Target` in `info`).
    Version(Version),
}

/// What pg-migrate does and where. Build it with [`MigrateConfig::from_settings`] or by hand.
#[derive(Clone, Debug)]
pub struct MigrateConfig {
    /// Folders holding the scripts, read recursively (`flyway.locations`, `filesystem:` only);
    /// default `migrations`, relative to the working directory.
    pub locations: Vec<PathBuf>,
    /// Schemas pg-migrate manages (created when missing, cleaned by `clean`).
    pub schemas: Vec<String>,
    /// Holds the history table; first on the `search_path` while migrations run.
    pub default_schema: String,
    /// Name of the history table in `default_schema` (`flyway.table`); default
    /// `flyway_schema_history`.
    pub table: String,
    /// Encoding of the script files (`flyway.encoding`); default UTF-8.
    pub encoding: Encoding,
    /// Values of `${name}` placeholders (`flyway.placeholders.<name>`), keyed by lower-cased name:
    /// names in scripts match whatever their case. The built-ins (`flyway:user`, ...) come on top.
    pub placeholders: BTreeMap<String, String>,
    /// Whether placeholders are replaced at all (`flyway.placeholderReplacement`); default true.
    pub placeholder_replacement: bool,
    /// What opens a placeholder (`flyway.placeholderPrefix`); default `${`.
    pub placeholder_prefix: String,
    /// What closes a placeholder (`flyway.placeholderSuffix`); default `}`.
    pub placeholder_suffix: String,
    /// The version `baseline` records (`flyway.baselineVersion`); default 1. Scripts at or below
    /// it are never applied (`Below Baseline`).
    pub baseline_version: Version,
    /// The description of the baseline row (`flyway.baselineDescription`); default
    /// `<< Flyway Baseline >>`.
    pub baseline_description: String,
    /// Whether `migrate` baselines a non-empty schema that has no history table instead of
    /// refusing it (`flyway.baselineOnMigrate`); default false.
    pub baseline_on_migrate: bool,
    /// Whether `migrate` applies a pending version lower than the highest applied one
    /// (`flyway.outOfOrder`); default false, and such a script is a validation issue (`Ignored`).
    pub out_of_order: bool,
    /// Whether `migrate` refuses to run while applied migrations differ from the scripts
    /// (checksums, missing scripts, ...) (`flyway.validateOnMigrate`); default true. A failed
    /// migration in the history stops `migrate` either way.
    pub validate_on_migrate: bool,
    /// Refuses `clean` while true (`flyway.cleanDisabled`); default true.
    pub clean_disabled: bool,
    /// Whether `migrate` creates missing `schemas` (`flyway.createSchemas`); default
    /// true. When false, a missing schema stops `migrate`.
    pub create_schemas: bool,
    /// How far `migrate` goes (`flyway.target`); default [`Target::Latest`].
    pub target: Target,
    /// Recorded in `installed_by`; the connected user when `None`.
    pub installed_by: Option<String>,
    /// How long to wait for another migrator's lock, and for statements an interrupted migrator
    /// left running; default 300 s (`PG_MIGRATE_LOCK_TIMEOUT`, or Flyway's `lockRetryCount` in
    /// seconds).
    pub lock_timeout: Duration,
    /// How many times a failed connection is retried before giving up (`flyway.connectRetries`);
    /// default 0.
    pub connect_retries: u32,
    /// The wait between connection attempts (`flyway.connectRetriesInterval`); default 10 s.
    pub connect_retries_interval: Duration,
    /// Consent to drop an INVALID index that an interrupted `CREATE INDEX CONCURRENTLY` of a
    /// pending migration left behind (`DROP INDEX CONCURRENTLY`), so that the migration builds it
    /// again. Without it, migrate stops and names the index.
    pub drop_invalid_indexes: bool,
}

impl MigrateConfig {
    /// Flyway's defaults, with migrations in `migrations/`.
    pub fn new() -> MigrateConfig {
        MigrateConfig {
            locations: vec![PathBuf::from("migrations")],
            schemas: vec!["public".into()],
            default_schema: "public".into(),
            table: "flyway_schema_history".into(),
            encoding: Encoding::Utf8,
            placeholders: BTreeMap::new(),
            placeholder_replacement: true,
            placeholder_prefix: "${".into(),
            placeholder_suffix: "}".into(),
            baseline_version: Version::parse("1").unwrap_or_else(|_| unreachable!("1 is a version")),
            baseline_description: "<< Flyway Baseline >>".into(),
            baseline_on_migrate: false,
            out_of_order: false,
            validate_on_migrate: true,
            clean_disabled: true,
            create_schemas: true,
            target: Target::Latest,
            installed_by: None,
            lock_timeout: Duration::from_secs(300),
            connect_retries: 0,
            connect_retries_interval: Duration::from_secs(10),
            drop_invalid_indexes: false,
        }
    }

    /// Reads the canonical variables: `FLYWAY_<KEY>` for Flyway's `flyway.<key>`
    /// (`flyway.defaultSchema` is `FLYWAY_DEFAULT_SCHEMA`, see [`canonical_name`]), and
    /// `PG_MIGRATE_LOCK_TIMEOUT`, `PG_MIGRATE_DROP_INVALID_INDEXES`. Flyway's `flyway.conf` files
    /// and `FLYWAY_*` variables become such layers through [`flyway_layer`] and
    /// [`flyway_env_layer`]. What is not set keeps the default of [`MigrateConfig::new`]; the
    /// connection (`DATABASE_URL`, `POSTGRES_*`) is `datastores::PostgresConfig`'s.
    ///
    /// A value that cannot be used is a [`ConfigError`] naming where it came from, as is a
    /// Flyway setting pg-migrate supports only with its default (`flyway.mixed=true`, ...).
    ///
    /// ```rust
    /// use datastores::{Settings, Source};
    /// use pg_migrate::{MigrateConfig, Target, Version, flyway_env_layer, flyway_layer, parse_properties};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The repository's flyway.conf, under the Job's FLYWAY_* variables.
    /// let conf = "flyway.schemas=app,audit\n\
    ///             flyway.placeholders.Owner=app_owner\n\
    ///             flyway.target=3\n";
    /// let file = flyway_layer(&parse_properties(conf)?, |key| format!("{key} in flyway.conf"))?;
    /// let env = flyway_env_layer([("FLYWAY_TABLE".to_owned(), "schema_history".to_owned())]);
    /// let settings = file.apply(env.apply(Settings::new()));
    ///
    /// let config = MigrateConfig::from_settings(&settings)?;
    /// assert_eq!(config.schemas, ["app", "audit"]);
    /// assert_eq!(config.default_schema, "app"); // the first schema
    /// assert_eq!(config.table, "schema_history");
    /// assert_eq!(config.placeholders["owner"], "app_owner");
    /// assert_eq!(config.target, Target::Version(Version::parse("3")?));
    /// assert!(config.clean_disabled); // Flyway's default
    ///
    /// // A bad value names its origin.
    /// let settings = Settings::new().layer(Source::Environment, [("FLYWAY_OUT_OF_ORDER", "perhaps")]);
    /// let error = MigrateConfig::from_settings(&settings).unwrap_err();
    /// assert!(error.to_string().starts_with("environment variable FLYWAY_OUT_OF_ORDER:"), "{error}");
    /// # Ok(()) }
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<MigrateConfig, ConfigError> {
        let mut c = MigrateConfig::new();
        if let Some(v) = settings.get("FLYWAY_LOCATIONS")? {
            c.locations = checked(&v, parse_locations(&v.text))?;
        }
        let schemas = settings.get("FLYWAY_SCHEMAS")?;
        if let Some(v) = &schemas {
            c.schemas = v.text.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
            if c.schemas.is_empty() {
                return Err(datastores_invalid(v, "lists no schema"));
            }
        }
        c.default_schema = match settings.get("FLYWAY_DEFAULT_SCHEMA")? {
            Some(v) => v.text,
            None => c.schemas[0].clone(),
        };
        if !c.schemas.contains(&c.default_schema) {
            c.schemas.insert(0, c.default_schema.clone());
        }
        if let Some(v) = settings.get("FLYWAY_TABLE")? {
            c.table = v.text;
        }
        if let Some(v) = settings.get("FLYWAY_ENCODING")? {
            c.encoding = checked(&v, Encoding::parse(&v.text))?;
        }
        // Placeholder names are matched without regard to case (Flyway lower-cases the ones from
        // the environment); of two spellings, the higher layer wins.
        let mut ranks: BTreeMap<String, usize> = BTreeMap::new();
        for (name, value) in settings.with_prefix("FLYWAY_PLACEHOLDERS_") {
            let key = name.to_ascii_lowercase();
            if ranks.get(&key).is_none_or(|&rank| value.rank < rank) {
                ranks.insert(key.clone(), value.rank);
                c.placeholders.insert(key, value.text);
            }
        }
        if let Some(b) = settings.boolean("FLYWAY_PLACEHOLDER_REPLACEMENT")? {
            c.placeholder_replacement = b;
        }
        if let Some(v) = settings.get("FLYWAY_PLACEHOLDER_PREFIX")? {
            c.placeholder_prefix = v.text;
        }
        if let Some(v) = settings.get("FLYWAY_PLACEHOLDER_SUFFIX")? {
            c.placeholder_suffix = v.text;
        }
        if let Some(v) = settings.get("FLYWAY_BASELINE_VERSION")? {
            c.baseline_version = checked(&v, Version::parse(&v.text))?;
        }
        if let Some(v) = settings.get("FLYWAY_BASELINE_DESCRIPTION")? {
            c.baseline_description = v.text;
        }
        if let Some(b) = settings.boolean("FLYWAY_BASELINE_ON_MIGRATE")? {
            c.baseline_on_migrate = b;
        }
        if let Some(b) = settings.boolean("FLYWAY_OUT_OF_ORDER")? {
            c.out_of_order = b;
        }
        if let Some(b) = settings.boolean("FLYWAY_VALIDATE_ON_MIGRATE")? {
            c.validate_on_migrate = b;
        }
        if let Some(b) = settings.boolean("FLYWAY_CLEAN_DISABLED")? {
            c.clean_disabled = b;
        }
        if let Some(b) = settings.boolean("FLYWAY_CREATE_SCHEMAS")? {
            c.create_schemas = b;
        }
        if let Some(v) = settings.get("FLYWAY_TARGET")? {
            c.target = match v.text.trim().to_ascii_lowercase().as_str() {
                "latest" => Target::Latest,
                _ => Target::Version(checked(&v, Version::parse(v.text.trim()))?),
            };
        }
        if let Some(v) = settings.get("FLYWAY_INSTALLED_BY")? {
            c.installed_by = Some(v.text);
        }
        if let Some(n) = settings.count("FLYWAY_LOCK_RETRY_COUNT")? {
            // Flyway retries once a second.
            c.lock_timeout = Duration::from_secs(n as u64);
        }
        if let Some(d) = settings.duration("PG_MIGRATE_LOCK_TIMEOUT")? {
            c.lock_timeout = d;
        }
        if let Some(b) = settings.boolean("PG_MIGRATE_DROP_INVALID_INDEXES")? {
            c.drop_invalid_indexes = b;
        }
        if let Some(n) = settings.count("FLYWAY_CONNECT_RETRIES")? {
            c.connect_retries = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(d) = settings.duration("FLYWAY_CONNECT_RETRIES_INTERVAL")? {
            c.connect_retries_interval = d;
        }
        for (key, default) in [
            ("FLYWAY_SQL_MIGRATION_PREFIX", "V"),
            ("FLYWAY_SQL_MIGRATION_SEPARATOR", "__"),
            ("FLYWAY_SQL_MIGRATION_SUFFIXES", ".sql"),
            ("FLYWAY_REPEATABLE_SQL_MIGRATION_PREFIX", "R"),
            ("FLYWAY_MIXED", "false"),
            ("FLYWAY_GROUP", "false"),
            ("FLYWAY_CLEAN_ON_VALIDATION_ERROR", "false"),
        ] {
            if let Some(v) = settings.get(key)?
                && v.text.trim() != default
            {
                return Err(datastores_invalid(&v, format!("only the default {default:?} is supported")));
            }
        }
        Ok(c)
    }

    /// The history table: `table` in `default_schema`.
    pub fn history_table(&self) -> crate::history::Table {
        crate::history::Table { schema: self.default_schema.clone(), name: self.table.clone() }
    }
}

impl Default for MigrateConfig {
    fn default() -> MigrateConfig {
        MigrateConfig::new()
    }
}

fn checked<T>(value: &Value, result: Result<T, String>) -> Result<T, ConfigError> {
    result.map_err(|reason| datastores_invalid(value, reason))
}

fn datastores_invalid(value: &Value, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: value.origin.to_string(), reason: reason.into() }
}

/// Flyway keys (after `flyway.`) that pg-migrate reads, in Flyway's spelling.
const KEYS: &[&str] = &[
    "url",
    "user",
    "password",
    "locations",
    "schemas",
    "defaultSchema",
    "table",
    "encoding",
    "placeholderReplacement",
    "placeholderPrefix",
    "placeholderSuffix",
    "baselineVersion",
    "baselineDescription",
    "baselineOnMigrate",
    "outOfOrder",
    "validateOnMigrate",
    "cleanDisabled",
    "createSchemas",
    "target",
    "installedBy",
    "lockRetryCount",
    "connectRetries",
    "connectRetriesInterval",
    "sqlMigrationPrefix",
    "sqlMigrationSeparator",
    "sqlMigrationSuffixes",
    "repeatableSqlMigrationPrefix",
    "mixed",
    "group",
    "cleanOnValidationError",
    "validateMigrationNaming",
];

/// Flyway keys accepted and ignored: they configure the JVM driver or things pg-migrate always
/// does.
const IGNORED: &[&str] = &["driver", "validateMigrationNaming", "jarDirs", "color", "outputType"];

/// The canonical variable for a Flyway key (without `flyway.`), or `None` when unknown.
pub fn canonical_name(key: &str) -> Option<String> {
    if let Some(name) = key.strip_prefix("placeholders.") {
        return (!name.is_empty()).then(|| format!("FLYWAY_PLACEHOLDERS_{name}"));
    }
    let key = KEYS.iter().find(|k| k.eq_ignore_ascii_case(key))?;
    Some(match *key {
        "url" => "DATABASE_URL".to_owned(),
        "user" => "POSTGRES_USER".to_owned(),
        "password" => "POSTGRES_PASSWORD".to_owned(),
        other => {
            let mut out = String::from("FLYWAY_");
            for (i, ch) in other.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    })
}

/// Values and descriptions of one layer of settings in canonical names.
#[derive(Debug, Default)]
pub struct Layer {
    /// Values by canonical name (`DATABASE_URL`, `FLYWAY_TABLE`, `FLYWAY_PLACEHOLDERS_owner`, ...).
    pub values: BTreeMap<String, String>,
    /// Where each value came from, by the same names, as errors quote it
    /// (`flyway.table in migrations/flyway.conf`, `environment variable FLYWAY_TABLE`).
    pub descriptions: BTreeMap<String, String>,
}

impl Layer {
    fn insert(&mut self, name: String, value: String, description: String) {
        self.descriptions.insert(name.clone(), description);
        self.values.insert(name, value);
    }

    /// Appends this layer to `settings`.
    pub fn apply(self, settings: Settings) -> Settings {
        settings.layer(Source::Described(self.descriptions), self.values)
    }
}

/// Turns Flyway `key=value` pairs (keys with or without `flyway.`) into a layer; `describe`
/// says where each came from. Unknown keys are errors, so a typo does not pass unnoticed.
pub fn flyway_layer(pairs: &[(String, String)], describe: impl Fn(&str) -> String) -> Result<Layer, String> {
    let mut layer = Layer::default();
    for (key, value) in pairs {
        let bare = key.strip_prefix("flyway.").unwrap_or(key);
        if IGNORED.iter().any(|k| k.eq_ignore_ascii_case(bare)) {
            continue;
        }
        let name = canonical_name(bare).ok_or_else(|| format!("{}: unknown Flyway setting {key:?}", describe(key)))?;
        layer.insert(name, value.clone(), describe(key));
    }
    Ok(layer)
}

/// The `FLYWAY_*` variables of an environment, in canonical names (`FLYWAY_URL` ->
/// `DATABASE_URL`; placeholder names lower-cased, as Flyway does).
pub fn flyway_env_layer(vars: impl IntoIterator<Item = (String, String)>) -> Layer {
    let mut layer = Layer::default();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("FLYWAY_") else { continue };
        let canonical = match rest {
            "URL" => "DATABASE_URL".to_owned(),
            "USER" => "POSTGRES_USER".to_owned(),
            "PASSWORD" => "POSTGRES_PASSWORD".to_owned(),
            "URL_FILE" => "DATABASE_URL_FILE".to_owned(),
            "USER_FILE" => "POSTGRES_USER_FILE".to_owned(),
            "PASSWORD_FILE" => "POSTGRES_PASSWORD_FILE".to_owned(),
            _ => match rest.strip_prefix("PLACEHOLDERS_") {
                Some(p) => format!("FLYWAY_PLACEHOLDERS_{}", p.to_ascii_lowercase()),
                None => name.clone(),
            },
        };
        layer.insert(canonical, value, format!("environment variable {name}"));
    }
    layer
}

/// Parses Java `.properties` text (what `flyway.conf` is): `key=value`, `key: value` or
/// `key value`; `#` and `!` comments; `\` at the end of a line continues it; `\t`, `\n`, `\\`,
/// `\uXXXX` escapes.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        i += 1;
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        if logical.is_empty() {
            start_line = i;
        }
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            if i < lines.len() {
                continue;
            }
        } else {
            logical.push_str(line);
        }
        let entry = std::mem::take(&mut logical);
        let (key, value) = split_property(&entry);
        let key = unescape(&key).map_err(|e| format!("line {start_line}: {e}"))?;
        let value = unescape(&value).map_err(|e| format!("line {start_line}: {e}"))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn split_property(entry: &str) -> (String, String) {
    let bytes = entry.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => {
                return (entry[..i].trim_end().to_owned(), entry[i + 1..].trim_start().to_owned());
            }
            c if c.is_ascii_whitespace() => {
                let rest = entry[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).map(str::trim_start).unwrap_or(rest);
                return (entry[..i].to_owned(), rest.to_owned());
            }
            _ => i += 1,
        }
    }
    (entry.to_owned(), String::new())
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("bad \\u escape \\u{hex}"))?;
                out.push(char::from_u32(code).ok_or_else(|| format!("bad \\u escape \\u{hex}"))?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties() {
        let text = "# Flyway\n! also a comment\nflyway.url=jdbc:postgresql://localhost:5432/recommend\n\
                    flyway.user = postgres\nflyway.locations=filesystem:migrations,\\\n    filesystem:more\n\
                    flyway.placeholders.owner: app\nflyway.baselineDescription  Initial\\u0020state\n";
        let pairs = parse_properties(text).unwrap();
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("flyway.url"), Some("jdbc:postgresql://localhost:5432/recommend"));
        assert_eq!(get("flyway.user"), Some("postgres"));
        assert_eq!(get("flyway.locations"), Some("filesystem:migrations,filesystem:more"));
        assert_eq!(get("flyway.placeholders.owner"), Some("app"));
        assert_eq!(get("flyway.baselineDescription"), Some("Initial state"));
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("url").as_deref(), Some("DATABASE_URL"));
        assert_eq!(canonical_name("defaultSchema").as_deref(), Some("FLYWAY_DEFAULT_SCHEMA"));
        assert_eq!(canonical_name("baselineOnMigrate").as_deref(), Some("FLYWAY_BASELINE_ON_MIGRATE"));
        assert_eq!(canonical_name("placeholders.myName").as_deref(), Some("FLYWAY_PLACEHOLDERS_myName"));
        assert_eq!(canonical_name("nonsense"), None);
        let err = flyway_layer(&[("flyway.urll".into(), "x".into())], |k| format!("{k} in f.conf")).unwrap_err();
        assert!(err.contains("flyway.urll in f.conf"), "{err}");
    }

    #[test]
    fn layers_and_precedence() {
        let file = flyway_layer(
            &[
                ("flyway.schemas".into(), "app,audit".into()),
                ("flyway.table".into(), "history".into()),
                ("flyway.placeholders.owner".into(), "file_owner".into()),
                ("flyway.cleanDisabled".into(), "false".into()),
            ],
            |k| format!("{k} in flyway.conf"),
        )
        .unwrap();
        let env = flyway_env_layer([
            ("FLYWAY_TABLE".to_owned(), "env_history".to_owned()),
            ("FLYWAY_PLACEHOLDERS_OWNER".to_owned(), "env_owner".to_owned()),
        ]);
        let settings = file.apply(env.apply(Settings::new()));
        let config = MigrateConfig::from_settings(&settings).unwrap();
        assert_eq!(config.schemas, ["app", "audit"]);
        assert_eq!(config.default_schema, "app");
        assert_eq!(config.table, "env_history");
        assert_eq!(config.placeholders.get("owner").map(String::as_str), Some("env_owner"));
        assert!(!config.clean_disabled);
    }

    #[test]
    fn bad_values_name_their_origin() {
        let file =
            flyway_layer(&[("flyway.outOfOrder".into(), "perhaps".into())], |k| format!("{k} in flyway.conf")).unwrap();
        let err = MigrateConfig::from_settings(&file.apply(Settings::new())).unwrap_err().to_string();
        assert!(err.contains("flyway.outOfOrder in flyway.conf") && err.contains("perhaps"), "{err}");
        let file = flyway_layer(&[("flyway.mixed".into(), "true".into())], |k| format!("{k} in flyway.conf")).unwrap();
        let err = MigrateConfig::from_settings(&file.apply(Settings::new())).unwrap_err().to_string();
        assert!(err.contains("flyway.mixed"), "{err}");
    }
}
