//! The `mongodb` section of the bootstrap manifest against the stack's server.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use datastores::bootstrap::mongodb::{
    Collection, Database, Expect, Index, IndexKey, IndexKeys, RoleRef, Section, User,
};
use datastores::bootstrap::{Item, Mode, SectionReport, State, mongodb::run};
use datastores::mongodb_driver::Client;
use datastores::mongodb_driver::bson::{Bson, Document, doc};
use datastores::{MongoConfig, Secret};
use futures::{FutureExt, TryStreamExt};
use testkit::{TestMongoDatabase, closed_port, expect_up};

/// Seed 003 of the platform, in the test's own database.
fn seed(db: &str) -> Section {
    let yaml = format!(
        "
databases:
  - name: {db}
    collections:
      - name: system_logs
        indexes:
          - keys: {{ timestamp: 1 }}
          - keys: {{ level: 1, timestamp: 1 }}
          - keys: {{ service: 1, timestamp: 1 }}
      - name: configurations
        indexes:
          - keys: {{ component: 1, environment: 1, version: 1 }}
          - keys: {{ is_active: 1 }}
      - name: task_status_cache
        indexes:
          - keys: {{ task_id: 1 }}
          - keys: {{ status: 1, last_updated: 1 }}
          - keys: {{ task_type: 1, status: 1 }}
          - keys: {{ last_updated: 1 }}
            expire_after_seconds: 86400
"
    );
    serde_norway::from_str(&yaml).unwrap()
}

fn keys(fields: &[(&str, i32)]) -> IndexKeys {
    IndexKeys(
        fields
            .iter()
            .map(|(f, d)| ((*f).to_owned(), if *d < 0 { IndexKey::Descending } else { IndexKey::Ascending }))
            .collect(),
    )
}

fn index(fields: &[(&str, i32)]) -> Index {
    Index {
        keys: keys(fields),
        name: None,
        unique: false,
        sparse: false,
        expire_after_seconds: None,
        partial_filter: None,
    }
}

fn one_collection(db: &str, collection: &str, indexes: Vec<Index>) -> Section {
    Section {
        expect: Expect::default(),
        databases: vec![Database {
            name: db.to_owned(),
            collections: vec![Collection { name: collection.to_owned(), indexes }],
            users: Vec::new(),
        }],
    }
}

fn users_only(db: &str, users: Vec<User>) -> Section {
    Section {
        expect: Expect::default(),
        databases: vec![Database { name: db.to_owned(), collections: Vec::new(), users }],
    }
}

async fn client(db: &TestMongoDatabase) -> Client {
    expect_up(db.config.client().await)
}

/// The collection's indexes as `listIndexes` returns them, by name.
async fn server_indexes(client: &Client, db: &str, collection: &str) -> Vec<Document> {
    let cursor = client.database(db).run_cursor_command(doc! { "listIndexes": collection }).await.unwrap();
    cursor.try_collect().await.unwrap()
}

fn named<'a>(indexes: &'a [Document], name: &str) -> Option<&'a Document> {
    indexes.iter().find(|i| i.get_str("name") == Ok(name))
}

/// The key pattern of an index as `field:direction` in the server's order.
fn key_order(index: &Document) -> Vec<String> {
    index.get_document("key").unwrap().iter().map(|(k, v)| format!("{k}:{}", as_i64(v).unwrap())).collect()
}

fn as_i64(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

fn ttl(index: &Document) -> Option<i64> {
    index.get("expireAfterSeconds").and_then(as_i64)
}

fn item<'a>(report: &'a SectionReport, kind: &str, name: &str) -> &'a Item {
    report
        .items
        .iter()
        .find(|i| i.kind == kind && i.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", report.items))
}

fn not_ok(report: &SectionReport) -> Vec<&Item> {
    report.items.iter().filter(|i| i.state != State::Ok).collect()
}

