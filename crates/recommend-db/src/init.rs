//! `init`: the database, its extensions, schema and roles, each step idempotent.
//!
//! Roles, least privilege first:
//! - the owner (`recommend_owner`) owns every object and runs the migrations;
//! - the application role (`recommend_app`) reads and writes rows, and cannot change the schema
//!   or the migration history;
//! - the read-only role (`recommend_readonly`) reads.

use datastores::PostgresConfig;
use datastores::pgadmin::{self, Grants, Outcome, RoleSpec};
use serde::Serialize;

use crate::{Error, migrations};

/// Which steps to run. `full()` runs all of them, in an order that works on an empty server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Steps {
    pub create_db: bool,
    pub install_extensions: bool,
    pub run_migrations: bool,
    pub create_users: bool,
    pub grant_permissions: bool,
}

impl Steps {
    pub fn full() -> Steps {
        Steps {
            create_db: true,
            install_extensions: true,
            run_migrations: true,
            create_users: true,
            grant_permissions: true,
        }
    }

    pub fn any(&self) -> bool {
        self.create_db || self.install_extensions || self.run_migrations || self.create_users || self.grant_permissions
    }
}

/// The three roles. Passwords are needed only to create a role (or with `reset_password`).
#[derive(Clone, Debug)]
pub struct Roles {
    pub owner: RoleSpec,
    pub app: RoleSpec,
    pub readonly: RoleSpec,
}

#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The application database, e.g. `recommend`.
    pub database: String,
    /// A database that exists, to connect to while creating the application database.
    pub maintenance_db: String,
    pub roles: Roles,
    pub extensions: Vec<String>,
    pub steps: Steps,
    pub partitions_ahead: u32,
}

/// One line of the report: a step, the object, what happened.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub step: &'static str,
    pub object: String,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct InitReport {
    pub steps: Vec<StepReport>,
}

impl InitReport {
    fn push(&mut self, step: &'static str, object: impl Into<String>, outcome: Outcome, detail: impl Into<String>) {
        self.steps.push(StepReport { step, object: object.into(), outcome, detail: detail.into() });
    }

    /// Whether the run changed anything.
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|s| s.outcome != Outcome::Unchanged)
    }
}

/// Runs the selected steps as `admin` (a superuser, or a role with CREATEDB and CREATEROLE).
/// Order: users, database, extensions, migrations, grants.
pub async fn init(admin: &PostgresConfig, options: &InitOptions) -> Result<InitReport, Error> {
    if !options.steps.any() {
        return Err(Error::Invalid("no step selected: use --full or name steps (--create-db, ...)".into()));
    }
    let server = admin.with_dbname(&options.maintenance_db).connect().await?;
    // One init at a time per server: a retried Job and a person running init together must both
    // succeed, not race on roles and grants.
    let lock = pgadmin::AdminLock::acquire(&server, "recommend-db init", std::time::Duration::from_secs(600)).await?;
    let result = init_locked(admin, options, &server).await;
    let released = lock.release(&server).await;
    let report = result?;
    released?;
    Ok(report)
}

async fn init_locked(
    admin: &PostgresConfig,
    options: &InitOptions,
    server: &datastores::tokio_postgres::Client,
) -> Result<InitReport, Error> {
    let mut report = InitReport::default();
    let owner = &options.roles.owner.name;

    if options.steps.create_users {
        for spec in [&options.roles.owner, &options.roles.app, &options.roles.readonly] {
            let outcome = pgadmin::ensure_role(server, spec).await?;
            let detail = match outcome {
                Outcome::Created => "login role created",
                Outcome::Changed => "password reset",
                Outcome::Unchanged => "exists; password left as it was",
            };
            report.push("create-users", &spec.name, outcome, detail);
        }
    }
    if options.steps.create_db {
        let owner_exists = pgadmin::role_exists(server, owner).await?;
        let outcome =
            pgadmin::ensure_database(server, &options.database, owner_exists.then_some(owner.as_str())).await?;
        let detail = if owner_exists {
            format!("owner {owner}")
        } else {
            format!("owner {} (role {owner} does not exist yet)", admin.user)
        };
        report.push("create-db", &options.database, outcome, detail);
    }
    if !pgadmin::database_exists(server, &options.database).await? {
        return Err(Error::Refused(format!(
            "database {:?} does not exist on {}: run recommend-db init --create-db first",
            options.database,
            admin.endpoint()
        )));
    }
    let target = admin.with_dbname(&options.database);
    if options.steps.install_extensions {
        let client = target.connect().await?;
        for extension in &options.extensions {
            let (outcome, version) = pgadmin::ensure_extension(&client, extension).await?;
            report.push("install-extensions", extension, outcome, format!("version {version}"));
        }
    }
    if options.steps.run_migrations {
        // Run as the owner role, so that it owns what the migrations create.
        let mut migrator = target.clone();
        let owner_exists = pgadmin::role_exists(server, owner).await?;
        if owner_exists && migrator.user != *owner {
            migrator.options = Some(format!("-c role={owner}"));
        }
        let scripts = migrations::scripts()?;
        let migrated = pg_migrate::migrate(&migrator, &migrations::config(options.partitions_ahead), &scripts).await?;
        let outcome = if migrated.applied.is_empty() { Outcome::Unchanged } else { Outcome::Changed };
        let as_role = if owner_exists { owner.clone() } else { admin.user.clone() };
        let applied: Vec<&str> = migrated.applied.iter().map(|a| a.script.as_str()).collect();
        let detail = if applied.is_empty() {
            format!("up to date at version {} (as {as_role})", migrated.version_after.as_deref().unwrap_or("-"))
        } else {
            format!("applied {} (as {as_role})", applied.join(", "))
        };
        report.push("run-migrations", &options.database, outcome, detail);
        for warning in migrated.warnings {
            report.push("run-migrations", &options.database, Outcome::Unchanged, format!("warning: {warning}"));
        }
    }
    if options.steps.grant_permissions {
        for spec in [&options.roles.owner, &options.roles.app, &options.roles.readonly] {
            if !pgadmin::role_exists(server, &spec.name).await? {
                return Err(Error::Refused(format!(
                    "role {} does not exist: run recommend-db init --create-users first",
                    spec.name
                )));
            }
        }
        let client = target.connect().await?;
        let grants = Grants {
            database: &options.database,
            schema: "public",
            owner,
            read_write: &[&options.roles.app.name],
            read_only: &[&options.roles.readonly.name],
            protected_tables: &["flyway_schema_history"],
        };
        let outcome = pgadmin::apply_grants(&client, &grants).await?;
        let detail = format!(
            "{}: read-write, {}: read-only, CONNECT revoked from PUBLIC",
            options.roles.app.name, options.roles.readonly.name
        );
        report.push("grant-permissions", &options.database, outcome, detail);
    }
    Ok(report)
}
