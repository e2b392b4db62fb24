//! The `mongodb` section: databases, collections, indexes (TTL included) and users.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use futures::future::join_all;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{Error as DriverError, ErrorKind};
use serde::Deserialize;

use super::{Item, Mode, SectionReport, State, converge_state, guard_identity};
use crate::error::{ConnectError, Datastore, chain, with_timeout};
use crate::mongodb::MongoConfig;
use crate::settings::Secret;

/// The manifest's `mongodb` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// The deployment the section is for; a server with another identity is refused.
    #[serde(default)]
    pub expect: Expect,
    /// Databases with their collections, indexes and users.
    #[serde(default)]
    pub databases: Vec<Database>,
}

/// The identity the `mongodb` section pins: the replica set name, or for a standalone server its
/// host.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The replica set name `hello` reports (`setName`).
    pub replica_set: Option<String>,
}

/// A database, created by creating its collections.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The database's name (no `/`, `\`, `.`, space, `"` or `$`).
    pub name: String,
    /// Collections to create, with their indexes.
    #[serde(default)]
    pub collections: Vec<Collection>,
    /// Users defined on this database.
    #[serde(default)]
    pub users: Vec<User>,
}

/// A collection and its indexes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    /// The collection's name (no `$`, not `system.*`).
    pub name: String,
    /// Indexes to create; server indexes the manifest does not name are left alone.
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
    /// Whether the index rejects duplicate keys (default false).
    #[serde(default)]
    pub unique: bool,
    /// Whether documents without the indexed fields are left out (default false).
    #[serde(default)]
    pub sparse: bool,
    /// A TTL index: documents expire this many seconds after the indexed date; one key only.
    pub expire_after_seconds: Option<i64>,
    /// `partialFilterExpression`: only documents matching it are indexed.
    pub partial_filter: Option<serde_json::Value>,
}

/// A key pattern with its order kept.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexKeys(pub Vec<(String, IndexKey)>);

/// The direction or type of one field of a key pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexKey {
    /// `1`.
    Ascending,
    /// `-1`.
    Descending,
    /// `text`, `hashed`, `2d` or `2dsphere`.
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

/// A user of the database. An existing user keeps its password; roles the manifest names are
/// granted to it, roles it has besides are left alone (and reported).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user's name.
    pub name: String,
    /// Needed to create the user; an existing user keeps its password.
    #[serde(default, deserialize_with = "super::secret_opt")]
    pub password: Option<Secret>,
    /// Roles: `readWrite` (on this database) or `{ role: read, db: other }`.
    #[serde(default)]
    pub roles: Vec<RoleRef>,
}

/// A role a user has.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RoleRef {
    /// A role on the user's own database, such as `readWrite`.
    Here(String),
    /// A role on another database: `{ role: read, db: other }`.
    On {
        /// The role's name.
        role: String,
        /// The database the role is defined on.
        db: String,
    },
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

// Server error codes, as mongod numbers them.
const NAMESPACE_EXISTS: i32 = 48;
const INDEX_OPTIONS_CONFLICT: i32 = 85;
const INDEX_KEY_SPECS_CONFLICT: i32 = 86;
const USER_ALREADY_EXISTS: i32 = 51003;

