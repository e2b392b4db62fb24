//! `init`: the database, its extensions, schema and roles, each step idempotent.
//!
//! Roles, least privilege first:
//! - the owner (`recommend_owner`) owns every object and runs the migrations;
//! - the application role (`recommend_app`) reads and writes rows, and cannot change the schema
//!   or the migration history;
//! - the read-only role (`recommend_readonly`) reads.

use datastores::pgadmin::{self, Grants, Outcome, RoleSpec};
use datastores::{ConfigError, PostgresConfig, Secret, Settings};
use serde::Serialize;

use crate::{Error, migrations};

/// Which steps to run. `full()` runs all of them, in an order that works on an empty server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Steps {
    /// Create the application database, owned by the owner role when it exists (`--create-db`).
    pub create_db: bool,
    /// Install `InitOptions::extensions` in the application database (`--install-extensions`;
    /// needs a superuser for `vector`).
    pub install_extensions: bool,
    /// Apply the compiled-in migrations as the owner role (`--run-migrations`).
    pub run_migrations: bool,
    /// Create the owner, application and read-only login roles (`--create-users`).
    pub create_users: bool,
    /// Grant the application and read-only roles their privileges and revoke `CONNECT` from
    /// `PUBLIC` (`--grant-permissions`); the roles must exist.
    pub grant_permissions: bool,
}

impl Steps {
    /// Every step (`init --full`).
    pub fn full() -> Steps {
        Steps {
            create_db: true,
            install_extensions: true,
            run_migrations: true,
            create_users: true,
            grant_permissions: true,
        }
    }

    /// Whether any step is selected; [`init`] refuses an empty selection.
    pub fn any(&self) -> bool {
        self.create_db || self.install_extensions || self.run_migrations || self.create_users || self.grant_permissions
    }
}

/// The three roles. Passwords are needed only to create a role (or with `reset_password`).
#[derive(Clone, Debug)]
pub struct Roles {
    /// Owns the database, the schema and every object, and runs the migrations
    /// (`recommend_owner`).
    pub owner: RoleSpec,
    /// The application's role: reads and writes rows, cannot change the schema or the migration
    /// history (`recommend_app`).
    pub app: RoleSpec,
    /// Reads only (`recommend_readonly`).
    pub readonly: RoleSpec,
}

/// The roles' default names, and the word of their variables: `RECOMMEND_OWNER_ROLE`, ...
const ROLES: [(&str, &str); 3] =
    [("OWNER", "recommend_owner"), ("APP", "recommend_app"), ("READONLY", "recommend_readonly")];

impl Roles {
    /// Reads the names from `RECOMMEND_{OWNER,APP,READONLY}_ROLE` (default `recommend_owner`,
    /// `recommend_app`, `recommend_readonly`) and the passwords from
    /// `RECOMMEND_{OWNER,APP,READONLY}_PASSWORD`, or their `_FILE` variants. A password not set
    /// is `None`: enough for a role that exists, refused by [`init`] for one it must create.
    /// Existing roles keep their passwords ([`Roles::reset_passwords`] changes that).
    ///
    /// ```rust
    /// use datastores::{Settings, Source};
    /// use recommend_db::Roles;
    ///
    /// # fn main() -> Result<(), datastores::ConfigError> {
    /// let settings = Settings::new().layer(
    ///     Source::Environment,
    ///     [("RECOMMEND_APP_ROLE", "shop_app"), ("RECOMMEND_APP_PASSWORD", "app-pw-7f3a9c")],
    /// );
    /// let roles = Roles::from_settings(&settings)?;
    /// assert_eq!(roles.owner.name, "recommend_owner");
    /// assert_eq!(roles.app.name, "shop_app");
    /// assert!(roles.readonly.password.is_none()); // enough while the role exists
    /// assert!(!format!("{roles:?}").contains("app-pw-7f3a9c"));
    /// # Ok(()) }
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<Roles, ConfigError> {
        Roles::read(settings, true)
    }

