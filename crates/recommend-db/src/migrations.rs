//! The migrations in `migrations/`, compiled into the library so that a binary alone can migrate
//! (a Kubernetes Job needs no copy of the repository).

use pg_migrate::{Embedded, MigrateConfig, Script};

use crate::Error;

/// Every script of `migrations/` (and its `.conf`), compiled in; `build.rs` rebuilds the crate
/// when a file is added. Migrate with `MIGRATIONS.migrate(&pg, &config(DEFAULT_PARTITIONS_AHEAD))`:
///
/// ```rust,no_run
/// use recommend_db::migrations::{DEFAULT_PARTITIONS_AHEAD, MIGRATIONS, config};
///
/// # async fn run(pg: datastores::PostgresConfig) -> Result<(), pg_migrate::MigrateError> {
/// // `pg` connects as the owner role, so that it owns what the migrations create.
/// let report = MIGRATIONS.migrate(&pg, &config(DEFAULT_PARTITIONS_AHEAD)).await?;
/// println!("schema version {}", report.version_after.as_deref().unwrap_or("none"));
/// # Ok(()) }
/// ```
pub const MIGRATIONS: Embedded = pg_migrate::embed_migrations!("../../migrations");

/// File name and text of every script in `migrations/`.
pub const FILES: &[(&str, &str)] = MIGRATIONS.files;

/// Monthly partitions kept ahead of the current month, unless configured otherwise.
pub const DEFAULT_PARTITIONS_AHEAD: u32 = 3;

/// The compiled-in scripts, checked and in the order they run.
///
/// ```rust
/// # fn main() -> Result<(), recommend_db::Error> {
/// let scripts = recommend_db::migrations::scripts()?;
/// let names: Vec<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
/// assert_eq!(names.first(), Some(&"V001__initial_schema.sql"));
/// assert_eq!(names.last(), Some(&"afterMigrate.sql")); // the callback that creates partitions
///
/// // pg-migrate's linter finds nothing risky in them.
/// let all: Vec<&pg_migrate::Script> = scripts.iter().collect();
/// assert!(pg_migrate::lint(&all).is_empty());
/// # Ok(()) }
/// ```
pub fn scripts() -> Result<Vec<Script>, Error> {
    Ok(MIGRATIONS.scripts().map_err(pg_migrate::MigrateError::from)?)
}

/// pg-migrate's settings for this database, as `migrations/flyway.conf` gives them, with
/// `partitions_ahead` monthly partitions created ahead by `afterMigrate.sql`.
///
/// ```rust
/// use recommend_db::migrations::{DEFAULT_PARTITIONS_AHEAD, config};
///
/// let config = config(DEFAULT_PARTITIONS_AHEAD);
/// assert_eq!(config.placeholders["partitions_ahead"], "3");
/// assert_eq!(config.table, "flyway_schema_history");
/// ```
pub fn config(partitions_ahead: u32) -> MigrateConfig {
    let mut config = MigrateConfig::new();
    config.placeholders.insert("partitions_ahead".into(), partitions_ahead.to_string());
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The compiled-in copy must match the folder, file for file: names, kinds, texts, checksums
    /// and transaction modes.
    #[test]
    fn embedded_scripts_match_the_folder() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let on_disk = pg_migrate::load(&[folder], pg_migrate::Encoding::Utf8).unwrap();
        let embedded = scripts().unwrap();
        let key = |s: &Script| {
            (s.name.clone(), s.kind.clone(), s.description.clone(), s.text.clone(), s.checksum, s.transactional)
        };
        assert_eq!(embedded.iter().map(key).collect::<Vec<_>>(), on_disk.iter().map(key).collect::<Vec<_>>());
        assert!(on_disk.len() >= 6, "V001..V005 and afterMigrate.sql");
        let checksums = |scripts: &[Script]| scripts.iter().map(|s| (s.name.clone(), s.checksum)).collect::<Vec<_>>();
        assert_eq!(checksums(&embedded), checksums(&on_disk));
    }

    #[test]
    fn own_migrations_pass_lint() {
        let scripts = scripts().unwrap();
        let refs: Vec<&Script> = scripts.iter().collect();
        let findings = pg_migrate::lint(&refs);
        assert!(findings.is_empty(), "{}", findings.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"));
    }
}
