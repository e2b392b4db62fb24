//! PostgreSQL: configuration, single connections, the connection pool and the health check.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{ConfigError, ConnectError, Datastore, with_timeout};
use crate::settings::{Origin, Secret, Settings, Value, invalid, parse_duration, percent_decode, prefer};
use crate::tls::{self, Verification};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// Behaves as `prefer`: the client offers TLS and accepts a server without it.
    Allow,
    /// TLS when the server offers it, without verifying its certificate; the default.
    Prefer,
    /// TLS, without verifying the certificate, unless `sslrootcert` is set: then the chain is
    /// verified, as libpq does.
    Require,
    /// TLS with a certificate chain that leads to a trusted CA; the host name is not checked.
    VerifyCa,
    /// TLS with a trusted chain and a certificate issued for the host name.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling (`disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`).
    pub fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text.trim() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "unknown sslmode {other:?}; use disable, allow, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }

    /// libpq's spelling of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Pool sizing. The defaults are the platform's contract: at least 5 connections kept open, at
/// most 50, connections idle for 300 s closed down to the minimum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections kept open even when idle (`POSTGRES_POOL_MIN`, default 5).
    pub min_size: usize,
    /// The most connections open at once (`POSTGRES_POOL_MAX`, default 50).
    pub max_size: usize,
    /// Connections unused for this long are closed while more than `min_size` are open
    /// (`POSTGRES_POOL_IDLE_TIMEOUT`, default 300 s).
    pub idle_timeout: Duration,
    /// How long `Pool::get` waits for a free connection before failing
    /// (`POSTGRES_POOL_WAIT_TIMEOUT`, default 30 s).
    pub wait_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            min_size: 5,
            max_size: 50,
            idle_timeout: Duration::from_secs(300),
            wait_timeout: Duration::from_secs(30),
        }
    }
}

/// Where and how to connect to PostgreSQL. `Debug` and `Display` never show the password.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// A host name, an IP address, or a directory holding the server's Unix socket.
    pub host: String,
    /// The TCP port, or the Unix socket's number (default 5432).
    pub port: u16,
    /// The database (default `postgres`).
    pub dbname: String,
    /// The user name (default `postgres`).
    pub user: String,
    /// The password; `None` for trust, peer or certificate authentication.
    pub password: Option<Secret>,
    /// Whether and how to use TLS (default `prefer`).
    pub sslmode: SslMode,
    /// CA certificates to trust instead of the Mozilla roots.
    pub sslrootcert: Option<PathBuf>,
    /// The name the server shows in `pg_stat_activity` and its logs (default `dbkit`).
    pub application_name: String,
    /// libpq's `options`: run-time settings sent at connection start, e.g. `-c search_path=app`.
    pub options: Option<String>,
    /// The time a connection, its TLS handshake and login included, may take (default 10 s).
    pub connect_timeout: Duration,
    /// The connection pool's sizing, for [`PostgresConfig::pool`] and `sqlx_pool`.
    pub pool: PoolConfig,
}

impl fmt::Display for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} db={} sslmode={}", self.user, self.endpoint(), self.dbname, self.sslmode.as_str())
    }
}

