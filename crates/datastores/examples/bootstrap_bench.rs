//! The benchmark of `bench/bootstrap.sh`: `check` of the bootstrap manifest against the local
//! stack, timed against the same reads made one object at a time (a loop of single admin calls,
//! as the seed's shell tools read: `psql -c`, mongosh `getIndexes()`, `redis-cli CONFIG GET`,
//! `kafka-topics --describe` and `kafka-configs --describe` per topic).
//!
//! `bootstrap_bench [--rounds N] [--keep]` applies the built-in manifest and a large one (200
//! Kafka topics, 100 MongoDB indexes, 50 PostgreSQL roles) once, untimed; then times N rounds of
//! `check` of each against the one-by-one loop over the same manifest, and prints a table and a
//! JSON line. It reads the stack's environment (`eval "$(cargo xtask stack env)"`). The Kafka
//! topics are left in place (DeleteTopics on the stack's tansu deletes every topic); the MongoDB
//! database and the PostgreSQL database and roles of the large manifest are dropped at the end
//! unless `--keep`.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datastores::bootstrap::{self, BUILTIN, Manifest, Mode, SectionReport};
use datastores::pgadmin::{quote_ident, quote_literal};
use datastores::{
    Datastore, DatastoresConfig, KafkaConfig, MongoConfig, PostgresConfig, RedisConfig, RedisConnection, Settings,
    Source,
};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde_json::json;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

type Admin = AdminClient<DefaultClientContext>;

const SECTIONS: [Datastore; 4] = [Datastore::Postgres, Datastore::MongoDb, Datastore::Redis, Datastore::Kafka];
const BENCH_DB: &str = "bench_bootstrap";
const ROLES: usize = 50;
const TOPICS: usize = 200;
const COLLECTIONS: usize = 10;
const INDEXES_PER_COLLECTION: usize = 10;

struct Args {
    rounds: usize,
    keep: bool,
}

fn args() -> Args {
    let mut parsed = Args { rounds: 5, keep: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => parsed.rounds = it.next().and_then(|n| n.parse().ok()).expect("--rounds takes a number"),
            "--keep" => parsed.keep = true,
            other if other.starts_with("--rounds=") => {
                parsed.rounds = other["--rounds=".len()..].parse().expect("--rounds takes a number")
            }
            other => panic!("unknown argument {other}; usage: bootstrap_bench [--rounds N] [--keep]"),
        }
    }
    assert!(parsed.rounds > 0, "--rounds must be at least 1");
    parsed
}

