//! PostgreSQL administration building blocks: databases, extensions, roles and grants, each
//! idempotent and reporting whether it changed anything. Used by `recommend-db init` and by
//! declarative bootstrapping.

use std::fmt;

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use crate::settings::Secret;

/// What an idempotent step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The object did not exist and was created.
    Created,
    /// The object existed and was changed (a password reset, privileges granted).
    Changed,
    /// Nothing was done: the object was already as asked, or another process created it meanwhile.
    Unchanged,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Changed => "changed",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// A failed administration statement, with the server's message.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct AdminError {
    /// What was being done.
    pub what: String,
    /// The server's message and SQLSTATE, or the client's error.
    pub message: String,
    /// The server's error, where there is one (its text is in `message`).
    pub error: Option<tokio_postgres::Error>,
}

impl AdminError {
    fn new(what: impl Into<String>, error: tokio_postgres::Error) -> AdminError {
        let message = match error.as_db_error() {
            Some(db) => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
            None => crate::error::chain(&error),
        };
        AdminError { what: what.into(), message, error: Some(error) }
    }

    /// [`ErrorKind::Server`](crate::ErrorKind::Server) when the server refused the statement,
    /// else [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
    pub fn kind(&self) -> crate::ErrorKind {
        match self.sqlstate() {
            Some(_) => crate::ErrorKind::Server,
            None if self.error.is_some() => crate::ErrorKind::Unavailable,
            None => crate::ErrorKind::Server,
        }
    }

    /// The server's SQLSTATE (`42710` a duplicate object, `42501` insufficient privilege, ...).
    pub fn sqlstate(&self) -> Option<&str> {
        self.error.as_ref().and_then(|e| e.as_db_error()).map(|db| db.code().code())
    }
}

/// Quotes an identifier for SQL (libpq's `PQescapeIdentifier`).
pub fn quote_ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// Quotes a string literal for SQL (libpq's `PQescapeLiteral`: `E'...'` when it holds a
/// backslash, so it is right whatever `standard_conforming_strings` says).
pub fn quote_literal(text: &str) -> String {
    postgres_protocol::escape::escape_literal(text)
}

async fn exists(client: &impl GenericClient, sql: &str, name: &str, what: &str) -> Result<bool, AdminError> {
    let row = client
        .query_one(sql, &[&name])
        .await
        .map_err(|e| AdminError::new(format!("cannot look up {what} {name}"), e))?;
    Ok(row.get(0))
}

/// Whether database `name` exists on the server.
pub async fn database_exists(client: &impl GenericClient, name: &str) -> Result<bool, AdminError> {
    exists(client, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name, "database").await
}

/// Whether role `name` exists on the server.
pub async fn role_exists(client: &impl GenericClient, name: &str) -> Result<bool, AdminError> {
    exists(client, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name, "role").await
}

/// Creates database `name` (UTF-8, from template0) owned by `owner` when it does not exist.
/// Run it on a connection to another database, such as `postgres`.
pub async fn ensure_database(client: &Client, name: &str, owner: Option<&str>) -> Result<Outcome, AdminError> {
    if database_exists(client, name).await? {
        return Ok(Outcome::Unchanged);
    }
    let mut sql = format!("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0", quote_ident(name));
    if let Some(owner) = owner {
        sql.push_str(&format!(" OWNER {}", quote_ident(owner)));
    }
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(Outcome::Created),
        // Another process created it meanwhile.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(Outcome::Unchanged),
        Err(e) => Err(AdminError::new(format!("cannot create database {name}"), e)),
    }
}

