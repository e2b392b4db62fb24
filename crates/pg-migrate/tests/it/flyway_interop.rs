//! A database migrated by Flyway can be taken over, and pg-migrate's history is Flyway's table.

use testkit::TestDatabase;

use crate::{config, load, scripts};

/// Flyway's DDL for PostgreSQL (flyway-core `createMetaDataTable.sql`), with its names filled in.
const FLYWAY_DDL: &str = r#"CREATE TABLE "public"."flyway_schema_history" (
    "installed_rank" INT NOT NULL,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL
);
ALTER TABLE "public"."flyway_schema_history" ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
CREATE INDEX "flyway_schema_history_s_idx" ON "public"."flyway_schema_history" ("success");"#;

/// The table's shape from the catalog: columns with type, length, nullability and default, then
/// constraints and indexes.
async fn shape(db: &TestDatabase) -> Vec<String> {
    let client = db.connect().await;
    let mut out: Vec<String> = client
        .query(
            "SELECT column_name || ' ' || data_type || ' ' || coalesce(character_maximum_length::text, '-') || ' ' || \
             is_nullable || ' ' || coalesce(column_default, '-') FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'flyway_schema_history' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.extend(
        client
            .query(
                "SELECT indexname || ': ' || indexdef FROM pg_indexes WHERE tablename = 'flyway_schema_history' ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0)),
    );
    out
}

#[tokio::test]
async fn history_table_has_flyways_exact_shape() {
    let ours = TestDatabase::create().await;
    let dir = scripts(&[("V1__a.sql", "CREATE TABLE a (id int);\n")]);
    let config = config(&dir);
    pg_migrate::migrate(&ours.config, &config, &load(&config)).await.unwrap();

    let flyways = TestDatabase::create().await;
    flyways.connect().await.batch_execute(FLYWAY_DDL).await.unwrap();
    assert_eq!(shape(&ours).await, shape(&flyways).await);
    assert_eq!(shape(&ours).await.len(), 12);
}

#[tokio::test]
async fn a_flyway_migrated_database_is_taken_over() {
    let db = TestDatabase::create().await;
    let client = db.connect().await;
    client.batch_execute(FLYWAY_DDL).await.unwrap();
    // What Flyway recorded after migrating V1 and V2 (CRLF line endings) and R__v; the checksums
    // are Flyway's, computed independently of pg-migrate.
    client
        .batch_execute(
            "CREATE TABLE a (id int); CREATE TABLE b (id int); CREATE VIEW v AS SELECT 1 AS one;
             INSERT INTO flyway_schema_history VALUES
               (1, '1', 'create a', 'SQL', 'V1__create_a.sql', -623083431, 'flyway', now(), 12, true),
               (2, '2', 'create b', 'SQL', 'V2__create_b.sql', 2021120402, 'flyway', now(), 7, true),
               (3, NULL, 'view', 'SQL', 'R__view.sql', 1692093550, 'flyway', now(), 3, true);",
        )
        .await
        .unwrap();
    let dir = scripts(&[
        ("V1__create_a.sql", "CREATE TABLE a (id int);\n"),
        ("V2__create_b.sql", "CREATE TABLE b (id int);\r\n-- b\r\n"),
        ("R__view.sql", "CREATE VIEW v AS SELECT 1 AS one;\n"),
        ("V3__create_c.sql", "CREATE TABLE c (id int);\n"),
    ]);
    let config = config(&dir);
    let scripts = load(&config);
    let issues = pg_migrate::validate(&db.config, &config, &scripts).await.unwrap();
    assert_eq!(issues, ["V3__create_c.sql: pending (resolved locally, not applied)"]);
    let report = pg_migrate::migrate(&db.config, &config, &scripts).await.unwrap();
    let applied: Vec<&str> = report.applied.iter().map(|a| a.script.as_str()).collect();
    assert_eq!(applied, ["V3__create_c.sql"]);
    let row = client
        .query_one("SELECT installed_rank, version, description, type, checksum, success FROM flyway_schema_history WHERE script = 'V3__create_c.sql'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 4);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("3"));
    assert_eq!(row.get::<_, String>(2), "create c");
    assert_eq!(row.get::<_, String>(3), "SQL");
    assert_eq!(row.get::<_, Option<i32>>(4), Some(pg_migrate::flyway_checksum("CREATE TABLE c (id int);\n")));
    assert!(row.get::<_, bool>(5));
}
