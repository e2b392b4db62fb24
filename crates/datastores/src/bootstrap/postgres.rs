//! The `postgres` section: roles, databases with their schemas, extensions and grants, and
//! server settings.

use std::collections::BTreeMap;

use serde::Deserialize;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{Item, Mode, Scalar, SectionReport, State, converge_state, guard_identity};
use crate::Datastore;
use crate::pgadmin::{self, quote_ident, quote_literal};
use crate::postgres::PostgresConfig;
use crate::settings::Secret;

/// The manifest's `postgres` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// The cluster the section is for; a server with another identity is refused.
    #[serde(default)]
    pub expect: Expect,
    /// Roles to create; they are created before the databases, schemas and grants that name them.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Databases to create, with their extensions, schemas and grants.
    #[serde(default)]
    pub databases: Vec<Database>,
    /// Server settings by name, compared with `pg_settings` in the server's units.
    #[serde(default)]
    pub settings: BTreeMap<String, Scalar>,
}

/// The identity the `postgres` section pins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `pg_control_system().system_identifier`.
    pub system_identifier: Option<Scalar>,
}

/// A role. Every attribute not given is the least privilege: no superuser, createdb,
/// createrole, replication or bypassrls. An existing role with other attributes is a conflict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// The role's name; not empty and not starting with `pg_`.
    pub name: String,
    /// Whether the role may log in (default true).
    #[serde(default = "yes")]
    pub login: bool,
    /// Needed to create a login role; an existing role keeps its password.
    #[serde(default, deserialize_with = "super::secret_opt")]
    pub password: Option<Secret>,
    /// -1: no limit.
    #[serde(default = "no_limit")]
    pub connection_limit: i32,
    /// `SUPERUSER` (default false).
    #[serde(default)]
    pub superuser: bool,
    /// `CREATEDB` (default false).
    #[serde(default)]
    pub createdb: bool,
    /// `CREATEROLE` (default false).
    #[serde(default)]
    pub createrole: bool,
    /// `REPLICATION` (default false).
    #[serde(default)]
    pub replication: bool,
    /// `BYPASSRLS` (default false).
    #[serde(default)]
    pub bypassrls: bool,
}

fn yes() -> bool {
    true
}

fn no_limit() -> i32 {
    -1
}

/// A database and what it holds. An existing database owned by another role than `owner` is a
/// conflict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The database's name.
    pub name: String,
    /// Its owner; the connecting user when the database is created without one.
    pub owner: Option<String>,
    /// Extensions installed in it, such as `vector`.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Created owned by the database's owner.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Access of the manifest's roles.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// Access of a role to a database: CONNECT, USAGE on the schemas, privileges on every table and
/// sequence in them and on those the owner creates later (default privileges).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The role, one of the section's `roles`.
    pub role: String,
    /// What the role may do.
    pub access: Access,
    /// The database's schemas when not given.
    pub schemas: Option<Vec<String>>,
}

/// The level of access a [`Grant`] gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// SELECT, INSERT, UPDATE, DELETE on tables; USAGE, SELECT on sequences.
    ReadWrite,
    /// SELECT on tables.
    ReadOnly,
}

impl Section {
    pub(crate) fn validate(&self) -> Result<(), String> {
        for db in &self.databases {
            if db.name.is_empty() {
                return Err("a database has an empty name".into());
            }
            for grant in &db.grants {
                if !self.roles.iter().any(|r| r.name == grant.role) {
                    return Err(format!(
                        "database {}: grant to role {} that the manifest does not define",
                        db.name, grant.role
                    ));
                }
                for schema in grant.schemas.iter().flatten() {
                    if !db.schemas.contains(schema) {
                        return Err(format!(
                            "database {}: grant on schema {schema}, which is not in its schemas",
                            db.name
                        ));
                    }
                }
            }
        }
        for role in &self.roles {
            if role.name.is_empty() || role.name.starts_with("pg_") {
                return Err(format!("role name {:?} is not allowed", role.name));
            }
        }
        Ok(())
    }
}