/// Installs extension `name` in the connected database; returns the outcome and its version.
pub async fn ensure_extension(client: &impl GenericClient, name: &str) -> Result<(Outcome, String), AdminError> {
    if let Some(version) = extension_version(client, name).await? {
        return Ok((Outcome::Unchanged, version));
    }
    match client.batch_execute(&format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(name))).await {
        Ok(()) => {}
        Err(e) if concurrently_created(&e) => {
            return Ok((Outcome::Unchanged, extension_version(client, name).await?.unwrap_or_default()));
        }
        Err(e) => {
            return Err(AdminError::new(
                format!(
                    "cannot install extension {name} (it needs a superuser, and the extension installed on the server)"
                ),
                e,
            ));
        }
    }
    Ok((Outcome::Created, extension_version(client, name).await?.unwrap_or_default()))
}

/// The installed version of extension `name` in the connected database; `None` when it is not
/// installed.
pub async fn extension_version(client: &impl GenericClient, name: &str) -> Result<Option<String>, AdminError> {
    let row = client
        .query_opt("SELECT extversion FROM pg_extension WHERE extname = $1", &[&name])
        .await
        .map_err(|e| AdminError::new(format!("cannot look up extension {name}"), e))?;
    Ok(row.map(|r| r.get(0)))
}

/// A login role to create.
#[derive(Clone, Debug)]
pub struct RoleSpec {
    /// The role's name.
    pub name: String,
    /// Needed to create the role; an existing role keeps its password unless `reset_password`.
    pub password: Option<Secret>,
    /// Set the password of a role that already exists (`ALTER ROLE ... PASSWORD`).
    pub reset_password: bool,
}

/// Creates a login role without special attributes. The password is sent as a SCRAM-SHA-256
/// verifier computed here, so the clear text never reaches the server or its statement log.
pub async fn ensure_role(client: &impl GenericClient, spec: &RoleSpec) -> Result<Outcome, AdminError> {
    let exists = role_exists(client, &spec.name).await?;
    let verifier = spec.password.as_ref().map(|p| postgres_protocol::password::scram_sha_256(p.expose().as_bytes()));
    let sql = match (exists, &verifier) {
        (true, Some(v)) if spec.reset_password => {
            format!("ALTER ROLE {} PASSWORD {}", quote_ident(&spec.name), quote_literal(v))
        }
        (true, _) => return Ok(Outcome::Unchanged),
        (false, Some(v)) => format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}",
            quote_ident(&spec.name),
            quote_literal(v)
        ),
        (false, None) => {
            return Err(AdminError {
                what: format!("cannot create role {}", spec.name),
                message: "no password given for it".into(),
                error: None,
            });
        }
    };
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(if exists { Outcome::Changed } else { Outcome::Created }),
        // Another process created it between our look and our CREATE.
        Err(e) if !exists && concurrently_created(&e) => Ok(Outcome::Unchanged),
        Err(e) => Err(AdminError::new(format!("cannot create or update role {}", spec.name), e)),
    }
}

/// The errors of a CREATE that lost a race with a concurrent CREATE of the same object.
fn concurrently_created(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(error.code(), Some(c) if *c == SqlState::DUPLICATE_OBJECT || *c == SqlState::UNIQUE_VIOLATION)
}

/// Serialises administration runs on one server: a session-level advisory lock taken on
/// `client`'s connection (in its database), held until [`AdminLock::release`] or the connection
/// closes. Two runs of the same bootstrap at once (a retried Job and a person) then take turns
/// instead of racing on roles and grants.
#[derive(Debug)]
pub struct AdminLock {
    key: i64,
}

impl AdminLock {
    /// Waits up to `timeout` for the lock named `name`.
    pub async fn acquire(client: &Client, name: &str, timeout: std::time::Duration) -> Result<AdminLock, AdminError> {
        let row = client
            .query_one("SELECT hashtextextended($1, 0)", &[&name])
            .await
            .map_err(|e| AdminError::new("cannot compute the lock key", e))?;
        let key: i64 = row.get(0);
        client
            .batch_execute(&format!("SET lock_timeout = '{}ms'", timeout.as_millis().max(1)))
            .await
            .map_err(|e| AdminError::new("cannot set lock_timeout", e))?;
        let locked = client.query_one("SELECT pg_advisory_lock($1)", &[&key]).await;
        let _ = client.batch_execute("RESET lock_timeout").await;
        locked.map_err(|e| AdminError::new(format!("another {name} is running; waited {timeout:?} for it"), e))?;
        Ok(AdminLock { key })
    }

