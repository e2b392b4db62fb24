//! The service's binary against the local stack (`cargo xtask test`): a database of its own on
//! the stack's PostgreSQL, the stack's Redis, a free port.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datastores::redis_driver as redis;
use datastores::{Datastore, RedisConfig};
use serde_json::Value;
use testkit::TestDatabase;
use uuid::Uuid;

/// The running binary, killed if the test ends before it stops; its stderr is collected.
struct Service {
    child: Child,
    stderr: Arc<Mutex<String>>,
    base: String,
}

impl Service {
    fn start(envs: &[(&str, String)]) -> Service {
        let port = testkit::closed_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_recommend-service"))
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env_remove("LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Service { child, stderr, base: format!("http://127.0.0.1:{port}") }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `/healthz` answers 200 and returns its body; fails when the service exits.
    async fn wait_healthy(&mut self, http: &reqwest::Client) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the service exited with {status} before it was healthy:\n{}", self.stderr());
            }
            if let Ok(response) = http.get(format!("{}/healthz", self.base)).send().await
                && response.status() == 200
            {
                return response.json().await.unwrap();
            }
            assert!(Instant::now() < deadline, "not healthy within 120 s:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running 30 s after SIGTERM:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn migrates_serves_items_through_the_cache_and_stops_on_sigterm() {
    let settings = testkit::require(Datastore::Redis);
    let redis_config = testkit::expect_up(RedisConfig::from_settings(&settings));
    let db = TestDatabase::create().await;
    let prefix = format!("{}:", testkit::unique_name("recommend_service"));

    let mut service = Service::start(&[("POSTGRES_DB", db.name.clone()), ("ITEM_CACHE_PREFIX", prefix.clone())]);
    let http = reqwest::Client::new();
    let health = service.wait_healthy(&http).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["postgres"]["healthy"], true, "{health}");
    assert!(health["postgres"]["detail"].as_str().unwrap().starts_with("PostgreSQL "), "{health}");
    assert_eq!(health["redis"]["healthy"], true, "{health}");
    // The stack's MILVUS_URI reaches the service, which checks Milvus through vector-admin.
    testkit::require(Datastore::Milvus);
    assert_eq!(health["milvus"]["healthy"], true, "{health}");
    assert!(health["milvus"]["detail"].as_str().unwrap().starts_with("Milvus "), "{health}");

    // The compiled-in migrations ran: every versioned script is in the history.
    let client = db.connect().await;
    let versioned = recommend_db::migrations::scripts().unwrap().iter().filter(|s| s.version().is_some()).count();
    let recorded: i64 = client
        .query_one("SELECT count(*) FROM flyway_schema_history WHERE success AND version IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, i64::try_from(versioned).unwrap());

    let id: Uuid = client
        .query_one(
            "INSERT INTO items (type, title, description, category, tags, metadata) \
             VALUES ('movie', 'Arrival', 'A linguist and the heptapods', 'sci-fi', ARRAY['first-contact'], '{\"year\": 2016}') \
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let url = format!("{}/items/{id}", service.base);

    let (status, first) = get(&http, url.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["source"], "postgres", "{first}");
    assert_eq!(first["item"]["id"], id.to_string());
    assert_eq!(first["item"]["type"], "movie");
    assert_eq!(first["item"]["title"], "Arrival");
    assert_eq!(first["item"]["tags"], serde_json::json!(["first-contact"]));
    assert_eq!(first["item"]["metadata"]["year"], 2016);

    // Changed in PostgreSQL behind the cache's back: the second read still comes from Redis.
    client.execute("UPDATE items SET title = 'Changed' WHERE id = $1", &[&id]).await.unwrap();
    let (status, second) = get(&http, url.clone()).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["source"], "cache", "{second}");
    assert_eq!(second["item"], first["item"], "the cached item is the one read from PostgreSQL");

    let mut redis_connection = testkit::expect_up(redis_config.manager().await);
    let key = format!("{prefix}{id}");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis_connection).await.unwrap();
    assert!(ttl > 0 && ttl <= 300, "the entry expires (default ITEM_CACHE_TTL 300s): TTL {ttl}");

    let (status, body) = get(&http, format!("{}/items/{}", service.base, Uuid::new_v4())).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&http, format!("{}/items/not-a-uuid", service.base)).await;
    assert_eq!(status, 400, "{body}");

    drop(http);
    let status = service.terminate().await;
    let stderr = service.stderr();
    assert!(status.success(), "exit status {status} after SIGTERM:\n{stderr}");
    assert!(stderr.contains("database migrated") && stderr.contains("listening"), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    let passwords = [db.config.password.as_ref(), redis_config.password.as_ref()];
    for password in passwords.into_iter().flatten() {
        assert!(!stderr.contains(password.expose()), "a password is in the service's log:\n{stderr}");
    }

    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut redis_connection).await.unwrap();
}

#[tokio::test]
async fn a_datastore_it_cannot_reach_stops_the_start_with_a_clear_error() {
    let db = TestDatabase::create().await;
    let port = testkit::closed_port();
    let mut service = Service::start(&[
        ("POSTGRES_DB", db.name.clone()),
        ("REDIS_URL", format!("redis://127.0.0.1:{port}/0")),
        ("REDIS_CONNECT_TIMEOUT", "2s".into()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running with an unreachable Redis:\n{}", service.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The reader thread may still be copying the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stderr = service.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")) && stderr.to_lowercase().contains("redis"), "{stderr}");
}
