//! The `postgres` section: roles, databases with their schemas, extensions and grants, and
//! server settings.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Mode, Scalar, SectionReport};
use crate::postgres::PostgresConfig;
use crate::settings::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub databases: Vec<Database>,
    /// Server settings by name, compared with `pg_settings` in the server's units.
    #[serde(default)]
    pub settings: BTreeMap<String, Scalar>,
}

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
    pub name: String,
    #[serde(default = "yes")]
    pub login: bool,
    /// Needed to create a login role; an existing role keeps its password.
    #[serde(default, deserialize_with = "super::secret_opt")]
    pub password: Option<Secret>,
    /// -1: no limit.
    #[serde(default = "no_limit")]
    pub connection_limit: i32,
    #[serde(default)]
    pub superuser: bool,
    #[serde(default)]
    pub createdb: bool,
    #[serde(default)]
    pub createrole: bool,
    #[serde(default)]
    pub replication: bool,
    #[serde(default)]
    pub bypassrls: bool,
}

fn yes() -> bool {
    true
}

fn no_limit() -> i32 {
    -1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub name: String,
    pub owner: Option<String>,
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Created owned by the database's owner.
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// Access of a role to a database: CONNECT, USAGE on the schemas, privileges on every table and
/// sequence in them and on those the owner creates later (default privileges).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub role: String,
    pub access: Access,
    /// The database's schemas when not given.
    pub schemas: Option<Vec<String>>,
}

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
    let _ = section;
    SectionReport::new(crate::Datastore::Postgres, config.to_string(), mode).failed("not implemented yet")
}