impl PostgresConfig {
    /// Defaults as libpq has them, for `host`.
    pub fn new(host: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            host: host.into(),
            port: 5432,
            dbname: "postgres".into(),
            user: "postgres".into(),
            password: None,
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            application_name: "dbkit".into(),
            options: None,
            connect_timeout: Duration::from_secs(10),
            pool: PoolConfig::default(),
        }
    }

    /// Reads the configuration from `DATABASE_URL` (or `POSTGRES_URL`) and the `POSTGRES_*`
    /// variables; a variable overrides the same part of a URL from its own or a lower layer.
    ///
    /// ```rust
    /// use std::time::Duration;
    /// use datastores::{PostgresConfig, Settings, Source, SslMode};
    ///
    /// let settings = Settings::new().layer(
    ///     Source::Environment,
    ///     [
    ///         ("DATABASE_URL", "postgres://app:hunter2@db.internal:6432/recommend?sslmode=require"),
    ///         ("POSTGRES_PASSWORD", "s3cret"),
    ///         ("POSTGRES_POOL_MAX", "20"),
    ///     ],
    /// );
    /// let config = PostgresConfig::from_settings(&settings)?;
    /// assert_eq!(config.endpoint(), "db.internal:6432");
    /// assert_eq!((config.user.as_str(), config.dbname.as_str()), ("app", "recommend"));
    /// assert_eq!(config.sslmode, SslMode::Require);
    /// // The variable wins over the URL's password.
    /// assert_eq!(config.password.as_ref().map(|p| p.expose()), Some("s3cret"));
    /// // The platform's pool defaults, where not set.
    /// assert_eq!((config.pool.min_size, config.pool.max_size), (5, 20));
    /// assert_eq!(config.pool.idle_timeout, Duration::from_secs(300));
    ///
    /// // `Display` and `Debug` never show the password.
    /// assert_eq!(config.to_string(), "app@db.internal:6432 db=recommend sslmode=require");
    /// assert!(!format!("{config:?}").contains("s3cret"));
    ///
    /// // A wrong value is an error naming the variable.
    /// let bad = Settings::new().layer(Source::Environment, [("POSTGRES_SSLMODE", "on")]);
    /// let error = PostgresConfig::from_settings(&bad).unwrap_err();
    /// assert_eq!(error.origin(), Some("environment variable POSTGRES_SSLMODE"));
    /// # Ok::<(), datastores::ConfigError>(())
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<PostgresConfig, ConfigError> {
        let url = match settings.get_any(&["DATABASE_URL", "POSTGRES_URL"])? {
            Some(value) => UrlParts::parse(&value)?,
            None => UrlParts::default(),
        };
        let mut config = PostgresConfig::new("localhost");
        if let Some(v) = prefer(settings.get("POSTGRES_HOST")?, url.host) {
            config.host = v.text;
        }
        if let Some(v) = prefer(settings.get("POSTGRES_PORT")?, url.port) {
            config.port = crate::settings::parse_port(&v.text).map_err(|r| invalid(&v, r))?;
        }
        if let Some(v) = prefer(settings.get("POSTGRES_DB")?, url.dbname) {
            config.dbname = v.text;
        }
        if let Some(v) = prefer(settings.get("POSTGRES_USER")?, url.user) {
            config.user = v.text;
        }
        if let Some(v) = prefer(settings.get("POSTGRES_PASSWORD")?, url.password) {
            config.password = Some(Secret::new(v.text));
        }
        if let Some(v) = prefer(settings.get("POSTGRES_SSLMODE")?, url.sslmode) {
            config.sslmode = SslMode::parse(&v.text).map_err(|r| invalid(&v, r))?;
        }
        if let Some(v) = prefer(settings.get("POSTGRES_SSLROOTCERT")?, url.sslrootcert) {
            config.sslrootcert = Some(PathBuf::from(v.text));
        }
        if let Some(v) = prefer(settings.get("POSTGRES_APPLICATION_NAME")?, url.application_name) {
            config.application_name = v.text;
        }
        if let Some(v) = prefer(settings.get("POSTGRES_OPTIONS")?, url.options) {
            config.options = Some(v.text);
        }
        if let Some(v) = prefer(settings.get("POSTGRES_CONNECT_TIMEOUT")?, url.connect_timeout) {
            config.connect_timeout = parse_duration(&v.text).map_err(|r| invalid(&v, r))?;
        }
        if let Some(n) = settings.count("POSTGRES_POOL_MIN")? {
            config.pool.min_size = n;
        }
        if let Some(n) = settings.count("POSTGRES_POOL_MAX")? {
            config.pool.max_size = n;
        }
        if let Some(d) = settings.duration("POSTGRES_POOL_IDLE_TIMEOUT")? {
            config.pool.idle_timeout = d;
        }
        if let Some(d) = settings.duration("POSTGRES_POOL_WAIT_TIMEOUT")? {
            config.pool.wait_timeout = d;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what [`PostgresConfig::from_settings`] checks, for a configuration built in code:
    /// `pool.max_size` at least 1 and not below `pool.min_size`, a non-zero `connect_timeout`, and
    /// an existing `sslrootcert` file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let incomplete = |reason: String| ConfigError::Incomplete { datastore: Datastore::Postgres, reason };
        if self.pool.max_size == 0 {
            return Err(incomplete("POSTGRES_POOL_MAX must be at least 1".into()));
        }
        if self.pool.min_size > self.pool.max_size {
            return Err(incomplete(format!(
                "POSTGRES_POOL_MIN ({}) is larger than POSTGRES_POOL_MAX ({})",
                self.pool.min_size, self.pool.max_size
            )));
        }
        if self.connect_timeout.is_zero() {
            return Err(incomplete("POSTGRES_CONNECT_TIMEOUT must be more than zero".into()));
        }
        if let Some(path) = &self.sslrootcert
            && !path.is_file()
        {
            return Err(incomplete(format!("the sslrootcert file {} does not exist", path.display())));
        }
        Ok(())
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('/') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> PostgresConfig {
        PostgresConfig { dbname: dbname.to_owned(), ..self.clone() }
    }

    /// A `tokio_postgres::Config` for this configuration.
    pub fn client_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        if let Some(options) = &self.options {
            config.options(options);
        }
        config
    }

    /// The TLS connector for the configured `sslmode`.
    pub fn tls(&self) -> Result<MakeRustlsConnect, ConnectError> {
        let verification = match self.sslmode {
            // As libpq: `require` with a root certificate verifies the chain.
            SslMode::Require if self.sslrootcert.is_some() => Verification::Chain,
            SslMode::Disable | SslMode::Allow | SslMode::Prefer | SslMode::Require => Verification::None,
            SslMode::VerifyCa => Verification::Chain,
            SslMode::VerifyFull => Verification::Full,
        };
        let config = tls::client_config(verification, self.sslrootcert.as_deref())
            .map_err(|m| ConnectError::message(Datastore::Postgres, &self.endpoint(), m))?;
        Ok(MakeRustlsConnect::new(config))
    }

    /// Opens one connection and drives it on a background task.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, ConnectError> {
        let endpoint = self.endpoint();
        let tls = self.tls()?;
        let config = self.client_config();
        // connect_timeout bounds each TCP attempt; the outer timeout bounds the whole handshake,
        // including a server that accepts the socket and never answers.
        with_timeout(Datastore::Postgres, &endpoint, self.connect_timeout, async {
            let (client, connection) =
                config.connect(tls).await.map_err(|e| ConnectError::failed(Datastore::Postgres, &endpoint, e))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "PostgreSQL connection closed");
                }
            });
            Ok(client)
        })
        .await
    }

    /// Builds the connection pool and opens `pool.min_size` connections; fails if the first
    /// connection cannot be made. A background task closes connections idle for longer than
    /// `pool.idle_timeout` down to `pool.min_size` and reopens up to the minimum; it ends when
    /// the last clone of the pool is dropped.
    pub async fn pool(&self) -> Result<Pool, ConnectError> {
        let endpoint = self.endpoint();
        let manager = Manager::from_config(
            self.client_config(),
            self.tls()?,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool.max_size)
            .wait_timeout(Some(self.pool.wait_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| ConnectError::failed(Datastore::Postgres, &endpoint, e))?;
        fill_to_minimum(&pool, self.pool.min_size)
            .await
            .map_err(|e| ConnectError::failed(Datastore::Postgres, &endpoint, e))?;
        let weak = pool.weak();
        let (min, idle) = (self.pool.min_size, self.pool.idle_timeout);
        let period = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = weak.upgrade() else { break };
                evict_idle(&pool, min, idle);
                if let Err(error) = fill_to_minimum(&pool, min).await {
                    tracing::warn!(error = %crate::error::chain(&error), "cannot reopen pooled PostgreSQL connections");
                }
            }
        });
        Ok(pool)
    }

    /// Connects and reads the server version.
    pub async fn health(&self) -> Result<String, ConnectError> {
        let endpoint = self.endpoint();
        let client = self.connect().await?;
        let row = client
            .query_one("SELECT current_setting('server_version')", &[])
            .await
            .map_err(|e| ConnectError::failed(Datastore::Postgres, &endpoint, e))?;
        Ok(format!("PostgreSQL {}", row.get::<_, String>(0)))
    }
}

