//! Milvus, through the official Rust SDK's v2 client.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use milvus::v2::prelude::{CheckHealthRequest, ClientV2, ConnectConfig, GetServerVersionRequest, TelemetryConfig};

use base64::Engine as _;
use milvus::proto::milvus::milvus_service_client::MilvusServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::{ConfigError, ConnectError, Datastore, with_timeout};
use crate::settings::{Secret, Settings, invalid, parse_port};

/// How to reach Milvus. `Debug` and `Display` never show the password or token.
#[derive(Clone, Debug)]
pub struct MilvusConfig {
    /// `http://host:port` or `https://host:port`.
    pub uri: String,
    /// The user name (`MILVUS_USER`), set together with `password`.
    pub username: Option<String>,
    /// The password (`MILVUS_PASSWORD` or `MILVUS_PASSWORD_FILE`), set together with `username`.
    pub password: Option<Secret>,
    /// An API token (`user:password` or a cloud API key); wins over user name and password.
    pub token: Option<Secret>,
    /// The database to use; empty means Milvus' `default`.
    pub database: Option<String>,
    /// A PEM file of CA certificates to trust for `https` (`MILVUS_CA_CERT`).
    pub ca_file: Option<PathBuf>,
    /// The name to verify the server's certificate against, when it differs from the host
    /// (`MILVUS_TLS_SERVER_NAME`).
    pub tls_server_name: Option<String>,
    /// The time a connection may take (`MILVUS_CONNECT_TIMEOUT`, default 5 s).
    pub connect_timeout: Duration,
    /// The time each call may take (`MILVUS_TIMEOUT`, default 30 s).
    pub request_timeout: Duration,
}

impl fmt::Display for MilvusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uri)?;
        if let Some(db) = &self.database {
            write!(f, " db={db}")?;
        }
        Ok(())
    }
}

impl MilvusConfig {
    /// Reads `MILVUS_URI`, or `MILVUS_HOST` and `MILVUS_PORT` (19530) with `MILVUS_TLS`; then
    /// `MILVUS_USER`, `MILVUS_PASSWORD`, `MILVUS_TOKEN`, `MILVUS_DB_NAME`, `MILVUS_CA_CERT`,
    /// `MILVUS_TLS_SERVER_NAME`, `MILVUS_CONNECT_TIMEOUT`, `MILVUS_TIMEOUT`.
    pub fn from_settings(settings: &Settings) -> Result<MilvusConfig, ConfigError> {
        let tls = settings.boolean("MILVUS_TLS")?.unwrap_or(false);
        let uri = match settings.get("MILVUS_URI")? {
            Some(v) => {
                let url = url::Url::parse(&v.text).map_err(|e| invalid(&v, format!("not a valid URL ({e})")))?;
                if !matches!(url.scheme(), "http" | "https" | "tcp" | "grpc") || url.host_str().is_none() {
                    return Err(invalid(&v, "expected http://host:port or https://host:port"));
                }
                if url.password().is_some() {
                    return Err(invalid(
                        &v,
                        "put credentials in MILVUS_USER / MILVUS_PASSWORD or MILVUS_TOKEN, not the URI",
                    ));
                }
                let scheme = if url.scheme() == "https" || tls { "https" } else { "http" };
                format!("{scheme}://{}:{}", url.host_str().unwrap_or_default(), url.port().unwrap_or(19530))
            }
            None => {
                let host = settings.get("MILVUS_HOST")?.map(|v| v.text).unwrap_or_else(|| "localhost".into());
                let port = match settings.get("MILVUS_PORT")? {
                    Some(v) => parse_port(&v.text).map_err(|r| invalid(&v, r))?,
                    None => 19530,
                };
                format!("{}://{host}:{port}", if tls { "https" } else { "http" })
            }
        };
        let config = MilvusConfig {
            uri,
            username: settings.get("MILVUS_USER")?.map(|v| v.text),
            password: settings.get("MILVUS_PASSWORD")?.map(|v| Secret::new(v.text)),
            token: settings.get("MILVUS_TOKEN")?.map(|v| Secret::new(v.text)),
            database: settings.get("MILVUS_DB_NAME")?.map(|v| v.text),
            ca_file: settings.get("MILVUS_CA_CERT")?.map(|v| PathBuf::from(v.text)),
            tls_server_name: settings.get("MILVUS_TLS_SERVER_NAME")?.map(|v| v.text),
            connect_timeout: settings.duration("MILVUS_CONNECT_TIMEOUT")?.unwrap_or(Duration::from_secs(5)),
            request_timeout: settings.duration("MILVUS_TIMEOUT")?.unwrap_or(Duration::from_secs(30)),
        };
        if config.username.is_some() != config.password.is_some() {
            return Err(ConfigError::Incomplete {
                datastore: Datastore::Milvus,
                reason: "MILVUS_USER and MILVUS_PASSWORD must be set together".into(),
            });
        }
        Ok(config)
    }

    /// `host:port`, for messages and reports.
    pub fn endpoint(&self) -> String {
        self.uri.split_once("://").map(|(_, rest)| rest.to_owned()).unwrap_or_else(|| self.uri.clone())
    }