    /// The names only, as [`Roles::from_settings`] reads them, without passwords: for steps
    /// that set none (a Job that does not mount the password Secrets).
    pub fn names_from_settings(settings: &Settings) -> Result<Roles, ConfigError> {
        Roles::read(settings, false)
    }

    /// Sets (or keeps) the passwords of roles that exist already, as `--reset-passwords` asks.
    pub fn reset_passwords(mut self, reset: bool) -> Roles {
        for spec in [&mut self.owner, &mut self.app, &mut self.readonly] {
            spec.reset_password = reset;
        }
        self
    }

    fn read(settings: &Settings, passwords: bool) -> Result<Roles, ConfigError> {
        let [owner, app, readonly] = ROLES.map(|(kind, default)| {
            let name = settings.get(&format!("RECOMMEND_{kind}_ROLE"))?.map_or_else(|| default.to_owned(), |v| v.text);
            let password = match passwords {
                true => settings.get(&format!("RECOMMEND_{kind}_PASSWORD"))?.map(|v| Secret::new(v.text)),
                false => None,
            };
            Ok::<_, ConfigError>(RoleSpec { name, password, reset_password: false })
        });
        Ok(Roles { owner: owner?, app: app?, readonly: readonly? })
    }
}

/// What [`init`] does, and to which database.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The application database, e.g. `recommend`.
    pub database: String,
    /// A database that exists, to connect to while creating the application database.
    pub maintenance_db: String,
    /// The roles to create and grant to.
    pub roles: Roles,
    /// Extensions to install, normally [`EXTENSIONS`](crate::EXTENSIONS).
    pub extensions: Vec<String>,
    /// The steps to run.
    pub steps: Steps,
    /// Monthly partitions the migrations' `afterMigrate.sql` creates ahead of the current month
    /// (the `partitions_ahead` placeholder), normally
    /// [`DEFAULT_PARTITIONS_AHEAD`](crate::migrations::DEFAULT_PARTITIONS_AHEAD).
    pub partitions_ahead: u32,
}

/// One line of the report: a step, the object, what happened.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// The step, as its flag names it: `create-users`, `create-db`, `install-extensions`,
    /// `run-migrations`, `grant-permissions`.
    pub step: &'static str,
    /// The role, database or extension it concerns.
    pub object: String,
    /// Created, changed, or already as asked.
    pub outcome: Outcome,
    /// A human-readable detail: the owner, the extension's version, the migrations applied, a
    /// warning.
    pub detail: String,
}