/// Reads the server, compares it with `section`, and in [`Mode::Apply`] converges it.
///
/// Collections are compared concurrently. Indexes are matched by their ordered key pattern, not
/// their name. Known behaviour of secantusdb (the stack's server), checked against it:
/// - `create` of an existing collection answers ok instead of NamespaceExists (48); both count as
///   present;
/// - `collMod` turns a non-TTL single-field index into a TTL index (as mongod does since 5.1), so
///   a manifest TTL on an index without one is drift that apply converges; there is no way to
///   remove a TTL short of dropping the index, so a TTL the manifest lacks is a conflict;
/// - `createIndexes` refuses `text` and `hashed` keys (code 67), reported as a failure;
/// - it accepts a second index on the same keys that differs only in `unique`; with several
///   server indexes on the manifest's keys, the closest match is compared, and a TTL change
///   names the index rather than its key pattern;
/// - run `--standalone` (as the stack runs it), `hello` has neither `setName` nor `me`: the
///   identity is then the host of the configuration's URI.
pub async fn run(config: &MongoConfig, section: &Section, mode: Mode) -> SectionReport {
    let endpoint = config.endpoint();
    let mut report = SectionReport::new(Datastore::MongoDb, &endpoint, mode);
    let client = match config.client().await {
        Ok(client) => client,
        Err(e) => return report.failed(e.to_string()),
    };
    let budget = config.server_selection_timeout + config.connect_timeout;
    let hello = with_timeout(Datastore::MongoDb, &endpoint, budget, async {
        client
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(|e| ConnectError::failed(Datastore::MongoDb, &endpoint, e))
    })
    .await;
    let hello = match hello {
        Ok(hello) => hello,
        Err(e) => return report.failed(e.to_string()),
    };
    let (what, actual) = match hello.get_str("setName") {
        Ok(set) => ("replica set", set.to_owned()),
        Err(_) => ("host", hello.get_str("me").map(str::to_owned).unwrap_or_else(|_| endpoint.clone())),
    };
    if let Err(refused) = guard_identity(&mut report, what, section.expect.replica_set.as_deref(), &actual) {
        return report.failed(refused);
    }
    let databases = join_all(section.databases.iter().map(|db| run_database(&client, db, mode))).await;
    report.items.extend(databases.into_iter().flatten());
    report
}

async fn run_database(client: &mongodb::Client, spec: &Database, mode: Mode) -> Vec<Item> {
    let db = client.database(&spec.name);
    let existing = match db.list_collection_names().await {
        Ok(names) => Ok(names.into_iter().collect::<BTreeSet<_>>()),
        Err(e) => Err(format!("cannot list the collections of {}: {}", spec.name, describe(&e))),
    };
    let collections = join_all(spec.collections.iter().map(|c| run_collection(&db, c, existing.as_ref(), mode)));
    let (collections, users) = futures::join!(collections, run_users(&db, spec, mode));
    collections.into_iter().flatten().chain(users).collect()
}

async fn run_collection(
    db: &mongodb::Database,
    spec: &Collection,
    existing: Result<&BTreeSet<String>, &String>,
    mode: Mode,
) -> Vec<Item> {
    let qualified = format!("{}.{}", db.name(), spec.name);
    let index_name = |index: &Index| format!("{qualified}.{}", wanted_name(index));
    let fail_indexes = |items: &mut Vec<Item>, detail: &str| {
        items.extend(spec.indexes.iter().map(|i| Item::new("index", index_name(i), State::Failed, detail)));
    };
    let mut items = Vec::new();
    let present = match existing {
        Ok(names) => names.contains(&spec.name),
        Err(detail) => {
            items.push(Item::new("collection", &qualified, State::Failed, detail.as_str()));
            return items;
        }
    };
    if present {
        items.push(Item::ok("collection", &qualified));
    } else if mode.writes() {
        match db.create_collection(&spec.name).await {
            Ok(()) => items.push(Item::new("collection", &qualified, converge_state(mode, true), "")),
            Err(e) if error_code(&e) == Some(NAMESPACE_EXISTS) => {
                items.push(Item::new("collection", &qualified, State::Ok, "created meanwhile by another client"))
            }
            Err(e) => {
                items.push(Item::new("collection", &qualified, State::Failed, describe(&e)));
                fail_indexes(&mut items, "not created: its collection could not be created");
                return items;
            }
        }
    } else {
        items.push(Item::new("collection", &qualified, converge_state(mode, true), ""));
    }
    let server = if present || mode.writes() {
        match list_indexes(db, &spec.name).await {
            Ok(server) => server,
            Err(e) => {
                fail_indexes(&mut items, &format!("cannot list the indexes of {qualified}: {}", describe(&e)));
                return items;
            }
        }
    } else {
        Vec::new()
    };
    items.extend(converge_indexes(db, &qualified, spec, &server, mode).await);
    items
}

/// An index as `listIndexes` shows it.
#[derive(Debug)]
struct ServerIndex {
    name: String,
    keys: Vec<(String, IndexKey)>,
    unique: bool,
    sparse: bool,
    ttl: Option<i64>,
    partial: Option<Document>,
}