async fn user_roles(client: &Client, db: &str, user: &str) -> Option<Vec<(String, String)>> {
    let answer = client.database(db).run_command(doc! { "usersInfo": user }).await.unwrap();
    let users = answer.get_array("users").unwrap();
    let user = users.first()?.as_document().unwrap();
    let mut roles: Vec<(String, String)> = user
        .get_array("roles")
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_document().unwrap();
            (r.get_str("role").unwrap().to_owned(), r.get_str("db").unwrap().to_owned())
        })
        .collect();
    roles.sort();
    Some(roles)
}

/// A client that authenticates as `user` against `db`. Built here rather than with
/// `MongoConfig::client`, which keeps the URI without credentials and so loses its `authSource`.
/// A client that logs in as `user` of `db` through dbkit's own configuration
/// (`authSource=<db>`), as the platform's services do.
async fn login(endpoint: &str, db: &str, user: &str, password: &str) -> Client {
    let vars = [
        ("MONGODB_URI".to_owned(), format!("mongodb://{endpoint}/{db}?authSource={db}&serverSelectionTimeoutMS=3000")),
        ("MONGODB_USERNAME".to_owned(), user.to_owned()),
        ("MONGODB_PASSWORD".to_owned(), password.to_owned()),
    ];
    let config = datastores::MongoConfig::from_settings(
        &datastores::Settings::new().layer(datastores::Source::Environment, vars),
    )
    .unwrap();
    config.client().await.unwrap()
}

/// Runs `body`, then drops `users` from `db` whether it passed or not: users outlive their
/// database.
async fn dropping_users(client: &Client, db: &str, users: &[&str], body: impl Future<Output = ()>) {
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    for user in users {
        let _ = client.database(db).run_command(doc! { "dropUser": *user }).await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn apply_creates_the_seed_then_changes_nothing() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    let section = seed(&db.name);

    let report = run(&db.config, &section, Mode::Apply).await;
    assert_eq!(report.error, None, "{report:#?}");
    assert!(!report.has_errors(), "{report:#?}");
    assert!(report.identity.is_some(), "{report:#?}");
    assert!(report.warnings.iter().any(|w| w.contains("does not pin")), "{report:#?}");
    let created = |kind: &str| report.items.iter().filter(|i| i.kind == kind && i.state == State::Created).count();
    assert_eq!(created("collection"), 3, "{report:#?}");
    assert_eq!(created("index"), 9, "{report:#?}");
    assert_eq!(report.changes(), 12);
    assert_eq!(item(&report, "index", &format!("{}.task_status_cache.last_updated_1", db.name)).state, State::Created);

    let mut names = client.database(&db.name).list_collection_names().await.unwrap();
    names.sort();
    assert_eq!(names, ["configurations", "system_logs", "task_status_cache"]);

    let logs = server_indexes(&client, &db.name, "system_logs").await;
    assert_eq!(logs.len(), 4, "{logs:#?}");
    assert_eq!(key_order(named(&logs, "timestamp_1").unwrap()), ["timestamp:1"]);
    assert_eq!(key_order(named(&logs, "level_1_timestamp_1").unwrap()), ["level:1", "timestamp:1"]);
    assert_eq!(key_order(named(&logs, "service_1_timestamp_1").unwrap()), ["service:1", "timestamp:1"]);
    let configurations = server_indexes(&client, &db.name, "configurations").await;
    assert_eq!(configurations.len(), 3, "{configurations:#?}");
    assert_eq!(
        key_order(named(&configurations, "component_1_environment_1_version_1").unwrap()),
        ["component:1", "environment:1", "version:1"]
    );
    assert_eq!(key_order(named(&configurations, "is_active_1").unwrap()), ["is_active:1"]);
    let tasks = server_indexes(&client, &db.name, "task_status_cache").await;
    assert_eq!(tasks.len(), 5, "{tasks:#?}");
    assert_eq!(key_order(named(&tasks, "task_id_1").unwrap()), ["task_id:1"]);
    assert_eq!(key_order(named(&tasks, "status_1_last_updated_1").unwrap()), ["status:1", "last_updated:1"]);
    assert_eq!(key_order(named(&tasks, "task_type_1_status_1").unwrap()), ["task_type:1", "status:1"]);
    let expiring = named(&tasks, "last_updated_1").unwrap();
    assert_eq!(key_order(expiring), ["last_updated:1"]);
    assert_eq!(ttl(expiring), Some(86400));
    let without_ttl = tasks.iter().chain(&logs).chain(&configurations).filter(|i| ttl(i).is_none()).count();
    assert_eq!(without_ttl, 11);
    for index in tasks.iter().chain(&logs).chain(&configurations) {
        assert!(index.get("unique").is_none() && index.get("sparse").is_none(), "{index}");
    }

    let again = run(&db.config, &section, Mode::Apply).await;
    assert_eq!(again.error, None, "{again:#?}");
    assert_eq!(again.changes(), 0, "{again:#?}");
    assert_eq!(again.items.len(), 12);
    assert!(not_ok(&again).is_empty(), "{again:#?}");
    assert_eq!(server_indexes(&client, &db.name, "task_status_cache").await.len(), 5);

    let check = run(&db.config, &section, Mode::Check).await;
    assert_eq!(check.drift(), 0, "{check:#?}");
}

#[tokio::test]
async fn check_and_plan_on_an_empty_database_write_nothing() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    for mode in [Mode::Plan, Mode::Check] {
        let report = run(&db.config, &seed(&db.name), mode).await;
        assert_eq!(report.error, None, "{report:#?}");
        assert_eq!(report.items.len(), 12, "{report:#?}");
        assert!(report.items.iter().all(|i| i.state == State::Missing), "{report:#?}");
        assert_eq!(report.drift(), 12);
        assert_eq!(report.changes(), 0);
    }
    assert!(client.database(&db.name).list_collection_names().await.unwrap().is_empty());
}