/// Reads the server, compares it with `section`, and in [`Mode::Apply`] converges it.
pub async fn run(config: &PostgresConfig, section: &Section, mode: Mode) -> SectionReport {
    let mut report = SectionReport::new(Datastore::Postgres, config.endpoint(), mode);
    // Sessions in the manifest's databases open while the server is read (each costs a SCRAM
    // exchange); one whose database does not exist yet is opened again after it is created.
    let early: Vec<_> = section
        .databases
        .iter()
        .map(|db| {
            let mut in_db = config.clone();
            in_db.dbname = db.name.clone();
            tokio::spawn(async move { in_db.connect().await.ok() })
        })
        .collect();
    let client = match config.connect().await {
        Ok(c) => c,
        Err(e) => return report.failed(e.to_string()),
    };
    let identity = match client.query_one("SELECT system_identifier::text FROM pg_control_system()", &[]).await {
        Ok(row) => row.get::<_, String>(0),
        Err(e) => return report.failed(db_error("cannot read the system identifier", &e)),
    };
    let expected = section.expect.system_identifier.as_ref().map(|s| s.0.as_str());
    if let Err(refused) = guard_identity(&mut report, "system identifier", expected, &identity) {
        return report.failed(refused);
    }
    // Roles first: databases, schemas and grants name them.
    roles(&client, section, mode, &mut report).await;
    let databases = futures::future::join_all(section.databases.iter().zip(early).map(|(db, early)| {
        let client = &client;
        async move {
            let early = early.await.ok().flatten();
            database(config, client, section, db, mode, early).await
        }
    }));
    let (databases, settings) = futures::join!(databases, settings(&client, &section.settings, mode));
    for items in databases {
        report.items.extend(items);
    }
    report.items.extend(settings);
    report
}

fn db_error(what: &str, error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{what}: {} [SQLSTATE {}]", db.message(), db.code().code()),
        None => format!("{what}: {}", crate::error::chain(error)),
    }
}

