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
//! With `DBKIT_TESTCONTAINERS=local` or `=official` (feature `containers`, on by default), the
//! datastores are containers started through the Docker API instead (see [`containers`]): images
//! of the stack's servers built by `cargo xtask test-images`, or the upstream images.
//!
//! Weaviate, which has no server on the build machines, is played by
//! [`weaviate_fake::FakeWeaviate`], an in-memory fake checked against Weaviate's OpenAPI documents.
#![warn(missing_docs)]
#![allow(clippy::print_stderr, clippy::unwrap_used)]

#[cfg(feature = "containers")]
pub mod containers;
pub mod servers;
pub mod tls;
pub mod weaviate_fake;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datastores::{Datastore, MongoConfig, PostgresConfig, S3Config, Settings, Source};

pub use datastores;

pub(crate) const HOW_TO_START: &str = "\
Start the local stack and run the tests with its environment:
    cargo xtask test
or, to use plain `cargo test`:
    cargo xtask stack up && eval \"$(cargo xtask stack env)\" && cargo test";

/// Installs the process-wide rustls provider once (client libraries link two).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The test process's environment as [`Settings`]. In the testcontainers mode, every datastore
/// the mode serves points at its container, started on first use.
pub fn settings() -> Settings {
    init();
    match container_settings(None, false) {
        Some(settings) => settings,
        None => Settings::new().layer(Source::Environment, std::env::vars()),
    }
}

/// Panics with instructions when `datastore` has no configuration in the environment (in the
/// testcontainers mode: starts its container, unless the mode has no image for it).
pub fn require(datastore: Datastore) -> Settings {
    init();
    let settings = container_settings(Some(datastore), false)
        .unwrap_or_else(|| Settings::new().layer(Source::Environment, std::env::vars()));
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
///
/// ```rust
/// let (a, b) = (testkit::unique_name("orders"), testkit::unique_name("orders"));
/// assert_ne!(a, b);
/// assert!(a.starts_with("orders_"));
/// assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
/// ```
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{n}_{:05x}", std::process::id(), nanos & 0xfffff)
}

/// The stack's PostgreSQL 18 as its superuser, from the environment; panics with instructions
/// when it is not configured.
pub fn postgres_config() -> PostgresConfig {
    expect_up(PostgresConfig::from_settings(&require(Datastore::Postgres)))
}

/// In the testcontainers mode, the environment with the variables of the containers `wanted`
/// (all the mode serves when `None`; the PostgreSQL 15 one with `postgres15`) on top; the
/// datastores those containers serve are no longer read from the environment. `None` outside
/// the mode.
#[cfg(feature = "containers")]
fn container_settings(wanted: Option<Datastore>, postgres15: bool) -> Option<Settings> {
    use containers::Server;
    let mode = containers::mode()?;
    let servers: Vec<Server> = match wanted {
        _ if postgres15 => vec![Server::Postgres15],
        Some(datastore) => vec![Server::of(datastore)],
        None => {
            let mut all = containers::served(mode);
            all.push(Server::Postgres15);
            all
        }
    };
    let servers: Vec<Server> = servers.into_iter().filter(|s| containers::has_image(mode, *s)).collect();
    let mut replaced: Vec<String> = Vec::new();
    let mut layer = Vec::new();
    for server in servers {
        if let Some(datastore) = Datastore::ALL.iter().find(|d| Server::of(**d) == server) {
            replaced.extend(datastores::triggers(*datastore).iter().flat_map(|t| [t.to_string(), format!("{t}_FILE")]));
        }
        layer.extend(containers::variables(mode, server));
    }
    let environment = std::env::vars().filter(|(name, _)| !replaced.contains(name));
    Some(
        Settings::new()
            .layer(Source::Other(containers::MODE_VARIABLE.into()), layer)
            .layer(Source::Environment, environment),
    )
}

#[cfg(not(feature = "containers"))]
fn container_settings(_: Option<Datastore>, _: bool) -> Option<Settings> {
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    let limited = std::env::var("DBKIT_TESTCONTAINERS_PACKAGES")
        .is_ok_and(|packages| !packages.split(',').any(|p| p.trim() == package));
    if !limited && std::env::var_os("DBKIT_TESTCONTAINERS").is_some_and(|v| !v.is_empty()) {
        panic!("DBKIT_TESTCONTAINERS is set, but testkit was built without its `containers` feature");
    }
    None
}

