//! The testcontainers mode: with `DBKIT_TESTCONTAINERS=local` or `=official`, the datastores the
//! tests ask for are containers started through the Docker API (`DOCKER_HOST`; podman's
//! `podman system service` serves it), instead of the local stack's servers.
//!
//! - `local`: the images `cargo xtask test-images` builds from the stack's servers
//!   (`localhost/dbkit-test/{postgres,postgres15,redis,s3,kafka,mongodb,milvus}`). Weaviate has
//!   no server here: its tests use the fake (or `WEAVIATE_URL`) as outside this mode.
//! - `official`: the upstream images ([`OFFICIAL_IMAGES`]).
//!
//! Each container is started once per test process, on first use, and shared by every test of
//! the binary; the isolated-resource helpers ([`crate::TestDatabase`] and the others) work on top
//! of it unchanged. The containers carry the label `dev.dbkit.testkit` and outlive the process
//! (a static is never dropped): `cargo xtask test-containers` removes them at the end, as does
//! `podman rm -f $(podman ps -aq --filter label=dev.dbkit.testkit)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use datastores::Datastore;
use testcontainers::bollard::models::PortBinding;
use testcontainers::core::wait::LogWaitStrategy;
use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, CopyDataSource, GenericImage, ImageExt};

/// The environment variable that selects the mode: `local` or `official`.
pub const MODE_VARIABLE: &str = "DBKIT_TESTCONTAINERS";

/// The label on every container this mode starts.
pub const LABEL: &str = "dev.dbkit.testkit";

/// The images of the `official` mode, as `(server, image)`.
pub const OFFICIAL_IMAGES: &[(&str, &str)] = &[
    ("postgres", "docker.io/pgvector/pgvector:pg18"),
    ("postgres15", "docker.io/library/postgres:15"),
    ("redis", "docker.io/library/redis:7"),
    ("mongodb", "docker.io/library/mongo:7"),
    ("kafka", "docker.io/apache/kafka:3.9.1"),
    ("s3", "docker.io/minio/minio:latest"),
    ("milvus", "docker.io/milvusdb/milvus:v2.3.5"),
    ("weaviate", "docker.io/semitechnologies/weaviate:1.28.2"),
];

/// The test servers' passwords: throwaway containers, so fixed and public (the local images are
/// built with them).
const PASSWORD: &str = "dbkit-test";
const S3_SECRET: &str = "dbkit-test-secret";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which images the mode starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `localhost/dbkit-test/*`, built by `cargo xtask test-images`.
    Local,
    /// The upstream images of [`OFFICIAL_IMAGES`].
    Official,
}

/// Limits the mode to the tests of some packages: a comma-separated list of package names,
/// compared with `CARGO_PKG_NAME`, which `cargo test` sets for each test binary it runs. The
/// other packages' tests use the environment (the stack), so that one `cargo test --workspace`
/// runs some suites on containers and the rest on the stack, building everything once.
pub const PACKAGES_VARIABLE: &str = "DBKIT_TESTCONTAINERS_PACKAGES";

/// The mode `DBKIT_TESTCONTAINERS` selects for this test binary, if any (see
/// [`PACKAGES_VARIABLE`]); panics on a value it does not know.
pub fn mode() -> Option<Mode> {
    if let Ok(packages) = std::env::var(PACKAGES_VARIABLE) {
        let this = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
        if !packages.split(',').any(|p| p.trim() == this) {
            return None;
        }
    }
    match std::env::var(MODE_VARIABLE).unwrap_or_default().as_str() {
        "" | "0" | "off" => None,
        "local" => Some(Mode::Local),
        "official" => Some(Mode::Official),
        other => panic!("{MODE_VARIABLE}={other:?}: use `local` (images of `cargo xtask test-images`) or `official`"),
    }
}

/// A server the mode can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Server {
    Postgres,
    Postgres15,
    Redis,
    MongoDb,
    Kafka,
    S3,
    Milvus,
    Weaviate,
}

