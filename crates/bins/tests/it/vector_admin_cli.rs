//! `vector-admin` as a user and a CronJob run it, against the stack's Milvus.

use assert_cmd::Command;
use serde_json::Value;
use testkit::unique_name;

fn vector_admin(args: &[&str]) -> (i32, String, String) {
    testkit::require(datastores::Datastore::Milvus);
    let output = Command::cargo_bin("vector-admin")
        .unwrap()
        .args(args)
        .env_remove("WEAVIATE_URL")
        .timeout(std::time::Duration::from_secs(600))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A spec file with only a collection of this test's own.
fn spec_file(dir: &std::path::Path, name: &str, dim: u32) -> String {
    let path = dir.join("spec.yaml");
    std::fs::write(
        &path,
        format!(
            "defaults: replace\nmilvus:\n  - name: {name}\n    key: {{name: id, type: varchar, max_length: 64}}\n    dim: {dim}\n    metric: L2\n    fields: [{{name: n, type: int64}}]\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn init_twice_then_health_maintain_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("va_cli");
    let spec = spec_file(dir.path(), &name, 8);

    let (code, out, err) = vector_admin(&["init", "--dry-run", "--spec", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{name} (missing)")), "{out}");
    let (code, out, err) = vector_admin(&["init", "--spec", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("done: created {name}")) && out.contains(&format!("done: loaded {name}")), "{out}");
    let (code, out, err) = vector_admin(&["init", "--spec", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing to do") && out.contains("up to date"), "the second init must change nothing: {out}");

    let (code, out, err) = vector_admin(&["health", "--spec", &spec, "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["healthy"], true, "{out}");
    assert_eq!(health["collections"][0]["load"]["state"], "loaded");

    let (code, out, err) = vector_admin(&["maintain", "--spec", &spec, "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let steps: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        [
            "health",
            "flush",
            &format!("compact {name}"),
            &format!("index {name}"),
            &format!("load {name}"),
            "health after"
        ]
    );
    assert_eq!(report["ok"], true);

    let (code, out, err) = vector_admin(&["index", "create", &name, "--preset", "large_hnsw", "--spec", &spec]);
    assert_eq!(code, 2, "replacing needs --replace: {out}{err}");
    assert!(err.contains("--replace"), "{err}");
    let (code, out, err) =
        vector_admin(&["index", "create", &name, "--preset", "large_hnsw", "--replace", "--spec", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("released") && out.contains("dropped") && out.contains("loaded"), "step by step: {out}");

    let (code, _, err) = vector_admin(&["drop", &name, "--spec", &spec]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    let (code, out, err) = vector_admin(&["drop", &name, "--yes", "--spec", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = vector_admin(&["health", "--spec", &spec]);
    assert_eq!(code, 1, "a missing collection is unhealthy: {out}");
    assert!(out.contains("does not exist"), "{out}");
    // A CronJob's maintain fails on it too, with one JSON document on stdout.
    let (code, out, _) = vector_admin(&["maintain", "--spec", &spec, "--output", "json"]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).expect("exactly one JSON document");
    let failed: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == false)
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(failed, [format!("exists {name}")], "{out}");
}

#[test]
fn the_seed_collections_after_init() {
    let (code, out, err) = vector_admin(&["init"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = vector_admin(&["health", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let health: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> =
        health["collections"].as_array().unwrap().iter().map(|c| c["collection"].as_str().unwrap()).collect();
    assert_eq!(names, ["item_embeddings", "user_embeddings", "query_cache"]);
    for c in health["collections"].as_array().unwrap() {
        assert!(c["index"].is_object() && c["load"]["state"] == "loaded", "{c}");
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_error() {
    // A collection of this test's own: the seed's are created and dropped by other tests running
    // at the same time.
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("va_bad");
    let spec = spec_file(dir.path(), &name, 8);
    let (code, out, err) = vector_admin(&["init", "--spec", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "milvus:\n  - {name: item_embeddings, index: {preset: fastest}}\n").unwrap();
    let bad = bad.display().to_string();
    let before = vector_admin(&["plan", "--spec", &spec, "--output", "json"]).1;
    let cases: [(&[&str], &str, i32); 5] = [
        (&["plan", "--spec", &bad], "unknown index preset \"fastest\"", 2),
        (&["plan", "--spec", "/nonexistent/spec.yaml"], "cannot read spec file", 2),
        (
            &["index", "create", &name, "--spec", &spec, "--preset", "large_hnsw", "--m", "1", "--replace"],
            "M = 1 is out of range",
            2,
        ),
        (&["drop", &name], "--yes", 2),
        (&["stats", "no_such_collection_here"], "does not exist", 1),
    ];
    for (args, expected, exit) in cases {
        let (code, out, err) = vector_admin(args);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(code, exit, "{args:?}: {out}");
    }
    assert_eq!(vector_admin(&["plan", "--spec", &spec, "--output", "json"]).1, before, "bad input changed the server");
    let (code, out, err) = vector_admin(&["drop", &name, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_cronjob_runs_maintain_with_a_json_report() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/vector-admin-cronjobs.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_json::to_value(serde_norway::from_str::<serde_norway::Value>(d).unwrap()).unwrap())
        .collect();
    let job = docs.iter().find(|d| d["kind"] == "Job").unwrap();
    let command = &job["spec"]["template"]["spec"]["containers"][0]["command"];
    assert_eq!(command[0], "vector-admin");
    assert_eq!(command[1], "init");
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").unwrap();
    assert_eq!(cron["spec"]["schedule"], "30 4 * * *");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let container = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[..4], ["vector-admin", "maintain", "--output", "json"]);
    let env = container["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "MILVUS_PASSWORD_FILE"));
    assert!(env.iter().all(|e| e["name"] != "MILVUS_PASSWORD"), "no literal password");
    // Every command line of the manifests parses (clap rejects an unknown flag or value before
    // it prints the help).
    for command in [&job["spec"]["template"]["spec"]["containers"][0]["command"], &container["command"]] {
        let mut args: Vec<&str> = command.as_array().unwrap().iter().skip(1).map(|a| a.as_str().unwrap()).collect();
        args.push("--help");
        let (code, out, err) = vector_admin(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
}
