//! The migrations in `migrations/`, compiled into the library so that a binary alone can migrate
//! (a Kubernetes Job needs no copy of the repository).

use pg_migrate::{MigrateConfig, Script};

use crate::Error;

/// File name and text of every script in `migrations/`.
pub const FILES: &[(&str, &str)] = &[
    ("V001__initial_schema.sql", include_str!("../../../migrations/V001__initial_schema.sql")),
    ("V002__add_user_behaviors.sql", include_str!("../../../migrations/V002__add_user_behaviors.sql")),
    ("V003__add_recommendations.sql", include_str!("../../../migrations/V003__add_recommendations.sql")),
    ("V004__add_indexes.sql", include_str!("../../../migrations/V004__add_indexes.sql")),
    ("V005__add_vector_extension.sql", include_str!("../../../migrations/V005__add_vector_extension.sql")),
    ("afterMigrate.sql", include_str!("../../../migrations/afterMigrate.sql")),
];

/// Monthly partitions kept ahead of the current month, unless configured otherwise.
pub const DEFAULT_PARTITIONS_AHEAD: u32 = 3;

pub fn scripts() -> Result<Vec<Script>, Error> {
    let scripts = FILES
        .iter()
        .map(|(name, text)| pg_migrate::script_from_text(name, text, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(pg_migrate::MigrateError::from)?;
    Ok(pg_migrate::collect(scripts).map_err(pg_migrate::MigrateError::from)?)
}

/// pg-migrate's settings for this database, as `migrations/flyway.conf` gives them.
pub fn config(partitions_ahead: u32) -> MigrateConfig {
    let mut config = MigrateConfig::new();
    config.placeholders.insert("partitions_ahead".into(), partitions_ahead.to_string());
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The compiled-in copy must match the folder, file for file.
    #[test]
    fn embedded_scripts_match_the_folder() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let on_disk = pg_migrate::load(&[folder], pg_migrate::Encoding::Utf8).unwrap();
        let embedded = scripts().unwrap();
        let key = |s: &Script| (s.name.clone(), s.checksum, s.transactional);
        assert_eq!(embedded.iter().map(key).collect::<Vec<_>>(), on_disk.iter().map(key).collect::<Vec<_>>());
    }

    #[test]
    fn own_migrations_pass_lint() {
        let scripts = scripts().unwrap();
        let refs: Vec<&Script> = scripts.iter().collect();
        let findings = pg_migrate::lint(&refs);
        assert!(findings.is_empty(), "{}", findings.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"));
    }
}
