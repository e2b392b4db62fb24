//! Redis: a standalone server, a Sentinel-managed master, or a Cluster.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::error::{ConfigError, ConnectError, Datastore, with_timeout};
use crate::settings::{Secret, Settings, Value, invalid, parse_list, parse_port, percent_decode};

/// The address of a Redis server or Sentinel; `Display` gives `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// A host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Which kind of deployment to connect to, and its nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One server (`REDIS_URL`, default `localhost:6379`).
    Standalone(Node),
    /// Ask the Sentinels for the current master of `master`.
    Sentinel {
        /// The master's name as the Sentinels know it (`REDIS_SENTINEL_MASTER`).
        master: String,
        /// The Sentinels to ask (`REDIS_SENTINEL_NODES`; port 26379 when none is given).
        sentinels: Vec<Node>,
    },
    /// A Redis Cluster, discovered from any of `nodes`.
    Cluster {
        /// The seed nodes (`REDIS_CLUSTER_NODES`; port 6379 when none is given).
        nodes: Vec<Node>,
    },
}

/// TLS for `rediss://` URLs and `REDIS_TLS=true`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisTls {
    /// Skip certificate verification (`rediss://...#insecure`).
    pub insecure: bool,
    /// CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
}

/// How to reach Redis. `Debug` and `Display` never show the password.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Standalone, Sentinel or Cluster, with the nodes to contact.
    pub topology: Topology,
    /// The logical database (`REDIS_DB` or the URL's path, default 0); a cluster has only 0.
    pub db: i64,
    /// The ACL user name of the data nodes (`REDIS_USERNAME` or the URL's); `None` for `default`.
    pub username: Option<String>,
    /// The data nodes' password (`REDIS_PASSWORD`, `_FILE`, or the URL's).
    pub password: Option<Secret>,
    /// Credentials of the Sentinels themselves (`requirepass` in sentinel.conf), which may differ
    /// from the data nodes'; none by default.
    pub sentinel_username: Option<String>,
    /// The Sentinels' password (`REDIS_SENTINEL_PASSWORD` or `_FILE`).
    pub sentinel_password: Option<Secret>,
    /// TLS settings; `None` for plain TCP.
    pub tls: Option<RedisTls>,
    /// The time a connection may take (`REDIS_CONNECT_TIMEOUT`, default 5 s).
    pub connect_timeout: Duration,
    /// The time each command may take to answer (`REDIS_RESPONSE_TIMEOUT`, default 5 s).
    pub response_timeout: Duration,
}

impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        write!(f, "{scheme}://{}/{}", self.endpoint(), self.db)
    }
}

