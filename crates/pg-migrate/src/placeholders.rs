//! Flyway placeholders: `${name}` in a script is replaced by its configured value before the
//! script runs (the checksum is of the file as written, as in Flyway).

use std::collections::BTreeMap;

/// The values and syntax of placeholders for one script.
#[derive(Debug)]
pub struct Placeholders<'a> {
    /// Lower-cased names to values, built-ins (`flyway:...`) included.
    pub values: BTreeMap<String, String>,
    pub prefix: &'a str,
    pub suffix: &'a str,
}

/// A placeholder without a value, and the 1-based line it is on.
#[derive(Debug, PartialEq, Eq)]
pub struct Unknown {
    pub name: String,
    pub line: usize,
}

impl Placeholders<'_> {
    /// Replaces every placeholder in `text`; every one must have a value.
    pub fn replace(&self, text: &str) -> Result<String, Unknown> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut consumed = 0;
        while let Some(start) = rest.find(self.prefix) {
            let after = &rest[start + self.prefix.len()..];
            let Some(end) = after.find(self.suffix) else { break };
            let name = &after[..end];
            // Only names without line breaks count; anything else is left as written.
            if name.is_empty() || name.contains(['\n', '\r']) {
                out.push_str(&rest[..start + self.prefix.len()]);
                consumed += start + self.prefix.len();
                rest = after;
                continue;
            }
            match self.values.get(&name.to_ascii_lowercase()) {
                Some(value) => {
                    out.push_str(&rest[..start]);
                    out.push_str(value);
                }
                None => {
                    let line = text[..consumed + start].matches('\n').count() + 1;
                    return Err(Unknown { name: name.to_owned(), line });
                }
            }
            let skip = start + self.prefix.len() + end + self.suffix.len();
            consumed += skip;
            rest = &rest[skip..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders() -> Placeholders<'static> {
        let values = BTreeMap::from([
            ("owner".to_owned(), "app".to_owned()),
            ("flyway:defaultschema".to_owned(), "public".to_owned()),
        ]);
        Placeholders { values, prefix: "${", suffix: "}" }
    }

    #[test]
    fn replaces_case_insensitively() {
        let text = "ALTER TABLE t OWNER TO ${Owner};\nSET search_path = ${flyway:defaultSchema};";
        assert_eq!(placeholders().replace(text).unwrap(), "ALTER TABLE t OWNER TO app;\nSET search_path = public;");
    }

    #[test]
    fn unknown_placeholder_names_its_line() {
        let err = placeholders().replace("SELECT 1;\nSELECT ${nope};").unwrap_err();
        assert_eq!(err, Unknown { name: "nope".into(), line: 2 });
    }

    #[test]
    fn custom_syntax_and_stray_prefixes() {
        let mut p = placeholders();
        p.prefix = "#[";
        p.suffix = "]";
        assert_eq!(p.replace("SELECT '${owner}', #[owner];").unwrap(), "SELECT '${owner}', app;");
        assert_eq!(placeholders().replace("SELECT '${'\n;").unwrap(), "SELECT '${'\n;");
    }
}
