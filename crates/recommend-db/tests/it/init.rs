use datastores::pgadmin::{Outcome, RoleSpec};
use datastores::{PostgresConfig, Secret};
use recommend_db::{InitOptions, Roles, Steps};
use testkit::{TestDatabase, TestRoles};

fn options(database: &str, roles: &TestRoles, steps: Steps) -> InitOptions {
    let spec = |i: usize| RoleSpec {
        name: roles.names[i].clone(),
        password: Some(Secret::new(format!("pw-{i}-Secret"))),
        reset_password: false,
    };
    InitOptions {
        database: database.to_owned(),
        maintenance_db: "postgres".into(),
        roles: Roles { owner: spec(0), app: spec(1), readonly: spec(2) },
        extensions: recommend_db::EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
        steps,
        partitions_ahead: 3,
    }
}

fn login(admin: &PostgresConfig, database: &str, role: &str, i: usize) -> PostgresConfig {
    let mut config = admin.with_dbname(database);
    config.user = role.to_owned();
    config.password = Some(Secret::new(format!("pw-{i}-Secret")));
    config
}

#[tokio::test]
async fn full_init_is_idempotent_and_roles_get_least_privilege() {
    let roles = TestRoles::new(&["owner", "app", "ro"]);
    let name = testkit::unique_name("recommend");
    let _db = TestDatabase::adopt(&name);
    let admin = testkit::postgres_config();

    let first = recommend_db::init(&admin, &options(&name, &roles, Steps::full())).await.unwrap();
    assert!(first.changed());
    assert!(
        first.steps.iter().any(|s| s.step == "run-migrations" && s.detail.contains("V005__add_vector_extension.sql")),
        "{first:#?}"
    );
    let second = recommend_db::init(&admin, &options(&name, &roles, Steps::full())).await.unwrap();
    assert!(!second.changed(), "a second run changes nothing: {second:#?}");
    assert!(second.steps.iter().all(|s| s.outcome == Outcome::Unchanged));

    // The owner owns the schema's objects.
    let superuser = admin.with_dbname(&name).connect().await.unwrap();
    let owner: String = superuser
        .query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 'users'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, roles.names[0]);

    // The application role reads and writes rows, and nothing more.
    let app = login(&admin, &name, &roles.names[1], 1).connect().await.unwrap();
    app.batch_execute("INSERT INTO users (name, email) VALUES ('a', 'a@example.com'); UPDATE users SET city = 'x'; DELETE FROM users;").await.unwrap();
    app.batch_execute(
        "INSERT INTO user_behaviors (user_id, item_id, action) VALUES (gen_random_uuid(), gen_random_uuid(), 'view')",
    )
    .await
    .unwrap();
    for forbidden in ["CREATE TABLE nope (id int)", "DELETE FROM flyway_schema_history", "DROP TABLE items"] {
        let err = app.batch_execute(forbidden).await.unwrap_err();
        assert!(err.as_db_error().is_some_and(|d| d.code().code() == "42501"), "{forbidden}: {err}");
    }
    // The read-only role reads.
    let ro = login(&admin, &name, &roles.names[2], 2).connect().await.unwrap();
    let n: i64 = ro.query_one("SELECT count(*) FROM user_behaviors", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    for forbidden in [
        "INSERT INTO users (name, email) VALUES ('b', 'b@example.com')",
        "UPDATE items SET title = 'x'",
        "TRUNCATE users",
    ] {
        let err = ro.batch_execute(forbidden).await.unwrap_err();
        assert!(err.as_db_error().is_some_and(|d| d.code().code() == "42501"), "{forbidden}: {err}");
    }
    // PUBLIC cannot connect.
    let can: bool = superuser
        .query_one("SELECT has_database_privilege('public', current_database(), 'CONNECT')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!can);
}

#[tokio::test]
async fn single_steps_and_their_preconditions() {
    let roles = TestRoles::new(&["owner", "app", "ro"]);
    let name = testkit::unique_name("recommend");
    let _db = TestDatabase::adopt(&name);
    let admin = testkit::postgres_config();
    let only = |steps: Steps| options(&name, &roles, steps);

    let err = recommend_db::init(&admin, &only(Steps { install_extensions: true, ..Steps::default() }))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist") && err.contains("--create-db"), "{err}");
    let report = recommend_db::init(&admin, &only(Steps { create_db: true, ..Steps::default() })).await.unwrap();
    assert_eq!(report.steps[0].outcome, Outcome::Created);
    let err = recommend_db::init(&admin, &only(Steps { grant_permissions: true, ..Steps::default() }))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--create-users"), "{err}");

    let mut no_passwords = only(Steps { create_users: true, ..Steps::default() });
    no_passwords.roles.app.password = None;
    let err = recommend_db::init(&admin, &no_passwords).await.unwrap_err().to_string();
    assert!(err.contains(&roles.names[1]) && err.contains("no password"), "{err}");

    assert!(recommend_db::init(&admin, &only(Steps::default())).await.is_err());
}
