//! Kafka (any Kafka-protocol broker), through librdkafka.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::error::{ConfigError, ConnectError, Datastore};
use crate::settings::{Secret, Settings, invalid, parse_list};

/// How clients talk to the brokers (`KAFKA_SECURITY_PROTOCOL`, librdkafka's `security.protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no authentication; the default without a SASL user name.
    Plaintext,
    /// TLS, no SASL authentication.
    Ssl,
    /// SASL authentication without TLS; the default when `KAFKA_SASL_USERNAME` is set.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The name librdkafka and Kafka's own tools use: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// The SASL mechanism (`KAFKA_SASL_MECHANISM`); PLAIN when unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN`: the password is sent as is (use it with TLS).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's name as Kafka spells it: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The SASL login, used with `SASL_PLAINTEXT` and `SASL_SSL`. `Debug` hides the password.
#[derive(Clone, Debug)]
pub struct SaslCredentials {
    /// How to authenticate.
    pub mechanism: SaslMechanism,
    /// The user name (`KAFKA_SASL_USERNAME`).
    pub username: String,
    /// The password (`KAFKA_SASL_PASSWORD` or `KAFKA_SASL_PASSWORD_FILE`).
    pub password: Secret,
}

/// How to reach the Kafka cluster. `Debug` and `Display` never show the SASL password; the
/// `rdkafka::ClientConfig` that [`KafkaConfig::client_config`] builds does hold it, so never log it.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// The brokers to start from, each `host:port` (`KAFKA_BOOTSTRAP_SERVERS`, comma-separated).
    pub bootstrap_servers: Vec<String>,
    /// How to talk to the brokers.
    pub security_protocol: SecurityProtocol,
    /// The SASL login; `Some` exactly when the protocol uses SASL.
    pub sasl: Option<SaslCredentials>,
    /// CA certificates for SSL and SASL_SSL (`KAFKA_SSL_CA_LOCATION`); librdkafka's default when unset.
    pub ssl_ca_location: Option<PathBuf>,
    /// The client id the brokers see (`KAFKA_CLIENT_ID`, default `dbkit`).
    pub client_id: String,
    /// Bounds metadata and admin requests (`KAFKA_REQUEST_TIMEOUT`, default 10 s).
    pub request_timeout: Duration,
}

impl fmt::Display for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.endpoint(), self.security_protocol.as_str())?;
        if let Some(sasl) = &self.sasl {
            write!(f, " as {} with {}", sasl.username, sasl.mechanism.as_str())?;
        }
        Ok(())
    }
}

impl KafkaConfig {
    /// Reads `KAFKA_BOOTSTRAP_SERVERS` (`host:port,...`), `KAFKA_SECURITY_PROTOCOL`,
    /// `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`,
    /// `KAFKA_SSL_CA_LOCATION`, `KAFKA_CLIENT_ID` and `KAFKA_REQUEST_TIMEOUT`. With a user name and
    /// no protocol, the protocol is SASL_PLAINTEXT; with no mechanism, PLAIN.
    pub fn from_settings(settings: &Settings) -> Result<KafkaConfig, ConfigError> {
        let incomplete = |reason: &str| ConfigError::Incomplete { datastore: Datastore::Kafka, reason: reason.into() };
        let servers =
            settings.get("KAFKA_BOOTSTRAP_SERVERS")?.ok_or_else(|| incomplete("KAFKA_BOOTSTRAP_SERVERS is not set"))?;
        let bootstrap_servers = parse_list(&servers.text);
        for server in &bootstrap_servers {
            let port_ok = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !port_ok {
                return Err(invalid(&servers, format!("{server:?} is not host:port")));
            }
        }
        if bootstrap_servers.is_empty() {
            return Err(invalid(&servers, "lists no host:port"));
        }
        let username = settings.get("KAFKA_SASL_USERNAME")?;
        let security_protocol = match settings.get("KAFKA_SECURITY_PROTOCOL")? {
            Some(v) => match v.text.trim().to_ascii_uppercase().as_str() {
                "PLAINTEXT" => SecurityProtocol::Plaintext,
                "SSL" => SecurityProtocol::Ssl,
                "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
                "SASL_SSL" => SecurityProtocol::SaslSsl,
                _ => {
                    return Err(invalid(
                        &v,
                        format!("unknown protocol {:?}; use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", v.text),
                    ));
                }
            },
            None if username.is_some() => SecurityProtocol::SaslPlaintext,
            None => SecurityProtocol::Plaintext,
        };
        let sasl = if security_protocol.uses_sasl() {
            let mechanism = match settings.get("KAFKA_SASL_MECHANISM")? {
                None => SaslMechanism::Plain,
                Some(v) => match v.text.trim().to_ascii_uppercase().as_str() {
                    "PLAIN" => SaslMechanism::Plain,
                    "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                    "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                    _ => {
                        return Err(invalid(
                            &v,
                            format!("unknown mechanism {:?}; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", v.text),
                        ));
                    }
                },
            };
            let username =
                username.ok_or_else(|| incomplete("SASL is configured but KAFKA_SASL_USERNAME is not set"))?;
            let password = settings
                .get("KAFKA_SASL_PASSWORD")?
                .ok_or_else(|| incomplete("SASL is configured but KAFKA_SASL_PASSWORD is not set"))?;
            Some(SaslCredentials { mechanism, username: username.text, password: Secret::new(password.text) })
        } else {
            if let Some(user) = username {
                return Err(invalid(
                    &user,
                    format!("is set but the security protocol {} does not use SASL", security_protocol.as_str()),
                ));
            }
            None
        };
        Ok(KafkaConfig {
            bootstrap_servers,
            security_protocol,
            sasl,
            ssl_ca_location: settings.get("KAFKA_SSL_CA_LOCATION")?.map(|v| PathBuf::from(v.text)),
            client_id: settings.get("KAFKA_CLIENT_ID")?.map(|v| v.text).unwrap_or_else(|| "dbkit".into()),
            request_timeout: settings.duration("KAFKA_REQUEST_TIMEOUT")?.unwrap_or(Duration::from_secs(10)),
        })
    }