/// The lines of `text` under the line equal to `header`, the header included: every following
/// line that is blank or indented deeper.
fn block(text: &str, header: &str) -> String {
    let indent = header.len() - header.trim_start().len();
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if !inside {
            inside = line == header;
            if inside {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        let deeper = line.trim().is_empty() || line.len() - line.trim_start().len() > indent;
        if !deeper {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(!out.is_empty(), "the built-in manifest has no {header:?} block");
    out
}

/// The large manifest: 50 roles, a database with 2 schemas and grants for 10 roles, the built-in
/// settings; 10 collections of 10 indexes; the built-in redis section; 200 topics.
fn large_manifest() -> String {
    let mut y = String::from("postgres:\n  roles:\n");
    for i in 0..ROLES {
        writeln!(y, "    - name: bench_bootstrap_role_{i:02}\n      login: false").unwrap();
    }
    writeln!(
        y,
        "  databases:\n    - name: {BENCH_DB}\n      owner: bench_bootstrap_role_00\n      schemas: [bench_a, bench_b]\n      \
         grants:"
    )
    .unwrap();
    for i in 1..=10 {
        let access = if i % 2 == 1 { "read_write" } else { "read_only" };
        writeln!(y, "        - role: bench_bootstrap_role_{i:02}\n          access: {access}").unwrap();
    }
    y.push_str(&block(BUILTIN, "  settings:"));
    writeln!(y, "mongodb:\n  databases:\n    - name: {BENCH_DB}\n      collections:").unwrap();
    for c in 0..COLLECTIONS {
        writeln!(y, "        - name: events_{c:02}\n          indexes:").unwrap();
        for i in 0..INDEXES_PER_COLLECTION {
            let index = match i {
                0 => format!("{{ keys: {{ created_{c}: 1 }}, expire_after_seconds: 86400 }}"),
                1..=4 => format!("{{ keys: {{ attr_{c}_{i}: 1 }} }}"),
                5..=8 => format!("{{ keys: {{ attr_{c}_{i}: 1, created_{c}: -1 }} }}"),
                _ => format!("{{ keys: {{ external_{c}: 1 }}, unique: true }}"),
            };
            writeln!(y, "            - {index}").unwrap();
        }
    }
    y.push_str(&block(BUILTIN, "redis:"));
    y.push_str("kafka:\n  replication_factor: ${KAFKA_REPLICATION_FACTOR:-1}\n  topics:\n");
    for t in 0..TOPICS {
        let retention = 86_400_000u64 * (1 + t as u64 % 7);
        writeln!(
            y,
            "    - name: bench-bootstrap-topic-{t:03}\n      partitions: 3\n      configs:\n        retention.ms: \
             \"{retention}\"\n        cleanup.policy: delete"
        )
        .unwrap();
    }
    y
}

fn objects(reports: &[SectionReport]) -> usize {
    reports.iter().map(|r| r.items.len()).sum()
}

fn section_objects(reports: &[SectionReport], datastore: Datastore) -> usize {
    reports.iter().filter(|r| r.datastore == datastore).map(|r| r.items.len()).sum()
}

fn assert_no_errors(what: &str, reports: &[SectionReport]) {
    for report in reports {
        assert!(!report.skipped, "{what}: the {} section was skipped", report.datastore);
        if report.has_errors() {
            let items: Vec<String> = report
                .items
                .iter()
                .filter(|i| i.state.is_error())
                .take(10)
                .map(|i| format!("{} {} {}: {}", i.state, i.kind, i.name, i.detail))
                .collect();
            panic!("{what}: {} has errors: {:?} {items:#?}", report.datastore, report.error);
        }
    }
}

fn assert_no_drift(what: &str, reports: &[SectionReport]) {
    for report in reports {
        if report.drift() > 0 {
            let items: Vec<String> = report
                .items
                .iter()
                .filter(|i| i.state.is_drift())
                .take(10)
                .map(|i| format!("{} {} {}: {}", i.state, i.kind, i.name, i.detail))
                .collect();
            panic!("{what}: {} has drift {}: {:?} {items:#?}", report.datastore, report.drift(), report.error);
        }
    }
}

/// What one datastore's loop did.
#[derive(Clone, Debug, Default)]
struct Leg {
    calls: usize,
    objects: usize,
    absent: Vec<String>,
    elapsed: Duration,
}

impl Leg {
    fn read(&mut self, what: impl FnOnce() -> String, present: bool) {
        self.objects += 1;
        if !present {
            self.absent.push(what());
        }
    }
}

/// The clients of the one-by-one loop: one per datastore, plus one per PostgreSQL database of
/// the manifest (PostgreSQL's catalogs of schemas and privileges are per database).
struct Clients {
    postgres: Client,
    databases: BTreeMap<String, Client>,
    mongodb: mongodb::Client,
    redis: RedisConnection,
    kafka: Arc<Admin>,
}

struct Configs<'a> {
    postgres: &'a PostgresConfig,
    mongodb: &'a MongoConfig,
    redis: &'a RedisConfig,
    kafka: &'a KafkaConfig,
}

async fn pg_connect(config: &PostgresConfig, manifest: &Manifest) -> (Client, BTreeMap<String, Client>) {
    let main = config.connect().await.unwrap();
    let mut databases = BTreeMap::new();
    for db in manifest.postgres.iter().flat_map(|s| &s.databases) {
        databases.insert(db.name.clone(), config.with_dbname(&db.name).connect().await.unwrap());
    }
    (main, databases)
}

fn kafka_admin(config: &KafkaConfig) -> Arc<Admin> {
    Arc::new(config.client_config().create().unwrap())
}

/// Opens every client and makes one request on each, so that the connections are up.
async fn open_clients(configs: &Configs<'_>, manifest: &Manifest) -> Clients {
    let (postgres, databases) = pg_connect(configs.postgres, manifest).await;
    let mongodb = configs.mongodb.client().await.unwrap();
    mongodb.database("admin").run_command(doc! { "ping": 1 }).await.unwrap();
    let mut redis = configs.redis.connect().await.unwrap();
    redis_query(&mut redis, &redis::cmd("PING")).await;
    let kafka = kafka_admin(configs.kafka);
    let timeout = configs.kafka.request_timeout;
    tokio::task::block_in_place(|| kafka.inner().fetch_metadata(None, timeout).unwrap());
    Clients { postgres, databases, mongodb, redis, kafka }
}

async fn simple(client: &Client, sql: &str, leg: &mut Leg) -> Vec<SimpleQueryRow> {
    leg.calls += 1;
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}

fn text_array(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote_literal(i)).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

/// PostgreSQL, one query per object: a role, a database, an extension, a schema, a setting; a
/// grant as three queries (CONNECT and USAGE, privileges on existing tables and sequences,
/// default privileges).
async fn pg_leg(main: &Client, databases: &BTreeMap<String, Client>, section: &bootstrap::postgres::Section) -> Leg {
    let mut leg = Leg::default();
    for role in &section.roles {
        let sql = format!(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, \
             rolconnlimit FROM pg_roles WHERE rolname = {}",
            quote_literal(&role.name)
        );
        let rows = simple(main, &sql, &mut leg).await;
        let login = if role.login { "t" } else { "f" };
        leg.read(|| format!("role {}", role.name), rows.first().and_then(|r| r.get(1)) == Some(login));
    }
    for db in &section.databases {
        let sql =
            format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {}", quote_literal(&db.name));
        let rows = simple(main, &sql, &mut leg).await;
        let actual_owner = rows.first().and_then(|r| r.get(0)).map(str::to_owned);
        let owner = db.owner.clone().or(actual_owner.clone()).unwrap_or_default();
        leg.read(|| format!("database {}", db.name), actual_owner.as_deref() == Some(owner.as_str()));
        let conn = &databases[&db.name];
        for ext in &db.extensions {
            let sql = format!("SELECT extversion FROM pg_extension WHERE extname = {}", quote_literal(ext));
            let rows = simple(conn, &sql, &mut leg).await;
            leg.read(|| format!("extension {ext}"), rows.len() == 1);
        }
        for schema in &db.schemas {
            let sql =
                format!("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = {}", quote_literal(schema));
            let rows = simple(conn, &sql, &mut leg).await;
            leg.read(|| format!("schema {schema}"), rows.first().and_then(|r| r.get(0)) == Some(owner.as_str()));
        }
        let sql = "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', \
                   d.datdba))) a WHERE d.datname = current_database() AND a.grantee = 0 AND a.privilege_type IN \
                   ('CONNECT', 'TEMPORARY'))";
        let rows = simple(conn, sql, &mut leg).await;
        leg.read(|| format!("{} PUBLIC", db.name), rows.first().and_then(|r| r.get(0)) == Some("f"));
        for grant in &db.grants {
            let (tables, sequences): (&[&str], &[&str]) = match grant.access {
                bootstrap::postgres::Access::ReadWrite => {
                    (&["SELECT", "INSERT", "UPDATE", "DELETE"], &["USAGE", "SELECT"])
                }
                bootstrap::postgres::Access::ReadOnly => (&["SELECT"], &[]),
            };
            let role = quote_literal(&grant.role);
            for schema in grant.schemas.as_ref().unwrap_or(&db.schemas) {
                let schema_lit = quote_literal(schema);
                let sql = format!(
                    "SELECT has_database_privilege({role}, current_database(), 'CONNECT') AND \
                     has_schema_privilege({role}, {schema_lit}, 'USAGE')"
                );
                let usage = simple(conn, &sql, &mut leg).await;
                let sql = format!(
                    "SELECT (SELECT count(*) FROM pg_class c CROSS JOIN unnest({t}) p WHERE c.relnamespace = \
                     {schema_lit}::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT \
                     has_table_privilege({role}, c.oid, p)) + (SELECT count(*) FROM pg_class c CROSS JOIN \
                     unnest({s}) p WHERE c.relnamespace = {schema_lit}::regnamespace AND c.relkind = 'S' AND NOT \
                     has_sequence_privilege({role}, c.oid, p))",
                    t = text_array(tables),
                    s = text_array(sequences)
                );
                let lacking = simple(conn, &sql, &mut leg).await;
                let sql = format!(
                    "SELECT count(DISTINCT (d.defaclobjtype, a.privilege_type)) FROM pg_default_acl d, \
                     aclexplode(d.defaclacl) a WHERE d.defaclrole = {owner}::regrole AND d.defaclnamespace = \
                     {schema_lit}::regnamespace AND a.grantee = {role}::regrole AND ((d.defaclobjtype = 'r' AND \
                     a.privilege_type = ANY({t})) OR (d.defaclobjtype = 'S' AND a.privilege_type = ANY({s})))",
                    owner = quote_literal(&owner),
                    t = text_array(tables),
                    s = text_array(sequences)
                );
                let defaults = simple(conn, &sql, &mut leg).await;
                let wanted_defaults = (tables.len() + sequences.len()).to_string();
                let granted = usage.first().and_then(|r| r.get(0)) == Some("t")
                    && lacking.first().and_then(|r| r.get(0)) == Some("0")
                    && defaults.first().and_then(|r| r.get(0)) == Some(wanted_defaults.as_str());
                leg.read(|| format!("grant {}.{schema} to {}", db.name, grant.role), granted);
            }
        }
    }
    for name in section.settings.keys() {
        let rows = simple(main, &format!("SHOW {}", quote_ident(name)), &mut leg).await;
        leg.read(|| format!("setting {name}"), rows.len() == 1);
    }
    leg
}

fn key_pattern(keys: &Document) -> Vec<(String, String)> {
    keys.iter()
        .map(|(field, value)| {
            let value = match value {
                Bson::Int32(n) => if *n < 0 { "-1" } else { "1" }.to_owned(),
                Bson::Int64(n) => if *n < 0 { "-1" } else { "1" }.to_owned(),
                Bson::Double(n) => if *n < 0.0 { "-1" } else { "1" }.to_owned(),
                Bson::String(s) => s.clone(),
                other => other.to_string(),
            };
            (field.clone(), value)
        })
        .collect()
}

fn manifest_pattern(keys: &bootstrap::mongodb::IndexKeys) -> Vec<(String, String)> {
    keys.0
        .iter()
        .map(|(field, key)| {
            let value = match key {
                bootstrap::mongodb::IndexKey::Ascending => "1".to_owned(),
                bootstrap::mongodb::IndexKey::Descending => "-1".to_owned(),
                bootstrap::mongodb::IndexKey::Special(kind) => kind.clone(),
            };
            (field.clone(), value)
        })
        .collect()
}

/// MongoDB, per collection one listCollections filtered by its name and one listIndexes (the
/// mongosh `getIndexes()` loop); per user one usersInfo.
async fn mongodb_leg(client: &mongodb::Client, section: &bootstrap::mongodb::Section) -> Leg {
    let mut leg = Leg::default();
    for spec in &section.databases {
        let db = client.database(&spec.name);
        for collection in &spec.collections {
            leg.calls += 1;
            let names = db.list_collection_names().filter(doc! { "name": &collection.name }).await.unwrap();
            leg.read(|| format!("collection {}.{}", spec.name, collection.name), names.len() == 1);
            leg.calls += 1;
            let cursor = db.run_cursor_command(doc! { "listIndexes": &collection.name }).await.unwrap();
            let indexes: Vec<Document> = cursor.try_collect().await.unwrap();
            let server: Vec<Vec<(String, String)>> =
                indexes.iter().filter_map(|i| i.get_document("key").ok()).map(key_pattern).collect();
            for index in &collection.indexes {
                let wanted = manifest_pattern(&index.keys);
                leg.read(|| format!("index {}.{} {wanted:?}", spec.name, collection.name), server.contains(&wanted));
            }
        }
        for user in &spec.users {
            leg.calls += 1;
            let answer = db.run_command(doc! { "usersInfo": { "user": &user.name, "db": &spec.name } }).await.unwrap();
            let found = answer.get_array("users").is_ok_and(|u| !u.is_empty());
            leg.read(|| format!("user {}.{}", spec.name, user.name), found);
        }
    }
    leg
}

async fn redis_query(connection: &mut RedisConnection, command: &redis::Cmd) -> redis::Value {
    let reply: redis::RedisResult<redis::Value> = match connection {
        RedisConnection::Single(c) => command.query_async(c).await,
        RedisConnection::Cluster(c) => command.query_async(c).await,
    };
    reply.unwrap()
}

/// Redis, one `CONFIG GET` per parameter and `ACL GETUSER default`.
async fn redis_leg(connection: &mut RedisConnection, section: &bootstrap::redis::Section) -> Leg {
    let mut leg = Leg::default();
    if section.require_auth {
        leg.calls += 1;
        let reply = redis_query(connection, redis::cmd("ACL").arg("GETUSER").arg("default")).await;
        leg.read(|| "auth".to_owned(), reply != redis::Value::Nil);
    }
    let mut names = Vec::new();
    if section.maxmemory.is_some() {
        names.push("maxmemory");
    }
    if section.maxmemory_policy.is_some() {
        names.push("maxmemory-policy");
    }
    if let Some(p) = &section.persistence {
        for (name, given) in [("appendonly", p.appendonly.is_some()), ("appendfsync", p.appendfsync.is_some())] {
            if given {
                names.push(name);
            }
        }
        if p.save.is_some() {
            names.push("save");
        }
    }
    for name in names {
        leg.calls += 1;
        let reply = redis_query(connection, redis::cmd("CONFIG").arg("GET").arg(name)).await;
        let present = match &reply {
            redis::Value::Array(items) => !items.is_empty(),
            redis::Value::Map(entries) => !entries.is_empty(),
            _ => false,
        };
        leg.read(|| format!("config {name}"), present);
    }
    leg
}

/// Kafka, per topic one metadata request for that topic and one DescribeConfigs of that topic.
/// Blocking: run off the async workers.
fn kafka_leg(admin: &Admin, section: &bootstrap::kafka::Section, timeout: Duration) -> Leg {
    let mut leg = Leg::default();
    let options = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    for topic in &section.topics {
        leg.calls += 1;
        let metadata = admin.inner().fetch_metadata(Some(&topic.name), timeout).unwrap();
        let shape = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic.name && t.error().is_none())
            .map(|t| (t.partitions().len(), t.partitions().first().map_or(0, |p| p.replicas().len())));
        let wanted = (topic.partitions as usize, usize::from(section.factor(topic)));
        leg.read(|| format!("topic {}", topic.name), shape == Some(wanted));
        leg.calls += 1;
        let specifier = [ResourceSpecifier::Topic(&topic.name)];
        let described = futures::executor::block_on(admin.describe_configs(&specifier, &options)).unwrap();
        let entries = match described.into_iter().next() {
            Some(Ok(resource)) => resource.entries,
            _ => Vec::new(),
        };
        for (key, value) in &topic.configs {
            let present = entries.iter().any(|e| e.name == *key && e.value.as_deref() == Some(value.0.as_str()));
            leg.read(|| format!("config {}/{key}", topic.name), present);
        }
    }
    leg
}

/// One datastore's loop, timed: with `open` none, its client is opened (and closed) inside the
/// timing, as `check` does; else the open client is reused.
async fn timed_leg(
    datastore: Datastore,
    manifest: &Manifest,
    configs: &Configs<'_>,
    open: Option<&mut Clients>,
) -> Option<Leg> {
    let started = Instant::now();
    let mut leg = match (datastore, open) {
        (Datastore::Postgres, open) => {
            let section = manifest.postgres.as_ref()?;
            match open {
                Some(c) => pg_leg(&c.postgres, &c.databases, section).await,
                None => {
                    let (main, databases) = pg_connect(configs.postgres, manifest).await;
                    pg_leg(&main, &databases, section).await
                }
            }
        }
        (Datastore::MongoDb, open) => {
            let section = manifest.mongodb.as_ref()?;
            match open {
                Some(c) => mongodb_leg(&c.mongodb, section).await,
                None => mongodb_leg(&configs.mongodb.client().await.unwrap(), section).await,
            }
        }
        (Datastore::Redis, open) => {
            let section = manifest.redis.as_ref()?;
            match open {
                Some(c) => redis_leg(&mut c.redis, section).await,
                None => redis_leg(&mut configs.redis.connect().await.unwrap(), section).await,
            }
        }
        (Datastore::Kafka, open) => {
            let section = manifest.kafka.as_ref()?;
            let timeout = configs.kafka.request_timeout;
            match open {
                Some(c) => tokio::task::block_in_place(|| kafka_leg(&c.kafka, section, timeout)),
                None => tokio::task::block_in_place(|| {
                    let admin = kafka_admin(configs.kafka);
                    let leg = kafka_leg(&admin, section, timeout);
                    // As in check: the client's shutdown (its 100 ms poll) is not waited for.
                    drop(tokio::task::spawn_blocking(move || drop(admin)));
                    leg
                }),
            }
        }
        _ => return None,
    };
    leg.elapsed = started.elapsed();
    Some(leg)
}

/// The whole one-by-one loop, datastore after datastore.
async fn one_by_one(
    manifest: &Manifest,
    configs: &Configs<'_>,
    mut open: Option<&mut Clients>,
) -> (Duration, BTreeMap<Datastore, Leg>) {
    let started = Instant::now();
    let mut legs = BTreeMap::new();
    for datastore in SECTIONS {
        if let Some(leg) = timed_leg(datastore, manifest, configs, open.as_deref_mut()).await {
            legs.insert(datastore, leg);
        }
    }
    (started.elapsed(), legs)
}

fn assert_all_present(what: &str, legs: &BTreeMap<Datastore, Leg>) {
    for (datastore, leg) in legs {
        assert!(
            leg.absent.is_empty(),
            "{what}: the one-by-one loop did not find {} object(s) of {datastore}: {:?}",
            leg.absent.len(),
            &leg.absent[..leg.absent.len().min(10)]
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Nearest rank.
fn p90(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.9).ceil() as usize).clamp(1, v.len()) - 1]
}

fn round1(values: &[f64]) -> Vec<f64> {
    values.iter().map(|v| (v * 10.0).round() / 10.0).collect()
}

/// The timings of one manifest.
#[derive(Default)]
struct Case {
    objects: usize,
    section_objects: BTreeMap<Datastore, usize>,
    check: Vec<f64>,
    cold: Vec<f64>,
    warm: Vec<f64>,
    calls: BTreeMap<Datastore, usize>,
    cold_legs: BTreeMap<Datastore, Vec<f64>>,
    warm_legs: BTreeMap<Datastore, Vec<f64>>,
    alone: BTreeMap<Datastore, Vec<f64>>,
}

impl Case {
    fn calls(&self) -> usize {
        self.calls.values().sum()
    }
}

fn record_legs(into: &mut BTreeMap<Datastore, Vec<f64>>, legs: &BTreeMap<Datastore, Leg>) {
    for (datastore, leg) in legs {
        into.entry(*datastore).or_default().push(ms(leg.elapsed));
    }
}

async fn cleanup(configs: &Configs<'_>, large: &Manifest) -> Vec<String> {
    let mut done = Vec::new();
    let mongodb = configs.mongodb.client().await.unwrap();
    match mongodb.database(BENCH_DB).drop().await {
        Ok(()) => done.push(format!("MongoDB database {BENCH_DB} dropped")),
        Err(e) => done.push(format!("MongoDB database {BENCH_DB} NOT dropped: {e}")),
    }
    let pg = configs.postgres.connect().await.unwrap();
    match pg.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(BENCH_DB))).await {
        Ok(()) => done.push(format!("PostgreSQL database {BENCH_DB} dropped")),
        Err(e) => done.push(format!("PostgreSQL database {BENCH_DB} NOT dropped: {e}")),
    }
    let roles: Vec<String> = large.postgres.iter().flat_map(|s| &s.roles).map(|r| quote_ident(&r.name)).collect();
    match pg.batch_execute(&format!("DROP ROLE IF EXISTS {}", roles.join(", "))).await {
        Ok(()) => done.push(format!("{} PostgreSQL roles dropped", roles.len())),
        Err(e) => done.push(format!("PostgreSQL roles NOT dropped: {e}")),
    }
    done
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = args();
    let profile = if cfg!(debug_assertions) { "dev (unoptimised)" } else { "release" };
    let settings = Settings::new().layer(Source::Environment, std::env::vars());
    let config = DatastoresConfig::from_settings(&settings).unwrap_or_else(|e| panic!("configuration: {e}"));
    let configs = Configs {
        postgres: config.postgres.as_ref().expect("PostgreSQL is not configured (run with the stack's env)"),
        mongodb: config.mongodb.as_ref().expect("MongoDB is not configured"),
        redis: config.redis.as_ref().expect("Redis is not configured"),
        kafka: config.kafka.as_ref().expect("Kafka is not configured"),
    };
    let builtin = Manifest::builtin(&settings).unwrap_or_else(|e| panic!("{e}"));
    let large_text = large_manifest();
    let large = Manifest::parse(&large_text, "the large bench manifest", &settings).unwrap_or_else(|e| panic!("{e}"));
    let pg = large.postgres.as_ref().unwrap();
    assert_eq!(pg.roles.len(), ROLES);
    assert_eq!(pg.settings.len(), 8);
    assert_eq!(large.kafka.as_ref().unwrap().topics.len(), TOPICS);
    let indexes: usize =
        large.mongodb.as_ref().unwrap().databases.iter().flat_map(|d| &d.collections).map(|c| c.indexes.len()).sum();
    assert_eq!(indexes, COLLECTIONS * INDEXES_PER_COLLECTION);
    let manifests = [("built-in", &builtin), ("large", &large)];

    eprintln!("setup: apply of each manifest (untimed)");
    for (name, manifest) in manifests {
        let started = Instant::now();
        let reports = bootstrap::run(manifest, &config, Mode::Apply, &[], &[]).await;
        assert_no_errors(&format!("apply of the {name} manifest"), &reports);
        let changes: usize = reports.iter().map(SectionReport::changes).sum();
        eprintln!(
            "  {name}: {} objects, {changes} created or changed, {:.0} ms",
            objects(&reports),
            ms(started.elapsed())
        );
    }

    let mut open: Vec<Clients> = Vec::new();
    for (_, manifest) in manifests {
        open.push(open_clients(&configs, manifest).await);
    }
    let mut cases: Vec<Case> = manifests.iter().map(|_| Case::default()).collect();
    eprintln!("warm-up: one untimed round of each");
    for ((name, manifest), (case, clients)) in manifests.iter().zip(cases.iter_mut().zip(open.iter_mut())) {
        let reports = bootstrap::run(manifest, &config, Mode::Check, &[], &[]).await;
        assert_no_drift(&format!("check of the {name} manifest"), &reports);
        case.objects = objects(&reports);
        for datastore in SECTIONS {
            case.section_objects.insert(datastore, section_objects(&reports, datastore));
        }
        let (_, legs) = one_by_one(manifest, &configs, None).await;
        assert_all_present(name, &legs);
        case.calls = legs.iter().map(|(d, l)| (*d, l.calls)).collect();
        let (_, legs) = one_by_one(manifest, &configs, Some(clients)).await;
        assert_all_present(name, &legs);
    }

    eprintln!("timing: {} rounds; the order of the three runs rotates each round", args.rounds);
    for round in 0..args.rounds {
        for ((name, manifest), (case, clients)) in manifests.iter().zip(cases.iter_mut().zip(open.iter_mut())) {
            for step in 0..3 {
                match (round + step) % 3 {
                    0 => {
                        let started = Instant::now();
                        let reports = bootstrap::run(manifest, &config, Mode::Check, &[], &[]).await;
                        case.check.push(ms(started.elapsed()));
                        assert_no_drift(&format!("check of the {name} manifest"), &reports);
                    }
                    1 => {
                        let (elapsed, legs) = one_by_one(manifest, &configs, None).await;
                        assert_all_present(name, &legs);
                        case.cold.push(ms(elapsed));
                        record_legs(&mut case.cold_legs, &legs);
                    }
                    _ => {
                        let (elapsed, legs) = one_by_one(manifest, &configs, Some(&mut *clients)).await;
                        assert_all_present(name, &legs);
                        case.warm.push(ms(elapsed));
                        record_legs(&mut case.warm_legs, &legs);
                    }
                }
            }
        }
    }
    eprintln!("timing: each section's check alone, {} rounds", args.rounds);
    for _ in 0..args.rounds {
        for ((name, manifest), case) in manifests.iter().zip(cases.iter_mut()) {
            for datastore in SECTIONS {
                let started = Instant::now();
                let reports = bootstrap::run(manifest, &config, Mode::Check, &[datastore], &[]).await;
                case.alone.entry(datastore).or_default().push(ms(started.elapsed()));
                assert_no_drift(&format!("check of the {name} manifest, {datastore} alone"), &reports);
            }
        }
    }
    drop(open);

    let cleaned = if args.keep { vec!["kept (--keep)".to_owned()] } else { cleanup(&configs, &large).await };

    println!("bootstrap check benchmark: profile {profile}, {} timed rounds after one warm-up round", args.rounds);
    println!(
        "dbkit check: datastores::bootstrap::run(Mode::Check), its four sections concurrently, each opening its own \
         connections"
    );
    println!(
        "one-by-one: the same manifest read one object per admin call, sequentially, datastore after datastore, \
         reusing ONE connection/client per datastore (PostgreSQL: plus one per database, its catalogs being per \
         database); opened inside the timing as check opens its own. This is the conservative baseline: the seed's \
         shell tools would also pay a process and a connection per call."
    );
    println!(
        "{:<9} {:>8} {:>22} {:>26} {:>17} {:>6}",
        "manifest", "objects", "dbkit check med/p90", "one-by-one med/p90 ms", "calls one-by-one", "ratio"
    );
    let mut results = Vec::new();
    for ((name, _), case) in manifests.iter().zip(&cases) {
        let (c50, c90) = (median(&case.check), p90(&case.check));
        let (o50, o90) = (median(&case.cold), p90(&case.cold));
        let (w50, w90) = (median(&case.warm), p90(&case.warm));
        println!(
            "{:<9} {:>8} {:>22} {:>26} {:>17} {:>6}",
            name,
            case.objects,
            format!("{c50:.1} / {c90:.1} ms"),
            format!("{o50:.1} / {o90:.1} ms"),
            case.calls(),
            format!("{:.1}x", o50 / c50)
        );
        results.push((name, case, c50, c90, o50, o90, w50, w90));
    }
    println!("one-by-one with its connections already open (not reconnecting each round):");
    for (name, case, c50, _, _, _, w50, w90) in &results {
        println!(
            "{:<9} {:>8} {:>22} {:>26} {:>17} {:>6}",
            name,
            case.objects,
            "",
            format!("{w50:.1} / {w90:.1} ms"),
            case.calls(),
            format!("{:.1}x", w50 / c50)
        );
    }
    println!(
        "per datastore (medians, ms): check of that section alone | one-by-one (connect inside) | one-by-one (open)"
    );
    println!(
        "{:<9} {:<10} {:>8} {:>12} {:>6} {:>13} {:>13}",
        "manifest", "datastore", "objects", "check alone", "calls", "one-by-one", "(open)"
    );
    for (name, case, ..) in &results {
        for datastore in SECTIONS {
            let get = |m: &BTreeMap<Datastore, Vec<f64>>| m.get(&datastore).map(|v| median(v)).unwrap_or(0.0);
            println!(
                "{:<9} {:<10} {:>8} {:>12.1} {:>6} {:>13.1} {:>13.1}",
                name,
                datastore.to_string(),
                case.section_objects.get(&datastore).copied().unwrap_or(0),
                get(&case.alone),
                case.calls.get(&datastore).copied().unwrap_or(0),
                get(&case.cold_legs),
                get(&case.warm_legs)
            );
        }
    }
    println!("cleanup: {}; Kafka topics left in place (never deleted on the stack's broker)", cleaned.join("; "));
    let record = json!({
        "bench": "bootstrap_check",
        "profile": profile,
        "rounds": args.rounds,
        "baseline": "one admin call per object, sequential, one connection per datastore (PostgreSQL: plus one per database)",
        "results": results.iter().map(|(name, case, c50, c90, o50, o90, w50, w90)| json!({
            "manifest": name,
            "objects": case.objects,
            "check_ms": round1(&case.check),
            "check_median_ms": (c50 * 10.0).round() / 10.0,
            "check_p90_ms": (c90 * 10.0).round() / 10.0,
            "one_by_one_ms": round1(&case.cold),
            "one_by_one_median_ms": (o50 * 10.0).round() / 10.0,
            "one_by_one_p90_ms": (o90 * 10.0).round() / 10.0,
            "one_by_one_open_ms": round1(&case.warm),
            "one_by_one_open_median_ms": (w50 * 10.0).round() / 10.0,
            "one_by_one_open_p90_ms": (w90 * 10.0).round() / 10.0,
            "calls": case.calls(),
            "calls_by_datastore": case.calls.iter().map(|(d, n)| (d.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "ratio": ((o50 / c50) * 100.0).round() / 100.0,
            "ratio_open": ((w50 / c50) * 100.0).round() / 100.0,
        })).collect::<Vec<_>>(),
    });
    println!("{record}");
}
