//! Migration versions as Flyway reads them: parts separated by `.` or `_`, compared numerically,
//! trailing zero parts ignored (`1.0` = `1`, `001` = `1`, `1.1` < `1.10` < `2`).

use std::cmp::Ordering;
use std::fmt;

/// A migration version. Equality and order are numeric; [`Version::as_str`] keeps the text as
/// written (with `_` turned into `.`), which is what the history table stores.
///
/// ```rust
/// use pg_migrate::Version;
///
/// # fn main() -> Result<(), String> {
/// assert!(Version::parse("1_1")? < Version::parse("1_10")?);
/// assert!(Version::parse("1_10")? < Version::parse("2")?);
/// assert_eq!(Version::parse("001")?, Version::parse("1.0")?);
/// assert_eq!(Version::parse("2024_01_15")?.as_str(), "2024.01.15");
/// assert!(Version::parse("1a").is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Version {
    text: String,
    /// Numeric parts without trailing zeros; each part is the digits without leading zeros.
    parts: Vec<String>,
}

impl Version {
    /// Parses `1`, `1.2.3`, `1_2`, `001`, `2024.01.15.1200`.
    pub fn parse(text: &str) -> Result<Version, String> {
        let normalized = text.replace('_', ".");
        if normalized.is_empty() {
            return Err("the version is empty".into());
        }
        let mut parts = Vec::new();
        for part in normalized.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("version {text:?} may only contain digits separated by '.' or '_'"));
            }
            let trimmed = part.trim_start_matches('0');
            parts.push(if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() });
        }
        while parts.len() > 1 && parts.last().is_some_and(|p| p == "0") {
            parts.pop();
        }
        Ok(Version { text: normalized, parts })
    }

    /// The version as stored in `flyway_schema_history.version`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    // Digit strings without leading zeros: a longer one is larger.
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        let len = self.parts.len().max(other.parts.len());
        for i in 0..len {
            let a = self.parts.get(i).map(String::as_str).unwrap_or("0");
            let b = other.parts.get(i).map(String::as_str).unwrap_or("0");
            match compare_part(a, b) {
                Ordering::Equal => continue,
                other => return other,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn numeric_order() {
        assert!(v("1_1") < v("1_10"));
        assert!(v("1_10") < v("2"));
        assert!(v("1.9") < v("1.10"));
        assert!(v("9") < v("10"));
        assert!(v("99999999999999999999999") < v("100000000000000000000000"));
    }

    #[test]
    fn equality_ignores_leading_and_trailing_zeros() {
        assert_eq!(v("001"), v("1"));
        assert_eq!(v("1.0"), v("1"));
        assert_eq!(v("1_0_0"), v("1"));
        assert_ne!(v("1.0.1"), v("1"));
        assert_eq!(v("001").as_str(), "001");
        assert_eq!(v("1_2").as_str(), "1.2");
    }

    #[test]
    fn rejects_non_numeric() {
        assert!(Version::parse("1a").is_err());
        assert!(Version::parse("1..2").is_err());
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1.").is_err());
    }
}