async fn list_indexes(db: &mongodb::Database, collection: &str) -> Result<Vec<ServerIndex>, DriverError> {
    let cursor = db.run_cursor_command(doc! { "listIndexes": collection }).await?;
    let docs: Vec<Document> = cursor.try_collect().await?;
    Ok(docs.iter().map(server_index).collect())
}

fn server_index(spec: &Document) -> ServerIndex {
    let keys = spec
        .get_document("key")
        .map(|keys| {
            keys.iter()
                .map(|(field, value)| {
                    let key = match (value, number(value)) {
                        (_, Some(n)) if n < 0.0 => IndexKey::Descending,
                        (_, Some(_)) => IndexKey::Ascending,
                        (Bson::String(s), None) => IndexKey::Special(s.clone()),
                        (other, None) => IndexKey::Special(other.to_string()),
                    };
                    (field.clone(), key)
                })
                .collect()
        })
        .unwrap_or_default();
    let flag = |name: &str| spec.get(name).is_some_and(|v| matches!(v, Bson::Boolean(true)) || number(v) == Some(1.0));
    ServerIndex {
        name: spec.get_str("name").unwrap_or_default().to_owned(),
        keys,
        unique: flag("unique"),
        sparse: flag("sparse"),
        ttl: spec.get("expireAfterSeconds").and_then(number).map(|n| n as i64),
        partial: spec.get_document("partialFilterExpression").ok().cloned(),
    }
}

fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        Bson::Decimal128(d) => d.to_string().parse().ok(),
        _ => None,
    }
}

/// The manifest's name of an index, else the server's default (`level_1_timestamp_-1`).
fn wanted_name(index: &Index) -> String {
    index.name.clone().unwrap_or_else(|| {
        index.keys.0.iter().map(|(field, key)| format!("{field}_{}", key_text(key))).collect::<Vec<_>>().join("_")
    })
}

fn key_text(key: &IndexKey) -> &str {
    match key {
        IndexKey::Ascending => "1",
        IndexKey::Descending => "-1",
        IndexKey::Special(kind) => kind,
    }
}

fn show_keys(keys: &[(String, IndexKey)]) -> String {
    let fields: Vec<String> = keys.iter().map(|(field, key)| format!("{field}: {}", key_text(key))).collect();
    format!("{{{}}}", fields.join(", "))
}

fn key_document(keys: &IndexKeys) -> Document {
    keys.0
        .iter()
        .map(|(field, key)| {
            let value = match key {
                IndexKey::Ascending => Bson::Int32(1),
                IndexKey::Descending => Bson::Int32(-1),
                IndexKey::Special(kind) => Bson::String(kind.clone()),
            };
            (field.clone(), value)
        })
        .collect()
}

fn partial_document(index: &Index) -> Result<Option<Document>, String> {
    let Some(value) = &index.partial_filter else { return Ok(None) };
    match Bson::try_from(value.clone()) {
        Ok(Bson::Document(doc)) => Ok(Some(doc)),
        Ok(other) => Err(format!("partial_filter must be a document, not {other}")),
        Err(e) => Err(format!("partial_filter is not valid: {e}")),
    }
}

/// Equality as the server sees it: numbers by value (1, 1i64 and 1.0 are one), documents
/// regardless of field order.
fn same_bson(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Document(a), Bson::Document(b)) => same_document(a, b),
        (Bson::Array(a), Bson::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_bson(a, b)),
        _ => match (number(a), number(b)) {
            (Some(a), Some(b)) => a == b,
            _ => a == b,
        },
    }
}

fn same_document(a: &Document, b: &Document) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_bson(v, w)))
}

fn show_ttl(ttl: Option<i64>) -> String {
    ttl.map_or_else(|| "no TTL".to_owned(), |s| format!("{s} s"))
}

/// What an index needs, decided from the server's indexes.
enum Verdict {
    Ok(String),
    Missing,
    /// Same keys and options; only the TTL differs (or the server index has none).
    Ttl {
        server: Option<i64>,
        want: i64,
        name: String,
        ambiguous: bool,
    },
    Conflict(String),
    Failed(String),
}

/// The options of an index other than its TTL, for comparison and messages.
fn options_text(unique: bool, sparse: bool, partial: Option<&Document>) -> Vec<String> {
    vec![
        format!("unique={unique}"),
        format!("sparse={sparse}"),
        partial.map_or_else(|| "no partialFilterExpression".to_owned(), |p| format!("partialFilterExpression={p}")),
    ]
}

