//! Redis: a standalone server, a Sentinel-managed master, or a Cluster.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::error::{ConfigError, ConnectError, Datastore, with_timeout};
use crate::settings::{Secret, Settings, Value, invalid, parse_list, parse_port, percent_decode};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    Standalone(Node),
    /// Ask the Sentinels for the current master of `master`.
    Sentinel {
        master: String,
        sentinels: Vec<Node>,
    },
    Cluster {
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
    pub topology: Topology,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Credentials of the Sentinels themselves (`requirepass` in sentinel.conf), which may differ
    /// from the data nodes'; none by default.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    pub tls: Option<RedisTls>,
    pub connect_timeout: Duration,
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
            addr.into_connection_info().map_err(|e| ConnectError::failed(Datastore::Redis, &node.to_string(), &e))?;
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
        client.map_err(|e| ConnectError::failed(Datastore::Redis, &self.endpoint(), &e))
    }

    /// Opens a connection that runs commands on the standalone server, the Sentinel's current
    /// master, or across the cluster.
    pub async fn connect(&self) -> Result<RedisConnection, ConnectError> {
        let endpoint = self.endpoint();
        let failed = |e: redis::RedisError| ConnectError::failed(Datastore::Redis, &endpoint, &e);
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
                    let nodes = sentinels
                        .iter()
                        .map(|n| Ok(self.connection_info(n)?.set_redis_settings(self.sentinel_info())))
                        .collect::<Result<Vec<_>, ConnectError>>()?;
                    let mut node_info = redis::sentinel::SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(self.redis_info());
                    if let Some(tls) = &self.tls {
                        node_info = node_info.set_tls_mode(if tls.insecure {
                            redis::TlsMode::Insecure
                        } else {
                            redis::TlsMode::Secure
                        });
                    }
                    let mut client = redis::sentinel::SentinelClient::build(
                        nodes,
                        master.clone(),
                        Some(node_info),
                        redis::sentinel::SentinelServerType::Master,
                    )
                    .map_err(failed)?;
                    let connection = client.get_async_connection().await.map_err(failed)?;
                    Ok(RedisConnection::Single(connection))
                }
                Topology::Cluster { nodes } => {
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
                    let client = builder.build().map_err(failed)?;
                    let connection = client.get_async_connection().await.map_err(failed)?;
                    Ok(RedisConnection::Cluster(connection))
                }
            }
        })
        .await
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
            let reply = reply.map_err(|e| ConnectError::failed(Datastore::Redis, &endpoint, &e))?;
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
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
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
    fn malformed_url_names_the_variable() {
        let err = RedisConfig::from_settings(&env(&[("REDIS_URL", "http://h")])).unwrap_err().to_string();
        assert!(err.contains("environment variable REDIS_URL"), "{err}");
        let err = RedisConfig::from_settings(&env(&[("REDIS_URL", "redis://h/zero")])).unwrap_err().to_string();
        assert!(err.contains("REDIS_URL") && err.contains("zero"), "{err}");
    }
}
