//! No secret reaches what the binaries print, whatever fails and however verbose the log.

use std::path::Path;

use assert_cmd::Command;
use testkit::closed_port;

/// Every secret the binaries read, each a recognisable wrong value, given as `_FILE` variables
/// (as Kubernetes mounts them). The other variables point at the stack's real servers, so each
/// secret is actually sent and refused.
fn secrets(dir: &Path) -> Vec<(String, String, String)> {
    let hook_port = closed_port();
    let gateway_port = closed_port();
    let values = [
        ("POSTGRES_PASSWORD", "pg-secret-3f9a1c".to_owned()),
        ("REDIS_PASSWORD", "redis-secret-8b2d4e".to_owned()),
        ("MONGODB_PASSWORD", "mongo-secret-5c7e9a".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "s3-secret-1a3b5c7d9e".to_owned()),
        ("MILVUS_PASSWORD", "milvus-secret-2468ac".to_owned()),
        ("KAFKA_SASL_PASSWORD", "kafka-secret-13579b".to_owned()),
        ("WEAVIATE_API_KEY", "weaviate-secret-0f1e2d".to_owned()),
        ("RECOMMEND_OWNER_PASSWORD", "owner-secret-a1b2c3".to_owned()),
        ("RECOMMEND_APP_PASSWORD", "app-secret-d4e5f6".to_owned()),
        ("RECOMMEND_READONLY_PASSWORD", "readonly-secret-g7h8".to_owned()),
        ("AI_PLATFORM_APP_PASSWORD", "platform-app-secret-q1r2".to_owned()),
        ("MONGODB_APP_PASSWORD", "mongo-app-secret-s3t4".to_owned()),
        ("SLACK_WEBHOOK", format!("http://127.0.0.1:{hook_port}/services/T00/B00/hook-secret-4k5l6m")),
        ("PUSHGATEWAY_URL", format!("http://jobs:gateway-secret-7n8o9p@127.0.0.1:{gateway_port}")),
    ];
    values
        .into_iter()
        .map(|(name, value)| {
            let path = dir.join(name.to_ascii_lowercase());
            std::fs::write(&path, &value).unwrap();
            (format!("{name}_FILE"), path.display().to_string(), value)
        })
        .collect()
}

/// The distinctive part of each secret, which must never be printed.
fn needles(secrets: &[(String, String, String)]) -> Vec<String> {
    let mut out: Vec<String> = secrets.iter().map(|(_, _, v)| v.clone()).collect();
    out.extend(["hook-secret-4k5l6m", "gateway-secret-7n8o9p"].map(String::from));
    out
}

fn run(bin: &str, args: &[&str], secrets: &[(String, String, String)], extra: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::cargo_bin(bin).unwrap();
    for (name, _, _) in secrets {
        command.env_remove(name.trim_end_matches("_FILE"));
    }
    for (name, path, _) in secrets {
        command.env(name, path);
    }
    command
        .env("RUST_LOG", "debug")
        .env("MILVUS_USER", "root")
        .env("KAFKA_SASL_USERNAME", "dbkit")
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("WEAVIATE_URL", format!("http://127.0.0.1:{}", closed_port()))
        .env("MONGODB_URI", "mongodb://dbkit@127.0.0.1:57017/?authSource=admin");
    for (name, value) in extra {
        command.env(name, value);
    }
    let output = command.args(args).timeout(std::time::Duration::from_secs(120)).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn no_binary_prints_a_secret_when_everything_fails() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets(dir.path());
    let backups = dir.path().join("backups");
    let backups = backups.to_str().unwrap();
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
    /// A binary, its arguments, and variables of its own.
    type Run<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let runs: Vec<Run> = vec![
        ("datastores", vec!["health", "--write-probe"], vec![]),
        ("datastores", vec!["apply", "--output", "json"], vec![]),
        ("datastores", vec!["check"], vec![]),
        ("pg-migrate", vec!["info"], vec![("FLYWAY_LOCATIONS", migrations)]),
        ("recommend-db", vec!["init", "--full"], vec![]),
        ("pg-backup", vec!["backup", "--backup-dir", backups], vec![]),
        ("pg-backup", vec!["list"], vec![]),
        ("pg-backup", vec!["prune", "--backup-dir", backups], vec![]),
        ("vector-admin", vec!["drop", "no_such_collection", "--yes"], vec![]),
        ("vector-admin", vec!["--backend", "weaviate", "health"], vec![]),
    ];
    for (bin, args, extra) in runs {
        let (code, text) = run(bin, &args, &secrets, &extra);
        assert_ne!(code, 0, "{bin} {args:?} was expected to fail:\n{text}");
        for needle in needles(&secrets) {
            assert!(!text.contains(&needle), "{bin} {args:?} printed the secret {needle:?}:\n{text}");
        }
        assert!(text.contains("error"), "{bin} {args:?} says what failed:\n{text}");
    }
}
