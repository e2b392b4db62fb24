//! prune deletes by retention, tier by tier, in each store, and never touches a backup of the
//! same name from another deployment.

use std::collections::BTreeSet;

use backup_core::Tier;
use chrono::{DateTime, Duration, Utc};
use datastores::mongodb_driver::bson::{Document, doc};
use mongo_backup::{Deployment, Retention, Stores};
use testkit::{TestMongoDatabase, TestS3Prefix};

use crate::{client, options};

/// Whose a fabricated backup is.
#[derive(Clone, Copy, PartialEq)]
enum Whose {
    Ours,
    /// Same name, another deployment.
    Theirs,
    /// Same name, no deployment in the manifest.
    Unidentified,
    /// Another database's backup.
    Unrelated,
}

/// Copies of one real backup with other dates, tiers and owners, on disk and in the bucket:
/// each manifest edited as JSON, as a backup of another deployment sharing the store would have
/// written it.
async fn fabricate(
    dir: &std::path::Path,
    s3: &TestS3Prefix,
    real: &mongo_backup::Manifest,
    backups: &[(Whose, i64, Tier)],
    now: DateTime<Utc>,
) -> Vec<String> {
    let daily = dir.join("daily");
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(daily.join(format!("{}.manifest.json", real.id))).unwrap()).unwrap();
    let s3_client = s3.config.client().await;
    let mut ids = Vec::new();
    for (i, (whose, days_ago, tier)) in backups.iter().enumerate() {
        // A minute apart: backups of the same day never share an id.
        let at = now - Duration::days(*days_ago) - Duration::minutes(i as i64 + 1);
        let name = if *whose == Whose::Unrelated { "some_other_database".to_owned() } else { real.name.clone() };
        let id = backup_core::backup_id(&format!("mongodb-{name}"), at);
        let artifact = mongo_backup::artifact_name(&id, real.compression);
        let mut manifest = original.clone();
        manifest["id"] = id.clone().into();
        manifest["name"] = name.into();
        manifest["artifact"] = artifact.clone().into();
        manifest["tier"] = tier.as_str().into();
        manifest["started_at"] = serde_json::to_value(at).unwrap();
        manifest["finished_at"] = serde_json::to_value(at).unwrap();
        match whose {
            Whose::Theirs => manifest["deployment"] = "replicaSetId:000000000000000000000042".into(),
            Whose::Unidentified => drop(manifest.as_object_mut().unwrap().remove("deployment")),
            Whose::Ours | Whose::Unrelated => {}
        }
        let folder = dir.join(tier.as_str());
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(daily.join(&real.artifact), folder.join(&artifact)).unwrap();
        let json = serde_json::to_vec_pretty(&manifest).unwrap();
        std::fs::write(folder.join(format!("{id}.manifest.json")), &json).unwrap();
        for (file, body) in [(format!("{id}.manifest.json"), json), (artifact, b"x".to_vec())] {
            s3_client
                .put_object()
                .bucket(&s3.config.bucket)
                .key(s3.config.key(&format!("{}/{file}", tier.as_str())))
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
        ids.push(id);
    }
    ids
}

async fn listed(stores: &Stores) -> BTreeSet<String> {
    mongo_backup::list(stores).await.unwrap().into_iter().map(|l| l.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_by_retention_and_never_touches_another_deployments_backups() {
    let source = TestMongoDatabase::new();
    let client = client(&source).await;
    client
        .database(&source.name)
        .collection::<Document>("configurations")
        .insert_many((0..20).map(|i| doc! { "_id": i }))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s3 = TestS3Prefix::new();
    let real = mongo_backup::backup(
        &source.config,
        &options(&source.name, Some(dir.path().into()), Some(s3.config.clone())),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(real.destinations, ["local", "s3"]);
    let now = Utc::now();
    let history = [
        (Whose::Ours, 2, Tier::Daily),          // 0: kept, within 7 days
        (Whose::Ours, 10, Tier::Daily),         // 1: deleted
        (Whose::Ours, 30, Tier::Weekly),        // 2: deleted, weeks ago
        (Whose::Ours, 3, Tier::Monthly),        // 3: kept, this month or the last
        (Whose::Ours, 400, Tier::Monthly),      // 4: deleted
        (Whose::Theirs, 10, Tier::Daily),       // 5: never touched
        (Whose::Theirs, 400, Tier::Monthly),    // 6: never touched
        (Whose::Unidentified, 50, Tier::Daily), // 7: never touched
        (Whose::Unrelated, 60, Tier::Daily),    // 8: another database: not this prune's
    ];
    let ids = fabricate(dir.path(), &s3, &real, &history, now).await;
    let stores = Stores { local_dir: Some(dir.path().into()), s3: Some(s3.config.clone()) };
    let all: BTreeSet<String> = ids.iter().cloned().chain([real.id.clone()]).collect();
    assert_eq!(listed(&stores).await, all);

    let deployment = Deployment::of(&source.config, &source.name).await.unwrap();
    assert_eq!(Some(&deployment.deployment), real.deployment.as_ref());
    assert_ne!(deployment.deployment, "replicaSetId:000000000000000000000042");
    let retention = Retention { daily: 7, weekly: 1, monthly: 2 };

    let dry = mongo_backup::prune(&stores, &deployment, retention, now, true).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(listed(&stores).await, all, "a dry run deletes nothing");

    let done = mongo_backup::prune(&stores, &deployment, retention, now, false).await.unwrap();
    assert_eq!(dry.deleted, done.deleted);
    let deleted: BTreeSet<String> = done.deleted.iter().cloned().collect();
    let expected: BTreeSet<String> =
        [1, 2, 4].into_iter().flat_map(|i| [format!("local: {}", ids[i]), format!("s3: {}", ids[i])]).collect();
    assert_eq!(deleted, expected);
    let kept: BTreeSet<String> = done.kept.iter().cloned().collect();
    assert_eq!(kept, [ids[0].clone(), ids[3].clone(), real.id.clone()].into_iter().collect());
    let mut theirs = vec![ids[5].clone(), ids[6].clone()];
    theirs.sort();
    assert_eq!(done.other_clusters, theirs, "reported, never deleted");
    assert_eq!(done.unidentified, [ids[7].clone()]);

    let left = listed(&stores).await;
    let survivors: BTreeSet<String> =
        [0, 3, 5, 6, 7, 8].into_iter().map(|i| ids[i].clone()).chain([real.id.clone()]).collect();
    assert_eq!(left, survivors);
    for (i, (_, _, tier)) in history.iter().enumerate() {
        let folder = dir.path().join(tier.as_str());
        let manifest = folder.join(format!("{}.manifest.json", ids[i]));
        let artifact = folder.join(mongo_backup::artifact_name(&ids[i], real.compression));
        let gone = [1, 2, 4].contains(&i);
        assert_eq!(!manifest.exists() && !artifact.exists(), gone, "backup {i} ({})", ids[i]);
        assert_eq!(manifest.exists() && artifact.exists(), !gone, "backup {i} ({})", ids[i]);
    }
    // Another deployment's manifest is byte for byte as it was.
    let edited: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("daily").join(format!("{}.manifest.json", ids[5]))).unwrap(),
    )
    .unwrap();
    assert_eq!(edited["deployment"], "replicaSetId:000000000000000000000042");
    let per_store: Vec<Vec<String>> = mongo_backup::list(&stores)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.id == ids[5] || l.id == real.id)
        .map(|l| l.stored_in)
        .collect();
    assert_eq!(per_store.len(), 2);
    assert!(per_store.iter().all(|s| s == &["local", "s3"]), "{per_store:?}");
}
