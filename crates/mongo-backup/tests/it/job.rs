//! The backup job in one call: the backup, the prune its policy asks for, the push of the run.

use backup_core::{BackupManifest as _, Tier};
use chrono::{Duration, Utc};
use datastores::Secret;
use datastores::mongodb_driver::bson::{Document, doc};
use mongo_backup::{Notifications, Policy, Retention};
use testkit::TestMongoDatabase;
use testkit::servers::Pushgateway;

use crate::{client, local, options};

/// Moves a real backup's files to a backup of the same name and deployment taken `days_ago`.
fn backdate(dir: &std::path::Path, real: &mongo_backup::Manifest, days_ago: i64) -> String {
    let daily = dir.join(Tier::Daily.as_str());
    let mut manifest = real.clone();
    manifest.finished_at = Utc::now() - Duration::days(days_ago);
    manifest.started_at = manifest.finished_at;
    manifest.id = backup_core::backup_id(&format!("mongodb-{}", manifest.name), manifest.finished_at);
    manifest.artifact = mongo_backup::artifact_name(&manifest.id, manifest.compression);
    std::fs::rename(daily.join(&real.artifact), daily.join(&manifest.artifact)).unwrap();
    std::fs::remove_file(daily.join(real.manifest_name())).unwrap();
    std::fs::write(daily.join(manifest.manifest_name()), serde_json::to_vec(&manifest).unwrap()).unwrap();
    manifest.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_backs_up_prunes_by_the_policy_and_pushes_the_run() {
    let source = TestMongoDatabase::new();
    client(&source)
        .await
        .database(&source.name)
        .collection::<Document>("events")
        .insert_many((0..50).map(|i| doc! { "_id": i, "kind": "view" }))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&source.name, Some(dir.path().into()), None);
    // Two earlier backups of this database: one outside the policy's 7 days, one within.
    let old = mongo_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let old = backdate(dir.path(), &old, 40);
    let recent = mongo_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let recent = backdate(dir.path(), &recent, 2);
    let gateway = Pushgateway::start();
    let policy = Policy {
        retention: Retention { daily: 7, weekly: 4, monthly: 3 },
        prune_after_backup: true,
        notifications: Notifications {
            slack: None,
            pushgateway: Some(Ok(Secret::new(format!("http://jobs:push-pass@127.0.0.1:{}", gateway.port)))),
        },
    };

    let mut collections = Vec::new();
    let run =
        mongo_backup::backup_and_prune(&source.config, &opts, &policy, &mut |p| collections.push(p.collection)).await;

    let manifest = run.backup.unwrap();
    assert_eq!(manifest.documents(), 50);
    assert!(collections.contains(&format!("{}.events", source.name)), "{collections:?}");
    let daily = dir.path().join("daily");
    assert!(daily.join(&manifest.artifact).is_file() && daily.join(manifest.manifest_name()).is_file());
    let pruned = run.prune.expect("a good backup is pruned after").unwrap();
    assert_eq!(pruned.deleted, [format!("local: {old}")]);
    let left: Vec<String> = mongo_backup::list(&local(dir.path())).await.unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(left, [recent, manifest.id.clone()]);

    assert!(run.notices.slack.is_none());
    assert!(matches!(run.notices.pushgateway, Some(Ok(()))), "{:?}", run.notices);
    let labels = [("job", "mongo_backup"), ("instance", source.name.as_str())];
    assert_eq!(gateway.value("dbkit_job_success", &labels), Some(1.0));
    assert_eq!(gateway.value("mongo_backup_size_bytes", &labels), Some(manifest.size_bytes as f64));
    let success = gateway.value("dbkit_job_last_success_timestamp_seconds", &labels).expect("pushed");

    // A backup that fails (its folder is a file) is not followed by a prune, and its push keeps
    // the last success.
    let not_a_folder = dir.path().join("not-a-folder");
    std::fs::write(&not_a_folder, b"x").unwrap();
    let broken = options(&source.name, Some(not_a_folder), None);
    let run = mongo_backup::backup_and_prune(&source.config, &broken, &policy, &mut |_| {}).await;
    assert!(run.backup.is_err());
    assert!(run.prune.is_none());
    assert!(run.notices.failures().is_empty(), "{:?}", run.notices);
    assert_eq!(gateway.value("dbkit_job_success", &labels), Some(0.0));
    assert_eq!(gateway.value("dbkit_job_last_success_timestamp_seconds", &labels), Some(success));
    assert_eq!(gateway.value("mongo_backup_size_bytes", &labels), Some(manifest.size_bytes as f64));
}