fn judge(index: &Index, partial: Option<&Document>, server: &[ServerIndex]) -> Verdict {
    let name = wanted_name(index);
    let same_keys: Vec<&ServerIndex> = server.iter().filter(|s| s.keys == index.keys.0).collect();
    if same_keys.is_empty() {
        return match server.iter().find(|s| s.name == name) {
            Some(taken) => Verdict::Conflict(format!(
                "an index named {name} exists with keys {}; the manifest wants keys {} under that name; drop it by \
                 hand or give the manifest's index another name",
                show_keys(&taken.keys),
                show_keys(&index.keys.0)
            )),
            None => Verdict::Missing,
        };
    }
    let same_options = |s: &ServerIndex| {
        s.unique == index.unique
            && s.sparse == index.sparse
            && match (&s.partial, partial) {
                (None, None) => true,
                (Some(a), Some(b)) => same_document(a, b),
                _ => false,
            }
    };
    let renamed = |s: &ServerIndex| if s.name == name { String::new() } else { format!("exists as {}", s.name) };
    let mut candidates: Vec<&ServerIndex> = same_keys.iter().copied().filter(|s| same_options(s)).collect();
    candidates.sort_by_key(|s| (s.ttl != index.expire_after_seconds, s.name != name));
    let ambiguous = same_keys.len() > 1;
    match candidates.first() {
        Some(s) if s.ttl == index.expire_after_seconds => Verdict::Ok(renamed(s)),
        Some(s) => match (s.ttl, index.expire_after_seconds) {
            (server, Some(want)) => Verdict::Ttl { server, want, name: s.name.clone(), ambiguous },
            (Some(ttl), None) => Verdict::Conflict(format!(
                "an index with keys {} exists as {} with expireAfterSeconds={ttl}; the manifest wants no TTL, which \
                 collMod cannot remove; drop it by hand to change it",
                show_keys(&s.keys),
                s.name
            )),
            (None, None) => Verdict::Ok(renamed(s)),
        },
        None => {
            let s = same_keys.iter().find(|s| s.name == name).unwrap_or(&same_keys[0]);
            let theirs = options_text(s.unique, s.sparse, s.partial.as_ref());
            let ours = options_text(index.unique, index.sparse, partial);
            let (theirs, ours): (Vec<_>, Vec<_>) = theirs.into_iter().zip(ours).filter(|(a, b)| a != b).unzip();
            Verdict::Conflict(format!(
                "an index with keys {} exists as {} with {}; the manifest wants {}; drop it by hand to change it",
                show_keys(&s.keys),
                s.name,
                theirs.join(", "),
                ours.join(", ")
            ))
        }
    }
}

fn index_spec(index: &Index, partial: Option<&Document>) -> Document {
    let mut spec = doc! { "key": key_document(&index.keys), "name": wanted_name(index) };
    if index.unique {
        spec.insert("unique", true);
    }
    if index.sparse {
        spec.insert("sparse", true);
    }
    if let Some(ttl) = index.expire_after_seconds {
        spec.insert("expireAfterSeconds", i32::try_from(ttl).map_or(Bson::Int64(ttl), Bson::Int32));
    }
    if let Some(partial) = partial {
        spec.insert("partialFilterExpression", partial.clone());
    }
    spec
}

fn describe_index(index: &Index) -> String {
    let mut text = format!("keys {}", show_keys(&index.keys.0));
    if index.unique {
        text.push_str(", unique");
    }
    if index.sparse {
        text.push_str(", sparse");
    }
    if let Some(ttl) = index.expire_after_seconds {
        text.push_str(&format!(", expireAfterSeconds {ttl}"));
    }
    if index.partial_filter.is_some() {
        text.push_str(", partial");
    }
    text
}

