use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pg_backup::{Error, Retention, Selector, Stores, Tier, Tools, VerifyOptions};
use testkit::{PrivateS3, TestDatabase, TestS3Prefix};

use crate::{big_database, options, tools};

fn verify_options(stores: Stores, selector: Selector) -> VerifyOptions {
    VerifyOptions {
        selector,
        compare: false,
        checksums: false,
        against_live: false,
        jobs: 1,
        maintenance_work_mem: "64MB".into(),
        tools: tools(),
        stores,
        maintenance_db: "postgres".into(),
    }
}

#[tokio::test]
async fn one_flipped_byte_fails_verify_and_blocks_restore() {
    let source = big_database(2).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        pg_backup::backup(&source.config, &options(Some(dir.path().into()), None), &mut |_| {}).await.unwrap();
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    pg_backup::verify(&source.config, &verify_options(stores.clone(), Selector::Latest)).await.unwrap();

    let file = dir.path().join("daily").join(&manifest.artifact);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let err = pg_backup::verify(&source.config, &verify_options(stores.clone(), Selector::Latest)).await.unwrap_err();
    assert!(matches!(&err, Error::Verify { problems, .. } if problems[0].contains("SHA-256")), "{err}");

    let target = testkit::unique_name("never");
    let restore = pg_backup::RestoreOptions {
        selector: Selector::Latest,
        target_db: Some(target.clone()),
        jobs: 1,
        clean: false,
        yes: false,
        terminate: false,
        drop_old: false,
        no_owner: false,
        maintenance_work_mem: pg_backup::DEFAULT_MAINTENANCE_WORK_MEM.into(),
        tools: tools(),
        stores,
        maintenance_db: "postgres".into(),
    };
    let err = pg_backup::restore(&source.config, &restore).await.unwrap_err().to_string();
    assert!(err.contains("SHA-256"), "{err}");
    let exists: bool = source
        .connect()
        .await
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[&target])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "the target was not touched");
}