#[tokio::test]
async fn drift_made_by_hand_is_reported_exactly_and_repaired() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    let section = seed(&db.name);
    let first = run(&db.config, &section, Mode::Apply).await;
    assert!(!first.has_errors(), "{first:#?}");

    let mongo = client.database(&db.name);
    mongo.run_command(doc! { "dropIndexes": "system_logs", "index": "level_1_timestamp_1" }).await.unwrap();
    mongo
        .run_command(doc! {
            "collMod": "task_status_cache",
            "index": { "keyPattern": { "last_updated": 1 }, "expireAfterSeconds": 3600 },
        })
        .await
        .unwrap();

    let missing_name = format!("{}.system_logs.level_1_timestamp_1", db.name);
    let ttl_name = format!("{}.task_status_cache.last_updated_1", db.name);
    let check = run(&db.config, &section, Mode::Check).await;
    assert_eq!(check.error, None, "{check:#?}");
    let drift = not_ok(&check);
    assert_eq!(drift.len(), 2, "{check:#?}");
    assert_eq!(item(&check, "index", &missing_name).state, State::Missing);
    let ttl_item = item(&check, "index", &ttl_name);
    assert_eq!(ttl_item.state, State::Drift);
    assert!(ttl_item.detail.contains("server 3600 s, manifest 86400 s"), "{}", ttl_item.detail);
    assert_eq!(check.drift(), 2);
    assert_eq!(check.changes(), 0);
    // Check changed nothing.
    assert!(named(&server_indexes(&client, &db.name, "system_logs").await, "level_1_timestamp_1").is_none());
    let tasks = server_indexes(&client, &db.name, "task_status_cache").await;
    assert_eq!(ttl(named(&tasks, "last_updated_1").unwrap()), Some(3600));

    let repair = run(&db.config, &section, Mode::Apply).await;
    assert!(!repair.has_errors(), "{repair:#?}");
    assert_eq!(repair.changes(), 2, "{repair:#?}");
    assert_eq!(item(&repair, "index", &missing_name).state, State::Created);
    assert_eq!(item(&repair, "index", &ttl_name).state, State::Changed);
    let logs = server_indexes(&client, &db.name, "system_logs").await;
    assert_eq!(key_order(named(&logs, "level_1_timestamp_1").unwrap()), ["level:1", "timestamp:1"]);
    let tasks = server_indexes(&client, &db.name, "task_status_cache").await;
    assert_eq!(ttl(named(&tasks, "last_updated_1").unwrap()), Some(86400));
    assert_eq!(tasks.len(), 5);

    let after = run(&db.config, &section, Mode::Check).await;
    assert_eq!(after.drift(), 0, "{after:#?}");
}

