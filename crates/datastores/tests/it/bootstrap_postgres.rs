//! The `postgres` section of the bootstrap manifest against the stack's server (roles,
//! databases, grants) and a server of the test's own (settings, which are server-wide).

use datastores::bootstrap::postgres::{Section, run};
use datastores::bootstrap::{Mode, SectionReport, State};
use testkit::servers::TestPostgres;
use testkit::{TestDatabase, TestRoles, postgres_config};

fn section(yaml: &str) -> Section {
    serde_norway::from_str(yaml).unwrap()
}

fn platform(roles: &TestRoles, db: &str) -> Section {
    let [owner, app, readonly] = [&roles.names[0], &roles.names[1], &roles.names[2]];
    section(&format!(
        "roles:
  - {{ name: {owner}, login: false }}
  - {{ name: {app}, password: app-secret-1, connection_limit: 100 }}
  - {{ name: {readonly}, password: ro-secret-2, connection_limit: 20 }}
databases:
  - name: {db}
    owner: {owner}
    extensions: [vector]
    schemas: [model_registry, task_scheduling]
    grants:
      - {{ role: {app}, access: read_write }}
      - {{ role: {readonly}, access: read_only }}
"
    ))
}

fn state_of(report: &SectionReport, kind: &str, name: &str) -> (State, String) {
    let item = report
        .items
        .iter()
        .find(|i| i.kind == kind && i.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", report.items));
    (item.state, item.detail.clone())
}

async fn scalar<T: for<'a> datastores::tokio_postgres::types::FromSql<'a>>(
    client: &datastores::tokio_postgres::Client,
    sql: &str,
) -> T {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn apply_creates_everything_least_privilege_then_changes_nothing() {
    testkit::init();
    let roles = TestRoles::new(&["bs_owner", "bs_app", "bs_ro"]);
    let name = testkit::unique_name("bs");
    let _db = TestDatabase::adopt(&name);
    let wanted = platform(&roles, &name);
    let pg = postgres_config();

    let plan = run(&pg, &wanted, Mode::Plan).await;
    assert!(plan.error.is_none(), "{plan:#?}");
    assert_eq!(state_of(&plan, "database", &name).0, State::Missing);
    assert_eq!(plan.changes(), 0);
    let admin = pg.connect().await.unwrap();
    let exists: bool =
        scalar(&admin, &format!("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}')")).await;
    assert!(!exists, "plan created nothing");

    let applied = run(&pg, &wanted, Mode::Apply).await;
    assert!(!applied.has_errors(), "{applied:#?}");
    assert_eq!(state_of(&applied, "database", &name).0, State::Created);
    assert_eq!(state_of(&applied, "role", &roles.names[1]).0, State::Created);

    // Seen from the server, not from the report.
    let [owner, app, readonly] = [&roles.names[0], &roles.names[1], &roles.names[2]];
    let attrs: String = scalar(
        &admin,
        &format!(
            "SELECT string_agg(rolname || ':' || rolcanlogin || rolsuper || rolcreatedb || rolcreaterole || rolconnlimit, ',' \
             ORDER BY rolname) FROM pg_roles WHERE rolname IN ('{owner}', '{app}', '{readonly}')"
        ),
    )
    .await;
    assert_eq!(
        attrs,
        format!("{app}:truefalsefalsefalse100,{owner}:falsefalsefalsefalse-1,{readonly}:truefalsefalsefalse20")
    );
    let mut in_db = pg.clone();
    in_db.dbname = name.clone();
    let db = in_db.connect().await.unwrap();
    assert_eq!(
        scalar::<String>(&db, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
            .await,
        *owner
    );
    assert_eq!(scalar::<i64>(&db, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'").await, 1);
    assert_eq!(
        scalar::<String>(&db, "SELECT string_agg(nspname || '=' || pg_get_userbyid(nspowner), ',' ORDER BY nspname) FROM pg_namespace WHERE nspname IN ('model_registry', 'task_scheduling')").await,
        format!("model_registry={owner},task_scheduling={owner}")
    );
    // A table the owner creates later gets the grants through default privileges.
    db.batch_execute(&format!("SET ROLE \"{owner}\"; CREATE TABLE model_registry.models (id int); RESET ROLE"))
        .await
        .unwrap();
    let privileges: String = scalar(
        &db,
        &format!(
            "SELECT concat_ws(',', has_table_privilege('{app}', 'model_registry.models', 'INSERT'), \
             has_table_privilege('{readonly}', 'model_registry.models', 'SELECT'), \
             has_table_privilege('{readonly}', 'model_registry.models', 'INSERT'), \
             has_database_privilege('{readonly}', current_database(), 'CONNECT'))"
        ),
    )
    .await;
    assert_eq!(privileges, "t,t,f,t");
    let public: bool = scalar(
        &db,
        "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a \
         WHERE d.datname = current_database() AND a.grantee = 0)",
    )
    .await;
    assert!(!public, "PUBLIC has no privilege on the database");

    let again = run(&pg, &wanted, Mode::Apply).await;
    assert_eq!(again.changes(), 0, "{again:#?}");
    assert!(again.items.iter().all(|i| i.state == State::Ok), "{again:#?}");
    let check = run(&pg, &wanted, Mode::Check).await;
    assert_eq!(check.drift(), 0, "{check:#?}");
    drop(db);
}

#[tokio::test]
async fn drift_by_hand_is_reported_exactly_and_repaired() {
    testkit::init();
    let roles = TestRoles::new(&["bs_owner", "bs_app", "bs_ro"]);
    let name = testkit::unique_name("bs");
    let _db = TestDatabase::adopt(&name);
    let wanted = platform(&roles, &name);
    let pg = postgres_config();
    assert!(!run(&pg, &wanted, Mode::Apply).await.has_errors());
    let [owner, app] = [&roles.names[0], &roles.names[1]];
    let mut in_db = pg.clone();
    in_db.dbname = name.clone();
    let db = in_db.connect().await.unwrap();
    db.batch_execute(&format!(
        "SET ROLE \"{owner}\"; CREATE TABLE task_scheduling.jobs (id int); RESET ROLE; \
         REVOKE INSERT ON task_scheduling.jobs FROM \"{app}\"; ALTER ROLE \"{app}\" CONNECTION LIMIT 5; \
         GRANT CONNECT ON DATABASE \"{name}\" TO PUBLIC"
    ))
    .await
    .unwrap();

    let check = run(&pg, &wanted, Mode::Check).await;
    let grant = state_of(&check, "grant", &format!("{name}.task_scheduling to {app}"));
    assert_eq!(grant, (State::Drift, "lacks INSERT on task_scheduling.jobs".to_owned()));
    assert_eq!(state_of(&check, "role", app), (State::Drift, "connection limit: server 5, manifest 100".to_owned()));
    assert_eq!(state_of(&check, "grant", &format!("{name} PUBLIC")).0, State::Drift);
    assert_eq!(state_of(&check, "grant", &format!("{name}.model_registry to {app}")).0, State::Ok);
    assert_eq!(check.drift(), 3, "{check:#?}");

    let applied = run(&pg, &wanted, Mode::Apply).await;
    assert!(!applied.has_errors(), "{applied:#?}");
    // The grant to the role also took CONNECT from PUBLIC again, in the same transaction.
    assert_eq!(applied.changes(), 2, "{applied:#?}");
    assert_eq!(state_of(&applied, "grant", &format!("{name} PUBLIC")).0, State::Ok);
    let repaired: String = scalar(
        &db,
        &format!(
            "SELECT concat_ws(',', has_table_privilege('{app}', 'task_scheduling.jobs', 'INSERT'), \
             (SELECT rolconnlimit FROM pg_roles WHERE rolname = '{app}'))"
        ),
    )
    .await;
    assert_eq!(repaired, "t,100");
    assert_eq!(run(&pg, &wanted, Mode::Check).await.drift(), 0);
}

#[tokio::test]
async fn a_role_with_other_attributes_is_a_conflict_and_left_alone() {
    testkit::init();
    let roles = TestRoles::new(&["bs_owner", "bs_app", "bs_ro"]);
    let name = testkit::unique_name("bs");
    let _db = TestDatabase::adopt(&name);
    let pg = postgres_config();
    let admin = pg.connect().await.unwrap();
    admin.batch_execute(&format!("CREATE ROLE \"{}\" LOGIN CREATEDB", roles.names[1])).await.unwrap();
    let report = run(&pg, &platform(&roles, &name), Mode::Apply).await;
    let (state, detail) = state_of(&report, "role", &roles.names[1]);
    assert_eq!(state, State::Conflict);
    assert!(detail.contains("exists as LOGIN NOSUPERUSER CREATEDB") && detail.contains("NOCREATEDB"), "{detail}");
    assert!(report.has_errors());
    let still: bool =
        scalar(&admin, &format!("SELECT rolcreatedb FROM pg_roles WHERE rolname = '{}'", roles.names[1])).await;
    assert!(still, "the role was not changed");
}

#[tokio::test]
async fn a_manifest_for_another_cluster_is_refused_before_anything_is_written() {
    testkit::init();
    let roles = TestRoles::new(&["bs_owner", "bs_app", "bs_ro"]);
    let name = testkit::unique_name("bs");
    let _db = TestDatabase::adopt(&name);
    let mut wanted = platform(&roles, &name);
    wanted.expect.system_identifier = Some(datastores::bootstrap::Scalar("7000000000000000001".into()));
    let pg = postgres_config();
    let report = run(&pg, &wanted, Mode::Apply).await;
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("refused") && error.contains("7000000000000000001"), "{error}");
    assert!(report.items.is_empty());
    let admin = pg.connect().await.unwrap();
    let created: i64 =
        scalar(&admin, &format!("SELECT count(*) FROM pg_roles WHERE rolname = ANY('{{{}}}')", roles.names.join(",")))
            .await;
    let db_created: bool =
        scalar(&admin, &format!("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}')")).await;
    assert!(!db_created && created == 0, "nothing was created");

    // The right identity passes.
    let identity = report.identity.unwrap();
    let id = identity.rsplit(' ').next().unwrap().to_owned();
    wanted.expect.system_identifier = Some(datastores::bootstrap::Scalar(id));
    let report = run(&pg, &wanted, Mode::Plan).await;
    assert!(report.error.is_none(), "{report:#?}");
    assert!(report.warnings.is_empty(), "pinned: no warning");
}

#[tokio::test]
async fn settings_are_written_reloaded_or_reported_as_needing_a_restart() {
    testkit::init();
    let server = tokio::task::spawn_blocking(|| TestPostgres::start(&testkit::servers::debian_postgres15_bin(), None))
        .await
        .unwrap();
    let pg = server.config("127.0.0.1");
    let wanted = section(
        "settings:
  max_connections: 200
  shared_buffers: 1GB
  work_mem: 64MB
  maintenance_work_mem: 256MB
  log_statement: ddl
  log_min_duration_statement: 1000
  random_page_cost: 1.1
  effective_cache_size: 3GB
  fsync: on
",
    );
    let check = run(&pg, &wanted, Mode::Check).await;
    assert_eq!(state_of(&check, "setting", "work_mem"), (State::Drift, "server 4MB, manifest 64MB".to_owned()));
    // Given on the server's command line (`-c fsync=off`): ALTER SYSTEM cannot override it.
    let (state, detail) = state_of(&check, "setting", "fsync");
    assert_eq!(state, State::Conflict, "{detail}");
    assert!(detail.contains("command line"), "{detail}");

    let applied = run(&pg, &wanted, Mode::Apply).await;
    for reloadable in [
        "work_mem",
        "maintenance_work_mem",
        "log_statement",
        "log_min_duration_statement",
        "random_page_cost",
        "effective_cache_size",
    ] {
        assert_eq!(state_of(&applied, "setting", reloadable).0, State::Changed, "{applied:#?}");
    }
    for restart in ["max_connections", "shared_buffers"] {
        assert_eq!(state_of(&applied, "setting", restart).0, State::NeedsRestart, "{applied:#?}");
    }
    let client = pg.connect().await.unwrap();
    assert_eq!(scalar::<String>(&client, "SHOW work_mem").await, "64MB");
    assert_eq!(scalar::<String>(&client, "SHOW random_page_cost").await, "1.1");

    let check = run(&pg, &wanted, Mode::Check).await;
    assert_eq!(state_of(&check, "setting", "shared_buffers").0, State::NeedsRestart);
    assert_eq!(state_of(&check, "setting", "work_mem").0, State::Ok);
    assert_eq!(state_of(&check, "setting", "log_statement").0, State::Ok);

    client.batch_execute("ALTER SYSTEM SET work_mem = '4MB'").await.unwrap();
    client.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    // The reload reaches sessions asynchronously; a new session sees it once it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while scalar::<String>(&pg.connect().await.unwrap(), "SHOW work_mem").await != "4MB" {
        assert!(std::time::Instant::now() < deadline, "the server never reloaded its configuration");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let check = run(&pg, &wanted, Mode::Check).await;
    assert_eq!(state_of(&check, "setting", "work_mem"), (State::Drift, "server 4MB, manifest 64MB".to_owned()));
    let applied = run(&pg, &wanted, Mode::Apply).await;
    assert_eq!(state_of(&applied, "setting", "work_mem").0, State::Changed);
}

#[tokio::test]
async fn an_unreachable_server_fails_its_section_with_the_endpoint_named() {
    let mut pg = postgres_config();
    pg.port = testkit::closed_port();
    pg.connect_timeout = std::time::Duration::from_secs(2);
    let report = run(&pg, &Section::default(), Mode::Check).await;
    let error = report.error.clone().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{}", pg.port)), "{error}");
    assert_eq!(report.drift(), 1);
}
