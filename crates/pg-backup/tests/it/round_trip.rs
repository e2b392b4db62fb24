use pg_backup::{Compression, Format, RestoreOptions, Selector, Stores, VerifyOptions};
use testkit::{TestDatabase, TestS3Prefix};

use crate::{fingerprint, interesting_database, options, tools};

fn restore_options(selector: Selector, target: &str, stores: Stores, jobs: u32) -> RestoreOptions {
    RestoreOptions {
        selector,
        target_db: Some(target.to_owned()),
        jobs,
        clean: false,
        yes: false,
        terminate: false,
        drop_old: false,
        no_owner: false,
        maintenance_work_mem: pg_backup::DEFAULT_MAINTENANCE_WORK_MEM.into(),
        tools: tools(),
        stores,
        maintenance_db: "postgres".into(),
    }
}

/// `verify --compare --checksums` of one backup.
fn full_verify(id: &str, stores: Stores) -> VerifyOptions {
    VerifyOptions {
        selector: Selector::Id(id.to_owned()),
        compare: true,
        checksums: true,
        against_live: false,
        jobs: 2,
        maintenance_work_mem: "256MB".into(),
        tools: tools(),
        stores,
        maintenance_db: "postgres".into(),
    }
}

#[tokio::test]
async fn custom_format_round_trips_through_disk_and_s3() {
    let source = interesting_database().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = TestS3Prefix::new();
    let manifest =
        pg_backup::backup(&source.config, &options(Some(dir.path().into()), Some(prefix.config.clone())), &mut |_| {})
            .await
            .unwrap();
    assert_eq!(manifest.destinations, ["local", "s3"]);
    assert!(manifest.tables.iter().any(|t| t.name == "item_embeddings" && t.rows == Some(120)));
    assert!(manifest.tables.iter().any(|t| t.name.starts_with("user_behaviors_y")), "partitions are listed");
    let expected = fingerprint(&source.config).await;
    assert!(expected.contains_key("public.item_popularity") && expected["public.user_embeddings"].0 == 40);

    // From disk, in parallel.
    let from_disk = TestDatabase::adopt(&testkit::unique_name("restored"));
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    let report = pg_backup::restore(
        &source.config,
        &restore_options(Selector::Id(manifest.id.clone()), &from_disk.name, stores, 2),
    )
    .await
    .unwrap();
    assert_eq!(report.rows, manifest.tables.iter().map(|t| t.rows.unwrap()).sum::<i64>());
    assert_eq!(fingerprint(&from_disk.config).await, expected, "identical contents, materialized views included");

    // From S3, streamed into pg_restore.
    let from_s3 = TestDatabase::adopt(&testkit::unique_name("restored"));
    let stores = Stores { local_dir: None, s3: Some(prefix.config.clone()) };
    pg_backup::restore(&source.config, &restore_options(Selector::Latest, &from_s3.name, stores.clone(), 1))
        .await
        .unwrap();
    assert_eq!(fingerprint(&from_s3.config).await, expected);

    // A restored vector still answers a nearest-neighbour query.
    let client = from_s3.connect().await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM (SELECT item_id FROM item_embeddings ORDER BY embedding <=> (SELECT embedding FROM item_embeddings LIMIT 1) LIMIT 5) t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);

    // verify --compare --checksums against the S3 copy, recorded in its manifest.
    let report = pg_backup::verify(&source.config, &full_verify(&manifest.id, stores.clone())).await.unwrap();
    assert_eq!(report.compared_with.as_deref(), Some("the manifest's exact counts"));
    let listed = pg_backup::list(&stores).await.unwrap();
    assert!(listed.iter().any(|l| l.id == manifest.id && l.verified && l.stored_in == ["s3"]));
}

#[tokio::test]
async fn plain_gzip_restores_with_gunzip_and_psql() {
    let source = interesting_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(Some(dir.path().into()), None);
    opts.format = Format::Plain;
    opts.compression = Compression::Gzip(6);
    let manifest = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    assert!(manifest.artifact.ends_with(".sql.gz"));
    let file = dir.path().join("daily").join(&manifest.artifact);

    // What the seed's restore.sh does.
    let target = TestDatabase::create().await;
    let pg = &target.config;
    let psql = tools().path("psql");
    let script = format!(
        "gunzip -c '{}' | '{}' -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U {} -d {}",
        file.display(),
        psql.display(),
        pg.host,
        pg.port,
        pg.user,
        target.name
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("PGPASSWORD", pg.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(fingerprint(&target.config).await, fingerprint(&source.config).await);
}

#[tokio::test]
async fn directory_format_dumps_and_restores_in_parallel() {
    let source = interesting_database().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = TestS3Prefix::new();
    let mut opts = options(Some(dir.path().into()), Some(prefix.config.clone()));
    opts.format = Format::Directory;
    let manifest = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    assert!(manifest.files.iter().any(|f| f.name == "toc.dat"), "{:?}", manifest.files);
    // Every table's rows were counted and hashed from the dump's files as they were read.
    assert!(manifest.tables.iter().all(|t| t.rows.is_some() && t.content_hash.is_some()), "{:?}", manifest.tables);
    assert_eq!(manifest.tables.iter().find(|t| t.name == "item_embeddings").and_then(|t| t.rows), Some(120));
    let target = TestDatabase::adopt(&testkit::unique_name("restored"));
    let stores = Stores { local_dir: None, s3: Some(prefix.config.clone()) };
    pg_backup::restore(
        &source.config,
        &restore_options(Selector::Id(manifest.id.clone()), &target.name, stores.clone(), 2),
    )
    .await
    .unwrap();
    assert_eq!(fingerprint(&target.config).await, fingerprint(&source.config).await);
    let report = pg_backup::verify(&source.config, &full_verify(&manifest.id, stores)).await.unwrap();
    assert!(report.checks.iter().any(|c| c.contains("row for row")), "{:?}", report.checks);
}

#[tokio::test]
async fn restore_refuses_a_non_empty_target_unless_told() {
    let source = interesting_database().await;
    let dir = tempfile::tempdir().unwrap();
    pg_backup::backup(&source.config, &options(Some(dir.path().into()), None), &mut |_| {}).await.unwrap();
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    let target = TestDatabase::create().await;
    target
        .connect()
        .await
        .batch_execute("CREATE TABLE precious (id int); INSERT INTO precious VALUES (42);")
        .await
        .unwrap();

    let error = pg_backup::restore(&source.config, &restore_options(Selector::Latest, &target.name, stores.clone(), 2))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), datastores::ErrorKind::NeedsConsent, "{error}");
    let err = error.to_string();
    assert!(err.contains("is not empty") && err.contains("--clean --yes"), "{err}");
    let kept: i32 = target.connect().await.query_one("SELECT id FROM precious", &[]).await.unwrap().get(0);
    assert_eq!(kept, 42);

    // With consent, but another session connected: refused unless asked to terminate it.
    let _other = target.connect().await;
    let mut consent = restore_options(Selector::Latest, &target.name, stores.clone(), 2);
    consent.clean = true;
    consent.yes = true;
    let err = pg_backup::restore(&source.config, &consent).await.unwrap_err().to_string();
    assert!(err.contains("--terminate-connections"), "{err}");
    consent.terminate = true;
    pg_backup::restore(&source.config, &consent).await.unwrap();
    assert_eq!(fingerprint(&target.config).await, fingerprint(&source.config).await);
}
