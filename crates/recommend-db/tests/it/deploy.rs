//! deploy/recommend-db-cronjobs.yaml keeps partitions ahead and applies the seed's retention.

use serde_norway::Value;

fn documents() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/recommend-db-cronjobs.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

#[test]
fn partitions_daily_and_cleanup_with_the_seeds_retention() {
    let docs = documents();
    let cronjobs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "CronJob").collect();
    let expected = [
        ("recommend-db-partitions", "0 1 * * *", vec!["recommend-db", "partitions", "--ahead", "3"]),
        (
            "recommend-db-cleanup",
            "30 3 * * *",
            vec!["recommend-db", "cleanup", "--behaviors-days", "90", "--requests-days", "30"],
        ),
    ];
    assert_eq!(cronjobs.len(), expected.len());
    for (job, (name, schedule, command)) in cronjobs.iter().zip(expected) {
        assert_eq!(job["metadata"]["name"], name);
        assert_eq!(job["spec"]["schedule"], schedule, "{name}");
        assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid", "{name}");
        let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let container = &pod["containers"][0];
        let args: Vec<&str> = container["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args, command, "{name}");
        let env = container["env"].as_sequence().unwrap();
        assert!(env.iter().any(|e| e["name"] == "POSTGRES_PASSWORD_FILE"), "{name}: the password is a file");
        assert!(env.iter().all(|e| e["name"] != "POSTGRES_PASSWORD"), "{name}: no literal password");
        assert!(container["resources"]["limits"]["memory"].is_string());
    }
    // The partition job's months ahead match what migrate keeps (the afterMigrate callback).
    assert_eq!(recommend_db::migrations::DEFAULT_PARTITIONS_AHEAD, 3);
    // The retention is the seed's: behaviours 90 days, requests 30 days, as cleanup defaults.
    let defaults = recommend_db::CleanupOptions::default();
    assert_eq!((defaults.behaviors_days, defaults.requests_days), (90, 30));
}
