//! Migrations compiled in with `embed_migrations!`: the same scripts as the folder on disk, and
//! migrate in one call.

use std::path::Path;

use pg_migrate::{Embedded, MigrateConfig, Script};
use testkit::TestDatabase;

use crate::count;

const EMBEDDED: Embedded = pg_migrate::embed_migrations!("tests/it/migrations");

fn folder() -> Vec<Script> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/migrations");
    pg_migrate::load(&[folder], pg_migrate::Encoding::Utf8).unwrap()
}

fn key(script: &Script) -> (String, pg_migrate::Kind, String, String, i32, bool) {
    (
        script.name.clone(),
        script.kind.clone(),
        script.description.clone(),
        script.text.clone(),
        script.checksum,
        script.transactional,
    )
}

#[test]
fn embedded_scripts_equal_the_folder() {
    let names: Vec<&str> = EMBEDDED.files.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "V1_1__index_titles.sql",
            "V1_1__index_titles.sql.conf",
            "V1__create_items.sql",
            "afterMigrate.sql",
            "more/R__item_titles.sql"
        ],
        "scripts and their .conf, sorted by path; README.md left out"
    );
    let embedded: Vec<_> = EMBEDDED.scripts().unwrap().iter().map(key).collect();
    let on_disk: Vec<_> = folder().iter().map(key).collect();
    assert_eq!(embedded, on_disk);
    assert!(!embedded[1].5, "the .conf says executeInTransaction=false");

    let debug = format!("{EMBEDDED:?}");
    assert!(debug.contains("V1__create_items.sql") && !debug.contains("CREATE TABLE"), "{debug}");

    // A trailing comma and a raw string are accepted.
    let again: Embedded = pg_migrate::embed_migrations!(r"tests/it/migrations",);
    assert_eq!(again.files, EMBEDDED.files);
}

#[tokio::test]
async fn migrate_in_one_call_then_nothing_to_do() {
    let db = TestDatabase::create().await;
    let config = MigrateConfig::new();

    let report = EMBEDDED.migrate(&db.config, &config).await.unwrap();
    let applied: Vec<&str> = report.applied.iter().map(|a| a.script.as_str()).collect();
    assert_eq!(applied, ["V1__create_items.sql", "V1_1__index_titles.sql", "more/R__item_titles.sql"]);
    assert_eq!(report.version_after.as_deref(), Some("1.1"));
    assert_eq!(count(&db.config, "SELECT count(*) FROM item_titles").await, 1);
    assert_eq!(count(&db.config, "SELECT count(*) FROM migrated_at").await, 1, "the callback ran");

    let again = EMBEDDED.migrate(&db.config, &config).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.version_after.as_deref(), Some("1.1"));
    assert_eq!(count(&db.config, "SELECT count(*) FROM flyway_schema_history WHERE success").await, 3);

    // The history written from the embedded scripts is the folder's: validate from disk agrees.
    let mut from_disk = MigrateConfig::new();
    from_disk.locations = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/migrations")];
    assert!(pg_migrate::validate(&db.config, &from_disk, &folder()).await.unwrap().is_empty());
}