impl RedisConfig {
    /// Reads `REDIS_URL` (`redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS),
    /// `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_DB`, `REDIS_TLS`, `REDIS_CA_CERT`,
    /// `REDIS_CONNECT_TIMEOUT`, `REDIS_RESPONSE_TIMEOUT`; Sentinel with `REDIS_SENTINEL_NODES`
    /// (`host:port,...`) and `REDIS_SENTINEL_MASTER`; Cluster with `REDIS_CLUSTER_NODES`.
    pub fn from_settings(settings: &Settings) -> Result<RedisConfig, ConfigError> {
        let mut config = RedisConfig {
            topology: Topology::Standalone(Node { host: "localhost".into(), port: 6379 }),
            db: 0,
            username: None,
            password: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            sentinel_username: None,
            sentinel_password: None,
        };
        if let Some(value) = settings.get("REDIS_URL")? {
            config.apply_url(&value)?;
        }
        let sentinels = settings.get("REDIS_SENTINEL_NODES")?;
        let cluster = settings.get("REDIS_CLUSTER_NODES")?;
        match (sentinels, cluster) {
            (Some(s), Some(c)) => {
                return Err(ConfigError::Conflict { first: s.origin.to_string(), second: c.origin.to_string() });
            }
            (Some(s), None) => {
                let master =
                    settings.get("REDIS_SENTINEL_MASTER")?.map(|v| v.text).ok_or_else(|| ConfigError::Incomplete {
                        datastore: Datastore::Redis,
                        reason: "REDIS_SENTINEL_NODES is set but REDIS_SENTINEL_MASTER (the master's name) is not"
                            .into(),
                    })?;
                config.topology = Topology::Sentinel { master, sentinels: parse_nodes(&s, 26379)? };
            }
            (None, Some(c)) => config.topology = Topology::Cluster { nodes: parse_nodes(&c, 6379)? },
            (None, None) => {}
        }
        if let Some(v) = settings.get("REDIS_USERNAME")? {
            config.username = Some(v.text);
        }
        if let Some(v) = settings.get("REDIS_PASSWORD")? {
            config.password = Some(Secret::new(v.text));
        }
        if let Some(v) = settings.get("REDIS_SENTINEL_USERNAME")? {
            config.sentinel_username = Some(v.text);
        }
        if let Some(v) = settings.get("REDIS_SENTINEL_PASSWORD")? {
            config.sentinel_password = Some(Secret::new(v.text));
        }
        if let Some(v) = settings.get("REDIS_DB")? {
            config.db =
                v.text.trim().parse().map_err(|_| invalid(&v, format!("{:?} is not a database number", v.text)))?;
        }
        if let Some(tls) = settings.boolean("REDIS_TLS")? {
            config.tls = tls.then(|| config.tls.clone().unwrap_or(RedisTls { insecure: false, ca_file: None }));
        }
        if let Some(v) = settings.get("REDIS_CA_CERT")? {
            let tls = config.tls.get_or_insert(RedisTls { insecure: false, ca_file: None });
            tls.ca_file = Some(PathBuf::from(v.text));
        }
        if let Some(d) = settings.duration("REDIS_CONNECT_TIMEOUT")? {
            config.connect_timeout = d;
        }
        if let Some(d) = settings.duration("REDIS_RESPONSE_TIMEOUT")? {
            config.response_timeout = d;
        }
        if matches!(config.topology, Topology::Cluster { .. }) && config.db != 0 {
            return Err(ConfigError::Incomplete {
                datastore: Datastore::Redis,
                reason: format!("Redis Cluster has only database 0, but database {} is configured", config.db),
            });
        }
        Ok(config)
    }

