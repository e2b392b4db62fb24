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
    Created,
    Changed,
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
    pub what: String,
    pub message: String,
}

impl AdminError {
    fn new(what: impl Into<String>, error: &tokio_postgres::Error) -> AdminError {
        let message = match error.as_db_error() {
            Some(db) => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
            None => crate::error::chain(error),
        };
        AdminError { what: what.into(), message }
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn exists(client: &impl GenericClient, sql: &str, name: &str, what: &str) -> Result<bool, AdminError> {
    let row = client
        .query_one(sql, &[&name])
        .await
        .map_err(|e| AdminError::new(format!("cannot look up {what} {name}"), &e))?;
    Ok(row.get(0))
}

pub async fn database_exists(client: &impl GenericClient, name: &str) -> Result<bool, AdminError> {
    exists(client, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name, "database").await
}

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
        Err(e) => Err(AdminError::new(format!("cannot create database {name}"), &e)),
    }
}

/// Installs extension `name` in the connected database; returns the outcome and its version.
pub async fn ensure_extension(client: &impl GenericClient, name: &str) -> Result<(Outcome, String), AdminError> {
    if let Some(version) = extension_version(client, name).await? {
        return Ok((Outcome::Unchanged, version));
    }
    client.batch_execute(&format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(name))).await.map_err(|e| {
        AdminError::new(
            format!(
                "cannot install extension {name} (it needs a superuser, and the extension installed on the server)"
            ),
            &e,
        )
    })?;
    Ok((Outcome::Created, extension_version(client, name).await?.unwrap_or_default()))
}

pub async fn extension_version(client: &impl GenericClient, name: &str) -> Result<Option<String>, AdminError> {
    let row = client
        .query_opt("SELECT extversion FROM pg_extension WHERE extname = $1", &[&name])
        .await
        .map_err(|e| AdminError::new(format!("cannot look up extension {name}"), &e))?;
    Ok(row.map(|r| r.get(0)))
}

/// A login role to create.
#[derive(Clone, Debug)]
pub struct RoleSpec {
    pub name: String,
    /// Needed to create the role; an existing role keeps its password unless `reset_password`.
    pub password: Option<Secret>,
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
            });
        }
    };
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| AdminError::new(format!("cannot create or update role {}", spec.name), &e))?;
    Ok(if exists { Outcome::Changed } else { Outcome::Created })
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
        .map_err(|e| AdminError::new("cannot read privileges", &e))?;
    Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
}

/// Privileges for the roles of an application database, in the connected database.
#[derive(Clone, Debug)]
pub struct Grants<'a> {
    pub database: &'a str,
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
        return Err(AdminError::new("cannot grant privileges", &e));
    }
    let after = privilege_snapshot(client).await?;
    Ok(if before == after { Outcome::Unchanged } else { Outcome::Changed })
}