    /// Releases the lock; `client` must be the connection that acquired it.
    pub async fn release(self, client: &Client) -> Result<(), AdminError> {
        client
            .query_one("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await
            .map_err(|e| AdminError::new("cannot release the administration lock", e))?;
        Ok(())
    }
}

/// Privileges of a database's objects as text: the database, its schemas, relations, and
/// default privileges. Comparing two snapshots tells whether grants changed anything.
pub async fn privilege_snapshot(client: &impl GenericClient) -> Result<String, AdminError> {
    let row = client
        .query_one(
            "SELECT concat_ws(E'\\n',
                 (SELECT datacl::text FROM pg_database WHERE datname = current_database()),
                 (SELECT string_agg(nspname || '=' || coalesce(nspacl::text, ''), ',' ORDER BY nspname) FROM pg_namespace),
                 (SELECT string_agg(c.oid::regclass::text || '=' || coalesce(c.relacl::text, ''), ',' ORDER BY c.oid)
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r','p','v','m','S','f')),
                 (SELECT string_agg(defaclrole::regrole::text || ':' || defaclobjtype::text || '=' || defaclacl::text, ',' ORDER BY oid) FROM pg_default_acl))",
            &[],
        )
        .await
        .map_err(|e| AdminError::new("cannot read privileges", e))?;
    Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
}

/// Privileges for the roles of an application database, in the connected database.
#[derive(Clone, Debug)]
pub struct Grants<'a> {
    /// The database the read-write and read-only roles may connect to (PUBLIC may not).
    pub database: &'a str,
    /// The schema whose tables, sequences and default privileges are granted.
    pub schema: &'a str,
    /// Owns the objects; default privileges apply to what it creates later.
    pub owner: &'a str,
    /// SELECT, INSERT, UPDATE, DELETE on tables; sequences.
    pub read_write: &'a [&'a str],
    /// SELECT only.
    pub read_only: &'a [&'a str],
    /// Tables the read-write roles may only read (such as the migration history).
    pub protected_tables: &'a [&'a str],
}

/// Applies `grants` (least privilege: CONNECT is revoked from PUBLIC). Idempotent; reports
/// whether any privilege changed.
pub async fn apply_grants(client: &Client, grants: &Grants<'_>) -> Result<Outcome, AdminError> {
    let before = privilege_snapshot(client).await?;
    let db = quote_ident(grants.database);
    let schema = quote_ident(grants.schema);
    let owner = quote_ident(grants.owner);
    let mut sql = vec![
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        format!("REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC"),
    ];
    for role in grants.read_write.iter().chain(grants.read_only) {
        let role = quote_ident(role);
        sql.push(format!("GRANT CONNECT ON DATABASE {db} TO {role}"));
        sql.push(format!("GRANT USAGE ON SCHEMA {schema} TO {role}"));
    }
    sql.push(format!("GRANT CONNECT ON DATABASE {db} TO {owner}"));
    for role in grants.read_write {
        let role = quote_ident(role);
        sql.push(format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"));
        sql.push(format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"));
        sql.push(format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        ));
        sql.push(format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}"
        ));
        for table in grants.protected_tables {
            sql.push(format!(
                "DO $$ BEGIN IF to_regclass({}) IS NOT NULL THEN REVOKE INSERT, UPDATE, DELETE ON {schema}.{} FROM {role}; END IF; END $$",
                quote_literal(&format!("{}.{}", quote_ident(grants.schema), quote_ident(table))),
                quote_ident(table)
            ));
        }
    }
    for role in grants.read_only {
        let role = quote_ident(role);
        sql.push(format!("GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"));
        sql.push(format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}"
        ));
    }
    let script = format!("BEGIN;\n{};\nCOMMIT;", sql.join(";\n"));
    if let Err(e) = client.batch_execute(&script).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(AdminError::new("cannot grant privileges", e));
    }
    let after = privilege_snapshot(client).await?;
    Ok(if before == after { Outcome::Unchanged } else { Outcome::Changed })
}