    fn apply_url(&mut self, value: &Value) -> Result<(), ConfigError> {
        // Never quote the URL in an error: it may hold a password.
        let url = url::Url::parse(&value.text).map_err(|e| invalid(value, format!("not a valid URL ({e})")))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(invalid(value, format!("scheme {other:?} is not redis:// or rediss://")));
            }
        };
        let host = url.host_str().filter(|h| !h.is_empty()).unwrap_or("localhost");
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        self.topology = Topology::Standalone(Node { host, port: url.port().unwrap_or(6379) });
        let path = url.path().trim_start_matches('/');
        if !path.is_empty() {
            self.db =
                path.parse().map_err(|_| invalid(value, format!("database {path:?} in the URL is not a number")))?;
        }
        if !url.username().is_empty() {
            self.username = Some(percent_decode(url.username()).map_err(|r| invalid(value, r))?);
        }
        if let Some(password) = url.password() {
            self.password = Some(Secret::new(percent_decode(password).map_err(|r| invalid(value, r))?));
        }
        if tls {
            self.tls = Some(RedisTls { insecure: url.fragment() == Some("insecure"), ca_file: None });
        }
        Ok(())
    }

    /// The nodes being contacted, for messages.
    pub fn endpoint(&self) -> String {
        match &self.topology {
            Topology::Standalone(node) => node.to_string(),
            Topology::Sentinel { master, sentinels } => {
                format!("sentinel master {master} via {}", join(sentinels))
            }
            Topology::Cluster { nodes } => format!("cluster {}", join(nodes)),
        }
    }

    fn redis_info(&self) -> RedisConnectionInfo {
        let mut info = RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            info = info.set_username(user);
        }
        if let Some(password) = &self.password {
            info = info.set_password(password.expose());
        }
        info
    }

    /// How to log in to a Sentinel: its own credentials, not the data nodes'.
    fn sentinel_info(&self) -> RedisConnectionInfo {
        let mut info = RedisConnectionInfo::default();
        if let Some(user) = &self.sentinel_username {
            info = info.set_username(user);
        }
        if let Some(password) = &self.sentinel_password {
            info = info.set_password(password.expose());
        }
        info
    }

    /// The address of `node`, over TLS when configured (the CA is added by the client).
    fn address(&self, node: &Node) -> ConnectionAddr {
        match &self.tls {
            None => ConnectionAddr::Tcp(node.host.clone(), node.port),
            Some(tls) => ConnectionAddr::TcpTls {
                host: node.host.clone(),
                port: node.port,
                insecure: tls.insecure,
                tls_params: None,
            },
        }
    }

    fn connection_info(&self, node: &Node) -> Result<ConnectionInfo, ConnectError> {
        let info = self
            .address(node)
            .into_connection_info()
            .map_err(|e| ConnectError::failed(Datastore::Redis, &node.to_string(), e))?;
        Ok(info.set_redis_settings(self.redis_info()))
    }

    fn certificates(&self) -> Result<Option<redis::TlsCertificates>, ConnectError> {
        let Some(ca_file) = self.tls.as_ref().and_then(|t| t.ca_file.as_ref()) else {
            return Ok(None);
        };
        let pem = std::fs::read(ca_file).map_err(|e| {
            ConnectError::message(
                Datastore::Redis,
                &self.endpoint(),
                format!("cannot read the CA file {} (REDIS_CA_CERT): {e}", ca_file.display()),
            )
        })?;
        Ok(Some(redis::TlsCertificates { client_tls: None, root_cert: Some(pem) }))
    }

    fn async_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
    }

    /// A client for a standalone server (or for the master a Sentinel names).
    pub fn client(&self) -> Result<redis::Client, ConnectError> {
        let setting = match &self.topology {
            Topology::Standalone(node) => Ok(node),
            Topology::Sentinel { .. } => Err("REDIS_SENTINEL_NODES"),
            Topology::Cluster { .. } => Err("REDIS_CLUSTER_NODES"),
        };
        let node = setting.map_err(|setting| {
            ConnectError::message(
                Datastore::Redis,
                &self.endpoint(),
                format!("a client of one server needs a standalone server, but {setting} is set; use connect()"),
            )
        })?;
        let info = self.connection_info(node)?;
        let client = match self.certificates()? {
            Some(certs) => redis::Client::build_with_tls(info, certs),
            None => redis::Client::open(info),
        };
        client.map_err(|e| ConnectError::failed(Datastore::Redis, &self.endpoint(), e))
    }

    /// A client that asks the Sentinels for the current master of `master` and logs in to it
    /// with the data nodes' credentials, database and TLS.
    fn sentinel_client(
        &self,
        master: &str,
        sentinels: &[Node],
    ) -> Result<redis::sentinel::SentinelClient, ConnectError> {
        let failed = |e| ConnectError::failed(Datastore::Redis, &self.endpoint(), e);
        let addresses = sentinels.iter().map(|n| self.address(n));
        let mut builder =
            redis::sentinel::SentinelClientBuilder::new(addresses, master, redis::sentinel::SentinelServerType::Master)
                .map_err(failed)?
                .set_client_to_redis_db(self.db);
        if let Some(user) = &self.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password.expose());
        }
        if let Some(user) = &self.sentinel_username {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &self.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password.expose());
        }
        if let Some(tls) = &self.tls {
            let mode = if tls.insecure { redis::TlsMode::Insecure } else { redis::TlsMode::Secure };
            builder = builder.set_client_to_redis_tls_mode(mode);
        }
        if let Some(certs) = self.certificates()? {
            builder =
                builder.set_client_to_redis_certificates(certs.clone()).set_client_to_sentinel_certificates(certs);
        }
        builder.build().map_err(failed)
    }

    /// A client for each Sentinel, to listen for announcements: the Sentinels' credentials, and
    /// TLS with the configured CA.
    fn sentinel_clients(&self, sentinels: &[Node]) -> Result<Vec<SentinelNode>, ConnectError> {
        let certs = self.certificates()?;
        sentinels
            .iter()
            .map(|node| {
                let info = self.connection_info(node)?.set_redis_settings(self.sentinel_info());
                let client = match &certs {
                    Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
                    None => redis::Client::open(info),
                };
                let client = client.map_err(|e| ConnectError::failed(Datastore::Redis, &node.to_string(), e))?;
                Ok(SentinelNode { address: node.to_string(), client })
            })
            .collect()
    }

    /// A cluster client over `nodes` with the configured credentials, TLS and timeouts.
    fn cluster_client(&self, nodes: &[Node]) -> Result<redis::cluster::ClusterClient, ConnectError> {
        let infos = nodes.iter().map(|n| self.connection_info(n)).collect::<Result<Vec<_>, _>>()?;
        let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout);
        if let Some(user) = &self.username {
            builder = builder.username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.password(password.expose());
        }
        if let Some(certs) = self.certificates()? {
            builder = builder.certs(certs);
        }
        builder.build().map_err(|e| ConnectError::failed(Datastore::Redis, &self.endpoint(), e))
    }

    /// Opens a connection that runs commands on the standalone server, the Sentinel's current
    /// master, or across the cluster.
    pub async fn connect(&self) -> Result<RedisConnection, ConnectError> {
        let endpoint = self.endpoint();
        let failed = |e: redis::RedisError| ConnectError::failed(Datastore::Redis, &endpoint, e);
        let budget = self.connect_timeout + self.response_timeout;
        with_timeout(Datastore::Redis, &endpoint, budget, async {
            match &self.topology {
                Topology::Standalone(_) => {
                    let client = self.client()?;
                    let connection = client
                        .get_multiplexed_async_connection_with_config(&self.async_config())
                        .await
                        .map_err(failed)?;
                    Ok(RedisConnection::Single(connection))
                }
                Topology::Sentinel { master, sentinels } => {
                    let mut client = self.sentinel_client(master, sentinels)?;
                    let connection =
                        client.get_async_connection_with_config(&self.async_config()).await.map_err(failed)?;
                    Ok(RedisConnection::Single(connection))
                }
                Topology::Cluster { nodes } => {
                    let connection = self.cluster_client(nodes)?.get_async_connection().await.map_err(failed)?;
                    Ok(RedisConnection::Cluster(connection))
                }
            }
        })
        .await
    }

    /// Connects and returns a [`RedisManager`]: one object a service clones into its tasks, which
    /// reconnects by itself when the server restarts or, behind Sentinels, fails over. Made
    /// with the same address, credentials, database, TLS and timeouts as
    /// [`RedisConfig::connect`], and fails as it does when the first connection cannot be made.
    pub async fn manager(&self) -> Result<RedisManager, ConnectError> {
        let endpoint = self.endpoint();
        let failed = |e: redis::RedisError| ConnectError::failed(Datastore::Redis, &endpoint, e);
        let budget = self.connect_timeout + self.response_timeout;
        let inner = with_timeout(Datastore::Redis, &endpoint, budget, async {
            match &self.topology {
                Topology::Standalone(_) => {
                    let client = self.client()?;
                    // A plain connection first, so that a wrong password or a refused port fails at
                    // once: the manager retries every failure of its first connection for seconds.
                    client.get_multiplexed_async_connection_with_config(&self.async_config()).await.map_err(failed)?;
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.connect_timeout))
                        .set_response_timeout(Some(self.response_timeout));
                    let manager =
                        redis::aio::ConnectionManager::new_with_config(client, config).await.map_err(failed)?;
                    Ok(Managed::Single(manager))
                }
                Topology::Sentinel { master, sentinels } => {
                    let state = Arc::new(MasterState {
                        client: tokio::sync::Mutex::new(self.sentinel_client(master, sentinels)?),
                        config: self.async_config(),
                        budget,
                        slot: std::sync::Mutex::new(Slot::default()),
                    });
                    let listened = self.sentinel_clients(sentinels)?;
                    state.connection().await.map_err(failed)?;
                    let watcher = tokio::spawn(watch_failovers(state.clone(), listened, master.clone()));
                    Ok(Managed::Sentinel(Arc::new(SentinelMaster { state, watcher: watcher.abort_handle() })))
                }
                Topology::Cluster { nodes } => {
                    let connection = self.cluster_client(nodes)?.get_async_connection().await.map_err(failed)?;
                    Ok(Managed::Cluster(connection))
                }
            }
        })
        .await?;
        Ok(RedisManager { endpoint: endpoint.into(), db: self.db, inner })
    }

    /// Connects, runs `INFO server` and returns the server version.
    pub async fn health(&self) -> Result<String, ConnectError> {
        let endpoint = self.endpoint();
        let mut connection = self.connect().await?;
        let info: String = with_timeout(Datastore::Redis, &endpoint, self.response_timeout, async {
            let mut command = redis::cmd("INFO");
            command.arg("server");
            let reply: Result<redis::Value, _> = match &mut connection {
                RedisConnection::Single(c) => command.query_async(c).await,
                RedisConnection::Cluster(c) => command.query_async(c).await,
            };
            let reply = reply.map_err(|e| ConnectError::failed(Datastore::Redis, &endpoint, e))?;
            // A cluster answers with one reply per node; every node must answer.
            first_text(&reply)
                .ok_or_else(|| ConnectError::message(Datastore::Redis, &endpoint, "INFO server gave no text answer"))
        })
        .await?;
        let version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .map(str::trim)
            .unwrap_or("unknown version");
        Ok(format!("Redis {version}"))
    }
}

