//! Configuration variables in layers, each value remembering where it came from.
//!
//! A [`Settings`] is built by the caller (a binary, or a test) from explicit sources, highest
//! priority first: typically command-line flags, then the process environment. The library never
//! reads the process environment itself, so two configurations can live in one process.
//!
//! Every variable `NAME` may instead be given as `NAME_FILE`, the path of a file holding the value
//! (a Kubernetes Secret mounted as a volume). Within one layer, setting both is an error; across
//! layers, the highest layer that sets either wins. Empty values count as unset, as Kubernetes
//! manifests often carry `value: ""`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

/// Where a layer of settings comes from; used in error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Command-line flags. The map from variable name to flag name lets errors name the flag.
    Flags(BTreeMap<String, String>),
    /// The process environment.
    Environment,
    /// Values under canonical names, each with its own description, such as
    /// `flyway.url in migrations/flyway.conf` or `environment variable FLYWAY_URL`.
    Described(BTreeMap<String, String>),
    /// Anything else, described by the caller (a config file, a test).
    Other(String),
}

#[derive(Clone, Debug)]
struct Layer {
    source: Source,
    vars: BTreeMap<String, String>,
}

/// Layered configuration variables. See the module documentation for the rules.
///
/// ```rust
/// use std::collections::BTreeMap;
/// use std::time::Duration;
/// use datastores::{Settings, Source};
///
/// let dir = tempfile::tempdir()?;
/// let secret = dir.path().join("password");
/// std::fs::write(&secret, "s3cret\n")?;
/// let secret = secret.to_str().expect("a UTF-8 path");
///
/// // Flags first, then the environment: a layer added later has a lower priority.
/// let flags = BTreeMap::from([("POSTGRES_PORT".to_owned(), "--postgres-port".to_owned())]);
/// let settings = Settings::new().layer(Source::Flags(flags), [("POSTGRES_PORT", "6432")]).layer(
///     Source::Environment,
///     [
///         ("POSTGRES_PORT", "5432"),
///         ("POSTGRES_HOST", ""),
///         ("POSTGRES_CONNECT_TIMEOUT", "2s"),
///         ("POSTGRES_PASSWORD_FILE", secret),
///     ],
/// );
///
/// // The highest layer wins, and the value remembers where it came from.
/// let port = settings.get("POSTGRES_PORT")?.expect("set");
/// assert_eq!(port.text, "6432");
/// assert_eq!(port.origin.to_string(), "flag --postgres-port");
/// assert_eq!(settings.port("POSTGRES_PORT")?, Some(6432));
/// assert_eq!(settings.duration("POSTGRES_CONNECT_TIMEOUT")?, Some(Duration::from_secs(2)));
/// // An empty value counts as unset.
/// assert!(!settings.is_set("POSTGRES_HOST"));
/// // `NAME_FILE` gives the content of a file, such as a mounted Kubernetes Secret.
/// assert_eq!(settings.get("POSTGRES_PASSWORD")?.expect("set").text, "s3cret");
///
/// // A value that does not parse is an error naming its origin.
/// let bad = Settings::new().layer(Source::Environment, [("REDIS_DB", "two")]);
/// let error = bad.count("REDIS_DB").unwrap_err();
/// assert_eq!(error.to_string(), r#"environment variable REDIS_DB: "two" is not a whole number"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Settings {
    layers: Vec<Layer>,
}

/// Where one value came from: `environment variable POSTGRES_PORT`, `flag --postgres-port`,
/// `file /run/secrets/pg (POSTGRES_PASSWORD_FILE)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(String);

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Origin {
    /// An origin for values that did not come from a variable, such as defaults.
    pub fn new(description: impl Into<String>) -> Origin {
        Origin(description.into())
    }
}

/// A value and its origin. Its `Debug` output hides the text, which may be a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Value {
    /// The value as given, or the content of the `_FILE` file without its final newline.
    pub text: String,
    /// Where the value came from, for error messages.
    pub origin: Origin,
    /// The layer the value came from; 0 is the highest. A URL's parts carry the URL's rank, so a
    /// variable from a lower layer does not override a URL given on the command line.
    pub rank: usize,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("text", &"<hidden>")
            .field("origin", &self.origin)
            .field("rank", &self.rank)
            .finish()
    }
}

impl Settings {
    /// Settings with no layers: every variable is unset.
    pub fn new() -> Settings {
        Settings::default()
    }