/// A database's own properties, which a dump made without `--create` does not carry: what a
/// restore into a new database must give it so that it replaces the old one faithfully.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DatabaseProperties {
    /// The role that owns the database.
    pub owner: String,
    /// The character encoding, such as `UTF8`.
    pub encoding: String,
    /// `LC_COLLATE`: the sort order of strings.
    pub collate: String,
    /// `LC_CTYPE`: the character classification.
    pub ctype: String,
    /// `c` (libc), `i` (ICU) or `b` (builtin); PostgreSQL 15 and later.
    #[serde(default)]
    pub locale_provider: Option<String>,
    /// The ICU or builtin locale; PostgreSQL 15 and later.
    #[serde(default)]
    pub locale: Option<String>,
    /// The maximum number of concurrent connections; -1 means no limit.
    pub connection_limit: i32,
    /// The default tablespace, such as `pg_default`.
    pub tablespace: String,
    /// `None`: the default privileges (PUBLIC may connect).
    #[serde(default)]
    pub privileges: Option<Vec<Privilege>>,
    /// `ALTER DATABASE ... SET` and `ALTER ROLE ... IN DATABASE ... SET`.
    #[serde(default)]
    pub settings: Vec<Setting>,
    /// `COMMENT ON DATABASE`, where there is one.
    #[serde(default)]
    pub comment: Option<String>,
}

/// One entry of a database's access list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Privilege {
    /// A role name, or `PUBLIC`.
    pub grantee: String,
    /// `CONNECT`, `CREATE` or `TEMPORARY`.
    pub privilege: String,
    /// Whether the grantee may grant it on (`WITH GRANT OPTION`).
    pub grantable: bool,
}

/// A per-database setting, for every role or for one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Setting {
    /// The role the setting applies to; `None` for every role (`ALTER DATABASE ... SET`).
    pub role: Option<String>,
    /// The setting's name, such as `search_path`.
    pub name: String,
    /// The value, as `pg_db_role_setting` stores it.
    pub value: String,
}

/// Settings whose value is a list that PostgreSQL stores already quoted: written back as they are.
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
];

