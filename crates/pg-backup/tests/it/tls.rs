//! Backups over TLS: pg_dump and pg_restore get the same verification as the Rust side, and
//! client tools that cannot speak TLS are refused before anything is written.

use datastores::SslMode;
use pg_backup::{Selector, Stores, Tools};
use testkit::servers::TestPostgres;
use testkit::tls::TestCa;

#[tokio::test]
async fn backup_and_restore_over_verified_tls() {
    testkit::init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dbkit test CA");
    let files = ca.server_files(dir.path(), "server", &["localhost"]);
    let bin = testkit::servers::debian_postgres15_bin();
    let server = TestPostgres::start(&bin, Some(&files));
    let mut pg = server.config("localhost");
    pg.sslmode = SslMode::VerifyFull;
    pg.sslrootcert = Some(files.ca.clone());
    pg.connect()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE secured AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g")
        .await
        .unwrap();
    let backups = dir.path().join("backups");
    let mut options = crate::options(Some(backups.clone()), None);
    options.tools = Tools { bin_dir: Some(bin.clone()) };
    // pg_dump could only connect with TLS (the server rejects anything else), and with the test
    // CA (verify-full fails without one): the same verification as the Rust side.
    let manifest = pg_backup::backup(&pg, &options, &mut |_| {}).await.unwrap();
    assert_eq!(manifest.tables.iter().find(|t| t.name == "secured").and_then(|t| t.rows), Some(5000));
    let log = server.log();
    let authorized: Vec<&str> = log.lines().filter(|l| l.contains("connection authorized")).collect();
    assert!(authorized.len() >= 2, "{log}");
    assert!(authorized.iter().all(|l| l.contains("SSL enabled")), "{log}");

    let restore = pg_backup::RestoreOptions {
        selector: Selector::Latest,
        target_db: Some("restored".into()),
        jobs: 2,
        clean: false,
        yes: false,
        terminate: false,
        drop_old: false,
        no_owner: false,
        maintenance_work_mem: "64MB".into(),
        tools: Tools { bin_dir: Some(bin.clone()) },
        stores: Stores { local_dir: Some(backups.clone()), s3: None },
        maintenance_db: "postgres".into(),
    };
    let report = pg_backup::restore(&pg, &restore).await.unwrap();
    assert_eq!(report.rows, 5000);

    // The same backup with a CA that did not sign the server's certificate fails.
    let other = TestCa::new("other CA").server_files(dir.path(), "other", &["localhost"]);
    let mut wrong = pg.clone();
    wrong.sslrootcert = Some(other.ca);
    let err = pg_backup::backup(&wrong, &options, &mut |_| {}).await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn tools_without_tls_are_refused_before_anything_is_written() {
    testkit::init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dbkit test CA");
    let files = ca.server_files(dir.path(), "server", &["localhost"]);
    let server = TestPostgres::start(&testkit::servers::debian_postgres15_bin(), Some(&files));
    let mut pg = server.config("localhost");
    pg.sslmode = SslMode::Require;
    let backups = dir.path().join("backups");
    // The stack's tools come from the PyPI wheel, whose libpq has no SSL.
    let options = crate::options(Some(backups.clone()), None);
    let pg_dump = options.tools.path("pg_dump").display().to_string();
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        pg.sslmode = mode;
        pg.sslrootcert = (mode != SslMode::Require).then(|| files.ca.clone());
        let err = pg_backup::backup(&pg, &options, &mut |_| {}).await.unwrap_err().to_string();
        // The message names the tool, the mode, and what to install instead.
        assert!(err.contains(&pg_dump), "{err}");
        assert!(
            err.contains("built without SSL support") && err.contains(&format!("sslmode={}", mode.as_str())),
            "{err}"
        );
        assert!(err.contains("postgresql-client-") && err.contains("PG_BIN_DIR"), "{err}");
        assert!(!backups.exists() || std::fs::read_dir(&backups).unwrap().count() == 0, "nothing written");
    }
    // Tools with SSL pass the check: Debian's PostgreSQL 15 client against this 15 server.
    let mut with_tls = crate::options(Some(backups.clone()), None);
    with_tls.tools = Tools { bin_dir: Some(testkit::servers::debian_postgres15_bin()) };
    pg.sslmode = SslMode::Require;
    pg.sslrootcert = None;
    pg_backup::backup(&pg, &with_tls, &mut |_| {}).await.unwrap();

    // Restoring that backup with the wheel's tools is refused the same way, before a scratch
    // database exists.
    let restore = pg_backup::RestoreOptions {
        selector: Selector::Latest,
        target_db: Some("restored".into()),
        jobs: 1,
        clean: false,
        yes: false,
        terminate: false,
        drop_old: false,
        no_owner: false,
        maintenance_work_mem: "64MB".into(),
        tools: crate::tools(),
        stores: Stores { local_dir: Some(backups.clone()), s3: None },
        maintenance_db: "postgres".into(),
    };
    let err = pg_backup::restore(&pg, &restore).await.unwrap_err().to_string();
    let psql = crate::tools().path("psql").display().to_string();
    assert!(err.contains(&psql) && err.contains("built without SSL support"), "{err}");
    let client = pg.connect().await.unwrap();
    let row = client.query_one("SELECT count(*) FROM pg_database WHERE datname LIKE 'restored%'", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "no database was created");

    // So is `verify --compare`, which restores into a scratch database; a plain verify reads
    // the archive only and works with any tools.
    let mut verify = pg_backup::VerifyOptions {
        selector: Selector::Latest,
        compare: true,
        checksums: false,
        against_live: false,
        jobs: 1,
        maintenance_work_mem: "64MB".into(),
        tools: crate::tools(),
        stores: Stores { local_dir: Some(backups.clone()), s3: None },
        maintenance_db: "postgres".into(),
    };
    let err = pg_backup::verify(&pg, &verify).await.unwrap_err().to_string();
    assert!(err.contains(&psql) && err.contains("built without SSL support"), "{err}");
    let row =
        client.query_one("SELECT count(*) FROM pg_database WHERE datname LIKE 'pgbackup_verify%'", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "no scratch database was created");
    verify.compare = false;
    pg_backup::verify(&pg, &verify).await.unwrap();
}