#[tokio::test]
async fn same_keys_with_other_options_is_a_conflict_and_nothing_changes() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    let mongo = client.database(&db.name);
    mongo
        .run_command(doc! {
            "createIndexes": "task_status_cache",
            "indexes": [{ "key": { "task_id": 1 }, "name": "task_id_unique", "unique": true }],
        })
        .await
        .unwrap();
    let section = one_collection(&db.name, "task_status_cache", vec![index(&[("task_id", 1)])]);

    for mode in [Mode::Check, Mode::Apply] {
        let report = run(&db.config, &section, mode).await;
        assert!(report.has_errors(), "{report:#?}");
        let conflict = item(&report, "index", &format!("{}.task_status_cache.task_id_1", db.name));
        assert_eq!(conflict.state, State::Conflict, "{report:#?}");
        for part in ["{task_id: 1}", "task_id_unique", "unique=true", "unique=false", "drop it by hand"] {
            assert!(conflict.detail.contains(part), "{part}: {}", conflict.detail);
        }
        assert_eq!(report.changes(), 0, "{report:#?}");
    }

    let indexes = server_indexes(&client, &db.name, "task_status_cache").await;
    assert_eq!(indexes.len(), 2, "{indexes:#?}");
    let kept = named(&indexes, "task_id_unique").unwrap();
    assert_eq!(kept.get_bool("unique"), Ok(true));
    assert!(named(&indexes, "task_id_1").is_none());
}

#[tokio::test]
async fn an_index_name_taken_by_other_keys_is_a_conflict() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    client
        .database(&db.name)
        .run_command(doc! {
            "createIndexes": "task_status_cache",
            "indexes": [{ "key": { "owner": 1 }, "name": "task_id_1" }],
        })
        .await
        .unwrap();
    let section = one_collection(&db.name, "task_status_cache", vec![index(&[("task_id", 1)])]);

    let report = run(&db.config, &section, Mode::Apply).await;
    let conflict = item(&report, "index", &format!("{}.task_status_cache.task_id_1", db.name));
    assert_eq!(conflict.state, State::Conflict, "{report:#?}");
    for part in ["task_id_1", "{owner: 1}", "{task_id: 1}"] {
        assert!(conflict.detail.contains(part), "{part}: {}", conflict.detail);
    }
    assert_eq!(report.changes(), 0);

    let indexes = server_indexes(&client, &db.name, "task_status_cache").await;
    assert_eq!(indexes.len(), 2, "{indexes:#?}");
    assert_eq!(key_order(named(&indexes, "task_id_1").unwrap()), ["owner:1"]);
}

#[tokio::test]
async fn indexes_are_matched_by_ordered_keys_not_by_name() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    client
        .database(&db.name)
        .run_command(doc! {
            "createIndexes": "system_logs",
            "indexes": [
                { "key": { "level": 1, "timestamp": 1 }, "name": "by_level" },
                { "key": { "timestamp": 1, "service": 1 }, "name": "ts_service" },
                { "key": { "unrelated": -1 }, "name": "unrelated_-1" },
            ],
        })
        .await
        .unwrap();
    let mut named_index = index(&[("timestamp", -1)]);
    named_index.name = Some("newest_first".into());
    let section = one_collection(
        &db.name,
        "system_logs",
        vec![index(&[("level", 1), ("timestamp", 1)]), index(&[("service", 1), ("timestamp", 1)]), named_index],
    );

    let report = run(&db.config, &section, Mode::Apply).await;
    assert!(!report.has_errors(), "{report:#?}");
    let renamed = item(&report, "index", &format!("{}.system_logs.level_1_timestamp_1", db.name));
    assert_eq!(renamed.state, State::Ok);
    assert_eq!(renamed.detail, "exists as by_level");
    let reversed = item(&report, "index", &format!("{}.system_logs.service_1_timestamp_1", db.name));
    assert_eq!(reversed.state, State::Created, "{report:#?}");
    assert_eq!(item(&report, "index", &format!("{}.system_logs.newest_first", db.name)).state, State::Created);
    assert_eq!(report.changes(), 2);

    let indexes = server_indexes(&client, &db.name, "system_logs").await;
    assert_eq!(indexes.len(), 6, "{indexes:#?}");
    assert!(named(&indexes, "level_1_timestamp_1").is_none());
    assert_eq!(key_order(named(&indexes, "service_1_timestamp_1").unwrap()), ["service:1", "timestamp:1"]);
    assert_eq!(key_order(named(&indexes, "ts_service").unwrap()), ["timestamp:1", "service:1"]);
    assert_eq!(key_order(named(&indexes, "newest_first").unwrap()), ["timestamp:-1"]);
    assert!(named(&indexes, "unrelated_-1").is_some());

    let again = run(&db.config, &section, Mode::Check).await;
    assert_eq!(again.drift(), 0, "{again:#?}");
}