/// A connection to a single server or to a cluster. Both implement `redis::aio::ConnectionLike`.
#[allow(missing_debug_implementations)]
pub enum RedisConnection {
    /// A standalone server, or the master a Sentinel named when connecting.
    Single(redis::aio::MultiplexedConnection),
    /// A Redis Cluster, commands routed by slot.
    Cluster(redis::cluster_async::ClusterConnection),
}

/// A Redis connection that reconnects by itself, for a service to share: clones use the same
/// connection, and it implements `redis::aio::ConnectionLike`, so commands run on it as on any
/// connection of the driver. Made by [`RedisConfig::manager`].
///
/// - A standalone server: the driver's `ConnectionManager`, which reconnects in the background
///   with backoff when the connection breaks.
/// - Sentinel: a connection to the master the Sentinels name. When the Sentinels announce a new
///   master (`+switch-master`, watched on a background task that ends with the last clone), or
///   the connection breaks, times out or meets a replica (`READONLY`), the next command asks the
///   Sentinels again and connects to the master they name then. Commands that find no
///   connection share that one attempt and wait at most the connect and response timeouts
///   together; for half a second after an attempt failed, commands fail at once with its error.
/// - Cluster: the driver's cluster connection, which reconnects to nodes and follows slot moves.
///
/// As with the driver's manager, the command that meets a broken connection fails; retry it
/// if it is safe to run twice. `Debug` shows the endpoint, never the password.
///
/// ```rust,no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use datastores::redis_driver::AsyncCommands;
/// use datastores::{RedisConfig, Settings, Source};
///
/// let settings = Settings::new().layer(Source::Environment, std::env::vars());
/// let redis = RedisConfig::from_settings(&settings)?.manager().await?;
/// // Each task takes a clone; all of them share one connection.
/// let mut connection = redis.clone();
/// let () = connection.set_ex("session:42", "alice", 3600).await?;
/// let user: Option<String> = connection.get("session:42").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisManager {
    endpoint: Arc<str>,
    db: i64,
    inner: Managed,
}

