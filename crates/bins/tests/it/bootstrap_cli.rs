//! `datastores plan|apply|check` with the built-in manifest (seed 003's platform) against the
//! stack, and Weaviate through the testkit fake: the issue's acceptance run.

use assert_cmd::Command;
use serde_json::Value;
use testkit::weaviate_fake::{FakeOptions, FakeWeaviate};

const API_KEY: &str = "weaviate-bootstrap-key-5f2c";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn datastores(args: &[&str], envs: &[(&str, &str)]) -> Run {
    testkit::require(datastores::Datastore::Postgres);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::cargo_bin("datastores")
            .unwrap()
            .args(&args)
            .env_remove("WEAVIATE_URL")
            .env_remove("MILVUS_HOST")
            .envs(envs)
            .timeout(std::time::Duration::from_secs(600))
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

async fn fake() -> FakeWeaviate {
    FakeWeaviate::start(FakeOptions {
        api_key: Some(API_KEY.into()),
        modules: vec!["text2vec-transformers".into(), "img2vec-neural".into()],
        ..FakeOptions::default()
    })
    .await
}

fn sections(stdout: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")).as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_then_check_bring_up_the_platform_and_a_second_apply_changes_nothing() {
    let weaviate = fake().await;
    let env = [("WEAVIATE_URL", weaviate.url.as_str()), ("WEAVIATE_API_KEY", API_KEY)];
    let required = "postgres,mongodb,redis,kafka,weaviate";

    let apply = datastores(&["apply", "--require", required], &env).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let check = datastores(&["check", "--require", required, "--output", "json"], &env).await;
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    let reports = sections(&check.stdout);
    let names: Vec<&str> = reports.iter().map(|r| r["datastore"].as_str().unwrap()).collect();
    assert_eq!(names, ["postgres", "mongodb", "redis", "kafka", "weaviate"]);
    for report in &reports {
        assert!(report["error"].is_null(), "{report}");
        for item in report["items"].as_array().unwrap() {
            assert_eq!(item["state"], "ok", "{item}");
        }
    }
    let items = |datastore: &str, kind: &str| -> Vec<String> {
        let report = reports.iter().find(|r| r["datastore"] == datastore).unwrap();
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == kind)
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(items("kafka", "topic"), ["data-ingestion", "model-events", "system-logs"]);
    assert_eq!(items("mongodb", "index").len(), 9);
    assert_eq!(items("weaviate", "class"), ["Document", "Image"]);
    assert_eq!(items("postgres", "setting").len(), 8);
    assert!(weaviate.class("Document").is_some() && weaviate.class("Image").is_some());
    assert!(weaviate.violations().is_empty(), "{:?}", weaviate.violations());

    let again = datastores(&["apply", "--require", required], &env).await;
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("0 change(s) made; 0 object(s) still differ"), "{}", again.stdout);
    for run in [&apply, &check, &again] {
        assert!(!run.stdout.contains(API_KEY) && !run.stderr.contains(API_KEY), "the API key leaked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_section_that_is_not_configured_is_skipped_unless_required() {
    let plan = datastores(&["plan", "--only", "weaviate"], &[]).await;
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stderr.contains("Weaviate is not configured (set WEAVIATE_URL)"), "{}", plan.stderr);
    let plan = datastores(&["plan", "--only", "weaviate", "--require", "weaviate"], &[]).await;
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("error: Weaviate is not configured"), "{}", plan.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_are_refused_with_the_line_and_key_named_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("kafka:\n  topics:\n    - name: t1\n      partitions: 3\n      retention: 7d\n", "line 5", "retention"),
        ("kafka:\n  topics:\n    - name: t1\n      partitions: many\n", "line 4", "partitions"),
        ("redis:\n  maxmemory: ${DBKIT_UNSET_LIMIT}\n", "line 2 (key maxmemory)", "DBKIT_UNSET_LIMIT"),
    ];
    for (text, line, key) in cases {
        let path = dir.path().join("manifest.yaml");
        std::fs::write(&path, text).unwrap();
        let run = datastores(&["apply", "--manifest", path.to_str().unwrap()], &[]).await;
        assert_eq!(run.code, 2, "{text}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(line) && run.stderr.contains(key), "{text}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "nothing ran: {}", run.stdout);
    }
    let run = datastores(&["check", "--manifest", "/nonexistent/manifest.yaml"], &[]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot read manifest /nonexistent/manifest.yaml"), "{}", run.stderr);
}

#[test]
fn the_readme_shows_the_builtin_manifest_as_it_is() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    assert!(
        readme.contains(&format!("```yaml\n{}```", datastores::bootstrap::BUILTIN)),
        "README's manifest example differs from crates/datastores/src/bootstrap/platform.yaml"
    );
    let printed = Command::cargo_bin("datastores").unwrap().args(["plan", "--print-builtin"]).output().unwrap();
    assert!(printed.status.success());
    assert_eq!(String::from_utf8_lossy(&printed.stdout), datastores::bootstrap::BUILTIN);
}

#[test]
fn the_job_applies_and_the_cronjob_checks_with_secrets_as_files() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/platform-bootstrap.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> = text
        .split("\n---\n")
        .map(|d| serde_json::to_value(serde_norway::from_str::<serde_norway::Value>(d).unwrap()).unwrap())
        .collect();
    let config = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let job = docs.iter().find(|d| d["kind"] == "Job").unwrap();
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").unwrap();
    let job_container = &job["spec"]["template"]["spec"]["containers"][0];
    let cron_container = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let command = |c: &Value| -> Vec<String> {
        c["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(command(job_container)[..2], ["datastores", "apply"]);
    assert_eq!(command(cron_container)[..2], ["datastores", "check"]);
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    for container in [job_container, cron_container] {
        let env = container["env"].as_array().unwrap();
        for name in
            ["POSTGRES_PASSWORD", "MONGODB_PASSWORD", "REDIS_PASSWORD", "WEAVIATE_API_KEY", "AI_PLATFORM_APP_PASSWORD"]
        {
            let file = format!("{name}_FILE");
            assert!(env.iter().any(|e| e["name"] == file.as_str()), "{file} is mounted");
            assert!(env.iter().all(|e| e["name"] != name), "no literal {name}");
            assert!(config["data"].get(name).is_none(), "no {name} in the ConfigMap");
        }
        let mounts = container["volumeMounts"].as_array().unwrap();
        // Secrets are read-only; /tmp (the one writable place) is the exception.
        assert!(mounts.iter().filter(|m| m["mountPath"] != "/tmp").all(|m| m["readOnly"] == true));
        // The command line parses (clap refuses an unknown flag before printing the help).
        let mut args: Vec<String> = command(container).into_iter().skip(1).collect();
        args.push("--help".into());
        let help = Command::cargo_bin("datastores").unwrap().args(&args).output().unwrap();
        assert!(help.status.success(), "{args:?}: {}", String::from_utf8_lossy(&help.stderr));
    }
    // The ConfigMap's variables configure every section the Jobs require.
    let vars: Vec<(String, String)> = config["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .chain([("POSTGRES_PASSWORD".to_owned(), "x".to_owned()), ("KAFKA_SASL_PASSWORD".to_owned(), "x".to_owned())])
        .collect();
    let settings = datastores::Settings::new().layer(datastores::Source::Environment, vars);
    let configured = datastores::DatastoresConfig::from_settings(&settings).unwrap();
    for d in ["postgres", "mongodb", "redis", "kafka", "weaviate"] {
        assert!(configured.is_configured(datastores::Datastore::from_key(d).unwrap()), "{d} is configured");
    }
    datastores::bootstrap::Manifest::builtin(&settings).unwrap();
}