#[tokio::test]
async fn a_truncated_plain_dump_fails_verify() {
    let source = big_database(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(Some(dir.path().into()), None);
    opts.format = pg_backup::Format::Plain;
    opts.compression = pg_backup::Compression::None;
    let manifest = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let file = dir.path().join("daily").join(&manifest.artifact);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    // Without its manifest (as the old backup.sh files), only the structure can tell.
    std::fs::remove_file(dir.path().join("daily").join(manifest.manifest_name())).unwrap();
    let stores = Stores::default();
    let err =
        pg_backup::verify(&source.config, &verify_options(stores, Selector::Path(file))).await.unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[tokio::test]
async fn s3_stopped_during_an_upload_fails_clearly_and_keeps_the_local_copy() {
    let source = big_database(60).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = PrivateS3::start();
    let mut opts = options(Some(dir.path().into()), Some(s3.config.clone()));
    opts.compression = pg_backup::Compression::None;
    let config = source.config.clone();
    let running = tokio::spawn(async move { pg_backup::backup(&config, &opts, &mut |_| {}).await });

    // Wait until the dump is well under way, then take S3 away.
    let partial = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir.join("daily"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial(dir.path()) < 12 << 20 && !running.is_finished() {
        assert!(Instant::now() < deadline, "the backup did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s3.stop();
    let err = running.await.unwrap().unwrap_err();
    let Error::Incomplete { failures, manifest } = &err else { panic!("{err}") };
    assert!(failures.iter().any(|f| f.contains("S3") && f.contains("attempt")), "{failures:?}");
    assert_eq!(manifest.destinations, ["local"]);
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    pg_backup::verify(&source.config, &verify_options(stores, Selector::Id(manifest.id.clone()))).await.unwrap();
}

#[tokio::test]
async fn the_password_never_reaches_pg_dumps_command_line() {
    let source = big_database(40).await;
    let password = source.config.password.as_ref().expect("the stack's PostgreSQL has a password").expose().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(Some(dir.path().into()), None);
    opts.compression = pg_backup::Compression::Gzip(9);
    let config = source.config.clone();
    let running = tokio::spawn(async move { pg_backup::backup(&config, &opts, &mut |_| {}).await });

    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running.is_finished() && Instant::now() < deadline {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if !cmdline.contains("pg_dump") {
                continue;
            }
            let environ = String::from_utf8_lossy(&std::fs::read(entry.path().join("environ")).unwrap_or_default())
                .replace('\0', " ");
            if !environ.contains(&source.name) {
                continue;
            }
            seen += 1;
            assert!(!cmdline.contains(&password), "password on the command line: {cmdline}");
            assert!(!environ.contains(&password), "password in the environment");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.await.unwrap().unwrap();
    assert!(seen > 0, "pg_dump was observed while it ran");
}

#[tokio::test]
async fn bad_inputs_are_named_and_change_nothing() {
    let source = big_database(1).await;
    let err = pg_backup::backup(&source.config, &options(None, None), &mut |_| {}).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid(m) if m.contains("BACKUP_DIR")), "{err}");

    // Debian's PostgreSQL 15 tools against an 18 server.
    let old = PathBuf::from("/usr/lib/postgresql/15/bin");
    if old.join("pg_dump").exists() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(Some(dir.path().into()), None);
        opts.tools = Tools { bin_dir: Some(old) };
        let err = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap_err().to_string();
        assert!(err.contains("version 15, older than the server (version 18)"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
    }

    let dir = tempfile::tempdir().unwrap();
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    let error =
        pg_backup::verify(&source.config, &verify_options(stores, Selector::Id("nope_20200101T000000Z".into())))
            .await
            .unwrap_err();
    assert_eq!(error.kind(), datastores::ErrorKind::NotFound, "{error}");
    let err = error.to_string();
    assert!(err.contains("no backup with id nope_20200101T000000Z"), "{err}");
}

/// Backups with fake dates and tiers: copies of one real backup's manifest and artifact, in
/// each tier's folder, on disk and in the bucket. `cluster` overrides the system identifier.
async fn history(
    dir: &std::path::Path,
    s3: &TestS3Prefix,
    source: &TestDatabase,
    days: &[(&str, Tier)],
    cluster: Option<&str>,
) -> Vec<String> {
    let real = pg_backup::backup(&source.config, &options(Some(dir.into()), Some(s3.config.clone())), &mut |_| {})
        .await
        .unwrap();
    let s3_client = s3.config.client().await;
    let mut ids = Vec::new();
    for (day, tier) in days {
        let at: DateTime<Utc> = DateTime::parse_from_rfc3339(&format!("{day}T02:00:00Z")).unwrap().with_timezone(&Utc);
        let mut manifest = real.clone();
        manifest.id = pg_backup::backup_id(&manifest.database, at);
        manifest.artifact = pg_backup::artifact_name(&manifest.id, manifest.format, manifest.compression);
        manifest.finished_at = at;
        manifest.tier = *tier;
        if let Some(other) = cluster {
            manifest.system_identifier = Some(other.to_owned());
        }
        let folder = dir.join(tier.as_str());
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(dir.join("daily").join(&real.artifact), folder.join(&manifest.artifact)).unwrap();
        let json = serde_json::to_vec(&manifest).unwrap();
        std::fs::write(folder.join(manifest.manifest_name()), &json).unwrap();
        for (name, body) in [(manifest.manifest_name(), json.clone()), (manifest.artifact.clone(), b"x".to_vec())] {
            s3_client
                .put_object()
                .bucket(&s3.config.bucket)
                .key(s3.config.key(&format!("{}/{name}", tier.as_str())))
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
        ids.push(manifest.id);
    }
    // The real one is today's newest.
    ids.push(real.id);
    ids
}

#[tokio::test]
async fn prune_keeps_each_tier_for_its_own_period_everywhere() {
    let source = big_database(1).await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = TestS3Prefix::new();
    let days = [
        ("2025-01-01", Tier::Monthly),
        ("2025-12-01", Tier::Monthly),
        ("2026-01-01", Tier::Monthly),
        ("2026-01-31", Tier::Daily),
        ("2026-02-09", Tier::Daily),
    ];
    let ids = history(dir.path(), &s3, &source, &days, None).await;
    let stores = Stores { local_dir: Some(dir.path().into()), s3: Some(s3.config.clone()) };
    let now = DateTime::parse_from_rfc3339("2026-02-10T12:00:00Z").unwrap().with_timezone(&Utc);
    let retention = Retention { daily: 7, weekly: 0, monthly: 2 };
    let cluster = pg_backup::Cluster::of(&source.config).await.unwrap();

    let dry = pg_backup::prune(&stores, &cluster, retention, now, true).await.unwrap();
    assert_eq!(pg_backup::list(&stores).await.unwrap().len(), ids.len(), "a dry run deletes nothing");
    let done = pg_backup::prune(&stores, &cluster, retention, now, false).await.unwrap();
    assert_eq!(dry.deleted, done.deleted);
    let left: Vec<String> = pg_backup::list(&stores).await.unwrap().into_iter().map(|l| l.id).collect();
    // The monthly backup of January 2026 lives on while the daily of 31 January goes: each tier
    // by its own backups. December's monthly is two months old; the 2025 ones are older.
    assert_eq!(left, [ids[2].clone(), ids[4].clone(), ids[5].clone()], "{left:?}");
    assert_eq!(done.deleted.len(), 6, "three old backups, in both stores: {:?}", done.deleted);
}

#[tokio::test]
async fn prune_never_touches_another_clusters_backups_of_the_same_database() {
    let source = big_database(1).await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = TestS3Prefix::new();
    // Old backups of a database of the same name in another cluster, sharing the store.
    let theirs =
        history(dir.path(), &s3, &source, &[("2020-01-01", Tier::Daily), ("2020-02-01", Tier::Monthly)], Some("42"))
            .await;
    let stores = Stores { local_dir: Some(dir.path().into()), s3: Some(s3.config.clone()) };
    // And one from an older pg-backup, whose manifest names no cluster.
    let daily = dir.path().join("daily");
    let mut legacy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(daily.join(pg_backup::manifest_name(&theirs[2]))).unwrap()).unwrap();
    let legacy_id = pg_backup::backup_id(
        &source.name,
        DateTime::parse_from_rfc3339("2019-05-05T02:00:00Z").unwrap().with_timezone(&Utc),
    );
    legacy["id"] = legacy_id.clone().into();
    legacy["finished_at"] = "2019-05-05T02:00:00Z".into();
    legacy.as_object_mut().unwrap().remove("system_identifier");
    std::fs::write(daily.join(pg_backup::manifest_name(&legacy_id)), serde_json::to_vec(&legacy).unwrap()).unwrap();

    let cluster = pg_backup::Cluster::of(&source.config).await.unwrap();
    assert_ne!(cluster.system_identifier, "42");
    let report = pg_backup::prune(&stores, &cluster, Retention { daily: 1, weekly: 0, monthly: 0 }, Utc::now(), false)
        .await
        .unwrap();
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert_eq!(report.other_clusters, [theirs[0].clone(), theirs[1].clone()]);
    assert_eq!(report.unidentified, std::slice::from_ref(&legacy_id));
    let left: Vec<String> = pg_backup::list(&stores).await.unwrap().into_iter().map(|l| l.id).collect();
    for id in [&theirs[0], &theirs[1], &legacy_id, &theirs[2]] {
        assert!(left.contains(id), "{id} kept: {left:?}");
    }
}

#[tokio::test]
async fn backups_in_the_same_second_never_replace_each_other() {
    let source = big_database(1).await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = TestS3Prefix::new();
    // Stand-ins for backups taken this second and the next, one on disk and one in the bucket.
    let daily = dir.path().join("daily");
    std::fs::create_dir_all(&daily).unwrap();
    let now = Utc::now().timestamp();
    let taken: Vec<String> =
        (now..now + 2).map(|t| pg_backup::backup_id(&source.name, DateTime::from_timestamp(t, 0).unwrap())).collect();
    std::fs::write(daily.join(pg_backup::manifest_name(&taken[0])), "stand-in").unwrap();
    let client = s3.config.client().await;
    let key = s3.config.key(&format!("daily/{}", pg_backup::manifest_name(&taken[1])));
    client.put_object().bucket(&s3.config.bucket).key(&key).body(b"stand-in".to_vec().into()).send().await.unwrap();

    let opts = options(Some(dir.path().into()), Some(s3.config.clone()));
    let first = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let second = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    assert!(!taken.contains(&first.id) && !taken.contains(&second.id), "{} {} {taken:?}", first.id, second.id);
    assert_ne!(first.id, second.id);
    assert_eq!(std::fs::read(daily.join(pg_backup::manifest_name(&taken[0]))).unwrap(), b"stand-in");
    let kept = client.get_object().bucket(&s3.config.bucket).key(&key).send().await.unwrap();
    assert_eq!(kept.body.collect().await.unwrap().into_bytes().as_ref(), b"stand-in");
    std::fs::remove_file(daily.join(pg_backup::manifest_name(&taken[0]))).unwrap();
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    for id in [&first.id, &second.id] {
        pg_backup::verify(&source.config, &verify_options(stores.clone(), Selector::Id(id.clone()))).await.unwrap();
    }
}

#[tokio::test]
async fn verify_compares_with_the_backup_not_the_busy_database() {
    let source = big_database(1).await;
    let dir = tempfile::tempdir().unwrap();
    pg_backup::backup(&source.config, &options(Some(dir.path().into()), None), &mut |_| {}).await.unwrap();
    // The database moves on after the backup, as a production one does.
    source
        .connect()
        .await
        .batch_execute("INSERT INTO big SELECT g, 'new' FROM generate_series(1, 500) g")
        .await
        .unwrap();
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    let mut opts = verify_options(stores, Selector::Latest);
    opts.compare = true;
    opts.checksums = true;
    let report = pg_backup::verify(&source.config, &opts).await.unwrap();
    assert_eq!(report.compared_with.as_deref(), Some("the manifest's exact counts"));
    // Asked explicitly, the live comparison sees the difference.
    opts.against_live = true;
    let err = pg_backup::verify(&source.config, &opts).await.unwrap_err().to_string();
    assert!(err.contains("public.big") && err.contains("10000 rows restored, 10500 expected"), "{err}");
}

#[tokio::test]
async fn a_backup_pruned_while_it_is_verified_does_not_come_back() {
    let source = big_database(20).await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = TestS3Prefix::new();
    let ids = history(dir.path(), &s3, &source, &[("2020-01-01", Tier::Daily)], None).await;
    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    let old = ids[0].clone();
    let mut opts = verify_options(stores.clone(), Selector::Id(old.clone()));
    opts.compare = true;
    // Other tests verify on the same server: this verify's sessions are told apart by name.
    let mut config = source.config.clone();
    config.application_name = testkit::unique_name("verify");
    let application_name = config.application_name.clone();
    let verifying = tokio::spawn(async move { pg_backup::verify(&config, &opts).await });
    // Once the scratch restore is under way, prune deletes the old backup.
    let admin = source.connect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scratch: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname LIKE 'pgbackup_verify_%'",
                &[&application_name],
            )
            .await
            .unwrap()
            .get(0);
        if scratch > 0 {
            break;
        }
        assert!(Instant::now() < deadline && !verifying.is_finished(), "the verification never started restoring");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cluster = pg_backup::Cluster::of(&source.config).await.unwrap();
    let report = pg_backup::prune(&stores, &cluster, Retention { daily: 1, weekly: 0, monthly: 0 }, Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(report.deleted, [format!("local: {old}")]);
    let err = verifying.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("deleted (pruned) while it was verified"), "{err}");
    let listed: Vec<String> = pg_backup::list(&stores).await.unwrap().into_iter().map(|l| l.id).collect();
    assert!(!listed.contains(&old), "{listed:?}");
    assert!(!dir.path().join("daily").join(pg_backup::manifest_name(&old)).exists(), "no manifest without its backup");
}

#[tokio::test]
async fn the_kms_key_is_sent_with_every_upload() {
    let source = big_database(12).await;
    let prefix = TestS3Prefix::new();
    let proxy = testkit::S3Proxy::record(&prefix.config);
    let mut s3 = proxy.config.clone();
    s3.sse = Some(datastores::Sse::Kms { key_id: Some("arn:aws:kms:us-east-1:111122223333:key/dbkit-test".into()) });
    let mut opts = options(None, Some(s3));
    opts.compression = pg_backup::Compression::None;
    opts.part_size = 5 << 20;
    pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let requests = proxy.requests();
    // The object uploads: the multipart upload's creation and the manifest's PUT.
    let starts: Vec<_> = requests
        .iter()
        .filter(|r| {
            (r.method == "POST" && r.target.contains("uploads"))
                || (r.method == "PUT" && !r.target.contains("partNumber"))
        })
        .collect();
    assert!(starts.len() >= 2, "{requests:#?}");
    for request in starts {
        assert_eq!(request.header("x-amz-server-side-encryption"), Some("aws:kms"), "{request:?}");
        assert_eq!(
            request.header("x-amz-server-side-encryption-aws-kms-key-id"),
            Some("arn:aws:kms:us-east-1:111122223333:key/dbkit-test"),
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn verify_sweeps_the_day_old_scratch_databases_of_killed_verifies() {
    let source = big_database(1).await;
    let dir = tempfile::tempdir().unwrap();
    pg_backup::backup(&source.config, &options(Some(dir.path().into()), None), &mut |_| {}).await.unwrap();
    let name = |days: i64| backup_core::scratch_name("pgbackup_verify_", Utc::now() - chrono::TimeDelta::days(days));
    // Left by killed verifies: two days old; two days old but still connected to; one of a
    // verify that may still run. And two that are not verify's: of its shape but without its
    // mark, and marked but named otherwise.
    let (stale, busy, recent, unmarked) = (name(2), name(2), name(0), name(2));
    let other = format!("{}_mine", name(2));
    let admin = source.config.with_dbname("postgres").connect().await.unwrap();
    for name in [&stale, &busy, &recent, &unmarked, &other] {
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
    }
    // Held before it is marked: the verifies of other tests sweep marked, day-old databases that
    // nobody holds, and must not drop this one before the hold starts.
    let holder = source.config.with_dbname(&busy).connect().await.unwrap();
    for name in [&stale, &busy, &recent, &other] {
        let mark = "pg-backup: scratch database of verify --compare";
        admin.batch_execute(&format!("COMMENT ON DATABASE \"{name}\" IS '{mark}'")).await.unwrap();
    }

    let stores = Stores { local_dir: Some(dir.path().into()), s3: None };
    let mut opts = verify_options(stores, Selector::Latest);
    opts.compare = true;
    let report = pg_backup::verify(&source.config, &opts).await.unwrap();
    assert!(report.warnings.iter().any(|w| w.contains(&busy) && w.contains("cannot drop")), "{:?}", report.warnings);
    let exists = |name: String| {
        let admin = &admin;
        async move {
            let n: i64 =
                admin.query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&name]).await.unwrap().get(0);
            n == 1
        }
    };
    assert!(!exists(stale.clone()).await, "a day-old scratch database is dropped");
    assert!(exists(busy.clone()).await, "one still in use is not forced");
    assert!(exists(recent.clone()).await, "a recent one is left to its verify");
    assert!(exists(unmarked.clone()).await && exists(other.clone()).await, "databases of others are left");
    // Another test's verify may sweep the stale one first, once nothing holds it.
    drop(holder);
    for name in [&busy, &recent, &unmarked, &other] {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
    }
}