async fn converge_indexes(
    db: &mongodb::Database,
    qualified: &str,
    spec: &Collection,
    server: &[ServerIndex],
    mode: Mode,
) -> Vec<Item> {
    let mut items = Vec::with_capacity(spec.indexes.len());
    let mut to_create = Vec::new();
    let mut to_modify = Vec::new();
    for (slot, index) in spec.indexes.iter().enumerate() {
        let name = format!("{qualified}.{}", wanted_name(index));
        let (partial, verdict) = match partial_document(index) {
            Ok(partial) => {
                let verdict = judge(index, partial.as_ref(), server);
                (partial, verdict)
            }
            Err(e) => (None, Verdict::Failed(e)),
        };
        let item = match verdict {
            Verdict::Ok(detail) => Item::new("index", name, State::Ok, detail),
            Verdict::Missing => {
                to_create.push((slot, index_spec(index, partial.as_ref())));
                Item::new("index", name, converge_state(mode, true), describe_index(index))
            }
            Verdict::Ttl { server, want, name: server_name, ambiguous } => {
                let mut detail = format!("server {}, manifest {want} s", show_ttl(server));
                if server_name != wanted_name(index) {
                    detail.push_str(&format!(" (exists as {server_name})"));
                }
                if server.is_none_or(|s| s > want) {
                    detail.push_str(&format!(
                        "; documents older than {want} s are deleted at the server's next TTL sweep"
                    ));
                }
                let target = if ambiguous {
                    doc! { "name": &server_name }
                } else {
                    doc! { "keyPattern": key_document(&index.keys) }
                };
                to_modify.push((slot, target, want));
                Item::new("index", name, converge_state(mode, false), detail)
            }
            Verdict::Conflict(detail) => Item::new("index", name, State::Conflict, detail),
            Verdict::Failed(detail) => Item::new("index", name, State::Failed, detail),
        };
        items.push(item);
    }
    if !mode.writes() {
        return items;
    }
    if !to_create.is_empty() {
        let specs: Vec<Document> = to_create.iter().map(|(_, spec)| spec.clone()).collect();
        let all = db.run_command(doc! { "createIndexes": &spec.name, "indexes": specs }).await;
        match all {
            Ok(_) => {}
            Err(e) if to_create.len() == 1 => settle_create(&mut items[to_create[0].0], &e),
            // One of them was refused, and the batch with it: create them one by one to tell which.
            Err(_) => {
                for (slot, index) in &to_create {
                    let one = db.run_command(doc! { "createIndexes": &spec.name, "indexes": [index.clone()] }).await;
                    if let Err(e) = one {
                        settle_create(&mut items[*slot], &e);
                    }
                }
            }
        }
    }
    for (slot, target, want) in to_modify {
        let mut index = target;
        index.insert("expireAfterSeconds", i32::try_from(want).map_or(Bson::Int64(want), Bson::Int32));
        if let Err(e) = db.run_command(doc! { "collMod": &spec.name, "index": index }).await {
            let item = &mut items[slot];
            item.state = State::Failed;
            item.detail = format!("{}; collMod failed: {}", item.detail, describe(&e));
        }
    }
    items
}

/// A `createIndexes` refused: a conflict when the server says so (an index created meanwhile by
/// someone else), else a failure.
fn settle_create(item: &mut Item, error: &DriverError) {
    item.state = match error_code(error) {
        Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT) => State::Conflict,
        _ => State::Failed,
    };
    item.detail = describe(error);
}

async fn run_users(db: &mongodb::Database, spec: &Database, mode: Mode) -> Vec<Item> {
    if spec.users.is_empty() {
        return Vec::new();
    }
    let server = match read_users(db, doc! { "usersInfo": 1 }).await {
        Ok(server) => server,
        Err(e) => {
            let detail = format!("cannot read the users of {}: {}", spec.name, describe(&e));
            return spec
                .users
                .iter()
                .map(|u| Item::new("user", format!("{}.{}", spec.name, u.name), State::Failed, detail.as_str()))
                .collect();
        }
    };
    join_all(spec.users.iter().map(|user| converge_user(db, user, server.get(&user.name).cloned(), mode))).await
}

type Roles = BTreeSet<(String, String)>;

/// The users of `db` that `command` (a `usersInfo`) returns, with their roles.
async fn read_users(db: &mongodb::Database, command: Document) -> Result<BTreeMap<String, Roles>, DriverError> {
    let answer = db.run_command(command).await?;
    let mut users = BTreeMap::new();
    for user in answer.get_array("users").map(Vec::as_slice).unwrap_or_default() {
        let Some(user) = user.as_document() else { continue };
        if user.get_str("db").is_ok_and(|d| d != db.name()) {
            continue;
        }
        let roles = user
            .get_array("roles")
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(Bson::as_document)
            .filter_map(|r| Some((r.get_str("role").ok()?.to_owned(), r.get_str("db").ok()?.to_owned())))
            .collect();
        if let Ok(name) = user.get_str("user") {
            users.insert(name.to_owned(), roles);
        }
    }
    Ok(users)
}