    /// The SDK's connection settings, with its telemetry off (Milvus 2.3 does not serve it).
    pub fn connect_config(&self) -> ConnectConfig {
        let mut config = ConnectConfig::new()
            .uri(self.uri.clone())
            .connect_timeout(self.connect_timeout)
            .rpc_timeout(self.request_timeout)
            .telemetry(TelemetryConfig::new().enabled(false));
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            config = config.username_password(user, password.expose());
        }
        if let Some(token) = &self.token {
            config = config.token(token.expose());
        }
        if let Some(db) = &self.database {
            config = config.database(db.clone());
        }
        if let Some(ca) = &self.ca_file {
            config = config.ca_certificate(ca.display().to_string());
        }
        if let Some(name) = &self.tls_server_name {
            config = config.tls_server_name(name.clone());
        }
        config
    }

    /// Connects with the SDK's v2 client, within `connect_timeout`.
    pub async fn connect(&self) -> Result<ClientV2, ConnectError> {
        let endpoint = self.endpoint();
        with_timeout(Datastore::Milvus, &endpoint, self.connect_timeout, async {
            ClientV2::new(&self.connect_config())
                .await
                .map_err(|e| ConnectError::failed(Datastore::Milvus, &endpoint, e))
        })
        .await
    }

    /// A connection to Milvus' generated gRPC service, with the same credentials, database, TLS
    /// and timeouts as [`MilvusConfig::connect`]. For the calls where the SDK's wrappers do not
    /// fit (bulk inserts without copies, flush polled at a fine grain, Milvus 2.3's expressions).
    pub async fn grpc(&self) -> Result<MilvusGrpc, ConnectError> {
        let endpoint = self.endpoint();
        let failed = |e: tonic::transport::Error| ConnectError::failed(Datastore::Milvus, &endpoint, e);
        let mut channel = Endpoint::from_shared(self.uri.clone())
            .map_err(failed)?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tcp_nodelay(true);
        if self.uri.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &self.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    ConnectError::message(Datastore::Milvus, &endpoint, format!("cannot read {}: {e}", ca.display()))
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(name) = &self.tls_server_name {
                tls = tls.domain_name(name.clone());
            }
            channel = channel.tls_config(tls).map_err(failed)?;
        }
        let channel = with_timeout(Datastore::Milvus, &endpoint, self.connect_timeout, async {
            channel.connect().await.map_err(failed)
        })
        .await?;
        let credentials = match (&self.token, &self.username, &self.password) {
            (Some(token), _, _) => Some(token.expose().to_owned()),
            (None, Some(user), Some(password)) => Some(format!("{user}:{}", password.expose())),
            _ => None,
        };
        let metadata = GrpcMetadata {
            authorization: credentials
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c).parse())
                .transpose()
                .map_err(|_| {
                    ConnectError::message(Datastore::Milvus, &endpoint, "credentials are not valid metadata")
                })?,
            database: self.database.as_deref().map(str::parse).transpose().map_err(|_| {
                ConnectError::message(Datastore::Milvus, &endpoint, "MILVUS_DB_NAME is not valid metadata")
            })?,
        };
        Ok(MilvusServiceClient::with_interceptor(channel, metadata)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20))
    }

    /// Connects, asks the server whether it is healthy and reads its version.
    pub async fn health(&self) -> Result<String, ConnectError> {
        let endpoint = self.endpoint();
        let client = self.connect().await?;
        with_timeout(Datastore::Milvus, &endpoint, self.request_timeout, async {
            let failed = |e: milvus::v2::prelude::Error| ConnectError::failed(Datastore::Milvus, &endpoint, e);
            let health =
                client.check_health(CheckHealthRequest::builder().build().map_err(failed)?).await.map_err(failed)?;
            if !health.is_healthy() {
                let reasons = health.reasons().join("; ");
                return Err(ConnectError::message(
                    Datastore::Milvus,
                    &endpoint,
                    format!("server reports unhealthy: {reasons}"),
                ));
            }
            let request = GetServerVersionRequest::builder().build().map_err(failed)?;
            let version = client.server_version(request).await.map_err(failed)?;
            Ok(format!("Milvus {}", version.version()))
        })
        .await
    }
}

/// Milvus' generated gRPC client on a channel that sends the configured credentials and database.
pub type MilvusGrpc = MilvusServiceClient<InterceptedService<Channel, GrpcMetadata>>;

/// The metadata Milvus reads on every call: `authorization` (base64 of `user:password` or the
/// token) and `dbname`. `Debug` does not show the credentials.
#[derive(Clone)]
pub struct GrpcMetadata {
    authorization: Option<MetadataValue<Ascii>>,
    database: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for GrpcMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcMetadata")
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .finish()
    }
}

impl tonic::service::Interceptor for GrpcMetadata {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        if let Some(value) = &self.database {
            request.metadata_mut().insert("dbname", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn host_and_port_or_uri() {
        let c = MilvusConfig::from_settings(&env(&[("MILVUS_HOST", "m"), ("MILVUS_PORT", "19531")])).unwrap();
        assert_eq!(c.uri, "http://m:19531");
        let c = MilvusConfig::from_settings(&env(&[("MILVUS_URI", "https://m.example")])).unwrap();
        assert_eq!(c.uri, "https://m.example:19530");
        let err = MilvusConfig::from_settings(&env(&[("MILVUS_PORT", "nineteen")])).unwrap_err().to_string();
        assert!(err.contains("MILVUS_PORT"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let c = MilvusConfig::from_settings(&env(&[
            ("MILVUS_HOST", "m"),
            ("MILVUS_USER", "root"),
            ("MILVUS_PASSWORD", "Milvus123"),
        ]))
        .unwrap();
        let shown = format!("{c:?} {c} {:?}", c.connect_config());
        assert!(!shown.contains("Milvus123"), "{shown}");
    }
}