#[tokio::test]
async fn options_are_created_and_compared() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    let mut unique = index(&[("task_id", 1)]);
    unique.unique = true;
    unique.sparse = true;
    unique.name = Some("task_id_unique".into());
    let mut partial = index(&[("status", 1), ("last_updated", -1)]);
    partial.partial_filter =
        Some(serde_json::json!({ "status": { "$in": ["running", "queued"] }, "retries": { "$gt": 2 } }));
    let section = one_collection(&db.name, "task_status_cache", vec![unique, partial]);

    let report = run(&db.config, &section, Mode::Apply).await;
    assert!(!report.has_errors(), "{report:#?}");
    assert_eq!(report.changes(), 3);
    let indexes = server_indexes(&client, &db.name, "task_status_cache").await;
    let made = named(&indexes, "task_id_unique").unwrap();
    assert_eq!((made.get_bool("unique"), made.get_bool("sparse")), (Ok(true), Ok(true)));
    let filtered = named(&indexes, "status_1_last_updated_-1").unwrap();
    assert_eq!(key_order(filtered), ["status:1", "last_updated:-1"]);
    let filter = filtered.get_document("partialFilterExpression").unwrap();
    assert_eq!(filter.get_document("retries").unwrap().get("$gt").and_then(as_i64), Some(2));

    let again = run(&db.config, &section, Mode::Check).await;
    assert_eq!(again.drift(), 0, "{again:#?}");

    let mut other_filter = index(&[("status", 1), ("last_updated", -1)]);
    other_filter.partial_filter = Some(serde_json::json!({ "status": "running" }));
    let changed = one_collection(&db.name, "task_status_cache", vec![other_filter]);
    let report = run(&db.config, &changed, Mode::Apply).await;
    let conflict = item(&report, "index", &format!("{}.task_status_cache.status_1_last_updated_-1", db.name));
    assert_eq!(conflict.state, State::Conflict, "{report:#?}");
    assert!(conflict.detail.contains("partialFilterExpression"), "{}", conflict.detail);
    assert_eq!(server_indexes(&client, &db.name, "task_status_cache").await.len(), 3);
}

#[tokio::test]
async fn a_ttl_is_added_by_collmod_but_never_removed() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    client
        .database(&db.name)
        .run_command(doc! {
            "createIndexes": "task_status_cache",
            "indexes": [
                { "key": { "last_updated": 1 }, "name": "last_updated_1" },
                { "key": { "created": 1 }, "name": "created_1", "expireAfterSeconds": 600 },
            ],
        })
        .await
        .unwrap();
    let mut expiring = index(&[("last_updated", 1)]);
    expiring.expire_after_seconds = Some(86400);
    let section = one_collection(&db.name, "task_status_cache", vec![expiring, index(&[("created", 1)])]);

    let check = run(&db.config, &section, Mode::Check).await;
    let add = item(&check, "index", &format!("{}.task_status_cache.last_updated_1", db.name));
    assert_eq!(add.state, State::Drift, "{check:#?}");
    assert!(add.detail.contains("server no TTL, manifest 86400 s"), "{}", add.detail);
    let keep = item(&check, "index", &format!("{}.task_status_cache.created_1", db.name));
    assert_eq!(keep.state, State::Conflict, "{check:#?}");
    assert!(keep.detail.contains("expireAfterSeconds=600") && keep.detail.contains("no TTL"), "{}", keep.detail);

    let apply = run(&db.config, &section, Mode::Apply).await;
    assert_eq!(item(&apply, "index", &format!("{}.task_status_cache.last_updated_1", db.name)).state, State::Changed);
    assert_eq!(item(&apply, "index", &format!("{}.task_status_cache.created_1", db.name)).state, State::Conflict);
    let indexes = server_indexes(&client, &db.name, "task_status_cache").await;
    assert_eq!(ttl(named(&indexes, "last_updated_1").unwrap()), Some(86400));
    assert_eq!(ttl(named(&indexes, "created_1").unwrap()), Some(600));
}