fn show_roles(roles: &Roles) -> String {
    let roles: Vec<String> = roles.iter().map(|(role, db)| format!("{role}@{db}")).collect();
    format!("[{}]", roles.join(", "))
}

async fn converge_user(db: &mongodb::Database, user: &User, server: Option<Roles>, mode: Mode) -> Item {
    let name = format!("{}.{}", db.name(), user.name);
    let wanted: Roles = user
        .roles
        .iter()
        .map(|role| match role {
            RoleRef::Here(role) => (role.clone(), db.name().to_owned()),
            RoleRef::On { role, db } => (role.clone(), db.clone()),
        })
        .collect();
    let roles_bson: Vec<Document> = wanted.iter().map(|(role, db)| doc! { "role": role, "db": db }).collect();
    let server = match server {
        Some(server) => server,
        None => {
            let Some(password) = &user.password else {
                return Item::new(
                    "user",
                    name,
                    State::Failed,
                    format!(
                        "missing, and no password given for user {}; set its password in the manifest to create it",
                        user.name
                    ),
                );
            };
            let detail = format!("roles {}", show_roles(&wanted));
            if !mode.writes() {
                return Item::new("user", name, converge_state(mode, true), detail);
            }
            let command = doc! { "createUser": &user.name, "pwd": password.expose(), "roles": roles_bson.clone() };
            match db.run_command(command).await {
                Ok(_) => return Item::new("user", name, converge_state(mode, true), detail),
                Err(e) if error_code(&e) == Some(USER_ALREADY_EXISTS) => {
                    match read_users(db, doc! { "usersInfo": &user.name }).await {
                        Ok(mut found) => match found.remove(&user.name) {
                            Some(roles) => roles,
                            None => return Item::new("user", name, State::Failed, redact(describe(&e), password)),
                        },
                        Err(e) => return Item::new("user", name, State::Failed, redact(describe(&e), password)),
                    }
                }
                Err(e) => return Item::new("user", name, State::Failed, redact(describe(&e), password)),
            }
        }
    };
    let missing: Roles = wanted.difference(&server).cloned().collect();
    let extra: Roles = server.difference(&wanted).cloned().collect();
    // Roles granted outside the manifest are left alone (revoking them could cut a service off);
    // the report names them.
    let extra_note = if extra.is_empty() {
        String::new()
    } else {
        format!("; also has {}, which the manifest does not name (left alone)", show_roles(&extra))
    };
    if missing.is_empty() {
        return Item::new("user", name, State::Ok, extra_note.trim_start_matches("; ").to_owned());
    }
    let detail = format!("lacks {}{extra_note}", show_roles(&missing));
    if !mode.writes() {
        return Item::new("user", name, converge_state(mode, false), detail);
    }
    let grant: Vec<Document> = missing.iter().map(|(role, db)| doc! { "role": role, "db": db }).collect();
    match db.run_command(doc! { "grantRolesToUser": &user.name, "roles": grant }).await {
        Ok(_) => Item::new("user", name, converge_state(mode, false), detail),
        Err(e) => {
            Item::new("user", name, State::Failed, format!("{detail}; grantRolesToUser failed: {}", describe(&e)))
        }
    }
}

/// Removes a password from a message, should the server ever quote it.
fn redact(text: String, password: &Secret) -> String {
    if password.expose().is_empty() { text } else { text.replace(password.expose(), "[redacted]") }
}

fn error_code(error: &DriverError) -> Option<i32> {
    match &*error.kind {
        ErrorKind::Command(e) => Some(e.code),
        _ => None,
    }
}

/// A driver error on one line; a server's refusal as its own words and code.
fn describe(error: &DriverError) -> String {
    match &*error.kind {
        ErrorKind::Command(e) => format!("{} (code {} {})", e.message, e.code, e.code_name),
        _ => chain(error),
    }
}
