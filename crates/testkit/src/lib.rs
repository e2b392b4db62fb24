//! Test support. Tests talk to real servers: the local stack started with `cargo xtask stack up`,
//! whose environment `cargo xtask test` passes on (or `eval "$(cargo xtask stack env)"` before a
//! plain `cargo test`).
//!
//! Every test gets resources of its own, removed when the guard is dropped: a PostgreSQL
//! database ([`TestDatabase`]), a MongoDB database ([`TestMongoDatabase`]), an S3 key prefix
//! ([`TestS3Prefix`]), and unique names ([`unique_name`]) for Milvus collections, Kafka topics and
//! Redis keys.
//!
//! A test whose datastore is not configured fails with a message saying how to start the stack;
//! nothing is skipped silently.
//!
//! There is no Docker on the build machines, so this crate does not start containers.

#![allow(clippy::print_stderr, clippy::unwrap_used)]

pub mod openapi;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use datastores::{Datastore, MongoConfig, PostgresConfig, S3Config, Settings, Source};

pub use datastores;

const HOW_TO_START: &str = "\
Start the local stack and run the tests with its environment:
    cargo xtask test
or, to use plain `cargo test`:
    cargo xtask stack up && eval \"$(cargo xtask stack env)\" && cargo test";

/// Installs the process-wide rustls provider once (client libraries link two).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The test process's environment as [`Settings`].
pub fn settings() -> Settings {
    init();
    Settings::new().layer(Source::Environment, std::env::vars())
}

/// Panics with instructions when `datastore` has no configuration in the environment.
pub fn require(datastore: Datastore) -> Settings {
    let settings = settings();
    let triggers = datastores::triggers(datastore);
    if !triggers.iter().any(|name| settings.is_set(name)) {
        panic!("{datastore} is not configured for the tests: none of {} is set.\n{HOW_TO_START}", triggers.join(", "));
    }
    settings
}

/// Unwraps a configuration or connection result, adding how to start the stack to the panic.
pub fn expect_up<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{e}\nIs the local stack running? `cargo xtask stack status` tells.\n{HOW_TO_START}"),
    }
}

/// A name no other test (in this or another process) uses: lower-case letters, digits and `_`,
/// starting with `prefix`, valid as a PostgreSQL, Milvus, MongoDB or Kafka name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{n}_{:05x}", std::process::id(), nanos & 0xfffff)
}

pub fn postgres_config() -> PostgresConfig {
    expect_up(PostgresConfig::from_settings(&require(Datastore::Postgres)))
}

/// Debian's PostgreSQL 15 on the build machines (`PG15_DATABASE_URL`), a second server version.
pub fn postgres15_config() -> PostgresConfig {
    let settings = settings();
    let Some(url) = settings.get("PG15_DATABASE_URL").ok().flatten() else {
        panic!(
            "PG15_DATABASE_URL is not set: the tests that run on a second PostgreSQL version need it.\n\
             On a machine with Debian's postgresql-15: pg_ctlcluster 15 main start; then\n{HOW_TO_START}"
        );
    };
    let layer = Settings::new().layer(Source::Other("PG15_DATABASE_URL".into()), [("DATABASE_URL", url.text)]);
    expect_up(PostgresConfig::from_settings(&layer))
}

/// Runs `cleanup` to completion on a runtime of its own, so guards can clean up in `Drop`, even
/// when dropped inside an async test.
fn block_on_cleanup<F: Future<Output = ()> + Send + 'static>(cleanup: F) {
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(cleanup);
    });
    let _ = handle.join();
}

/// A fresh PostgreSQL database on the stack's server, dropped (with its connections) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    /// Connects to the test database as the stack's superuser.
    pub config: PostgresConfig,
    admin: PostgresConfig,
}

impl TestDatabase {
    /// A database on the stack's PostgreSQL 18.
    pub async fn create() -> TestDatabase {
        TestDatabase::create_on(postgres_config()).await
    }

    /// A database on the server `admin` connects to.
    pub async fn create_on(admin: PostgresConfig) -> TestDatabase {
        let name = unique_name("test");
        let client = expect_up(admin.connect().await);
        client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
        let config = admin.with_dbname(&name);
        TestDatabase { name, config, admin }
    }

    pub async fn connect(&self) -> datastores::tokio_postgres::Client {
        expect_up(self.config.connect().await)
    }
}

impl TestDatabase {
    /// Takes charge of a database that the code under test created, to drop it at the end.
    pub fn adopt(name: &str) -> TestDatabase {
        let admin = postgres_config();
        TestDatabase { name: name.to_owned(), config: admin.with_dbname(name), admin }
    }
}

/// Unique role names for a test; the roles are dropped on drop. Declare this before any
/// [`TestDatabase`] that holds their objects, so that the database goes first.
#[derive(Debug)]
pub struct TestRoles {
    pub names: Vec<String>,
}

impl TestRoles {
    pub fn new(prefixes: &[&str]) -> TestRoles {
        TestRoles { names: prefixes.iter().map(|p| unique_name(p)).collect() }
    }
}

