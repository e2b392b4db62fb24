//! The `mongodb` section: databases, collections, indexes (TTL included) and users.

use serde::Deserialize;

use super::{Mode, SectionReport};
use crate::mongodb::MongoConfig;
use crate::settings::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub databases: Vec<Database>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The replica set name `hello` reports (`setName`).
    pub replica_set: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub name: String,
    #[serde(default)]
    pub collections: Vec<Collection>,
    #[serde(default)]
    pub users: Vec<User>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    pub name: String,
    #[serde(default)]
    pub indexes: Vec<Index>,
}

/// An index, matched on the server by its key pattern (not its name).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// The key pattern in order: `{ level: 1, timestamp: 1 }`; values 1, -1, or a string such
    /// as `text`, `hashed` or `2dsphere`.
    pub keys: IndexKeys,
    /// The server's default (`level_1_timestamp_1`) when not given.
    pub name: Option<String>,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub sparse: bool,
    pub expire_after_seconds: Option<i64>,
    pub partial_filter: Option<serde_json::Value>,
}

/// A key pattern with its order kept.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexKeys(pub Vec<(String, IndexKey)>);

#[derive(Clone, Debug, PartialEq)]
pub enum IndexKey {
    Ascending,
    Descending,
    Special(String),
}

impl<'de> Deserialize<'de> for IndexKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IndexKeys, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = IndexKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key pattern such as { level: 1, timestamp: -1 }")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<IndexKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some((field, value)) = map.next_entry::<String, super::Scalar>()? {
                    let key = match value.0.as_str() {
                        "1" => IndexKey::Ascending,
                        "-1" => IndexKey::Descending,
                        "text" | "hashed" | "2d" | "2dsphere" => IndexKey::Special(value.0.clone()),
                        other => {
                            return Err(serde::de::Error::custom(format!(
                                "index key {field}: {other:?} is not 1, -1, text, hashed, 2d or 2dsphere"
                            )));
                        }
                    };
                    if keys.iter().any(|(f, _)| f == &field) {
                        return Err(serde::de::Error::custom(format!("index key {field} is given twice")));
                    }
                    keys.push((field, key));
                }
                if keys.is_empty() {
                    return Err(serde::de::Error::custom("an index needs at least one key"));
                }
                Ok(IndexKeys(keys))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// Needed to create the user; an existing user keeps its password.
    #[serde(default, deserialize_with = "super::secret_opt")]
    pub password: Option<Secret>,
    /// Roles: `readWrite` (on this database) or `{ role: read, db: other }`.
    #[serde(default)]
    pub roles: Vec<RoleRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RoleRef {
    Here(String),
    On { role: String, db: String },
}

impl Section {
    pub(crate) fn validate(&self) -> Result<(), String> {
        for db in &self.databases {
            if db.name.is_empty() || db.name.contains(['/', '\\', '.', ' ', '"', '$']) {
                return Err(format!("database name {:?} is not valid", db.name));
            }
            for c in &db.collections {
                if c.name.is_empty() || c.name.contains('$') || c.name.starts_with("system.") {
                    return Err(format!("{}: collection name {:?} is not valid", db.name, c.name));
                }
                for index in &c.indexes {
                    if index.expire_after_seconds.is_some_and(|s| s < 0) {
                        return Err(format!("{}.{}: expire_after_seconds must not be negative", db.name, c.name));
                    }
                    if index.expire_after_seconds.is_some() && index.keys.0.len() != 1 {
                        return Err(format!("{}.{}: a TTL index has exactly one key", db.name, c.name));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads the server, compares it with `section`, and in [`Mode::Apply`] converges it.
pub async fn run(config: &MongoConfig, section: &Section, mode: Mode) -> SectionReport {
    let _ = section;
    SectionReport::new(crate::Datastore::MongoDb, config.endpoint(), mode).failed("not implemented yet")
}