#[derive(Clone)]
enum Managed {
    Single(redis::aio::ConnectionManager),
    Sentinel(Arc<SentinelMaster>),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl fmt::Debug for RedisManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Managed::Single(_) => "standalone",
            Managed::Sentinel(_) => "sentinel",
            Managed::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisManager")
            .field("endpoint", &self.endpoint)
            .field("db", &self.db)
            .field("topology", &kind)
            .finish()
    }
}

impl redis::aio::ConnectionLike for RedisManager {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match &mut self.inner {
            Managed::Single(connection) => connection.req_packed_command(cmd),
            Managed::Cluster(connection) => connection.req_packed_command(cmd),
            Managed::Sentinel(master) => Box::pin(async move {
                let (generation, mut connection) = master.state.connection().await?;
                let result = connection.req_packed_command(cmd).await;
                master.state.forget_if_broken(generation, &result);
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match &mut self.inner {
            Managed::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Managed::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
            Managed::Sentinel(master) => Box::pin(async move {
                let (generation, mut connection) = master.state.connection().await?;
                let result = connection.req_packed_commands(pipeline, offset, count).await;
                master.state.forget_if_broken(generation, &result);
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

/// How long callers get the error of a failed attempt to reach the master at once, instead of
/// each making an attempt of its own, one after another.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// How long the Sentinel connection that carries announcements may stay silent before a `PING`
/// checks that the Sentinel is still there: a connection to a host that vanished never closes.
const SENTINEL_SILENCE: Duration = Duration::from_secs(30);

/// The connection to the master the Sentinels named last, replaced when it breaks or the
/// Sentinels announce another master.
struct SentinelMaster {
    state: Arc<MasterState>,
    /// The task running [`watch_failovers`], stopped with the last clone of the manager.
    watcher: tokio::task::AbortHandle,
}

impl Drop for SentinelMaster {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

struct MasterState {
    /// Asks the Sentinels for the master; used by one attempt at a time.
    client: tokio::sync::Mutex<redis::sentinel::SentinelClient>,
    config: AsyncConnectionConfig,
    /// How long asking the Sentinels and connecting to the master may take.
    budget: Duration,
    /// Locked briefly and never across an `await`, so that a command that failed can drop its
    /// connection, and return, while an attempt to reach the master is under way.
    slot: std::sync::Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    connection: Option<Master>,
    /// Counts the changes of `connection`, so that a command that fails on an old connection
    /// does not drop its replacement, and an attempt that began before the Sentinels announced
    /// a new master does not install a connection to the old one.
    generation: u64,
    /// The attempt under way to ask the Sentinels and connect, which every caller that needs a
    /// connection waits for; when it completes, its outcome is in the slot.
    attempt: Option<Shared<BoxFuture<'static, ()>>>,
    /// When the last attempt failed, and why.
    failure: Option<(Instant, redis::RedisError)>,
}

struct Master {
    connection: redis::aio::MultiplexedConnection,
    /// `host:port` as the Sentinels name it.
    address: String,
}

impl Slot {
    /// Drops the connection, and the outcome of an attempt under way, so that the next command
    /// asks the Sentinels again.
    fn drop_connection(&mut self) {
        self.connection = None;
        self.generation += 1;
        self.failure = None;
    }
}

impl MasterState {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // Every change of the slot is complete when its lock is released, so a panic while
        // holding it leaves nothing half-done.
        self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current connection, or a new one to the master the Sentinels name now, within
    /// `budget` from the call. Callers that find no connection wait for one shared attempt;
    /// when an attempt failed, callers get its error for [`RETRY_AFTER_FAILURE`].
    async fn connection(self: &Arc<Self>) -> redis::RedisResult<(u64, redis::aio::MultiplexedConnection)> {
        let deadline = tokio::time::Instant::now() + self.budget;
        loop {
            let attempt = {
                let mut slot = self.slot();
                if let Some(master) = &slot.connection {
                    return Ok((slot.generation, master.connection.clone()));
                }
                if let Some((at, error)) = &slot.failure
                    && at.elapsed() < RETRY_AFTER_FAILURE
                {
                    return Err(error.clone());
                }
                let generation = slot.generation;
                slot.attempt.get_or_insert_with(|| self.attempt(generation)).clone()
            };
            if tokio::time::timeout_at(deadline, attempt).await.is_err() {
                return Err(timed_out(format!("no connection to the Redis master within {:?}", self.budget)));
            }
        }
    }

    /// Asks the Sentinels for the master and connects to it on a task of its own, which records
    /// its outcome even when every caller waiting for it has given up. The outcome is dropped
    /// when the slot's generation moved on from `generation` meanwhile.
    fn attempt(self: &Arc<Self>, generation: u64) -> Shared<BoxFuture<'static, ()>> {
        let state = Arc::clone(self);
        let task = tokio::spawn(async move {
            let found = match tokio::time::timeout(state.budget, state.find_master()).await {
                Ok(found) => found,
                Err(_) => Err(timed_out(format!("no master from the Sentinels within {:?}", state.budget))),
            };
            let mut slot = state.slot();
            slot.attempt = None;
            if slot.generation != generation {
                return;
            }
            match found {
                Ok(master) => {
                    slot.connection = Some(master);
                    slot.generation += 1;
                    slot.failure = None;
                }
                Err(error) => slot.failure = Some((Instant::now(), error)),
            }
        });
        let state = Arc::downgrade(self);
        async move {
            // A task that panicked or whose runtime shut down could not clear its attempt.
            if task.await.is_err()
                && let Some(state) = state.upgrade()
            {
                state.slot().attempt = None;
            }
        }
        .boxed()
        .shared()
    }

    async fn find_master(&self) -> redis::RedisResult<Master> {
        let mut client = self.client.lock().await;
        let master = client.async_get_client().await?;
        let address = master.get_connection_info().addr().to_string();
        let connection = master.get_multiplexed_async_connection_with_config(&self.config).await?;
        Ok(Master { connection, address })
    }

    /// Drops connection `generation` when `result` says it is broken or no longer a master's.
    fn forget_if_broken<T>(&self, generation: u64, result: &redis::RedisResult<T>) {
        let Err(error) = result else { return };
        let replaced = error.is_unrecoverable_error()
            || error.is_io_error()
            || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if !replaced {
            return;
        }
        let mut slot = self.slot();
        if slot.generation == generation && slot.connection.is_some() {
            slot.drop_connection();
            drop(slot);
            tracing::debug!(%error, "Redis master connection lost; asking the Sentinels again");
        }
    }

    /// Drops the connection unless it goes to `named`, the master a Sentinel names now. An
    /// attempt under way may have asked before the Sentinels switched, so its outcome is judged.
    async fn keep_only(&self, named: &str) {
        let attempt = self.slot().attempt.clone();
        if let Some(attempt) = attempt {
            let _ = tokio::time::timeout(self.budget, attempt).await;
        }
        let mut slot = self.slot();
        if let Some(master) = &slot.connection
            && master.address != named
        {
            let old = master.address.clone();
            slot.drop_connection();
            drop(slot);
            tracing::debug!(old, named, "the Redis master changed unannounced; asking the Sentinels again");
        }
    }
}

fn timed_out(message: String) -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, message).into()
}

/// A Sentinel to listen to for failovers.
struct SentinelNode {
    /// `host:port`, for log lines.
    address: String,
    client: redis::Client,
}

/// Listens on the Sentinels for `+switch-master` of `master` and drops the connection to the
/// old master as soon as they announce a new one. Until the Sentinels demote it (which can take
/// seconds), the old master still takes writes, which its demotion then discards; a broken
/// connection or a `READONLY` answer alone would find the new master only then. After each
/// subscription it asks the same Sentinel for the master, as an announcement made before was
/// not heard. Moves on to the next Sentinel when one goes away or stops answering.
async fn watch_failovers(state: Arc<MasterState>, sentinels: Vec<SentinelNode>, master: String) {
    use futures::StreamExt;
    let budget = state.budget;
    loop {
        for sentinel in &sentinels {
            let subscribed = tokio::time::timeout(budget, async {
                let mut pubsub = sentinel.client.get_async_pubsub().await?;
                pubsub.subscribe("+switch-master").await?;
                Ok::<_, redis::RedisError>(pubsub.split())
            });
            let (mut sink, mut messages) = match subscribed.await {
                Ok(Ok(subscription)) => subscription,
                Ok(Err(error)) => {
                    tracing::debug!(sentinel = %sentinel.address, %error, "cannot listen for Redis failovers");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(sentinel = %sentinel.address, ?budget, "cannot listen for Redis failovers: no answer");
                    continue;
                }
            };
            // A switch announced before the subscription was not heard.
            match named_master(sentinel, &master, &state.config).await {
                Ok(Some(named)) => state.keep_only(&named).await,
                Ok(None) => tracing::debug!(sentinel = %sentinel.address, %master, "the Sentinel knows no such master"),
                Err(error) => {
                    tracing::debug!(sentinel = %sentinel.address, %error, "cannot ask the Sentinel for the Redis master");
                    continue;
                }
            }
            loop {
                match tokio::time::timeout(SENTINEL_SILENCE, messages.next()).await {
                    Ok(Some(message)) => {
                        // `<master> <old ip> <old port> <new ip> <new port>`
                        let payload: String = message.get_payload().unwrap_or_default();
                        if payload.split(' ').next() == Some(master.as_str()) {
                            tracing::debug!(%payload, "the Sentinels switched the Redis master");
                            state.slot().drop_connection();
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let answer = tokio::time::timeout(budget, sink.ping::<redis::Value>()).await;
                        if !matches!(answer, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            tracing::debug!(sentinel = %sentinel.address, "lost the Sentinel that announces Redis failovers");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The `host:port` of the master `sentinel` names for `master` now; `None` when it knows no
/// master of that name.
async fn named_master(
    sentinel: &SentinelNode,
    master: &str,
    config: &AsyncConnectionConfig,
) -> redis::RedisResult<Option<String>> {
    let mut connection = sentinel.client.get_multiplexed_async_connection_with_config(config).await?;
    let mut command = redis::cmd("SENTINEL");
    command.arg("get-master-addr-by-name").arg(master);
    let named: Option<(String, u16)> = command.query_async(&mut connection).await?;
    Ok(named.map(|(host, port)| format!("{host}:{port}")))
}

/// The text of a reply: a plain string, or the first node's answer in a cluster's map of them.
pub(crate) fn first_text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) | redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        redis::Value::Map(entries) => entries.iter().find_map(|(_, v)| first_text(v)),
        redis::Value::Array(items) => items.iter().find_map(first_text),
        _ => None,
    }
}

fn parse_nodes(value: &Value, default_port: u16) -> Result<Vec<Node>, ConfigError> {
    let nodes = parse_list(&value.text)
        .into_iter()
        .map(|item| {
            let (host, port) = match item.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(':') => {
                    (host.to_owned(), parse_port(port).map_err(|r| invalid(value, r))?)
                }
                _ => (item.clone(), default_port),
            };
            Ok(Node { host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    if nodes.is_empty() {
        return Err(invalid(value, "lists no host:port"));
    }
    Ok(nodes)
}

fn join(nodes: &[Node]) -> String {
    nodes.iter().map(Node::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn url_with_password_and_db() {
        let config =
            RedisConfig::from_settings(&env(&[("REDIS_URL", "rediss://:s%3Dcret@cache:6380/2#insecure")])).unwrap();
        assert_eq!(config.topology, Topology::Standalone(Node { host: "cache".into(), port: 6380 }));
        assert_eq!(config.db, 2);
        assert_eq!(config.password.as_ref().unwrap().expose(), "s=cret");
        assert_eq!(config.tls, Some(RedisTls { insecure: true, ca_file: None }));
        let shown = format!("{config:?} {config}");
        assert!(!shown.contains("cret"), "{shown}");
    }

    #[test]
    fn password_variable_overrides_url() {
        let config =
            RedisConfig::from_settings(&env(&[("REDIS_URL", "redis://:a@h/0"), ("REDIS_PASSWORD", "b")])).unwrap();
        assert_eq!(config.password.unwrap().expose(), "b");
    }

    #[test]
    fn sentinel_and_cluster() {
        let config = RedisConfig::from_settings(&env(&[
            ("REDIS_SENTINEL_NODES", "s1:26379, s2"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
        ]))
        .unwrap();
        assert_eq!(
            config.topology,
            Topology::Sentinel {
                master: "mymaster".into(),
                sentinels: vec![Node { host: "s1".into(), port: 26379 }, Node { host: "s2".into(), port: 26379 }]
            }
        );
        let err = RedisConfig::from_settings(&env(&[("REDIS_SENTINEL_NODES", "s1")])).unwrap_err().to_string();
        assert!(err.contains("REDIS_SENTINEL_MASTER"), "{err}");
        let err = RedisConfig::from_settings(&env(&[("REDIS_CLUSTER_NODES", "a:1,b:x")])).unwrap_err().to_string();
        assert!(err.contains("REDIS_CLUSTER_NODES") && err.contains("\"x\""), "{err}");
    }

    #[test]
    fn a_client_of_one_server_names_the_setting_that_asks_for_more() {
        let config = RedisConfig::from_settings(&env(&[
            ("REDIS_SENTINEL_NODES", "s1:26379"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
        ]))
        .unwrap();
        let err = config.client().unwrap_err().to_string();
        assert!(err.contains("REDIS_SENTINEL_NODES") && err.contains("connect()"), "{err}");
        let config = RedisConfig::from_settings(&env(&[("REDIS_CLUSTER_NODES", "a:1")])).unwrap();
        let err = config.client().unwrap_err().to_string();
        assert!(err.contains("REDIS_CLUSTER_NODES"), "{err}");
    }

    #[test]
    fn the_manager_can_be_shared_between_tasks() {
        fn shared<T: Clone + Send + Sync + 'static>() {}
        shared::<RedisManager>();
    }

    #[test]
    fn malformed_url_names_the_variable() {
        let error = RedisConfig::from_settings(&env(&[("REDIS_URL", "http://h")])).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Config);
        assert_eq!(error.origin(), Some("environment variable REDIS_URL"));
        let err = error.to_string();
        assert!(err.contains("environment variable REDIS_URL"), "{err}");
        let err = RedisConfig::from_settings(&env(&[("REDIS_URL", "redis://h/zero")])).unwrap_err().to_string();
        assert!(err.contains("REDIS_URL") && err.contains("zero"), "{err}");
    }
}