impl Drop for TestRoles {
    fn drop(&mut self) {
        let (admin, names) = (postgres_config(), self.names.clone());
        block_on_cleanup(async move {
            if let Ok(client) = admin.connect().await {
                for name in names {
                    let _ = client.batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\"")).await;
                }
            }
        });
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        block_on_cleanup(async move {
            match admin.connect().await {
                Ok(client) => {
                    if let Err(e) =
                        client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await
                    {
                        eprintln!("warning: cannot drop test database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("warning: cannot drop test database {name}: {e}"),
            }
        });
    }
}

/// A MongoDB database of the test's own, dropped on drop.
#[derive(Debug)]
pub struct TestMongoDatabase {
    pub name: String,
    pub config: MongoConfig,
}

impl TestMongoDatabase {
    pub fn new() -> TestMongoDatabase {
        let mut config = expect_up(MongoConfig::from_settings(&require(Datastore::MongoDb)));
        let name = unique_name("test");
        config.database = Some(name.clone());
        TestMongoDatabase { name, config }
    }
}

impl Default for TestMongoDatabase {
    fn default() -> TestMongoDatabase {
        TestMongoDatabase::new()
    }
}

impl Drop for TestMongoDatabase {
    fn drop(&mut self) {
        let (config, name) = (self.config.clone(), self.name.clone());
        block_on_cleanup(async move {
            if let Ok(client) = config.client().await
                && let Err(e) = client.database(&name).drop().await
            {
                eprintln!("warning: cannot drop MongoDB database {name}: {e}");
            }
        });
    }
}

/// An S3 key prefix of the test's own under the stack's bucket; every object under it is
/// deleted on drop.
#[derive(Debug)]
pub struct TestS3Prefix {
    pub config: S3Config,
}

impl TestS3Prefix {
    pub fn new() -> TestS3Prefix {
        let mut config = expect_up(S3Config::from_settings(&require(Datastore::S3)));
        config.prefix = format!("{}{}/", config.prefix, unique_name("test"));
        TestS3Prefix { config }
    }
}

impl Default for TestS3Prefix {
    fn default() -> TestS3Prefix {
        TestS3Prefix::new()
    }
}

impl Drop for TestS3Prefix {
    fn drop(&mut self) {
        let config = self.config.clone();
        block_on_cleanup(async move {
            let client = config.client().await;
            let mut token = None;
            loop {
                let page = client
                    .list_objects_v2()
                    .bucket(&config.bucket)
                    .prefix(&config.prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await;
                let Ok(page) = page else { return };
                for object in page.contents() {
                    if let Some(key) = object.key() {
                        let _ = client.delete_object().bucket(&config.bucket).key(key).send().await;
                    }
                }
                match page.next_continuation_token() {
                    Some(next) => token = Some(next.to_owned()),
                    None => return,
                }
            }
        });
    }
}

/// An S3 server of the test's own (s3s-fs from the stack, `S3S_FS_BIN`), for tests that stop it.
#[derive(Debug)]
pub struct PrivateS3 {
    pub config: S3Config,
    child: Option<std::process::Child>,
    _root: std::path::PathBuf,
}

impl PrivateS3 {
    pub fn start() -> PrivateS3 {
        let settings = require(Datastore::S3);
        let bin = settings.get("S3S_FS_BIN").ok().flatten().map(|v| v.text).unwrap_or_else(|| {
            panic!(
                "S3S_FS_BIN is not set: tests with an S3 server of their own use the stack's s3s-fs.\n{HOW_TO_START}"
            )
        });
        let root = std::env::temp_dir().join(unique_name("s3"));
        std::fs::create_dir_all(root.join("private")).unwrap();
        let port = closed_port();
        let secret = unique_name("secret");
        // The key is on the command line of this throw-away test server only: s3s-fs takes it no
        // other way.
        let child = std::process::Command::new(&bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                "private",
                "--secret-key",
                &secret,
            ])
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start on port {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let layer = Settings::new().layer(
            Source::Other("private S3".into()),
            [
                ("S3_BUCKET", "private".to_owned()),
                ("S3_ENDPOINT", format!("http://127.0.0.1:{port}")),
                ("AWS_ACCESS_KEY_ID", "private".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", secret),
                ("S3_MAX_ATTEMPTS", "3".to_owned()),
                ("S3_TIMEOUT", "5s".to_owned()),
            ],
        );
        PrivateS3 { config: S3Config::from_settings(&layer).unwrap(), child: Some(child), _root: root }
    }

    /// Kills the server, as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self._root);
    }
}

/// A TCP server on 127.0.0.1 that accepts connections and never answers: a stand-in for a host
/// that hangs, to test timeouts without waiting on the network.
#[derive(Debug)]
pub struct SilentServer {
    pub port: u16,
    _listener: std::net::TcpListener,
    _accepted: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (clone, keep) = (listener.try_clone().unwrap(), accepted.clone());
        std::thread::spawn(move || {
            for stream in clone.incoming().flatten() {
                keep.lock().unwrap().push(stream);
            }
        });
        SilentServer { port, _listener: listener, _accepted: accepted }
    }
}

/// A port on 127.0.0.1 where nothing listens (connections are refused).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
