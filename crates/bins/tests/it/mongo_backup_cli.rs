//! `mongo-backup` as the README and the CronJobs run it, against the stack's MongoDB and S3.

use assert_cmd::Command;
use datastores::mongodb_driver::bson::{Document, doc};
use serde_norway::Value;
use testkit::{TestMongoDatabase, TestS3Prefix};

fn mongo_backup(db: &TestMongoDatabase, dir: &std::path::Path) -> Command {
    let mut command = Command::cargo_bin("mongo-backup").unwrap();
    command
        .env("MONGODB_DATABASE", &db.name)
        .env("BACKUP_DIR", dir)
        .env_remove("S3_BUCKET")
        .env_remove("S3_ENDPOINT")
        .env_remove("PUSHGATEWAY_URL");
    command
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_list_verify_restore_as_the_readme_says() {
    let source = TestMongoDatabase::new();
    let client = source.config.client().await.unwrap();
    let db = client.database(&source.name);
    let configurations = db.collection::<Document>("configurations");
    configurations
        .insert_many((0..500).map(|i| doc! { "_id": i, "key": format!("model.{i}"), "value": { "temperature": 0.7 } }))
        .await
        .unwrap();
    db.run_command(doc! {
        "createIndexes": "task_status_cache",
        "indexes": [{ "key": { "last_updated": 1 }, "name": "ttl", "expireAfterSeconds": 86_400 }],
    })
    .await
    .unwrap();
    db.collection::<Document>("task_status_cache")
        .insert_one(doc! { "task": "t1", "last_updated": datastores::mongodb_driver::bson::DateTime::now() })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let backup = json(
        &mongo_backup(&source, dir.path()).args(["backup", "--tier", "daily", "--output", "json"]).output().unwrap(),
    );
    let id = backup["id"].as_str().unwrap().to_owned();
    assert_eq!(backup["name"], source.name.as_str());
    let listed = json(&mongo_backup(&source, dir.path()).args(["list", "--output", "json"]).output().unwrap());
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["documents"], 501);
    // pg-backup shares the folder and sees none of it.
    let pg = Command::cargo_bin("pg-backup")
        .unwrap()
        .env("BACKUP_DIR", dir.path())
        .args(["list", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(json(&pg), serde_json::json!([]));

    let verified = json(
        &mongo_backup(&source, dir.path())
            .args(["verify", "latest", "--compare", "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(verified["documents"], 501);
    assert_eq!(verified["compared"], 2);

    // Restoring over the source refuses: it holds documents.
    let refused = mongo_backup(&source, dir.path()).args(["restore", "latest"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("already hold documents"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let usage = mongo_backup(&source, dir.path()).args(["restore", "latest", "--clean"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "--clean without --yes is bad input");
    let nothing =
        mongo_backup(&source, dir.path()).args(["restore", "latest", "--include", "no_such"]).output().unwrap();
    assert_eq!(nothing.status.code(), Some(2), "{}", String::from_utf8_lossy(&nothing.stderr));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("matches --include"));

    let target = TestMongoDatabase::new();
    let restored = json(
        &mongo_backup(&source, dir.path())
            .args(["restore", &id, "--target-db", &target.name, "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(restored["documents"], 501);
    let copy = client.database(&target.name);
    assert_eq!(copy.collection::<Document>("configurations").count_documents(doc! {}).await.unwrap(), 500);
    let indexes: Vec<_> = futures::TryStreamExt::try_collect(
        copy.collection::<Document>("task_status_cache").list_indexes().await.unwrap(),
    )
    .await
    .unwrap();
    assert!(
        indexes
            .iter()
            .any(|i| i.options.as_ref().and_then(|o| o.expire_after) == Some(std::time::Duration::from_secs(86_400))),
        "the TTL index came back: {indexes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_to_s3_only() {
    let source = TestMongoDatabase::new();
    let client = source.config.client().await.unwrap();
    client
        .database(&source.name)
        .collection::<Document>("model_logs")
        .insert_one(doc! { "level": "info" })
        .await
        .unwrap();
    let prefix = TestS3Prefix::new();
    let out = Command::cargo_bin("mongo-backup")
        .unwrap()
        .env("MONGODB_DATABASE", &source.name)
        .env_remove("BACKUP_DIR")
        .env("S3_PREFIX", &prefix.config.prefix)
        .args(["backup", "--tier", "weekly", "--output", "json"])
        .output()
        .unwrap();
    let manifest = json(&out);
    assert_eq!(manifest["destinations"], serde_json::json!(["s3"]));
    let listed = Command::cargo_bin("mongo-backup")
        .unwrap()
        .env_remove("BACKUP_DIR")
        .env("S3_PREFIX", &prefix.config.prefix)
        .args(["list", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(json(&listed)[0]["stored_in"], serde_json::json!(["s3"]));
}

/// Neither a setting mongo-backup does not use (PostgreSQL's `RETENTION_REPLACED_DAYS`) nor a
/// Pushgateway setting that cannot be read stops a backup or a prune.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_cannot_be_read_stop_no_backup_nor_prune() {
    let source = TestMongoDatabase::new();
    let client = source.config.client().await.unwrap();
    client.database(&source.name).collection::<Document>("model_logs").insert_one(doc! { "n": 1 }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-secret");
    for command in ["backup", "prune"] {
        let output = mongo_backup(&source, dir.path())
            .env("RETENTION_REPLACED_DAYS", "a week")
            .env("PUSHGATEWAY_URL_FILE", &missing)
            .arg(command)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{command}: {stderr}");
        assert!(stderr.contains("warning: metrics not pushed") && stderr.contains("PUSHGATEWAY_URL_FILE"), "{stderr}");
    }
    let listed = json(&mongo_backup(&source, dir.path()).args(["list", "--output", "json"]).output().unwrap());
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["backup", "--compress", "lz4"][..], &["backup", "--tier", "hourly"][..], &["restore"][..]] {
        let output =
            Command::cargo_bin("mongo-backup").unwrap().env("BACKUP_DIR", dir.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let output = Command::cargo_bin("mongo-backup")
        .unwrap()
        .env_remove("MONGODB_URI")
        .env("BACKUP_DIR", dir.path())
        .args(["backup"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("MONGODB_URI"));

    // A database that does not exist is a typo, not an empty backup.
    let output = Command::cargo_bin("mongo-backup")
        .unwrap()
        .env("BACKUP_DIR", dir.path())
        .args(["backup", "--db", "no_such_database_here"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no database no_such_database_here"));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was written");

    // No destination at all.
    let mut command = Command::cargo_bin("mongo-backup").unwrap();
    command.env_remove("BACKUP_DIR");
    for name in datastores::triggers(datastores::Datastore::S3) {
        command.env_remove(name);
    }
    let output = command.args(["backup"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no destination"));
}

#[test]
fn cronjobs_follow_the_postgresql_schedule() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/mongo-backup-cronjobs.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> =
        serde_norway::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
    let cronjobs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "CronJob").collect();
    let expected = [
        ("mongo-backup-daily", "0 2 * * *", "backup --tier daily"),
        ("mongo-backup-weekly", "0 3 * * 0", "backup --tier weekly"),
        ("mongo-backup-monthly", "0 4 1 * *", "backup --tier monthly"),
        ("mongo-backup-verify", "0 5 * * 1", "verify latest --compare"),
    ];
    assert_eq!(cronjobs.len(), expected.len());
    for (job, (name, schedule, command)) in cronjobs.iter().zip(expected) {
        assert_eq!(job["metadata"]["name"], name);
        assert_eq!(job["spec"]["schedule"], schedule, "{name}");
        assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid", "{name}");
        let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let args: Vec<&str> = container["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args[0], "mongo-backup");
        assert!(args[1..].join(" ").starts_with(command), "{name}: {args:?}");
        let env = container["env"].as_sequence().unwrap();
        let uri = env.iter().find(|e| e["name"] == "MONGODB_URI_FILE").unwrap();
        let mount = uri["value"].as_str().unwrap().rsplit_once('/').unwrap().0;
        let volume_name =
            container["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["mountPath"] == mount).unwrap()["name"]
                .clone();
        let volume = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == volume_name).unwrap();
        assert_eq!(volume["secret"]["secretName"], "db-credentials", "{name}");
        assert!(env.iter().all(|e| e["name"] != "MONGODB_URI"), "{name}: the URI carries a password: never a literal");
    }
    let config = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert!(config["data"]["MONGODB_URI"].is_null());
    assert_eq!(config["data"]["RETENTION_DAYS"], "30");
    assert!(text.contains("each tier is judged by its own backups"), "the retention rules are stated");
}
