//! Redis: a standalone server, a Sentinel-managed master, or a Cluster.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

    fn connection_info(&self, node: &Node) -> Result<ConnectionInfo, ConnectError> {
        let addr = match &self.tls {
            None => ConnectionAddr::Tcp(node.host.clone(), node.port),
            Some(tls) => ConnectionAddr::TcpTls {
                host: node.host.clone(),
                port: node.port,
                insecure: tls.insecure,
                tls_params: None,
            },
        };
        let info =
            addr.into_connection_info().map_err(|e| ConnectError::failed(Datastore::Redis, &node.to_string(), e))?;
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
                format!("cannot read CA file {}: {e}", ca_file.display()),
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
        let Topology::Standalone(node) = &self.topology else {
            return Err(ConnectError::message(
                Datastore::Redis,
                &self.endpoint(),
                "not a standalone server; use connect()",
            ));
        };
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
        let nodes = self.sentinel_infos(sentinels)?;
        let mut node_info =
            redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(self.redis_info());
        if let Some(tls) = &self.tls {
            node_info =
                node_info.set_tls_mode(if tls.insecure { redis::TlsMode::Insecure } else { redis::TlsMode::Secure });
        }
        redis::sentinel::SentinelClient::build(
            nodes,
            master,
            Some(node_info),
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(|e| ConnectError::failed(Datastore::Redis, &self.endpoint(), e))
    }

    /// How to reach and log in to each Sentinel.
    fn sentinel_infos(&self, sentinels: &[Node]) -> Result<Vec<ConnectionInfo>, ConnectError> {
        sentinels.iter().map(|n| Ok(self.connection_info(n)?.set_redis_settings(self.sentinel_info()))).collect()
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
                    let mut client = self.sentinel_client(master, sentinels)?;
                    let config = self.async_config();
                    let connection = client.get_async_connection_with_config(&config).await.map_err(failed)?;
                    let state = Arc::new(tokio::sync::Mutex::new(MasterState {
                        client,
                        connection: Some(connection),
                        generation: 0,
                    }));
                    let watcher = tokio::spawn(watch_failovers(
                        state.clone(),
                        self.sentinel_infos(sentinels)?,
                        master.clone(),
                        budget,
                    ));
                    Ok(Managed::Sentinel(Arc::new(SentinelMaster {
                        state,
                        config,
                        budget,
                        watcher: watcher.abort_handle(),
                    })))
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
///   Sentinels again and connects to the master they name then.
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
                let (generation, mut connection) = master.connection().await?;
                let result = connection.req_packed_command(cmd).await;
                master.forget_if_broken(generation, &result).await;
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
                let (generation, mut connection) = master.connection().await?;
                let result = connection.req_packed_commands(pipeline, offset, count).await;
                master.forget_if_broken(generation, &result).await;
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

/// The connection to the master the Sentinels named last, replaced when it breaks or the
/// Sentinels announce another master.
struct SentinelMaster {
    state: Arc<tokio::sync::Mutex<MasterState>>,
    config: AsyncConnectionConfig,
    /// How long asking the Sentinels and connecting to the master may take.
    budget: Duration,
    /// The task running [`watch_failovers`], stopped with the last clone of the manager.
    watcher: tokio::task::AbortHandle,
}

impl Drop for SentinelMaster {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

struct MasterState {
    client: redis::sentinel::SentinelClient,
    connection: Option<redis::aio::MultiplexedConnection>,
    /// Counts connections made, so that a command that fails on an old one does not drop its
    /// replacement.
    generation: u64,
}

impl SentinelMaster {
    /// The current connection, or a new one to the master the Sentinels name now. Callers wait
    /// for one another, so a failover makes one new connection, not one per caller.
    async fn connection(&self) -> redis::RedisResult<(u64, redis::aio::MultiplexedConnection)> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection {
            return Ok((state.generation, connection.clone()));
        }
        let connected = tokio::time::timeout(self.budget, state.client.get_async_connection_with_config(&self.config));
        let connection = match connected.await {
            Ok(connection) => connection?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no master from the Sentinels within {:?}", self.budget),
                )
                .into());
            }
        };
        state.generation += 1;
        state.connection = Some(connection.clone());
        Ok((state.generation, connection))
    }

    /// Drops connection `generation` when `result` says it is broken or no longer a master's.
    async fn forget_if_broken<T>(&self, generation: u64, result: &redis::RedisResult<T>) {
        let Err(error) = result else { return };
        let replaced = error.is_unrecoverable_error()
            || error.is_io_error()
            || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if !replaced {
            return;
        }
        let mut state = self.state.lock().await;
        if state.generation == generation && state.connection.is_some() {
            tracing::debug!(%error, "Redis master connection lost; asking the Sentinels again");
            state.connection = None;
        }
    }
}

/// Listens on the Sentinels for `+switch-master` of `master` and drops the connection to the
/// old master as soon as they announce a new one. Until the Sentinels demote it (which can take
/// seconds), the old master still takes writes, which its demotion then discards; a broken
/// connection or a `READONLY` answer alone would find the new master only then. Moves on to the
/// next Sentinel when one goes away.
async fn watch_failovers(
    state: Arc<tokio::sync::Mutex<MasterState>>,
    sentinels: Vec<ConnectionInfo>,
    master: String,
    budget: Duration,
) {
    use futures::StreamExt;
    loop {
        for info in &sentinels {
            let Ok(client) = redis::Client::open(info.clone()) else { continue };
            let subscribed = tokio::time::timeout(budget, async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe("+switch-master").await?;
                Ok::<_, redis::RedisError>(pubsub)
            });
            let Ok(Ok(pubsub)) = subscribed.await else { continue };
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                // `<master> <old ip> <old port> <new ip> <new port>`
                let payload: String = message.get_payload().unwrap_or_default();
                if payload.split(' ').next() == Some(master.as_str()) {
                    tracing::debug!(%payload, "the Sentinels switched the Redis master");
                    state.lock().await.connection = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
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