impl Server {
    pub(crate) fn of(datastore: Datastore) -> Server {
        match datastore {
            Datastore::Postgres => Server::Postgres,
            Datastore::Redis => Server::Redis,
            Datastore::MongoDb => Server::MongoDb,
            Datastore::Kafka => Server::Kafka,
            Datastore::Milvus => Server::Milvus,
            Datastore::Weaviate => Server::Weaviate,
            _ => Server::S3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Server::Postgres => "postgres",
            Server::Postgres15 => "postgres15",
            Server::Redis => "redis",
            Server::MongoDb => "mongodb",
            Server::Kafka => "kafka",
            Server::S3 => "s3",
            Server::Milvus => "milvus",
            Server::Weaviate => "weaviate",
        }
    }
}

/// The servers `settings()` starts in `mode`: those with an image in it.
pub(crate) fn served(mode: Mode) -> Vec<Server> {
    let all =
        [Server::Postgres, Server::Redis, Server::MongoDb, Server::Kafka, Server::S3, Server::Milvus, Server::Weaviate];
    all.into_iter().filter(|s| has_image(mode, *s)).collect()
}

pub(crate) fn has_image(mode: Mode, server: Server) -> bool {
    mode == Mode::Official || server != Server::Weaviate
}

/// The variables that point the clients at `server`'s container, starting it on first use.
pub(crate) fn variables(mode: Mode, server: Server) -> Vec<(String, String)> {
    static STARTED: Mutex<BTreeMap<u8, Vec<(String, String)>>> = Mutex::new(BTreeMap::new());
    let key = server as u8;
    // Held while starting, so that parallel tests start each container once.
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(vars) = started.get(&key) {
        return vars.clone();
    }
    let vars = match block_on(start(mode, server)) {
        Ok(vars) => vars,
        Err(e) => panic!(
            "{MODE_VARIABLE}: cannot start the {} container: {e}\n\
             Is the Docker API up and DOCKER_HOST pointing at it (podman system service)? \
             For the local images: cargo xtask test-images (or run the suites with cargo xtask test-containers).",
            server.name()
        ),
    };
    started.insert(key, vars.clone());
    vars
}

/// Runs `future` on this module's runtime, which lives as long as the process (the containers'
/// Docker client is bound to it), from any thread, inside an async test or not.
fn block_on<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap());
    let (send, receive) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = send.send(future.await);
    });
    receive.recv().expect("the container start-up task panicked")
}

/// Keeps the started containers: dropping one would remove it.
static CONTAINERS: Mutex<Vec<ContainerAsync<GenericImage>>> = Mutex::new(Vec::new());

fn image(mode: Mode, server: Server) -> GenericImage {
    match mode {
        Mode::Local => GenericImage::new(format!("localhost/dbkit-test/{}", server.name()), VERSION.to_owned()),
        Mode::Official => {
            let (_, reference) = OFFICIAL_IMAGES.iter().find(|(name, _)| *name == server.name()).unwrap();
            let (name, tag) = reference.rsplit_once(':').unwrap();
            GenericImage::new(name, tag)
        }
    }
}