/// Debian's PostgreSQL 15 on the build machines (`PG15_DATABASE_URL`), a second server version;
/// in the testcontainers mode, a PostgreSQL 15 container.
pub fn postgres15_config() -> PostgresConfig {
    init();
    let settings =
        container_settings(None, true).unwrap_or_else(|| Settings::new().layer(Source::Environment, std::env::vars()));
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
    /// The database's name, from [`unique_name`] with prefix `test`.
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

    /// A client connected to the test database; panics with instructions when the server is down.
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
    /// The role names, one per prefix, in the prefixes' order.
    pub names: Vec<String>,
}

impl TestRoles {
    /// One unique name per prefix ([`unique_name`]). Creates nothing: the test creates the roles.
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
    /// The database's name, from [`unique_name`] with prefix `test`.
    pub name: String,
    /// The stack's MongoDB with this database as its default.
    pub config: MongoConfig,
}

impl TestMongoDatabase {
    /// Names a database on the stack's MongoDB (which creates it on the first write); panics with
    /// instructions when MongoDB is not configured.
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
    /// The stack's S3 with `prefix` extended by a unique folder.
    pub config: S3Config,
}

impl TestS3Prefix {
    /// A unique prefix under the stack's bucket and prefix; panics with instructions when S3 is
    /// not configured.
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

/// An S3 server of the test's own (the stack's, `S3_SERVER_BIN`), for tests that stop it.
#[derive(Debug)]
pub struct PrivateS3 {
    /// The server's configuration: bucket `private`, its own key, 3 attempts, a 5 s timeout.
    pub config: S3Config,
    daemon: servers::Daemon,
    _scratch: servers::Scratch,
}

impl PrivateS3 {
    /// Starts the server on a free loopback port with a fresh data directory, and waits until it
    /// accepts connections.
    pub fn start() -> PrivateS3 {
        let settings = require(Datastore::S3);
        let bin = settings.get("S3_SERVER_BIN").ok().flatten().map(|v| v.text).unwrap_or_else(|| {
            panic!("S3_SERVER_BIN is not set: tests with an S3 server of their own use the stack's.\n{HOW_TO_START}")
        });
        let scratch = servers::Scratch::new("s3");
        std::fs::create_dir_all(scratch.path.join("data").join("private")).unwrap();
        let port = closed_port();
        let secret = unique_name("secret");
        let key_file = scratch.path.join("secret-key");
        std::fs::write(&key_file, &secret).unwrap();
        let mut command = std::process::Command::new(&bin);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "private"])
            .arg("--secret-key-file")
            .arg(&key_file)
            .arg(scratch.path.join("data"));
        let daemon = servers::Daemon::spawn("s3", command, &scratch.path, port);
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
        PrivateS3 { config: S3Config::from_settings(&layer).unwrap(), daemon, _scratch: scratch }
    }

    /// Kills the server, as an outage would.
    pub fn stop(&mut self) {
        self.daemon.kill();
    }
}