/// The item of an object that differs from the manifest: its state in plan and check; in apply,
/// the outcome of running the SQL `sql` builds.
async fn converge(
    client: &Client,
    mode: Mode,
    missing: bool,
    (kind, name): (&'static str, &str),
    detail: String,
    sql: impl FnOnce() -> String,
    what: &str,
) -> Item {
    let state = converge_state(mode, missing);
    if !mode.writes() {
        return Item::new(kind, name, state, detail);
    }
    match client.batch_execute(&sql()).await {
        Ok(()) => Item::new(kind, name, state, detail),
        Err(e) => Item::new(kind, name, State::Failed, db_error(what, &e)),
    }
}

fn attributes(role: &Role) -> [(&'static str, bool); 6] {
    [
        ("LOGIN", role.login),
        ("SUPERUSER", role.superuser),
        ("CREATEDB", role.createdb),
        ("CREATEROLE", role.createrole),
        ("REPLICATION", role.replication),
        ("BYPASSRLS", role.bypassrls),
    ]
}

fn describe_attributes(attrs: &[(&str, bool)]) -> String {
    attrs
        .iter()
        .map(|(name, on)| if *on { name.to_string() } else { format!("NO{name}") })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn roles(client: &Client, section: &Section, mode: Mode, report: &mut SectionReport) {
    let names: Vec<&str> = section.roles.iter().map(|r| r.name.as_str()).collect();
    let rows = match client
        .query(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, \
             rolconnlimit FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            let message = db_error("cannot read roles", &e);
            for role in &section.roles {
                report.push(Item::new("role", &role.name, State::Failed, &message));
            }
            return;
        }
    };
    for role in &section.roles {
        let name = &role.name;
        let wanted = attributes(role);
        let Some(row) = rows.iter().find(|r| r.get::<_, &str>(0) == name) else {
            if role.login && role.password.is_none() {
                report.push(Item::new(
                    "role",
                    name,
                    if mode.writes() { State::Failed } else { State::Missing },
                    "missing, and the manifest gives no password to create this login role with",
                ));
                continue;
            }
            let attributes = format!("{} CONNECTION LIMIT {}", describe_attributes(&wanted), role.connection_limit);
            let sql = || {
                let mut sql = format!("CREATE ROLE {} {attributes}", quote_ident(name));
                if let Some(password) = &role.password {
                    // A SCRAM verifier computed here: the clear text never reaches the server's log.
                    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
                    sql.push_str(&format!(" PASSWORD {}", quote_literal(&verifier)));
                }
                sql
            };
            let what = format!("cannot create role {name}");
            report.push(converge(client, mode, true, ("role", name), attributes.clone(), sql, &what).await);
            continue;
        };
        let actual: Vec<(&str, bool)> =
            wanted.iter().enumerate().map(|(i, (attr, _))| (*attr, row.get::<_, bool>(i + 1))).collect();
        if actual != wanted {
            report.push(Item::new(
                "role",
                name,
                State::Conflict,
                format!(
                    "exists as {}, the manifest wants {}; apply does not change a role's attributes (ALTER ROLE by \
                     hand, or name another role)",
                    describe_attributes(&actual),
                    describe_attributes(&wanted)
                ),
            ));
            continue;
        }
        let limit: i32 = row.get(7);
        if limit == role.connection_limit {
            report.push(Item::ok("role", name));
            continue;
        }
        let detail = format!("connection limit: server {limit}, manifest {}", role.connection_limit);
        let sql = || format!("ALTER ROLE {} CONNECTION LIMIT {}", quote_ident(name), role.connection_limit);
        report.push(
            converge(client, mode, false, ("role", name), detail, sql, &format!("cannot alter role {name}")).await,
        );
    }
}

async fn database(
    config: &PostgresConfig,
    client: &Client,
    section: &Section,
    db: &Database,
    mode: Mode,
    early: Option<Client>,
) -> Vec<Item> {
    let mut items = Vec::new();
    let name = &db.name;
    let row =
        match client.query_opt("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", &[name]).await {
            Ok(row) => row,
            Err(e) => return vec![Item::new("database", name, State::Failed, db_error("cannot read databases", &e))],
        };
    match (row, &db.owner) {
        (None, owner) => {
            let mut state = converge_state(mode, true);
            let mut detail = String::new();
            if mode.writes() {
                match pgadmin::ensure_database(client, name, owner.as_deref()).await {
                    Ok(_) => {}
                    Err(e) => {
                        state = State::Failed;
                        detail = e.to_string();
                    }
                }
            }
            items.push(Item::new("database", name, state, detail));
            if !mode.writes() || state == State::Failed {
                // Everything in it is missing too.
                for schema in &db.schemas {
                    items.push(Item::new(
                        "schema",
                        format!("{name}.{schema}"),
                        State::Missing,
                        "in a missing database",
                    ));
                }
                for ext in &db.extensions {
                    items.push(Item::new(
                        "extension",
                        format!("{name}.{ext}"),
                        State::Missing,
                        "in a missing database",
                    ));
                }
                for grant in &db.grants {
                    items.push(Item::new(
                        "grant",
                        format!("{name} to {}", grant.role),
                        State::Missing,
                        "in a missing database",
                    ));
                }
                return items;
            }
        }
        (Some(row), Some(owner)) if row.get::<_, String>(0) != *owner => {
            let actual: String = row.get(0);
            items.push(Item::new(
                "database",
                name,
                State::Conflict,
                format!(
                    "owned by {actual}, the manifest says {owner}; apply does not take a database from its owner \
                     (ALTER DATABASE ... OWNER TO by hand)"
                ),
            ));
        }
        (Some(_), _) => items.push(Item::ok("database", name)),
    }
    let mut in_db = config.clone();
    in_db.dbname = name.clone();
    let opened = match early {
        Some(conn) if !conn.is_closed() => Ok(conn),
        _ => in_db.connect().await,
    };
    let conn = match opened {
        Ok(c) => c,
        Err(e) => {
            items.push(Item::new("database", name, State::Failed, format!("cannot connect to it: {e}")));
            return items;
        }
    };
    for ext in &db.extensions {
        let item_name = format!("{name}.{ext}");
        items.push(match pgadmin::extension_version(&conn, ext).await {
            Err(e) => Item::new("extension", item_name, State::Failed, e.to_string()),
            Ok(Some(version)) => Item::new("extension", item_name, State::Ok, format!("version {version}")),
            Ok(None) if !mode.writes() => Item::new("extension", item_name, State::Missing, ""),
            Ok(None) => match pgadmin::ensure_extension(&conn, ext).await {
                Ok((_, version)) => Item::new("extension", item_name, State::Created, format!("version {version}")),
                Err(e) => Item::new("extension", item_name, State::Failed, e.to_string()),
            },
        });
    }
    let owner = match &db.owner {
        Some(o) => o.clone(),
        None => match conn
            .query_one("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()", &[])
            .await
        {
            Ok(row) => row.get(0),
            Err(e) => {
                items.push(Item::new("database", name, State::Failed, db_error("cannot read its owner", &e)));
                return items;
            }
        },
    };
    for schema in &db.schemas {
        items.push(ensure_schema(&conn, name, schema, &owner, mode).await);
    }
    for grant in &db.grants {
        let schemas = grant.schemas.as_ref().unwrap_or(&db.schemas);
        for schema in schemas {
            items.push(grant_item(&conn, section, name, schema, &owner, grant, mode).await);
        }
    }
    // Least privilege for a database whose access the manifest lists; after the grants, so that
    // no listed role loses access in between.
    if !db.grants.is_empty() {
        items.push(public_connect(&conn, name, mode).await);
    }
    items
}

async fn ensure_schema(conn: &Client, db: &str, schema: &str, owner: &str, mode: Mode) -> Item {
    let item_name = format!("{db}.{schema}");
    let row =
        match conn.query_opt("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", &[&schema]).await
        {
            Ok(row) => row,
            Err(e) => return Item::new("schema", item_name, State::Failed, db_error("cannot read schemas", &e)),
        };
    let (sql, detail) = match row {
        Some(row) if row.get::<_, String>(0) == owner => return Item::ok("schema", item_name),
        Some(row) => {
            return Item::new(
                "schema",
                item_name,
                State::Conflict,
                format!(
                    "owned by {}, the manifest wants {owner}; apply does not take a schema from its owner (ALTER \
                     SCHEMA ... OWNER TO by hand)",
                    row.get::<_, String>(0)
                ),
            );
        }
        None => (
            format!("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}", quote_ident(schema), quote_ident(owner)),
            format!("owned by {owner}"),
        ),
    };
    let what = format!("cannot create schema {schema}");
    converge(conn, mode, true, ("schema", &item_name), detail, || sql, &what).await
}

/// Least privilege: nobody connects to the database unless granted.
async fn public_connect(conn: &Client, db: &str, mode: Mode) -> Item {
    let item_name = format!("{db} PUBLIC");
    let row = conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a \
             WHERE d.datname = current_database() AND a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY'))",
            &[],
        )
        .await;
    match row {
        Err(e) => Item::new("grant", item_name, State::Failed, db_error("cannot read the database's privileges", &e)),
        Ok(row) if !row.get::<_, bool>(0) => Item::ok("grant", item_name),
        Ok(_) => {
            let detail = "PUBLIC may connect; the manifest grants CONNECT to its roles only".to_owned();
            let sql = || format!("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC", quote_ident(db));
            converge(conn, mode, false, ("grant", &item_name), detail, sql, "cannot revoke CONNECT from PUBLIC").await
        }
    }
}

fn table_privileges(access: Access) -> &'static [&'static str] {
    match access {
        Access::ReadWrite => &["SELECT", "INSERT", "UPDATE", "DELETE"],
        Access::ReadOnly => &["SELECT"],
    }
}