impl DatabaseProperties {
    /// Reads the properties of database `name`; `None` when it does not exist.
    pub async fn read(client: &impl GenericClient, name: &str) -> Result<Option<DatabaseProperties>, AdminError> {
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| AdminError::new("cannot read the server version", e))?
            .get(0);
        let (provider, locale) = match version {
            v if v >= 170_000 => ("d.datlocprovider::text", "d.datlocale"),
            v if v >= 150_000 => ("d.datlocprovider::text", "d.daticulocale"),
            _ => ("NULL::text", "NULL::text"),
        };
        let sql = format!(
            "SELECT d.oid, r.rolname::text, pg_encoding_to_char(d.encoding)::text, d.datcollate::text, \
             d.datctype::text, {provider}, {locale}, d.datconnlimit, t.spcname::text, \
             shobj_description(d.oid, 'pg_database'), d.datacl IS NULL \
             FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba JOIN pg_tablespace t ON t.oid = d.dattablespace \
             WHERE d.datname = $1"
        );
        let Some(row) = client
            .query_opt(&sql, &[&name])
            .await
            .map_err(|e| AdminError::new(format!("cannot read the properties of database {name}"), e))?
        else {
            return Ok(None);
        };
        let oid: u32 = row.get(0);
        let default_acl: bool = row.get(10);
        let privileges = if default_acl {
            None
        } else {
            let rows = client
                .query(
                    "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE r.rolname::text END, a.privilege_type, \
                     a.is_grantable FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee \
                     WHERE d.oid = $1",
                    &[&oid],
                )
                .await
                .map_err(|e| AdminError::new(format!("cannot read the privileges of database {name}"), e))?;
            let mut list: Vec<Privilege> = rows
                .iter()
                .map(|r| Privilege { grantee: r.get(0), privilege: r.get(1), grantable: r.get(2) })
                .collect();
            list.sort();
            Some(list)
        };
        let rows = client
            .query(
                "SELECT r.rolname::text, s.setconfig FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole \
                 WHERE s.setdatabase = $1",
                &[&oid],
            )
            .await
            .map_err(|e| AdminError::new(format!("cannot read the settings of database {name}"), e))?;
        let mut settings = Vec::new();
        for r in &rows {
            let role: Option<String> = r.get(0);
            let config: Vec<String> = r.get(1);
            for item in config {
                let (name, value) = item.split_once('=').unwrap_or((item.as_str(), ""));
                settings.push(Setting { role: role.clone(), name: name.to_owned(), value: value.to_owned() });
            }
        }
        settings.sort();
        Ok(Some(DatabaseProperties {
            owner: row.get(1),
            encoding: row.get(2),
            collate: row.get(3),
            ctype: row.get(4),
            locale_provider: row.get(5),
            locale: row.get(6),
            connection_limit: row.get(7),
            tablespace: row.get(8),
            privileges,
            settings,
            comment: row.get(9),
        }))
    }

    /// `CREATE DATABASE name` with these properties' owner, encoding, locale and tablespace.
    pub fn create_sql(&self, name: &str) -> String {
        let mut sql = format!(
            "CREATE DATABASE {} WITH TEMPLATE template0 OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {} TABLESPACE {}",
            quote_ident(name),
            quote_ident(&self.owner),
            quote_literal(&self.encoding),
            quote_literal(&self.collate),
            quote_literal(&self.ctype),
            quote_ident(&self.tablespace)
        );
        match (self.locale_provider.as_deref(), &self.locale) {
            (Some("i"), Some(locale)) => {
                sql.push_str(&format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", quote_literal(locale)));
            }
            (Some("b"), Some(locale)) => {
                sql.push_str(&format!(" LOCALE_PROVIDER builtin BUILTIN_LOCALE {}", quote_literal(locale)));
            }
            _ => {}
        }
        if self.connection_limit != -1 {
            sql.push_str(&format!(" CONNECTION LIMIT {}", self.connection_limit));
        }
        sql
    }

    /// The statements that give database `name` (created by [`DatabaseProperties::create_sql`])
    /// these privileges, settings and comment.
    pub fn apply_sql(&self, name: &str) -> Vec<String> {
        let db = quote_ident(name);
        let mut sql = Vec::new();
        if let Some(privileges) = &self.privileges {
            sql.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
            sql.push(format!("REVOKE ALL ON DATABASE {db} FROM {}", quote_ident(&self.owner)));
            for p in privileges {
                let grantee = if p.grantee == "PUBLIC" { "PUBLIC".to_owned() } else { quote_ident(&p.grantee) };
                let option = if p.grantable { " WITH GRANT OPTION" } else { "" };
                sql.push(format!("GRANT {} ON DATABASE {db} TO {grantee}{option}", p.privilege));
            }
        }
        for s in &self.settings {
            let value =
                if LIST_SETTINGS.contains(&s.name.as_str()) { s.value.clone() } else { quote_literal(&s.value) };
            let name = quote_ident(&s.name);
            sql.push(match &s.role {
                Some(role) => format!("ALTER ROLE {} IN DATABASE {db} SET {name} = {value}", quote_ident(role)),
                None => format!("ALTER DATABASE {db} SET {name} = {value}"),
            });
        }
        if let Some(comment) = &self.comment {
            sql.push(format!("COMMENT ON DATABASE {db} IS {}", quote_literal(comment)));
        }
        sql
    }
}