/// secantusdb refuses `text` and `hashed` keys (code 67). The batch with such an index fails as a
/// whole; the others of the batch are created one by one.
#[tokio::test]
async fn an_index_the_server_refuses_fails_alone() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    let mut text = index(&[("message", 1)]);
    text.keys = IndexKeys(vec![("message".into(), IndexKey::Special("text".into()))]);
    let section = one_collection(&db.name, "system_logs", vec![index(&[("timestamp", 1)]), text]);

    let report = run(&db.config, &section, Mode::Apply).await;
    assert_eq!(item(&report, "index", &format!("{}.system_logs.timestamp_1", db.name)).state, State::Created);
    let refused = item(&report, "index", &format!("{}.system_logs.message_text", db.name));
    assert_eq!(refused.state, State::Failed, "{report:#?}");
    assert!(refused.detail.contains("code 67"), "{}", refused.detail);
    let indexes = server_indexes(&client, &db.name, "system_logs").await;
    assert_eq!(indexes.len(), 2, "{indexes:#?}");
    assert!(named(&indexes, "timestamp_1").is_some());
}

#[tokio::test]
async fn user_roles_drift_is_repaired_and_the_password_kept() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    let password = "Pw-kept-4711-zq";
    let section = users_only(
        &db.name,
        vec![User {
            name: "app".into(),
            password: Some(Secret::new(password)),
            roles: vec![RoleRef::Here("readWrite".into()), RoleRef::On { role: "read".into(), db: "reporting".into() }],
        }],
    );
    let user_item = format!("{}.app", db.name);
    dropping_users(&client, &db.name, &["app"], async {
        let created = run(&db.config, &section, Mode::Apply).await;
        assert_eq!(item(&created, "user", &user_item).state, State::Created, "{created:#?}");
        let shown = format!("{created:?} {}", serde_json::to_string(&created).unwrap());
        assert!(!shown.contains(password), "{shown}");
        let expected = vec![("read".to_owned(), "reporting".to_owned()), ("readWrite".to_owned(), db.name.clone())];
        assert_eq!(user_roles(&client, &db.name, "app").await, Some(expected.clone()));

        let same = run(&db.config, &section, Mode::Apply).await;
        assert_eq!(item(&same, "user", &user_item).state, State::Ok, "{same:#?}");

        client
            .database(&db.name)
            .run_command(doc! { "updateUser": "app", "roles": [{ "role": "read", "db": &db.name }] })
            .await
            .unwrap();
        let check = run(&db.config, &section, Mode::Check).await;
        let drift = item(&check, "user", &user_item);
        assert_eq!(drift.state, State::Drift, "{check:#?}");
        assert_eq!(
            drift.detail,
            format!(
                "lacks [read@reporting, readWrite@{0}]; also has [read@{0}], which the manifest does not name (left \
                 alone)",
                db.name
            )
        );

        // The missing roles are granted; the one granted by hand stays.
        let repair = run(&db.config, &section, Mode::Apply).await;
        assert_eq!(item(&repair, "user", &user_item).state, State::Changed, "{repair:#?}");
        let mut with_extra = expected.clone();
        with_extra.insert(0, ("read".to_owned(), db.name.clone()));
        with_extra.sort();
        let mut now = user_roles(&client, &db.name, "app").await.unwrap();
        now.sort();
        assert_eq!(now, with_extra);
        let after = run(&db.config, &section, Mode::Check).await;
        assert_eq!(item(&after, "user", &user_item).state, State::Ok, "{after:#?}");

        // The password is the one it was created with.
        let as_user = login(&db.config.endpoint(), &db.name, "app", password).await;
        as_user.database(&db.name).run_command(doc! { "ping": 1 }).await.unwrap();
        assert!(
            login(&db.config.endpoint(), &db.name, "app", "another")
                .await
                .database(&db.name)
                .run_command(doc! { "ping": 1 })
                .await
                .is_err()
        );
    })
    .await;
    assert_eq!(user_roles(&client, &db.name, "app").await, None);
}