/// A TCP server on 127.0.0.1 that accepts connections and never answers: a stand-in for a host
/// that hangs, to test timeouts without waiting on the network.
#[derive(Debug)]
pub struct SilentServer {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    _listener: std::net::TcpListener,
    _accepted: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl SilentServer {
    /// Listens on a free port; connections are accepted and held open until the server is dropped.
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

/// A TCP forwarder to a server that holds back, for a while, what a client sends when it holds
/// `needle`: a server that is slow to answer one statement, as a loaded one is. Use it with
/// TLS off, so that the statements can be seen.
#[derive(Debug)]
pub struct StallingProxy {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    stalled: std::sync::Arc<AtomicU64>,
}

impl StallingProxy {
    /// Forwards every connection to `upstream` (`host:port`); each read from a client that
    /// contains `needle` waits `delay` before it goes on.
    pub fn start(upstream: &str, needle: &[u8], delay: Duration) -> StallingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = std::sync::Arc::new(AtomicU64::new(0));
        let (count, upstream, needle) = (stalled.clone(), upstream.to_owned(), needle.to_vec());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(&upstream) else { continue };
                let (count, needle) = (count.clone(), needle.clone());
                let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        if buffer[..n].windows(needle.len()).any(|w| w == needle.as_slice()) {
                            count.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(delay);
                        }
                        if server_write.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        StallingProxy { port, stalled }
    }

    /// How many client reads were held back.
    pub fn stalled(&self) -> u64 {
        self.stalled.load(Ordering::Relaxed)
    }
}

/// A port on 127.0.0.1 where nothing listens (connections are refused).
///
/// ```rust
/// let port = testkit::closed_port();
/// assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
/// ```
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One request that passed through an [`S3Proxy`].
#[derive(Clone, Debug)]
pub struct ProxiedRequest {
    /// The HTTP method (`GET`, `PUT`, ...).
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl ProxiedRequest {
    /// The value of header `name` (given in lower case), if the request had it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// An HTTP proxy in front of the stack's S3 server that records every request's headers, and
/// can refuse every write (PUT, POST, DELETE) with `403 AccessDenied`, as a bucket policy does
/// for read-only credentials. Signatures stay valid: requests pass through unchanged.
#[derive(Debug)]
pub struct S3Proxy {
    /// The stack's S3 configuration, pointed at the proxy.
    pub config: S3Config,
    requests: std::sync::Arc<std::sync::Mutex<Vec<ProxiedRequest>>>,
    refused: std::sync::Arc<AtomicU64>,
}

/// An [`S3Proxy`] that refuses writes.
pub type ReadOnlyS3Proxy = S3Proxy;

impl S3Proxy {
    /// Passes everything through, recording it.
    pub fn record(upstream: &S3Config) -> S3Proxy {
        S3Proxy::spawn(upstream, false)
    }

    /// Refuses writes.
    pub fn start(upstream: &S3Config) -> S3Proxy {
        S3Proxy::spawn(upstream, true)
    }

    fn spawn(upstream: &S3Config, refuse_writes: bool) -> S3Proxy {
        let endpoint = upstream.endpoint.clone().expect("the stack's S3 has an endpoint");
        let upstream_addr = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = std::sync::Arc::new(AtomicU64::new(0));
        let (log, count) = (requests.clone(), refused.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (log, count, upstream_addr) = (log.clone(), count.clone(), upstream_addr.clone());
                std::thread::spawn(move || {
                    let _ = proxy_connection(client, &upstream_addr, refuse_writes, &log, &count);
                });
            }
        });
        let mut config = upstream.clone();
        config.endpoint = Some(format!("http://127.0.0.1:{port}"));
        config.max_attempts = 1;
        S3Proxy { config, requests, refused }
    }

    /// Every request seen so far, in order, refused ones included.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// How many writes were answered with `403 AccessDenied`.
    pub fn writes_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Serves one client connection: each request goes to a fresh upstream connection, and the
/// answer comes back with `Connection: close`, so that no response needs to be parsed.
fn proxy_connection(
    mut client: std::net::TcpStream,
    upstream: &str,
    refuse_writes: bool,
    log: &std::sync::Mutex<Vec<ProxiedRequest>>,
    refused: &AtomicU64,
) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let end = line == b"\r\n";
        head.extend_from_slice(&line);
        if end {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or_default().to_owned(), first.next().unwrap_or_default().to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    if headers.iter().any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue")) {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    log.lock().unwrap().push(ProxiedRequest { method: method.clone(), target, headers });
    if refuse_writes && matches!(method.as_str(), "PUT" | "POST" | "DELETE") {
        refused.fetch_add(1, Ordering::Relaxed);
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                   <Message>Access Denied</Message></Error>";
        write!(
            client,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return Ok(());
    }
    let mut server = std::net::TcpStream::connect(upstream)?;
    let head = text
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let head = head.trim_end_matches("\r\n").to_owned();
    server.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    while answer.starts_with(b"HTTP/1.1 100") {
        match answer.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => drop(answer.drain(..end + 4)),
            None => break,
        }
    }
    // Add `Connection: close` to the answer's head, so the client does not reuse the connection.
    if let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
        let (h, rest) = answer.split_at(split);
        let h = String::from_utf8_lossy(h)
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        client.write_all(format!("{h}\r\nConnection: close").as_bytes())?;
        client.write_all(rest)?;
    } else {
        client.write_all(&answer)?;
    }
    Ok(())
}