/// What `grant.role` lacks in `schema`: CONNECT, USAGE, privileges on existing tables and
/// sequences, and the owner's default privileges for later ones.
async fn missing_privileges(
    conn: &Client,
    schema: &str,
    owner: &str,
    role: &str,
    access: Access,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let table_privs: Vec<String> = table_privileges(access).iter().map(|p| p.to_string()).collect();
    let sequence_privs: Vec<String> =
        if access == Access::ReadWrite { vec!["USAGE".into(), "SELECT".into()] } else { Vec::new() };
    let row = conn
        .query_one(
            "SELECT \
               has_database_privilege($1::text, current_database(), 'CONNECT'), \
               has_schema_privilege($1::text, $2::text, 'USAGE'), \
               (SELECT coalesce(array_agg(p || ' on ' || c.oid::regclass::text ORDER BY c.relname, p), '{}') \
                  FROM pg_class c CROSS JOIN unnest($3::text[]) p \
                  WHERE c.relnamespace = $7::text::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                  AND NOT has_table_privilege($1::text, c.oid, p)), \
               (SELECT coalesce(array_agg(p || ' on sequence ' || c.oid::regclass::text ORDER BY c.relname, p), '{}') \
                  FROM pg_class c CROSS JOIN unnest($4::text[]) p \
                  WHERE c.relnamespace = $7::text::regnamespace AND c.relkind = 'S' \
                  AND NOT has_sequence_privilege($1::text, c.oid, p)), \
               (SELECT coalesce(array_agg(p ORDER BY p), '{}') FROM unnest($3::text[]) p WHERE p NOT IN ( \
                  SELECT a.privilege_type FROM pg_default_acl d, aclexplode(d.defaclacl) a \
                  WHERE d.defaclrole = $5::text::regrole AND d.defaclnamespace = $7::text::regnamespace \
                  AND d.defaclobjtype = 'r' AND a.grantee = $6::text::regrole)), \
               (SELECT coalesce(array_agg(p ORDER BY p), '{}') FROM unnest($4::text[]) p WHERE p NOT IN ( \
                  SELECT a.privilege_type FROM pg_default_acl d, aclexplode(d.defaclacl) a \
                  WHERE d.defaclrole = $5::text::regrole AND d.defaclnamespace = $7::text::regnamespace \
                  AND d.defaclobjtype = 'S' AND a.grantee = $6::text::regrole))",
            &[
                &role,
                &schema,
                &table_privs,
                &sequence_privs,
                &quote_ident(owner),
                &quote_ident(role),
                &quote_ident(schema),
            ],
        )
        .await?;
    let mut lacks = Vec::new();
    if !row.get::<_, bool>(0) {
        lacks.push("CONNECT on the database".to_owned());
    }
    if !row.get::<_, bool>(1) {
        lacks.push(format!("USAGE on schema {schema}"));
    }
    lacks.extend(row.get::<_, Vec<String>>(2));
    lacks.extend(row.get::<_, Vec<String>>(3));
    let tables: Vec<String> = row.get(4);
    if !tables.is_empty() {
        lacks.push(format!("default {} on tables {owner} creates", tables.join(", ")));
    }
    let sequences: Vec<String> = row.get(5);
    if !sequences.is_empty() {
        lacks.push(format!("default {} on sequences {owner} creates", sequences.join(", ")));
    }
    Ok(lacks)
}