#[tokio::test]
async fn a_user_without_a_password_fails_and_no_password_is_shown() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    let password = "Pw-secret-0815-xy";
    let section = users_only(
        &db.name,
        vec![
            User { name: "nopw".into(), password: None, roles: vec![RoleRef::Here("read".into())] },
            User { name: "withpw".into(), password: Some(Secret::new(password)), roles: vec![] },
        ],
    );
    dropping_users(&client, &db.name, &["nopw", "withpw"], async {
        for mode in [Mode::Plan, Mode::Apply] {
            let report = run(&db.config, &section, mode).await;
            let failed = item(&report, "user", &format!("{}.nopw", db.name));
            assert_eq!(failed.state, State::Failed, "{report:#?}");
            assert!(failed.detail.contains("no password given for user nopw"), "{}", failed.detail);
            assert!(report.has_errors());
            let shown = format!("{report:?} {report:#?} {}", serde_json::to_string(&report).unwrap());
            assert!(!shown.contains(password), "{shown}");
        }
        assert_eq!(user_roles(&client, &db.name, "nopw").await, None);
        assert_eq!(user_roles(&client, &db.name, "withpw").await, Some(vec![]));
    })
    .await;
}

#[tokio::test]
async fn another_identity_is_refused_before_anything_is_read_or_written() {
    let db = TestMongoDatabase::new();
    let client = client(&db).await;
    let mut section = seed(&db.name);
    section.expect.replica_set = Some("other".into());

    let report = run(&db.config, &section, Mode::Apply).await;
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("refused") && error.contains("other"), "{report:#?}");
    assert!(report.items.is_empty(), "{report:#?}");
    assert!(report.has_errors());
    assert!(client.database(&db.name).list_collection_names().await.unwrap().is_empty());

    // Pinned to what the server is, it goes ahead.
    let identity = report.identity.clone().unwrap();
    let actual = identity.strip_prefix("replica set ").or_else(|| identity.strip_prefix("host ")).unwrap();
    section.expect.replica_set = Some(actual.to_owned());
    let pinned = run(&db.config, &section, Mode::Apply).await;
    assert_eq!(pinned.error, None, "{pinned:#?}");
    assert!(pinned.warnings.is_empty(), "{pinned:#?}");
    assert_eq!(pinned.changes(), 12);
}

#[tokio::test]
async fn an_unreachable_server_fails_naming_the_endpoint() {
    let db = TestMongoDatabase::new();
    let port = closed_port();
    let mut config: MongoConfig = db.config.clone();
    config.uri = format!("mongodb://127.0.0.1:{port}/?authSource=admin");
    config.connect_timeout = Duration::from_secs(1);
    config.server_selection_timeout = Duration::from_secs(1);

    let started = Instant::now();
    let report = run(&config, &seed(&db.name), Mode::Check).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 1 s timeouts, not the default 30 s: {:?}",
        started.elapsed()
    );
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{report:#?}");
    assert_eq!(report.endpoint, format!("127.0.0.1:{port}"));
    assert!(report.items.is_empty() && report.identity.is_none(), "{report:#?}");
    let secret = db.config.password.as_ref().unwrap().expose().to_owned();
    let shown = format!("{report:?} {}", serde_json::to_string(&report).unwrap());
    assert!(!shown.contains(&secret), "the password is shown");
}
