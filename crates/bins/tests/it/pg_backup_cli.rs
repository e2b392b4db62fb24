use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use testkit::servers::Pushgateway;
use testkit::{TestDatabase, TestS3Prefix, closed_port};

fn pg_backup(db: &TestDatabase) -> Command {
    let mut command = Command::cargo_bin("pg-backup").unwrap();
    command.env("POSTGRES_DB", &db.name).env_remove("DATABASE_URL").env_remove("S3_BUCKET");
    command
}

async fn big(mb: u32) -> TestDatabase {
    let db = TestDatabase::create().await;
    db.connect()
        .await
        .batch_execute(&format!(
            "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 3)::text) AS v FROM generate_series(1, {}) g",
            mb * 10_000
        ))
        .await
        .unwrap();
    db
}

#[test]
fn usage_errors() {
    let output = Command::cargo_bin("pg-backup").unwrap().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    for (args, expected) in [
        (&["backup", "--format", "tar"][..], "unknown format \"tar\""),
        (&["backup", "--compress", "zstd:42"][..], "outside"),
        (&["restore", "latest", "--clean"][..], "--yes"),
        (&["backup", "--tier", "hourly"][..], "unknown tier \"hourly\""),
    ] {
        let output =
            Command::cargo_bin("pg-backup").unwrap().env("POSTGRES_HOST", "127.0.0.1").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let unconfigured = Command::cargo_bin("pg-backup")
        .unwrap()
        .env_remove("POSTGRES_HOST")
        .env_remove("DATABASE_URL")
        .env_remove("POSTGRES_DB")
        .args(["prune", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(unconfigured.status.code(), Some(2), "a missing configuration is bad input");
    assert!(String::from_utf8_lossy(&unconfigured.stderr).contains("PostgreSQL is not configured"));
}

#[tokio::test]
async fn a_killed_backup_leaves_nothing_that_looks_complete() {
    let db = big(40).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = TestS3Prefix::new();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("pg-backup"))
        .env("POSTGRES_DB", &db.name)
        .env("S3_PREFIX", &prefix.config.prefix)
        .args(["backup", "--no-prune", "--compress", "gzip:9", "--backup-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partial = std::fs::read_dir(dir.path().join("daily").as_path()).ok().into_iter().flatten().chain(
            ["weekly", "monthly"].iter().flat_map(|t| std::fs::read_dir(dir.path().join(t)).ok().into_iter().flatten()),
        );
        let written: u64 = partial
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        if written > 1 << 20 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the backup finished before it could be killed");
        assert!(Instant::now() < deadline, "the backup did not start writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let output = pg_backup(&db)
        .env("S3_BUCKET", &prefix.config.bucket)
        .env("S3_PREFIX", &prefix.config.prefix)
        .args(["list", "--output", "json", "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([]), "neither locally nor in S3");
    let manifests = walk(dir.path()).into_iter().filter(|p| p.ends_with(".manifest.json")).count();
    assert_eq!(manifests, 0);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// Answers every HTTP request with `status` and records the requests.
fn capture(status: u16) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
            let _ = stream
                .write_all(format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
        }
    });
    (port, rx)
}

#[tokio::test]
async fn notifications_and_metrics_never_fail_a_good_backup_nor_leak_their_urls() {
    let db = big(1).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Pushgateway::start();
    // The webhook's path is its token; a Pushgateway URL may carry a password.
    let token = "T0TALLY/B0GUS/webhook-token-1234";
    let gateway_url = format!("http://pusher:push-password-5678@127.0.0.1:{}", gateway.port);
    let output = pg_backup(&db)
        .env("SLACK_WEBHOOK", format!("http://127.0.0.1:{}/services/{token}", closed_port()))
        .env("PUSHGATEWAY_URL", &gateway_url)
        .args(["backup", "--tier", "monthly", "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("warning: notification not sent") && stderr.contains("127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("webhook-token-1234") && !stderr.contains("B0GUS"), "{stderr}");
    let labels = [("job", "pg_backup"), ("instance", db.name.as_str())];
    let success = gateway.value("dbkit_job_last_success_timestamp_seconds", &labels).expect("pushed");
    assert!((success - chrono::Utc::now().timestamp() as f64).abs() < 120.0, "{success}");
    assert_eq!(gateway.value("dbkit_job_success", &labels), Some(1.0));
    let size = gateway.value("pg_backup_size_bytes", &labels);
    assert!(size.is_some_and(|b| b > 0.0), "{size:?}");

    // A failed run says so, and keeps the last success for the staleness alert.
    let output = pg_backup(&db)
        .env("PUSHGATEWAY_URL", &gateway_url)
        .env("PG_BIN_DIR", dir.path())
        .args(["backup", "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(gateway.value("dbkit_job_success", &labels), Some(0.0));
    assert_eq!(gateway.value("dbkit_job_last_success_timestamp_seconds", &labels), Some(success));
    assert_eq!(gateway.value("pg_backup_size_bytes", &labels), size);

    // An unreachable Pushgateway is a warning that does not show its password.
    let output = pg_backup(&db)
        .env("PUSHGATEWAY_URL", format!("http://pusher:push-password-5678@127.0.0.1:{}", closed_port()))
        .args(["backup", "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.contains("warning: metrics not pushed"), "{stderr}");
    assert!(!stderr.contains("push-password-5678"), "{stderr}");

    let (hook, posted) = capture(200);
    let output = pg_backup(&db)
        .env("SLACK_WEBHOOK", format!("http://127.0.0.1:{hook}/hook"))
        .args(["backup", "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let message = posted.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(message.contains("succeeded") && message.contains(&db.name), "{message}");
}

/// A notification setting that cannot be read never stops a backup nor its prune. An
/// unreadable `PUSHGATEWAY_URL_FILE`, or the URL set both ways, is a warning naming the
/// variable; an unreadable `SLACK_WEBHOOK_FILE` exits 2 naming it, as it always has, but only
/// once the backup is complete.
#[tokio::test]
async fn unreadable_notification_settings_never_stop_a_backup() {
    let db = big(1).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-secret");
    let manifests = || walk(dir.path()).into_iter().filter(|p| p.ends_with(".manifest.json")).collect::<Vec<_>>();
    let backup = |vars: &[(&str, &str)]| {
        let mut command = pg_backup(&db);
        for name in ["SLACK_WEBHOOK", "SLACK_WEBHOOK_FILE", "PUSHGATEWAY_URL", "PUSHGATEWAY_URL_FILE"] {
            command.env_remove(name);
        }
        let output = command.envs(vars.iter().copied()).args(["backup", "--backup-dir"]).arg(dir.path()).output();
        let output = output.unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let missing = missing.to_str().unwrap();

    let (code, stdout, stderr) = backup(&[("PUSHGATEWAY_URL_FILE", missing)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("Backup "), "{stdout}");
    assert!(stderr.contains("warning: metrics not pushed") && stderr.contains("PUSHGATEWAY_URL_FILE"), "{stderr}");
    assert_eq!(manifests().len(), 1);

    let (code, _, stderr) = backup(&[
        ("PUSHGATEWAY_URL", "http://pusher:push-password-5678@127.0.0.1:9"),
        ("PUSHGATEWAY_URL_FILE", missing),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("PUSHGATEWAY_URL and") && stderr.contains("PUSHGATEWAY_URL_FILE are both set"), "{stderr}");
    assert!(!stderr.contains("push-password-5678"), "{stderr}");
    // Backup ids have one-second resolution.
    std::thread::sleep(Duration::from_millis(1100));

    let before = manifests();
    let (code, stdout, stderr) = backup(&[("SLACK_WEBHOOK_FILE", missing)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SLACK_WEBHOOK_FILE") && stderr.contains("the backup is complete"), "{stderr}");
    assert!(!stderr.contains("warning: notification not sent"), "said once, as the error: {stderr}");
    let after = manifests();
    let new: Vec<_> = after.iter().filter(|m| !before.contains(m)).collect();
    assert_eq!(new.len(), 1, "the backup was taken: {after:?}");
    let id = std::path::Path::new(new[0]).file_name().unwrap().to_str().unwrap().trim_end_matches(".manifest.json");
    assert!(stdout.contains(id), "{stdout}");
    let output = pg_backup(&db).args(["verify", id, "--backup-dir"]).arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "complete: {}", String::from_utf8_lossy(&output.stderr));

    // A failed backup is the run's error; the unreadable webhook is then a warning.
    let (code, _, stderr) = backup(&[("SLACK_WEBHOOK_FILE", missing), ("PG_BIN_DIR", missing)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("warning: notification not sent") && stderr.contains("SLACK_WEBHOOK_FILE"), "{stderr}");

    // Prune reads neither the webhook nor the policy's other settings, and only warns of the
    // Pushgateway's.
    let output = pg_backup(&db)
        .env_remove("PUSHGATEWAY_URL")
        .env("PUSHGATEWAY_URL_FILE", missing)
        .env("SLACK_WEBHOOK_FILE", missing)
        .args(["prune", "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("warning: metrics not pushed") && stderr.contains("PUSHGATEWAY_URL_FILE"), "{stderr}");
    assert!(!stderr.contains("SLACK_WEBHOOK"), "{stderr}");
}

#[tokio::test]
async fn backup_list_verify_and_restore_through_the_binary() {
    let db = big(1).await;
    let dir = tempfile::tempdir().unwrap();
    let output = pg_backup(&db)
        .args(["backup", "--format", "plain", "--output", "json", "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["compression"]["algorithm"], "gzip");
    let output =
        pg_backup(&db).args(["verify", "latest", "--compare", "--backup-dir"]).arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let target = TestDatabase::adopt(&testkit::unique_name("restored"));
    let output = pg_backup(&db)
        .args(["restore", "latest", "--target-db", &target.name, "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("10000 rows"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = pg_backup(&db)
        .args(["restore", "latest", "--target-db", &target.name, "--backup-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not empty"));
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    walk(dir).into_iter().filter(|p| p.contains(".partial") || p.ends_with(".lock")).collect()
}

/// Killed at random points, backups leave leftovers; `prune` and the next backup remove them,
/// every listed backup verifies, and a live backup's files are never touched.
#[tokio::test]
async fn leftovers_of_killed_backups_are_swept() {
    let db = big(20).await;
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        StdCommand::new(assert_cmd::cargo::cargo_bin("pg-backup"))
            .env("POSTGRES_DB", &db.name)
            .env_remove("S3_BUCKET")
            .args(["backup", "--no-prune", "--compress", "gzip:9", "--backup-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Killed a while after it starts writing (a busy machine may take long to get there).
    let kill_while_writing = |delay: u64| {
        // A backup sweeps what earlier ones left: wait for a file of its own.
        let before = leftovers(dir.path());
        let mut child = spawn();
        let deadline = Instant::now() + Duration::from_secs(60);
        while leftovers(dir.path()).iter().all(|p| before.contains(p)) {
            assert!(Instant::now() < deadline, "the backup never started writing");
            assert!(child.try_wait().unwrap().is_none(), "the backup ended before it wrote anything");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        child.wait().unwrap();
    };
    for (round, delay) in [0u64, 300, 100, 600, 400, 800].into_iter().enumerate() {
        kill_while_writing(delay);
        // Backup ids have one-second resolution; let each kill have its own.
        std::thread::sleep(Duration::from_millis(1000 - (delay % 1000).min(999) + 50 * round as u64));
    }
    let left = leftovers(dir.path());
    assert!(!left.is_empty(), "the kills left partial files behind");

    let output = pg_backup(&db).args(["prune", "--output", "json", "--backup-dir"]).arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let removed = report["stale_partials"].as_array().unwrap().len();
    assert!(removed > 0, "prune reports what it removed: {report}");
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));

    // A live backup holds its lock: prune leaves its files alone while it runs.
    let mut live = spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !walk(dir.path()).iter().any(|p| p.ends_with(".partial")) {
        assert!(Instant::now() < deadline, "the live backup never started writing");
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = pg_backup(&db).args(["prune", "--output", "json", "--backup-dir"]).arg(dir.path()).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["stale_partials"], serde_json::json!([]), "a live backup's files are not leftovers");
    assert!(live.wait().unwrap().success(), "the live backup was not disturbed");

    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    let output = pg_backup(&db).args(["list", "--output", "json", "--backup-dir"]).arg(dir.path()).output().unwrap();
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!listed.is_empty());
    for backup in &listed {
        let id = backup["id"].as_str().unwrap();
        let output = pg_backup(&db).args(["verify", id, "--backup-dir"]).arg(dir.path()).output().unwrap();
        assert!(output.status.success(), "{id}: {}", String::from_utf8_lossy(&output.stderr));
    }

    // The next backup sweeps too.
    std::thread::sleep(Duration::from_millis(1000));
    kill_while_writing(100);
    assert!(!leftovers(dir.path()).is_empty(), "the kill left partial files behind");
    let output = pg_backup(&db).args(["backup", "--no-prune", "--backup-dir"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(leftovers(dir.path()).is_empty(), "{:?} {stderr}", leftovers(dir.path()));
}

/// A directory-format backup of a table file larger than the process may address: each file
/// is streamed, never read whole.
#[tokio::test]
async fn directory_backups_stream_files_larger_than_the_memory_limit() {
    let db = big(400).await;
    let dir = tempfile::tempdir().unwrap();
    let limit_kib = 200_000u64;
    let output = StdCommand::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {limit_kib} && exec \"$0\" \"$@\""))
        .arg(assert_cmd::cargo::cargo_bin("pg-backup"))
        .args([
            "backup",
            "--format",
            "directory",
            "--compress",
            "none",
            "--jobs",
            "1",
            "--no-prune",
            "--output",
            "json",
        ])
        .arg("--backup-dir")
        .arg(dir.path())
        .env("POSTGRES_DB", &db.name)
        .env("MALLOC_ARENA_MAX", "2")
        .env_remove("S3_BUCKET")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let largest = manifest["files"].as_array().unwrap().iter().map(|f| f["bytes"].as_u64().unwrap()).max().unwrap();
    assert!(largest > limit_kib * 1024, "a file of {largest} bytes, larger than the limit of {limit_kib} KiB");
    let rows = manifest["tables"].as_array().unwrap().iter().find(|t| t["name"] == "big").unwrap()["rows"].clone();
    assert_eq!(rows, 4_000_000);
}