async fn grant_item(
    conn: &Client,
    section: &Section,
    db: &str,
    schema: &str,
    owner: &str,
    grant: &Grant,
    mode: Mode,
) -> Item {
    let item_name = format!("{db}.{schema} to {}", grant.role);
    let role_known = section.roles.iter().any(|r| r.name == grant.role);
    let lacks = match missing_privileges(conn, schema, owner, &grant.role, grant.access).await {
        Ok(lacks) => lacks,
        // A role or schema that does not exist yet (plan before the first apply).
        Err(e)
            if !mode.writes()
                && matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_OBJECT || *c == SqlState::INVALID_SCHEMA_NAME) =>
        {
            return Item::new("grant", item_name, State::Missing, format!("{:?} access", grant.access));
        }
        Err(e) => return Item::new("grant", item_name, State::Failed, db_error("cannot read privileges", &e)),
    };
    if lacks.is_empty() {
        return Item::ok("grant", item_name);
    }
    let mut state = converge_state(mode, false);
    let mut detail = format!("lacks {}", lacks.join("; "));
    if mode.writes() && role_known {
        let (read_write, read_only): (Vec<&str>, Vec<&str>) = match grant.access {
            Access::ReadWrite => (vec![grant.role.as_str()], vec![]),
            Access::ReadOnly => (vec![], vec![grant.role.as_str()]),
        };
        let grants = pgadmin::Grants {
            database: db,
            schema,
            owner,
            read_write: &read_write,
            read_only: &read_only,
            protected_tables: &[],
        };
        match pgadmin::apply_grants(conn, &grants).await {
            Ok(_) => detail = format!("granted what it lacked: {}", lacks.join("; ")),
            Err(e) => {
                state = State::Failed;
                detail = e.to_string();
            }
        }
    }
    Item::new("grant", item_name, state, detail)
}