/// What [`init`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InitReport {
    /// One line per object of every step run, in order.
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
///
/// ```rust,no_run
/// use datastores::{PostgresConfig, Settings, Source};
/// use recommend_db::{EXTENSIONS, InitOptions, Roles, Steps, init, migrations};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = Settings::new().layer(
///     Source::Environment,
///     [
///         ("DATABASE_URL", "postgres://postgres@db:5432/recommend"),
///         ("POSTGRES_PASSWORD_FILE", "/run/secrets/postgres"),
///         ("RECOMMEND_OWNER_PASSWORD_FILE", "/run/secrets/owner"),
///         ("RECOMMEND_APP_PASSWORD_FILE", "/run/secrets/app"),
///         ("RECOMMEND_READONLY_PASSWORD_FILE", "/run/secrets/readonly"),
///     ],
/// );
/// let admin = PostgresConfig::from_settings(&settings)?;
/// let options = InitOptions {
///     database: admin.dbname.clone(),
///     maintenance_db: "postgres".into(),
///     roles: Roles::from_settings(&settings)?,
///     extensions: EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
///     steps: Steps::full(),
///     partitions_ahead: migrations::DEFAULT_PARTITIONS_AHEAD,
/// };
/// let report = init(&admin, &options).await?;
/// for step in &report.steps {
///     println!("{} {}: {} ({})", step.step, step.object, step.outcome, step.detail);
/// }
/// # Ok(()) }
/// ```
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
        return Err(Error::NotFound(format!(
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
                return Err(Error::NotFound(format!(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use datastores::Source;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    fn names(roles: &Roles) -> [&str; 3] {
        [&roles.owner.name, &roles.app.name, &roles.readonly.name].map(String::as_str)
    }

    fn passwords(roles: &Roles) -> [Option<&str>; 3] {
        [&roles.owner, &roles.app, &roles.readonly].map(|r| r.password.as_ref().map(Secret::expose))
    }

    #[test]
    fn defaults_without_passwords() {
        let roles = Roles::from_settings(&env(&[])).unwrap();
        assert_eq!(names(&roles), ["recommend_owner", "recommend_app", "recommend_readonly"]);
        assert_eq!(passwords(&roles), [None, None, None]);
        assert!(!roles.owner.reset_password && !roles.app.reset_password && !roles.readonly.reset_password);
    }

    #[test]
    fn names_and_passwords_from_variables_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let app_file = dir.path().join("app-password");
        std::fs::write(&app_file, "app-secret-d4e5f6\n").unwrap();
        let settings = Settings::new().layer(Source::Other("flags".into()), [("RECOMMEND_APP_ROLE", "svc_app")]).layer(
            Source::Environment,
            [
                ("RECOMMEND_OWNER_ROLE", "svc_owner"),
                ("RECOMMEND_APP_ROLE", "overridden"),
                ("RECOMMEND_OWNER_PASSWORD", "owner-secret-a1b2c3"),
                ("RECOMMEND_APP_PASSWORD_FILE", app_file.to_str().unwrap()),
                ("RECOMMEND_READONLY_PASSWORD", ""),
            ],
        );
        let roles = Roles::from_settings(&settings).unwrap().reset_passwords(true);
        assert_eq!(names(&roles), ["svc_owner", "svc_app", "recommend_readonly"]);
        assert_eq!(passwords(&roles), [Some("owner-secret-a1b2c3"), Some("app-secret-d4e5f6"), None]);
        assert!(roles.owner.reset_password && roles.app.reset_password && roles.readonly.reset_password);

        let names_only = Roles::names_from_settings(&settings).unwrap();
        assert_eq!(names(&names_only), names(&roles));
        assert_eq!(passwords(&names_only), [None, None, None]);
    }

    #[test]
    fn debug_never_shows_a_password() {
        let roles = Roles::from_settings(&env(&[
            ("RECOMMEND_OWNER_PASSWORD", "owner-secret-a1b2c3"),
            ("RECOMMEND_APP_PASSWORD", "app-secret-d4e5f6"),
            ("RECOMMEND_READONLY_PASSWORD", "readonly-secret-g7h8"),
        ]))
        .unwrap();
        let shown = format!("{roles:?} {roles:#?}");
        for secret in ["owner-secret-a1b2c3", "app-secret-d4e5f6", "readonly-secret-g7h8"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("recommend_owner"), "{shown}");
    }

    #[test]
    fn errors_name_the_variable_at_fault() {
        let err = Roles::from_settings(&env(&[("RECOMMEND_READONLY_PASSWORD_FILE", "/nonexistent/readonly")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RECOMMEND_READONLY_PASSWORD_FILE") && err.contains("/nonexistent/readonly"), "{err}");
        // Passwords are not read for the names alone, so a Secret that is not mounted is no error.
        let names = Roles::names_from_settings(&env(&[("RECOMMEND_READONLY_PASSWORD_FILE", "/nonexistent/readonly")]));
        assert_eq!(names.unwrap().readonly.name, "recommend_readonly");

        let err = Roles::from_settings(&env(&[
            ("RECOMMEND_OWNER_PASSWORD", "owner-secret-a1b2c3"),
            ("RECOMMEND_OWNER_PASSWORD_FILE", "/run/secrets/owner"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("RECOMMEND_OWNER_PASSWORD and") && err.contains("RECOMMEND_OWNER_PASSWORD_FILE"), "{err}");
        assert!(!err.contains("owner-secret-a1b2c3"), "{err}");

        let err = Roles::names_from_settings(&env(&[("RECOMMEND_APP_ROLE_FILE", "/nonexistent/app-role")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RECOMMEND_APP_ROLE_FILE"), "{err}");
    }
}