#[cfg(feature = "sqlx")]
impl PostgresConfig {
    /// sqlx's connection options for this configuration: host (a directory for a Unix socket),
    /// port, database, user, password, `sslmode`, `sslrootcert`, `application_name` and the
    /// settings of `options`, as [`PostgresConfig::client_config`] and [`PostgresConfig::tls`]
    /// give them to tokio-postgres.
    ///
    /// `sslmode` keeps libpq's meaning: `require` with a `sslrootcert` verifies the chain (it
    /// becomes sqlx's `verify-ca`), `allow` behaves as `prefer`. Differences remain, all sqlx
    /// 0.8's: a `sslrootcert` is trusted besides the Mozilla roots rather than instead of them;
    /// `verify-ca` (so `require` with a `sslrootcert` too) also checks that the certificate names
    /// the host, with rustls 0.23.24 and later (launchbadge/sqlx#3793, fixed in sqlx 0.9);
    /// and `verify-ca` takes rustls' process-wide crypto provider, which a process that links
    /// two providers must install first (dbkit's binaries install ring).
    ///
    /// sqlx starts from the process environment (`PGHOST`, `PGSSLMODE`, ...). Every setting this
    /// configuration has overrides it, and an unset password or `sslrootcert` is set empty so
    /// that `PGPASSWORD` and `PGSSLROOTCERT` do not apply; `PGOPTIONS` (before this
    /// configuration's `options`), `PGSSLCERT` and `PGSSLKEY` still do.
    ///
    /// Fails when `options` holds something other than run-time settings (`-c name=value`,
    /// `--name=value`), which sqlx cannot send. Do not log the result: sqlx's `Debug` of it
    /// shows the password.
    pub fn sqlx_options(&self) -> Result<sqlx::postgres::PgConnectOptions, ConnectError> {
        use sqlx::postgres::{PgConnectOptions, PgSslMode};
        let sslmode = match self.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            // As libpq and `tls()`: `require` with a root certificate verifies the chain.
            SslMode::Require if self.sslrootcert.is_some() => PgSslMode::VerifyCa,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        };
        // `host` starting with `/` is a socket directory for sqlx as for libpq.
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .database(&self.dbname)
            .username(&self.user)
            // sqlx sends an empty password when it has none; setting one keeps PGPASSWORD out.
            .password(self.password.as_ref().map_or("", |p| p.expose()))
            .application_name(&self.application_name)
            .ssl_mode(sslmode);
        options = match &self.sslrootcert {
            Some(path) => options.ssl_root_cert(path),
            // No certificate: only the Mozilla roots, whatever PGSSLROOTCERT says.
            None => options.ssl_root_cert_from_pem(Vec::new()),
        };
        if let Some(text) = &self.options {
            let settings = runtime_settings(text).map_err(|reason| {
                ConnectError::message(Datastore::Postgres, &self.endpoint(), format!("options for sqlx: {reason}"))
            })?;
            options = options.options(settings);
        }
        Ok(options)
    }

    /// A sqlx pool with the settings of [`PostgresConfig::pool`]: at least `pool.min_size`
    /// connections kept open, at most `pool.max_size`, idle ones closed after
    /// `pool.idle_timeout` (and reopened up to the minimum), callers waiting at most
    /// `pool.wait_timeout` for a connection, connections kept without a lifetime limit.
    ///
    /// Opened eagerly, so that a bad configuration fails here: one connection is made first
    /// within `connect_timeout` (a refused port, a wrong password or a refused certificate fail
    /// at once, where sqlx's pool would retry a refused port until `wait_timeout`), then the
    /// pool opens `pool.min_size` connections and tests one within `pool.wait_timeout`. Later
    /// connections are bounded by `pool.wait_timeout`: sqlx has no connect timeout of its own.
    ///
    /// ```rust,no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use datastores::{PostgresConfig, Settings, Source};
    ///
    /// let settings = Settings::new().layer(Source::Environment, std::env::vars());
    /// let pool = PostgresConfig::from_settings(&settings)?.sqlx_pool().await?;
    /// let (items,): (i64,) = datastores::sqlx::query_as("SELECT count(*) FROM items").fetch_one(&pool).await?;
    /// # Ok(()) }
    /// ```
    pub async fn sqlx_pool(&self) -> Result<sqlx::PgPool, ConnectError> {
        use sqlx::Connection;
        let endpoint = self.endpoint();
        let options = self.sqlx_options()?;
        let failed = |error: sqlx::Error| match error {
            sqlx::Error::PoolTimedOut => ConnectError::Timeout {
                datastore: Datastore::Postgres,
                endpoint: endpoint.clone(),
                timeout: self.pool.wait_timeout,
            },
            error => ConnectError::failed(Datastore::Postgres, &endpoint, error),
        };
        let first = with_timeout(Datastore::Postgres, &endpoint, self.connect_timeout, async {
            sqlx::PgConnection::connect_with(&options).await.map_err(failed)
        })
        .await?;
        if tokio::time::timeout(self.connect_timeout, first.close()).await.is_err() {
            tracing::debug!(%endpoint, "PostgreSQL did not acknowledge closing sqlx's first connection");
        }
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        sqlx::postgres::PgPoolOptions::new()
            .min_connections(count(self.pool.min_size))
            .max_connections(count(self.pool.max_size))
            .idle_timeout(Some(self.pool.idle_timeout))
            .acquire_timeout(self.pool.wait_timeout)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(failed)
    }
}

