//! The backup job in one call: the backup, the prune its policy asks for, the push of the run.

use chrono::{Duration, Utc};
use datastores::Secret;
use pg_backup::{Notifications, Policy, Retention, Stores, Tier, Tools};
use testkit::servers::Pushgateway;

use crate::{big_database, options};

/// Moves a real backup's files to a backup of the same cluster and database taken `days_ago`.
fn backdate(dir: &std::path::Path, real: &pg_backup::Manifest, days_ago: i64) -> String {
    let daily = dir.join(Tier::Daily.as_str());
    let mut manifest = real.clone();
    manifest.finished_at = Utc::now() - Duration::days(days_ago);
    manifest.started_at = manifest.finished_at;
    manifest.id = pg_backup::backup_id(&manifest.database, manifest.finished_at);
    manifest.artifact = pg_backup::artifact_name(&manifest.id, manifest.format, manifest.compression);
    std::fs::rename(daily.join(&real.artifact), daily.join(&manifest.artifact)).unwrap();
    std::fs::remove_file(daily.join(real.manifest_name())).unwrap();
    std::fs::write(daily.join(manifest.manifest_name()), serde_json::to_vec(&manifest).unwrap()).unwrap();
    manifest.id
}

fn policy(gateway: &Pushgateway) -> Policy {
    Policy {
        retention: Retention { daily: 7, weekly: 4, monthly: 3 },
        prune_after_backup: true,
        notifications: Notifications {
            slack: None,
            pushgateway: Some(Ok(Secret::new(format!("http://jobs:push-pass@127.0.0.1:{}", gateway.port)))),
        },
    }
}

#[tokio::test]
async fn one_call_backs_up_prunes_by_the_policy_and_pushes_the_run() {
    let source = big_database(1).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = options(Some(dir.path().into()), None);
    // Two earlier backups of this database: one outside the policy's 7 days, one within.
    let old = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let old = backdate(dir.path(), &old, 40);
    let recent = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
    let recent = backdate(dir.path(), &recent, 2);
    let gateway = Pushgateway::start();
    let policy = policy(&gateway);

    let mut progressed = 0;
    let run = pg_backup::backup_and_prune(&source.config, &opts, &policy, &mut |p| progressed = p.stored_bytes).await;

    let manifest = run.backup.unwrap();
    assert!(progressed > 0);
    let daily = dir.path().join("daily");
    assert!(daily.join(&manifest.artifact).is_file() && daily.join(manifest.manifest_name()).is_file());
    let pruned = run.prune.expect("a good backup is pruned after").unwrap();
    assert_eq!(pruned.deleted, [format!("local: {old}")]);
    let left: Vec<String> = pg_backup::list(&Stores { local_dir: Some(dir.path().into()), s3: None })
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(left, [recent, manifest.id.clone()]);
    assert!(!daily.join(pg_backup::manifest_name(&old)).exists());

    assert!(run.notices.slack.is_none());
    assert!(matches!(run.notices.pushgateway, Some(Ok(()))), "{:?}", run.notices);
    let labels = [("job", "pg_backup"), ("instance", source.name.as_str())];
    assert_eq!(gateway.value("dbkit_job_success", &labels), Some(1.0));
    assert_eq!(gateway.value("pg_backup_size_bytes", &labels), Some(manifest.size_bytes as f64));
    let success = gateway.value("dbkit_job_last_success_timestamp_seconds", &labels).expect("pushed");

    // A backup that fails is not followed by a prune, and its push keeps the last success.
    let mut broken = opts.clone();
    broken.tools = Tools { bin_dir: Some(dir.path().into()) };
    let run = pg_backup::backup_and_prune(&source.config, &broken, &policy, &mut |_| {}).await;
    assert!(run.backup.is_err());
    assert!(run.prune.is_none());
    assert!(run.notices.failures().is_empty(), "{:?}", run.notices);
    assert_eq!(gateway.value("dbkit_job_success", &labels), Some(0.0));
    assert_eq!(gateway.value("dbkit_job_last_success_timestamp_seconds", &labels), Some(success));
}
