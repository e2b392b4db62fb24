//! Migrations compiled into the program: [`embed_migrations!`](crate::embed_migrations) and
//! [`Embedded`].

use std::fmt;

use datastores::PostgresConfig;

use crate::config::MigrateConfig;
use crate::engine::{MigrateReport, migrate};
use crate::error::{MigrateError, SourceError};
use crate::source::Script;

/// Compiles a folder of migrations into the program and evaluates to an [`Embedded`] (a
/// constant expression), so that a service or a Job image needs no copy of the folder.
///
/// The folder is given relative to the `Cargo.toml` of the crate that uses the macro. Every
/// file pg-migrate would read there is embedded (`V<version>__<description>.sql`,
/// `R__<description>.sql`, `beforeMigrate*.sql` / `afterMigrate*.sql` callbacks, in subfolders
/// too, and each script's `<script>.sql.conf`); other files (`flyway.conf`, notes) are left out.
/// The scripts must be UTF-8 (a byte-order mark is skipped).
///
/// ```rust,no_run
/// // The folder, relative to Cargo.toml: here the repository's `migrations/`.
/// static MIGRATIONS: pg_migrate::Embedded = pg_migrate::embed_migrations!("../../migrations");
///
/// # async fn run(pg: &datastores::PostgresConfig) -> Result<(), pg_migrate::MigrateError> {
/// let mut config = pg_migrate::MigrateConfig::new();
/// config.placeholders.insert("partitions_ahead".into(), "3".into());
/// let report = MIGRATIONS.migrate(pg, &config).await?;
/// # Ok(()) }
/// ```
///
/// Editing an embedded file rebuilds the crate (each file is embedded with `include_str!`), but
/// Cargo does not notice a file added to the folder. A `build.rs` beside the `Cargo.toml` whose
/// `main` prints this line makes it:
///
/// ```rust,no_run
/// println!("cargo:rerun-if-changed=migrations");
/// ```
///
/// A misnamed script or a duplicate version is reported by [`Embedded::scripts`], naming the
/// file, exactly as [`load`](crate::load) reports it for the folder on disk.
#[macro_export]
macro_rules! embed_migrations {
    ($($folder:tt)*) => {
        $crate::Embedded { files: $crate::__embedded_files!($($folder)*) }
    };
}

/// Migration scripts compiled into the program by [`embed_migrations!`](crate::embed_migrations).
#[derive(Clone, Copy)]
pub struct Embedded {
    /// Every embedded file (scripts and their `.conf`) as its path relative to the folder,
    /// `/`-separated, and its text, sorted by path.
    pub files: &'static [(&'static str, &'static str)],
}

impl fmt::Debug for Embedded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedded").field("files", &self.files.iter().map(|(name, _)| name).collect::<Vec<_>>()).finish()
    }
}

impl Embedded {
    /// The scripts, checked and ordered as [`load`](crate::load) reads the folder from disk:
    /// the same names, descriptions, checksums and transaction modes, so the history cannot
    /// tell the two apart. A misnamed script or a duplicate version is an error naming the file.
    ///
    /// ```rust
    /// use pg_migrate::{Embedded, TransactionSource};
    ///
    /// # fn main() -> Result<(), pg_migrate::SourceError> {
    /// // What embed_migrations! makes of a folder, written out.
    /// let embedded = Embedded {
    ///     files: &[
    ///         ("V1__items.sql", "CREATE TABLE items (id bigint);"),
    ///         ("V2__index_ids.sql", "CREATE INDEX CONCURRENTLY items_id ON items (id);"),
    ///         ("V2__index_ids.sql.conf", "executeInTransaction=false"),
    ///         ("views/R__item_ids.sql", "CREATE OR REPLACE VIEW item_ids AS SELECT id FROM items;"),
    ///     ],
    /// };
    /// let scripts = embedded.scripts()?;
    /// let names: Vec<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
    /// assert_eq!(names, ["V1__items.sql", "V2__index_ids.sql", "views/R__item_ids.sql"]);
    /// assert!(!scripts[1].transactional);
    /// assert_eq!(scripts[1].transaction_source, TransactionSource::Conf);
    ///
    /// let misnamed = Embedded { files: &[("V1_items.sql", "CREATE TABLE items (id bigint);")] };
    /// let error = misnamed.scripts().unwrap_err();
    /// assert!(error.to_string().starts_with("V1_items.sql: expected V<version>__<description>.sql"), "{error}");
    /// # Ok(()) }
    /// ```
    pub fn scripts(&self) -> Result<Vec<Script>, SourceError> {
        crate::source::from_files(self.files)
    }

    /// Migrates the database `pg` points at in one call: connects, takes the migration lock,
    /// applies what is pending and reports, as [`migrate`](crate::migrate) does with
    /// [`Embedded::scripts`]. `config.locations` and `config.encoding` are not used.
    ///
    /// A service that migrates at start-up should migrate under an `application_name` of its
    /// own (not its pool's): a migrator waits for statements of sessions with its
    /// `application_name`, which it takes for an earlier, interrupted migrator's.
    pub async fn migrate(&self, pg: &PostgresConfig, config: &MigrateConfig) -> Result<MigrateReport, MigrateError> {
        let scripts = self.scripts()?;
        migrate(pg, config, &scripts).await
    }
}