    /// Adds a layer below the ones already added.
    pub fn layer<K, V>(mut self, source: Source, vars: impl IntoIterator<Item = (K, V)>) -> Settings
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.layers.push(Layer { source, vars });
        self
    }

    /// Whether any layer sets `name` or `name_FILE` to a non-empty value.
    pub fn is_set(&self, name: &str) -> bool {
        let file = format!("{name}_FILE");
        self.layers.iter().any(|l| non_empty(&l.vars, name).is_some() || non_empty(&l.vars, &file).is_some())
    }

    /// The value of `name`, from the highest layer that sets it or `name_FILE`.
    pub fn get(&self, name: &str) -> Result<Option<Value>, ConfigError> {
        let file_var = format!("{name}_FILE");
        for (rank, layer) in self.layers.iter().enumerate() {
            let direct = non_empty(&layer.vars, name);
            let file = non_empty(&layer.vars, &file_var);
            match (direct, file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Conflict {
                        first: describe(&layer.source, name),
                        second: describe(&layer.source, &file_var),
                    });
                }
                (Some(text), None) => {
                    return Ok(Some(Value {
                        text: text.to_owned(),
                        origin: Origin(describe(&layer.source, name)),
                        rank,
                    }));
                }
                (None, Some(path)) => {
                    let variable = describe(&layer.source, &file_var);
                    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                        variable: variable.clone(),
                        path: PathBuf::from(path),
                        source,
                    })?;
                    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                    let origin = Origin(format!("file {path} ({variable})"));
                    return Ok(Some(Value { text: text.to_owned(), origin, rank }));
                }
                (None, None) => {}
            }
        }
        Ok(None)
    }

    /// The first of `names` that is set, in the order given (for aliases such as
    /// `S3_ENDPOINT` / `AWS_ENDPOINT_URL_S3`).
    pub fn get_any(&self, names: &[&str]) -> Result<Option<Value>, ConfigError> {
        for name in names {
            if let Some(value) = self.get(name)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Every variable whose name starts with `prefix`, from the highest layer that sets it, as
    /// `(name without the prefix, value)` in name order.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, Value)> {
        let mut found: BTreeMap<String, Value> = BTreeMap::new();
        for (rank, layer) in self.layers.iter().enumerate() {
            for (name, text) in &layer.vars {
                let Some(rest) = name.strip_prefix(prefix) else { continue };
                if text.is_empty() || rest.is_empty() || found.contains_key(rest) {
                    continue;
                }
                let origin = Origin(describe(&layer.source, name));
                found.insert(rest.to_owned(), Value { text: text.clone(), origin, rank });
            }
        }
        found.into_iter().collect()
    }

    /// The value of `name` (as [`Settings::get`]) parsed by `parse`; a parse failure becomes
    /// [`ConfigError::Invalid`] naming the value's origin and `parse`'s reason.
    pub fn get_parsed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(name)? {
            None => Ok(None),
            Some(value) => parse(&value.text).map(Some).map_err(|reason| invalid(&value, reason)),
        }
    }

    /// The value of `name` as a TCP port (1-65535).
    pub fn port(&self, name: &str) -> Result<Option<u16>, ConfigError> {
        self.get_parsed(name, parse_port)
    }

    /// The value of `name` as a duration, in the forms [`parse_duration`] accepts (a bare number is
    /// seconds).
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        self.get_parsed(name, parse_duration)
    }

    /// The value of `name` as a boolean, in the forms [`parse_bool`] accepts.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        self.get_parsed(name, parse_bool)
    }

    /// The value of `name` as a non-negative whole number.
    pub fn count(&self, name: &str) -> Result<Option<usize>, ConfigError> {
        self.get_parsed(name, |text| {
            text.trim().parse::<usize>().map_err(|_| format!("{text:?} is not a whole number"))
        })
    }
}

fn non_empty<'a>(vars: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn describe(source: &Source, name: &str) -> String {
    match source {
        Source::Flags(flags) => match flags.get(name) {
            Some(flag) => format!("flag {flag}"),
            None => format!("flag for {name}"),
        },
        Source::Environment => format!("environment variable {name}"),
        Source::Described(descriptions) => match descriptions.get(name) {
            Some(description) => description.clone(),
            None => name.to_owned(),
        },
        Source::Other(what) => format!("{name} ({what})"),
    }
}

/// An error for a value that did not parse, naming where it came from.
pub fn invalid(value: &Value, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: value.origin.to_string(), reason: reason.into() }
}

pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a port number (1-65535)")),
        Ok(port) => Ok(port),
    }
}

/// Parses `true`/`false`, `yes`/`no`, `on`/`off` or `1`/`0`, ignoring case and surrounding spaces.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (true/false, yes/no, 1/0)")),
    }
}

/// Parses `300`, `300s`, `250ms`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 300s, 250ms, 5m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!("{text:?}: unknown unit {other:?} (use ms, s, m or h)"));
        }
    };
    if !seconds.is_finite() || !(0.0..=365.0 * 86400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Of a variable and the same part taken from a URL, the one from the higher layer; the variable
/// when both come from the same layer.
#[cfg_attr(not(feature = "health"), allow(dead_code))] // Used by some of the datastore features.
pub fn prefer(variable: Option<Value>, from_url: Option<Value>) -> Option<Value> {
    match (variable, from_url) {
        (Some(v), Some(u)) if u.rank < v.rank => Some(u),
        (Some(v), _) => Some(v),
        (None, u) => u,
    }
}

/// Decodes `%XX` escapes of a URL part.
#[cfg_attr(not(feature = "health"), allow(dead_code))] // Used by some of the datastore features.
pub fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or("a '%' in the URL is not followed by two hex digits")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a '%' in the URL is not followed by two hex digits")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL decodes to invalid UTF-8".to_owned())
}

/// Splits a comma-separated list, dropping empty items.
#[cfg_attr(not(feature = "health"), allow(dead_code))] // Used by some of the datastore features.
pub fn parse_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A secret string: its `Debug` and `Display` print `[redacted]`. Call [`Secret::expose`] only
/// where the secret is handed to a client library.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret in clear text, for handing it to a client library; never log or display it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn flags_win_over_environment() {
        let flags = BTreeMap::from([("POSTGRES_PORT".to_owned(), "--postgres-port".to_owned())]);
        let settings = Settings::new()
            .layer(Source::Flags(flags), [("POSTGRES_PORT", "6000")])
            .layer(Source::Environment, [("POSTGRES_PORT", "5000")]);
        let value = settings.get("POSTGRES_PORT").unwrap().unwrap();
        assert_eq!(value.text, "6000");
        assert_eq!(value.origin.to_string(), "flag --postgres-port");
    }

    #[test]
    fn empty_values_are_unset() {
        let settings = env(&[("POSTGRES_HOST", "")]);
        assert_eq!(settings.get("POSTGRES_HOST").unwrap(), None);
        assert!(!settings.is_set("POSTGRES_HOST"));
    }

    #[test]
    fn file_variant_reads_and_trims_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret \n").unwrap();
        let settings = env(&[("POSTGRES_PASSWORD_FILE", path.to_str().unwrap())]);
        let value = settings.get("POSTGRES_PASSWORD").unwrap().unwrap();
        assert_eq!(value.text, "s3cret ");
        assert!(value.origin.to_string().contains("POSTGRES_PASSWORD_FILE"));
    }

    #[test]
    fn both_plain_and_file_in_one_layer_is_an_error() {
        let settings = env(&[("REDIS_PASSWORD", "a"), ("REDIS_PASSWORD_FILE", "/nonexistent")]);
        let err = settings.get("REDIS_PASSWORD").unwrap_err().to_string();
        assert!(err.contains("REDIS_PASSWORD") && err.contains("REDIS_PASSWORD_FILE"), "{err}");
    }

    #[test]
    fn missing_secret_file_names_variable_and_path() {
        let settings = env(&[("MONGODB_PASSWORD_FILE", "/nonexistent/secret")]);
        let err = settings.get("MONGODB_PASSWORD").unwrap_err().to_string();
        assert!(err.contains("MONGODB_PASSWORD_FILE") && err.contains("/nonexistent/secret"), "{err}");
    }

    #[test]
    fn invalid_port_names_its_origin() {
        let err = env(&[("POSTGRES_PORT", "54x")]).port("POSTGRES_PORT").unwrap_err().to_string();
        assert!(err.contains("environment variable POSTGRES_PORT") && err.contains("54x"), "{err}");
        assert!(env(&[("P", "0")]).port("P").is_err());
        assert_eq!(env(&[("P", "65535")]).port("P").unwrap(), Some(65535));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn secret_is_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        let value = Value { text: "hunter2".into(), origin: Origin::new("x"), rank: 0 };
        assert!(!format!("{value:?}").contains("hunter2"));
    }
}
