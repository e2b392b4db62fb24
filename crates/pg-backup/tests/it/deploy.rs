//! deploy/pg-backup-cronjobs.yaml follows the seed's policy.

use serde_norway::Value;

fn documents() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/pg-backup-cronjobs.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, key| &v[*key])
}

#[test]
fn cronjobs_follow_the_seed_policy() {
    let docs = documents();
    let cronjobs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "CronJob").collect();
    let expected = [
        ("pg-backup-daily", "0 2 * * *", "backup --tier daily"),
        ("pg-backup-weekly", "0 3 * * 0", "backup --tier weekly"),
        ("pg-backup-monthly", "0 4 1 * *", "backup --tier monthly"),
        ("pg-backup-verify", "0 5 * * 1", "verify latest --compare"),
    ];
    assert_eq!(cronjobs.len(), expected.len());
    for (job, (name, schedule, command)) in cronjobs.iter().zip(expected) {
        assert_eq!(get(job, &["metadata", "name"]), name);
        assert_eq!(get(job, &["spec", "schedule"]), schedule, "{name}");
        assert_eq!(get(job, &["spec", "concurrencyPolicy"]), "Forbid", "{name}");
        let pod = get(job, &["spec", "jobTemplate", "spec", "template", "spec"]);
        assert_eq!(pod["restartPolicy"], "Never");
        let container = &pod["containers"][0];
        assert_eq!(container["image"], concat!("dbkit/jobs:", env!("CARGO_PKG_VERSION")), "{name}");
        let args: Vec<&str> = container["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args[0], "pg-backup");
        assert!(args[1..].join(" ").starts_with(command), "{name}: {args:?}");
        assert!(
            container["resources"]["requests"]["cpu"].is_string()
                && container["resources"]["requests"]["memory"].is_string()
        );
        // The password comes from the Secret as a file, never as a literal.
        let env = container["env"].as_sequence().unwrap();
        let password = env.iter().find(|e| e["name"] == "POSTGRES_PASSWORD_FILE").unwrap();
        let mount = password["value"].as_str().unwrap().rsplit_once('/').unwrap().0;
        let volume_name =
            container["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["mountPath"] == mount).unwrap()["name"]
                .clone();
        let volume = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == volume_name).unwrap();
        assert_eq!(volume["secret"]["secretName"], "db-credentials", "{name}");
        assert!(env.iter().all(|e| e["name"] != "POSTGRES_PASSWORD"), "{name}: no literal password");
    }
    let config = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(config["data"]["RETENTION_DAYS"], "30");
    assert_eq!(config["data"]["RETENTION_WEEKS"], "12");
    assert_eq!(config["data"]["RETENTION_MONTHS"], "12");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/pg-backup-cronjobs.yaml"),
    )
    .unwrap();
    assert!(text.contains("each tier is judged by its own backups"), "the retention rules are stated");
}