/// A setting as read from `pg_settings`.
struct ServerSetting {
    setting: String,
    shown: String,
    unit: Option<String>,
    vartype: String,
    context: String,
    source: String,
    pending_restart: bool,
    /// The last value written in the configuration files (postgresql.auto.conf included).
    file_value: Option<String>,
}

async fn read_settings(client: &Client, names: &[&str]) -> Result<Vec<(String, ServerSetting)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT s.name, s.setting, current_setting(s.name), s.unit, s.vartype, s.context, s.source, \
             s.pending_restart, (SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name \
             ORDER BY f.seqno DESC LIMIT 1) \
             FROM pg_settings s WHERE s.name = ANY($1)",
            &[&names],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                ServerSetting {
                    setting: r.get(1),
                    shown: r.get(2),
                    unit: r.get(3),
                    vartype: r.get(4),
                    context: r.get(5),
                    source: r.get(6),
                    pending_restart: r.get(7),
                    file_value: r.get(8),
                },
            )
        })
        .collect())
}

async fn settings(client: &Client, wanted: &BTreeMap<String, Scalar>, mode: Mode) -> Vec<Item> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = wanted.keys().map(String::as_str).collect();
    let server = match read_settings(client, &names).await {
        Ok(s) => s,
        Err(e) => {
            let message = db_error("cannot read pg_settings", &e);
            return wanted.keys().map(|n| Item::new("setting", n, State::Failed, &message)).collect();
        }
    };
    let mut items = Vec::new();
    let mut written = Vec::new();
    for (name, value) in wanted {
        let Some((_, s)) = server.iter().find(|(n, _)| n == name) else {
            items.push(Item::new("setting", name, State::Failed, "the server has no such setting"));
            continue;
        };
        let want = match normalize_setting(name, &value.0, s.unit.as_deref(), &s.vartype) {
            Ok(v) => v,
            Err(e) => {
                items.push(Item::new("setting", name, State::Failed, format!("manifest value {value}: {e}")));
                continue;
            }
        };
        let have =
            normalize_setting(name, &s.setting, s.unit.as_deref(), &s.vartype).unwrap_or_else(|_| s.setting.clone());
        let pending =
            s.file_value.as_deref().and_then(|f| normalize_setting(name, f, s.unit.as_deref(), &s.vartype).ok());
        // The running value may be right while the files hold another one for the next restart.
        // (Not when the command line sets it: that wins over the files at the restart too, though
        // the server still flags the file's other value as pending.)
        let stale = s.pending_restart && !fixed_source(&s.source) && pending.as_ref().is_some_and(|p| *p != want);
        if have == want && !stale {
            items.push(Item::ok("setting", name));
            continue;
        }
        if have == want && !mode.writes() {
            let held = s.file_value.as_deref().unwrap_or_default();
            let detail = format!(
                "server {} as the manifest says, but the configuration files hold {held} for the next restart",
                s.shown
            );
            items.push(Item::new("setting", name, State::Drift, detail));
            continue;
        }
        let detail = format!("server {}, manifest {value}", s.shown);
        if s.pending_restart && pending.as_ref() == Some(&want) {
            items.push(Item::new(
                "setting",
                name,
                State::NeedsRestart,
                format!("{detail}; written, takes effect on restart"),
            ));
            continue;
        }
        if fixed_source(&s.source) {
            items.push(Item::new(
                "setting",
                name,
                State::Conflict,
                format!("{detail}; set on the server's {}, which ALTER SYSTEM cannot override", s.source),
            ));
            continue;
        }
        if !mode.writes() {
            items.push(Item::new("setting", name, State::Drift, detail));
            continue;
        }
        let sql = format!("ALTER SYSTEM SET {name} = {}", setting_literal(name, &value.0));
        match client.batch_execute(&sql).await {
            Ok(()) => written.push((name, want, detail)),
            Err(e) => {
                items.push(Item::new("setting", name, State::Failed, db_error(&format!("cannot set {name}"), &e)))
            }
        }
    }
    if written.is_empty() {
        return items;
    }
    if let Err(e) = client.batch_execute("SELECT pg_reload_conf()").await {
        let message = db_error("written, but the configuration reload failed", &e);
        items.extend(written.into_iter().map(|(n, _, _)| Item::new("setting", n, State::Failed, &message)));
        return items;
    }
    // The reload is asynchronous: wait until this session sees it (up to 15 s: the postmaster
    // and this backend may both be slow to get to it on a loaded server).
    let names: Vec<&str> = written.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut after = Vec::new();
    for _ in 0..150 {
        after = read_settings(client, &names).await.unwrap_or_default();
        let settled = written.iter().all(|(n, want, _)| {
            after.iter().any(|(an, s)| {
                an == *n
                    && (!reloads(&s.context)
                        || normalize_setting(n, &s.setting, s.unit.as_deref(), &s.vartype).ok().as_ref() == Some(want))
            })
        });
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for (name, want, detail) in written {
        let now = after.iter().find(|(n, _)| n == name).map(|(_, s)| s);
        let state = match now {
            Some(s)
                if normalize_setting(name, &s.setting, s.unit.as_deref(), &s.vartype).ok() == Some(want.clone()) =>
            {
                State::Changed
            }
            Some(s) if s.context == "postmaster" || s.pending_restart => State::NeedsRestart,
            // Read by each session when it starts: this one keeps its value.
            Some(s) if !reloads(&s.context) => State::Changed,
            _ => State::Failed,
        };
        let detail = match state {
            State::NeedsRestart => format!("{detail}; written with ALTER SYSTEM, takes effect on restart"),
            State::Changed if now.is_some_and(|s| !reloads(&s.context)) => {
                format!("{detail}; written with ALTER SYSTEM, applies to sessions that start from now on")
            }
            State::Failed => {
                format!("{detail}; written with ALTER SYSTEM, but the server still has the old value after a reload")
            }
            _ => format!("{detail}; set with ALTER SYSTEM and reloaded"),
        };
        items.push(Item::new("setting", name, state, detail));
    }
    items
}