/// The run-time settings of libpq's `options` (`-c name=value`, `-cname=value`,
/// `--name=value`, separated by spaces), as sqlx takes them. Values keep their backslash
/// escapes (`\ ` for a space), which sqlx passes on unchanged, so the server reads them as
/// libpq would have sent them.
#[cfg(feature = "sqlx")]
fn runtime_settings(options: &str) -> Result<Vec<(String, String)>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            word.push(c);
            word.extend(chars.next());
        } else if c.is_ascii_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next().ok_or("-c at the end names no setting")?
        } else if let Some(setting) = word.strip_prefix("--").or_else(|| word.strip_prefix("-c")) {
            setting.to_owned()
        } else {
            return Err(format!("{word:?} is not a run-time setting (-c name=value)"));
        };
        let (name, value) = setting.split_once('=').ok_or_else(|| format!("{setting:?} is not name=value"))?;
        settings.push((name.to_owned(), value.to_owned()));
    }
    Ok(settings)
}

/// Closes idle connections unused for `idle` while more than `min` are open.
fn evict_idle(pool: &Pool, min: usize, idle: Duration) {
    let mut open = pool.status().size;
    let result = pool.retain(|_, metrics| {
        if open > min && metrics.last_used() > idle {
            open -= 1;
            false
        } else {
            true
        }
    });
    if !result.removed.is_empty() {
        tracing::debug!(closed = result.removed.len(), "closed idle PostgreSQL connections");
    }
}