    /// The bootstrap servers, comma-separated, for messages and reports.
    pub fn endpoint(&self) -> String {
        self.bootstrap_servers.join(",")
    }

    /// librdkafka settings for any client: producer, consumer or admin.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        let timeout_ms = self.request_timeout.as_millis().to_string();
        // librdkafka refuses a connection set-up timeout under one second.
        let setup_ms = self.request_timeout.as_millis().max(1000).to_string();
        config
            .set("bootstrap.servers", self.endpoint())
            .set("client.id", &self.client_id)
            .set("security.protocol", self.security_protocol.as_str())
            .set("socket.timeout.ms", &timeout_ms)
            .set("socket.connection.setup.timeout.ms", &setup_ms)
            // librdkafka logs every failed connection attempt; the caller gets the error instead.
            .set("log_level", "3");
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
        if let Some(ca) = &self.ssl_ca_location {
            config.set("ssl.ca.location", ca.display().to_string());
        }
        config
    }

    /// Fetches cluster metadata: the number of brokers and topics, and the cluster id.
    pub async fn health(&self) -> Result<String, ConnectError> {
        let endpoint = self.endpoint();
        let config = self.client_config();
        let timeout = self.request_timeout;
        let consumer: BaseConsumer =
            config.create().map_err(|e| ConnectError::failed(Datastore::Kafka, &endpoint, e))?;
        // librdkafka's metadata call blocks; keep it off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(None, timeout)?;
            let cluster = consumer.client().fetch_cluster_id(timeout);
            Ok::<_, rdkafka::error::KafkaError>((metadata.brokers().len(), metadata.topics().len(), cluster))
        })
        .await
        .map_err(|e| ConnectError::message(Datastore::Kafka, &endpoint, format!("metadata task failed: {e}")))?;
        let (brokers, topics, cluster) = result.map_err(|e| ConnectError::failed(Datastore::Kafka, &endpoint, e))?;
        let cluster = cluster.map(|c| format!("cluster {c}, ")).unwrap_or_default();
        Ok(format!("Kafka protocol, {cluster}{brokers} broker(s), {topics} topic(s)"))
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
    fn sasl_defaults_and_redaction() {
        let config = KafkaConfig::from_settings(&env(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9092"),
            ("KAFKA_SASL_USERNAME", "user"),
            ("KAFKA_SASL_PASSWORD", "changeThis"),
        ]))
        .unwrap();
        assert_eq!(config.bootstrap_servers, ["k1:9092", "k2:9092"]);
        assert_eq!(config.security_protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(config.sasl.as_ref().unwrap().mechanism, SaslMechanism::Plain);
        let shown = format!("{config:?} {config}");
        assert!(!shown.contains("changeThis"), "{shown}");
        assert_eq!(config.client_config().get("sasl.password"), Some("changeThis"));
    }

    #[test]
    fn bad_values_are_named() {
        let err = KafkaConfig::from_settings(&env(&[("KAFKA_BOOTSTRAP_SERVERS", "k1")])).unwrap_err().to_string();
        assert!(err.contains("KAFKA_BOOTSTRAP_SERVERS") && err.contains("k1"), "{err}");
        let err = KafkaConfig::from_settings(&env(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("KAFKA_SASL_USERNAME"), "{err}");
        let err = KafkaConfig::from_settings(&env(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("KAFKA_SECURITY_PROTOCOL"), "{err}");
    }
}