/// Sources that win over the configuration files, `ALTER SYSTEM`'s included.
fn fixed_source(source: &str) -> bool {
    matches!(source, "command line" | "environment variable" | "override")
}

/// Whether a reload changes the setting for a running session.
fn reloads(context: &str) -> bool {
    matches!(context, "sighup" | "superuser" | "user")
}

/// Settings that hold a list of names, each quoted on its own (`GUC_LIST_QUOTE`).
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "shared_preload_libraries",
    "local_preload_libraries",
    "session_preload_libraries",
    "temp_tablespaces",
];

fn list_items(value: &str) -> Vec<String> {
    value.split(',').map(|v| v.trim().trim_matches('"').to_owned()).filter(|v| !v.is_empty()).collect()
}

/// The right-hand side of `ALTER SYSTEM SET name = ...`: one literal, or one per element of a
/// list setting (a single literal `'a,b'` would name one library called "a,b").
fn setting_literal(name: &str, value: &str) -> String {
    if LIST_SETTINGS.contains(&name) {
        let items = list_items(value);
        if items.is_empty() {
            return "''".into();
        }
        return items.iter().map(|v| quote_literal(v)).collect::<Vec<_>>().join(", ");
    }
    quote_literal(value)
}

fn normalize_setting(name: &str, value: &str, unit: Option<&str>, vartype: &str) -> Result<String, String> {
    if LIST_SETTINGS.contains(&name) {
        return Ok(list_items(value).join(","));
    }
    normalize(value, unit, vartype)
}