async fn fill_to_minimum(pool: &Pool, min: usize) -> Result<(), deadpool_postgres::PoolError> {
    let missing = min.saturating_sub(pool.status().size);
    let started = Instant::now();
    let connections = futures::future::try_join_all((0..missing).map(|_| pool.get())).await?;
    if !connections.is_empty() {
        tracing::debug!(opened = connections.len(), elapsed = ?started.elapsed(), "opened pooled PostgreSQL connections");
    }
    Ok(())
}

/// The parts of a `postgres://` URL, each a [`Value`] that remembers the URL's variable.
#[derive(Default)]
struct UrlParts {
    host: Option<Value>,
    port: Option<Value>,
    dbname: Option<Value>,
    user: Option<Value>,
    password: Option<Value>,
    sslmode: Option<Value>,
    sslrootcert: Option<Value>,
    application_name: Option<Value>,
    connect_timeout: Option<Value>,
    options: Option<Value>,
}

impl UrlParts {
    /// Accepts `postgres://`, `postgresql://` and Flyway's `jdbc:postgresql://`, with `user`,
    /// `password` and the libpq parameters as query parameters too.
    fn parse(value: &Value) -> Result<UrlParts, ConfigError> {
        let text = value.text.strip_prefix("jdbc:").unwrap_or(&value.text);
        // Never quote the URL in an error: it may hold a password.
        let url = PgUrl::split(text).map_err(|r| invalid(value, r))?;
        if url.scheme != "postgres" && url.scheme != "postgresql" {
            return Err(invalid(value, format!("scheme {:?} is not postgres:// or postgresql://", url.scheme)));
        }
        let part = |text: String| {
            Some(Value { text, origin: Origin::new(format!("{} (URL)", value.origin)), rank: value.rank })
        };
        let decode = |s: &str| percent_decode(s).map_err(|r| invalid(value, r));
        let mut parts = UrlParts::default();
        if !url.host.is_empty() {
            parts.host = part(decode(url.host.trim_start_matches('[').trim_end_matches(']'))?);
        }
        if let Some(port) = url.port {
            parts.port = part(port.to_owned());
        }
        if !url.path.is_empty() {
            parts.dbname = part(decode(url.path)?);
        }
        if !url.user.is_empty() {
            parts.user = part(decode(url.user)?);
        }
        if let Some(password) = url.password {
            parts.password = part(decode(password)?);
        }
        let mut query = Vec::new();
        for pair in url.query.split('&').filter(|p| !p.is_empty()) {
            let (key, val) = pair.split_once('=').unwrap_or((pair, ""));
            let form = |s: &str| decode(&s.replace('+', " "));
            query.push((form(key)?, form(val)?));
        }
        for (key, val) in query {
            let slot = match key.as_str() {
                "user" => &mut parts.user,
                "password" => &mut parts.password,
                "sslmode" => &mut parts.sslmode,
                "sslrootcert" => &mut parts.sslrootcert,
                "application_name" | "ApplicationName" => &mut parts.application_name,
                "connect_timeout" | "connectTimeout" | "loginTimeout" => &mut parts.connect_timeout,
                "host" => &mut parts.host,
                "port" => &mut parts.port,
                "dbname" => &mut parts.dbname,
                "options" => &mut parts.options,
                // pgjdbc spellings, so a Flyway or JDBC URL works unchanged.
                "currentSchema" => {
                    parts.options = part(format!("-c search_path={val}"));
                    continue;
                }
                "ssl" => {
                    // pgjdbc: ssl=true verifies the certificate and host name.
                    if crate::settings::parse_bool(&val).map_err(|r| invalid(value, r))? && parts.sslmode.is_none() {
                        parts.sslmode = part("verify-full".into());
                    }
                    continue;
                }
                // pgjdbc tuning knobs without a meaning here.
                "tcpKeepAlive" | "socketTimeout" | "prepareThreshold" | "reWriteBatchedInserts" => continue,
                other => {
                    return Err(invalid(
                        value,
                        format!(
                            "unknown URL parameter {other:?}; known: user, password, host, port, dbname, sslmode, \
                             sslrootcert, application_name, connect_timeout, options (and pgjdbc's currentSchema, ssl, \
                             loginTimeout)"
                        ),
                    ));
                }
            };
            *slot = part(val);
        }
        Ok(parts)
    }
}