async fn start(mode: Mode, server: Server) -> Result<Vec<(String, String)>, String> {
    let started = Instant::now();
    let local = mode == Mode::Local;
    let pg_ready = "database system is ready to accept connections";
    let vars = match server {
        Server::Postgres | Server::Postgres15 => {
            // The server listens on the host port inside the container too, and keeps its Unix
            // socket in a host folder mounted at the same path, so that clients reach it through
            // `unix_socket_directories` as they reach the stack's.
            let port = crate::closed_port();
            let sockets = std::env::temp_dir().join(format!("dbkit-testkit-{}-{}", server.name(), std::process::id()));
            std::fs::create_dir_all(&sockets).map_err(|e| format!("cannot create {}: {e}", sockets.display()))?;
            std::fs::set_permissions(&sockets, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .map_err(|e| e.to_string())?;
            let sockets = sockets.display().to_string();
            let mut image = image(mode, server).with_exposed_port(port.tcp());
            image = if local {
                image.with_wait_for(WaitFor::message_on_stderr(pg_ready))
            } else {
                // The official entrypoint runs a temporary server for initdb first.
                image.with_wait_for(WaitFor::log(LogWaitStrategy::stderr(pg_ready).with_times(2)))
            };
            let mut settings = vec![
                "max_connections=300".to_owned(),
                format!("port={port}"),
                // The official image's entrypoint connects through the second folder.
                format!("unix_socket_directories={sockets},/tmp"),
            ];
            if local {
                settings.extend(
                    [
                        "listen_addresses=*",
                        "shared_preload_libraries=pg_stat_statements",
                        "fsync=off",
                        "synchronous_commit=off",
                        "full_page_writes=off",
                    ]
                    .map(str::to_owned),
                );
            }
            let mut cmd: Vec<String> = if local { Vec::new() } else { vec!["postgres".to_owned()] };
            cmd.extend(settings.into_iter().flat_map(|s| ["-c".to_owned(), s]));
            let request = image
                .with_env_var("POSTGRES_PASSWORD", PASSWORD)
                .with_env_var("PGPORT", port.to_string())
                .with_env_var("PGHOST", "/tmp")
                .with_mount(Mount::bind_mount(sockets.clone(), sockets))
                .with_cmd(cmd);
            run_on(request, &[(port, port)]).await?;
            if server == Server::Postgres15 {
                vec![("PG15_DATABASE_URL", format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"))]
            } else {
                vec![
                    ("POSTGRES_HOST", "127.0.0.1".to_owned()),
                    ("POSTGRES_PORT", port.to_string()),
                    ("POSTGRES_USER", "postgres".to_owned()),
                    ("POSTGRES_PASSWORD", PASSWORD.to_owned()),
                ]
            }
        }
        Server::Redis => {
            let image = image(mode, server)
                .with_exposed_port(6379.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"));
            let args = ["--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"];
            let mut cmd: Vec<&str> = if local { Vec::new() } else { vec!["redis-server"] };
            cmd.extend(args);
            cmd.extend(["--requirepass", PASSWORD]);
            let port = run(image.with_cmd(cmd), 6379).await?;
            vec![("REDIS_URL", format!("redis://127.0.0.1:{port}/0")), ("REDIS_PASSWORD", PASSWORD.to_owned())]
        }
        Server::S3 => {
            let vars = |port: u16| {
                vec![
                    ("S3_BUCKET", "dbkit".to_owned()),
                    ("S3_ENDPOINT", format!("http://127.0.0.1:{port}")),
                    ("AWS_REGION", "us-east-1".to_owned()),
                    ("AWS_ACCESS_KEY_ID", "dbkit".to_owned()),
                    ("AWS_SECRET_ACCESS_KEY", S3_SECRET.to_owned()),
                ]
            };
            if local {
                let image = image(mode, server)
                    .with_exposed_port(9000.tcp())
                    .with_wait_for(WaitFor::message_on_stderr("serving /data"));
                vars(run(image, 9000).await?)
            } else {
                let image =
                    image(mode, server).with_exposed_port(9000.tcp()).with_wait_for(WaitFor::message_on_stdout("API:"));
                let request = image
                    .with_env_var("MINIO_ROOT_USER", "dbkit")
                    .with_env_var("MINIO_ROOT_PASSWORD", S3_SECRET)
                    .with_cmd(["server", "/data"]);
                let vars = vars(run(request, 9000).await?);
                create_bucket(&vars).await?;
                vars
            }
        }
        Server::Kafka => {
            // Clients connect to the address the broker advertises, so the host port is chosen
            // first and given to the broker.
            let host_port = crate::closed_port();
            let advertised = format!("127.0.0.1:{host_port}");
            let request = if local {
                image(mode, server).with_wait_for(WaitFor::message_on_either_std("ready in")).with_cmd([
                    "--listener-url".to_owned(),
                    "tcp://0.0.0.0:9092".to_owned(),
                    "--advertised-listener-url".to_owned(),
                    format!("tcp://{advertised}"),
                ])
            } else {
                let mut request = image(mode, server)
                    .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
                    .with_env_var("KAFKA_ADVERTISED_LISTENERS", format!("PLAINTEXT://{advertised}"));
                for (name, value) in [
                    ("KAFKA_NODE_ID", "1"),
                    ("KAFKA_PROCESS_ROLES", "broker,controller"),
                    ("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                    ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
                    ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
                    ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093"),
                    ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1"),
                    ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1"),
                    ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
                    ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
                ] {
                    request = request.with_env_var(name, value);
                }
                request
            };
            run_on(request, &[(9092, host_port)]).await?;
            vec![("KAFKA_BOOTSTRAP_SERVERS", advertised), ("KAFKA_REPLICATION_FACTOR", "1".to_owned())]
        }
        Server::MongoDb => {
            let port = if local {
                // The image's data folder holds the user already; the server answers once its
                // port does.
                let port = run(image(mode, server).with_exposed_port(27017.tcp()), 27017).await?;
                explained(wait_tcp(port, Duration::from_secs(60)).await).await?;
                port
            } else {
                let image = image(mode, server)
                    .with_exposed_port(27017.tcp())
                    // The entrypoint runs a temporary server to create the user first.
                    .with_wait_for(WaitFor::log(LogWaitStrategy::stdout("Waiting for connections").with_times(2)));
                let request = image
                    .with_env_var("MONGO_INITDB_ROOT_USERNAME", "dbkit")
                    .with_env_var("MONGO_INITDB_ROOT_PASSWORD", PASSWORD);
                run(request, 27017).await?
            };
            vec![
                ("MONGODB_URI", format!("mongodb://dbkit@127.0.0.1:{port}/?authSource=admin")),
                ("MONGODB_PASSWORD", PASSWORD.to_owned()),
                ("MONGODB_DATABASE", "dbkit".to_owned()),
            ]
        }
        Server::Milvus => {
            let request: ContainerRequest<GenericImage> = if local {
                // The image's entrypoint is the wheel's launcher: standalone, embedded etcd.
                image(mode, server).with_exposed_port(19530.tcp()).with_exposed_port(9091.tcp()).into()
            } else {
                let etcd = "listen-client-urls: http://0.0.0.0:2379\nadvertise-client-urls: http://0.0.0.0:2379\n";
                image(mode, server)
                    .with_exposed_port(19530.tcp())
                    .with_exposed_port(9091.tcp())
                    .with_cmd(["milvus", "run", "standalone"])
                    .with_env_var("ETCD_USE_EMBED", "true")
                    .with_env_var("ETCD_DATA_DIR", "/var/lib/milvus/etcd")
                    .with_env_var("ETCD_CONFIG_PATH", "/milvus/configs/embedEtcd.yaml")
                    .with_env_var("COMMON_STORAGETYPE", "local")
                    .with_copy_to("/milvus/configs/embedEtcd.yaml", CopyDataSource::Data(etcd.as_bytes().to_vec()))
            };
            let (port, health) = (crate::closed_port(), crate::closed_port());
            run_on(request, &[(19530, port), (9091, health)]).await?;
            explained(wait_http_ok(health, "/healthz", Duration::from_secs(180)).await).await?;
            vec![("MILVUS_HOST", "127.0.0.1".to_owned()), ("MILVUS_PORT", port.to_string())]
        }
        Server::Weaviate => {
            let mut request =
                image(mode, server).with_exposed_port(8080.tcp()).with_env_var("CLUSTER_HOSTNAME", "node1");
            for (name, value) in [
                ("AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED", "true"),
                ("PERSISTENCE_DATA_PATH", "/var/lib/weaviate"),
                ("DEFAULT_VECTORIZER_MODULE", "none"),
                ("QUERY_DEFAULTS_LIMIT", "25"),
            ] {
                request = request.with_env_var(name, value);
            }
            let port = run(request, 8080).await?;
            explained(wait_http_ok(port, "/v1/.well-known/ready", Duration::from_secs(120)).await).await?;
            vec![("WEAVIATE_URL", format!("http://127.0.0.1:{port}"))]
        }
    };
    eprintln!("testkit: {} container ready in {:.1?} ({MODE_VARIABLE})", server.name(), started.elapsed());
    Ok(vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Starts the container with `port` published on a free port of 127.0.0.1, and returns that port.
async fn run(request: impl Into<ContainerRequest<GenericImage>>, port: u16) -> Result<u16, String> {
    let host = crate::closed_port();
    run_on(request, &[(port, host)]).await?;
    Ok(host)
}

/// Starts the container with each `(container port, host port)` published on 127.0.0.1.
///
/// The ports are bound explicitly rather than read back from the engine: podman 4's Docker API
/// reports published ports with an empty `HostIp`, which testcontainers does not count as IPv4.
async fn run_on(request: impl Into<ContainerRequest<GenericImage>>, ports: &[(u16, u16)]) -> Result<(), String> {
    let bindings: HashMap<String, Option<Vec<PortBinding>>> = ports
        .iter()
        .map(|(container, host)| {
            let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host.to_string()) };
            (format!("{container}/tcp"), Some(vec![binding]))
        })
        .collect();
    let request: ContainerRequest<GenericImage> = request.into();
    let container = request
        .with_label(LABEL, std::process::id().to_string())
        .with_startup_timeout(Duration::from_secs(180))
        .with_host_config_modifier(move |config| {
            config.publish_all_ports = Some(false);
            config.port_bindings = Some(bindings.clone());
        })
        .start()
        .await
        .map_err(|e| e.to_string())?;
    CONTAINERS.lock().unwrap_or_else(|e| e.into_inner()).push(container);
    Ok(())
}

/// A failed wait for the container started last, with the end of its output: why a server did
/// not come up is there.
async fn explained(waited: Result<(), String>) -> Result<(), String> {
    let Err(e) = waited else { return Ok(()) };
    let Some(container) = CONTAINERS.lock().unwrap_or_else(|e| e.into_inner()).pop() else { return Err(e) };
    let (stdout, stderr) = (container.stdout_to_vec().await, container.stderr_to_vec().await);
    CONTAINERS.lock().unwrap_or_else(|e| e.into_inner()).push(container);
    let tail = |bytes: Vec<u8>| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let (stdout, stderr) = (tail(stdout.unwrap_or_default()), tail(stderr.unwrap_or_default()));
    Err(format!("{e}; the end of the container's stdout:\n{stdout}\nand of its stderr:\n{stderr}"))
}

/// Waits until 127.0.0.1:`port` accepts a connection that the server keeps open (a published
/// port whose server is not listening yet accepts and closes at once, or refuses).
async fn wait_tcp(port: u16, timeout: Duration) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut byte = [0u8; 1];
            // A MongoDB server waits for the client's hello: the read times out instead of
            // seeing the end of the stream.
            if tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await.is_err() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("nothing answered on port {port} within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `GET path` on 127.0.0.1:`port` until it answers 200.
async fn wait_http_ok(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut answer = Vec::new();
            if stream.write_all(request.as_bytes()).await.is_ok()
                && tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("GET {path} on port {port} did not answer 200 within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the bucket the variables name (MinIO starts with none).
async fn create_bucket(vars: &[(&str, String)]) -> Result<(), String> {
    let settings = datastores::Settings::new().layer(datastores::Source::Other("testcontainers".into()), vars.to_vec());
    let config = datastores::S3Config::from_settings(&settings).map_err(|e| e.to_string())?;
    let client = config.client().await;
    client.create_bucket().bucket(&config.bucket).send().await.map_err(|e| format!("cannot create the bucket: {e}"))?;
    Ok(())
}