/// A setting's value in the server's unit, so that `1GB` and `131072` (8kB pages) compare
/// equal. Booleans become `on`/`off`; enums compare case-insensitively.
pub fn normalize(value: &str, unit: Option<&str>, vartype: &str) -> Result<String, String> {
    let value = value.trim();
    match vartype {
        "bool" => match value.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" | "t" | "y" => Ok("on".into()),
            "off" | "false" | "no" | "0" | "f" | "n" => Ok("off".into()),
            _ => Err("not a boolean".into()),
        },
        "integer" | "real" => {
            let split = value
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
                .unwrap_or(value.len());
            let (number, suffix) = value.split_at(split);
            let number: f64 = number.parse().map_err(|_| format!("{value:?} is not a number"))?;
            let suffix = suffix.trim();
            let amount = match (unit, suffix) {
                (_, "") => number,
                (Some(unit), suffix) => {
                    let base = unit_base(unit).ok_or_else(|| format!("unknown server unit {unit}"))?;
                    let given = unit_base(suffix).ok_or_else(|| format!("unknown unit {suffix}"))?;
                    if base.1 != given.1 {
                        return Err(format!("{suffix} is not a unit of {unit}"));
                    }
                    number * given.0 / base.0
                }
                (None, suffix) => return Err(format!("this setting takes no unit ({suffix})")),
            };
            if vartype == "integer" { Ok(format!("{}", amount.round() as i64)) } else { Ok(format!("{amount}")) }
        }
        "enum" => Ok(value.to_ascii_lowercase()),
        _ => Ok(value.to_owned()),
    }
}

/// A unit's size in bytes or milliseconds, and which of the two it measures.
fn unit_base(unit: &str) -> Option<(f64, bool)> {
    let (count, unit) = match unit.find(|c: char| !c.is_ascii_digit()) {
        Some(0) | None => (1.0, unit),
        Some(i) => (unit[..i].parse().ok()?, &unit[i..]),
    };
    let (size, memory) = match unit {
        "B" => (1.0, true),
        "kB" => (1024.0, true),
        "MB" => (1024.0 * 1024.0, true),
        "GB" => (1024.0 * 1024.0 * 1024.0, true),
        "TB" => (1024.0 * 1024.0 * 1024.0 * 1024.0, true),
        "us" => (0.001, false),
        "ms" => (1.0, false),
        "s" => (1000.0, false),
        "min" => (60_000.0, false),
        "h" => (3_600_000.0, false),
        "d" => (86_400_000.0, false),
        _ => return None,
    };
    Some((count * size, memory))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn settings_compare_in_the_servers_unit() {
        assert_eq!(normalize("1GB", Some("8kB"), "integer").unwrap(), "131072");
        assert_eq!(normalize("131072", Some("8kB"), "integer").unwrap(), "131072");
        assert_eq!(normalize("64MB", Some("kB"), "integer").unwrap(), "65536");
        assert_eq!(normalize("1000", Some("ms"), "integer").unwrap(), "1000");
        assert_eq!(normalize("1s", Some("ms"), "integer").unwrap(), "1000");
        assert_eq!(normalize("1.1", None, "real").unwrap(), "1.1");
        assert_eq!(normalize("DDL", None, "enum").unwrap(), "ddl");
        assert_eq!(normalize("yes", None, "bool").unwrap(), "on");
        assert!(normalize("1GB", Some("ms"), "integer").unwrap_err().contains("not a unit"));
        assert!(normalize("lots", Some("kB"), "integer").is_err());
        assert_eq!(
            super::setting_literal("shared_preload_libraries", "pg_stat_statements, auto_explain"),
            "'pg_stat_statements', 'auto_explain'"
        );
        assert_eq!(
            super::normalize_setting("shared_preload_libraries", "\"pg_stat_statements\",auto_explain", None, "string")
                .unwrap(),
            "pg_stat_statements,auto_explain"
        );
        assert_eq!(super::setting_literal("work_mem", "64MB"), "'64MB'");
    }
}