/// A libpq connection URL split into its parts, still percent-encoded:
/// `scheme://[user[:password]@][host][:port][/dbname][?query]`, the host possibly `[v6]`.
struct PgUrl<'a> {
    scheme: &'a str,
    user: &'a str,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    path: &'a str,
    query: &'a str,
}

impl<'a> PgUrl<'a> {
    fn split(text: &'a str) -> Result<PgUrl<'a>, String> {
        let (scheme, rest) = text.split_once("://").ok_or("not a valid URL (no scheme://)")?;
        if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err("not a valid URL (bad scheme)".into());
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", authority),
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let (host, port) = if hostport.starts_with('[') {
            let end = hostport.find(']').ok_or("not a valid URL (unclosed [ in the host)")?;
            let port = hostport[end + 1..].strip_prefix(':');
            (&hostport[..=end], port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if let Some(port) = port
            && port.parse::<u16>().is_err()
        {
            return Err("not a valid URL (invalid port number)".into());
        }
        Ok(PgUrl { scheme, user, password, host, port, path, query })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;
    use std::collections::BTreeMap;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn defaults_follow_the_platform_contract() {
        let config = PostgresConfig::from_settings(&env(&[("POSTGRES_HOST", "db")])).unwrap();
        assert_eq!((config.pool.min_size, config.pool.max_size), (5, 50));
        assert_eq!(config.pool.idle_timeout, Duration::from_secs(300));
        assert_eq!((config.port, config.dbname.as_str(), config.sslmode), (5432, "postgres", SslMode::Prefer));
    }

    #[test]
    fn url_parts_and_variables() {
        let settings = env(&[
            ("DATABASE_URL", "postgres://app:p%40ss@db.internal:6543/recommend?sslmode=require&application_name=x"),
            ("POSTGRES_DB", "other"),
        ]);
        let config = PostgresConfig::from_settings(&settings).unwrap();
        assert_eq!(config.host, "db.internal");
        assert_eq!(config.port, 6543);
        assert_eq!(config.user, "app");
        assert_eq!(config.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(config.dbname, "other", "a variable beats the URL of the same layer");
        assert_eq!(config.sslmode, SslMode::Require);
        assert_eq!(config.application_name, "x");
    }

    #[test]
    fn url_from_a_flag_beats_variables_from_the_environment() {
        let flags = BTreeMap::from([("DATABASE_URL".to_owned(), "--database-url".to_owned())]);
        let settings = Settings::new()
            .layer(Source::Flags(flags), [("DATABASE_URL", "postgresql://u@flaghost/flagdb")])
            .layer(Source::Environment, [("POSTGRES_HOST", "envhost"), ("POSTGRES_PORT", "7000")]);
        let config = PostgresConfig::from_settings(&settings).unwrap();
        assert_eq!((config.host.as_str(), config.dbname.as_str()), ("flaghost", "flagdb"));
        assert_eq!(config.port, 7000, "parts the URL leaves out still come from the environment");
    }

    #[test]
    fn urls_split_as_libpq_reads_them() {
        let url = PgUrl::split("postgresql://us%40er:p%3Ass@[::1]:6543/my%20db?sslmode=require&a=b").unwrap();
        assert_eq!((url.scheme, url.user, url.password), ("postgresql", "us%40er", Some("p%3Ass")));
        assert_eq!(
            (url.host, url.port, url.path, url.query),
            ("[::1]", Some("6543"), "my%20db", "sslmode=require&a=b")
        );
        let bare = PgUrl::split("postgres:///recommend?host=/run/postgresql").unwrap();
        assert_eq!((bare.host, bare.port, bare.path, bare.user), ("", None, "recommend", ""));
        assert!(PgUrl::split("postgres://h:99999/db").is_err());
        assert!(PgUrl::split("localhost:5432/db").is_err());
        let config = PostgresConfig::from_settings(&env(&[(
            "DATABASE_URL",
            "postgres://app:s%2Fecret@[::1]:6543/recommend?application_name=svc%20one",
        )]))
        .unwrap();
        assert_eq!((config.host.as_str(), config.port, config.dbname.as_str()), ("::1", 6543, "recommend"));
        assert_eq!(config.password.as_ref().map(|p| p.expose()), Some("s/ecret"));
        assert_eq!(config.application_name, "svc one");
    }

    #[test]
    fn jdbc_parameters() {
        let settings = env(&[("DATABASE_URL", "jdbc:postgresql://h/db?currentSchema=app&ssl=true&loginTimeout=3")]);
        let config = PostgresConfig::from_settings(&settings).unwrap();
        assert_eq!(config.options.as_deref(), Some("-c search_path=app"));
        assert_eq!(config.sslmode, SslMode::VerifyFull);
        assert_eq!(config.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn jdbc_urls_are_accepted() {
        let settings = env(&[("DATABASE_URL", "jdbc:postgresql://h:5433/db?user=u&password=pw")]);
        let config = PostgresConfig::from_settings(&settings).unwrap();
        assert_eq!((config.host.as_str(), config.port, config.user.as_str()), ("h", 5433, "u"));
        assert_eq!(config.password.unwrap().expose(), "pw");
    }

    #[test]
    fn bad_values_name_their_variable_and_hide_the_url() {
        let err = PostgresConfig::from_settings(&env(&[("POSTGRES_HOST", "h"), ("POSTGRES_SSLMODE", "sometimes")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("POSTGRES_SSLMODE") && err.contains("sometimes"), "{err}");

        let err = PostgresConfig::from_settings(&env(&[("DATABASE_URL", "postgres://u:secretpw@h:notaport/db")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL") && !err.contains("secretpw"), "{err}");

        let err = PostgresConfig::from_settings(&env(&[("DATABASE_URL", "mysql://h/db")])).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL") && err.contains("mysql"), "{err}");

        let err = PostgresConfig::from_settings(&env(&[("POSTGRES_HOST", "h"), ("POSTGRES_POOL_MIN", "60")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("POSTGRES_POOL_MIN") && err.contains("POSTGRES_POOL_MAX"), "{err}");
    }

    #[cfg(feature = "sqlx")]
    #[test]
    fn sqlx_options_carry_the_same_settings() {
        use sqlx::postgres::PgSslMode;
        let mut config = PostgresConfig::new("/run/postgresql");
        config.port = 6543;
        config.dbname = "recommend".into();
        config.user = "app".into();
        config.application_name = "svc".into();
        config.options = Some(r"-c search_path=app -cstatement_timeout=5s --lock-timeout=1s -c x=a\ b".into());
        let options = config.sqlx_options().unwrap();
        assert_eq!((options.get_host(), options.get_port()), ("/run/postgresql", 6543));
        assert_eq!((options.get_database(), options.get_username()), (Some("recommend"), "app"));
        assert_eq!(options.get_application_name(), Some("svc"));
        assert_eq!(
            options.get_options(),
            Some(r"-c search_path=app -c statement_timeout=5s -c lock-timeout=1s -c x=a\ b")
        );
        let modes = [
            (SslMode::Disable, false, PgSslMode::Disable),
            (SslMode::Allow, false, PgSslMode::Prefer),
            (SslMode::Prefer, false, PgSslMode::Prefer),
            (SslMode::Require, false, PgSslMode::Require),
            (SslMode::Require, true, PgSslMode::VerifyCa),
            (SslMode::VerifyCa, false, PgSslMode::VerifyCa),
            (SslMode::VerifyFull, true, PgSslMode::VerifyFull),
        ];
        for (mode, root, expected) in modes {
            config.sslmode = mode;
            config.sslrootcert = root.then(|| PathBuf::from("/etc/ssl/ca.pem"));
            let got = config.sqlx_options().unwrap().get_ssl_mode();
            assert_eq!(format!("{got:?}"), format!("{expected:?}"), "{mode:?} root={root}");
        }
    }

    #[cfg(feature = "sqlx")]
    #[test]
    fn options_sqlx_cannot_send_are_refused() {
        assert_eq!(runtime_settings("  ").unwrap(), Vec::new());
        for bad in ["-e", "-c", "-c geqo", "search_path=app"] {
            let mut config = PostgresConfig::new("h");
            config.options = Some(bad.into());
            let err = config.sqlx_options().unwrap_err().to_string();
            assert!(err.contains("options for sqlx") && err.contains("h:5432"), "{bad}: {err}");
        }
    }

    #[test]
    fn password_is_not_in_debug_or_display() {
        let settings = env(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]);
        let config = PostgresConfig::from_settings(&settings).unwrap();
        let shown = format!("{config:?} {config}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
