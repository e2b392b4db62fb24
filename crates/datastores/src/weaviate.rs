//! Weaviate's REST API (`/v1`), checked against the official OpenAPI documents of 1.22 and 1.39.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::{ConfigError, ConnectError, Datastore, with_timeout};
use crate::settings::{Secret, Settings, invalid};
use crate::tls::{self, Verification};

/// How to reach Weaviate. `Debug` and `Display` never show the API key.
#[derive(Clone, Debug)]
pub struct WeaviateConfig {
    /// The server's base URL, such as `http://weaviate:8080`, without `/v1`.
    pub url: url::Url,
    /// Sent as `Authorization: Bearer <key>` (Weaviate's API-key authentication).
    pub api_key: Option<Secret>,
    /// A PEM file of CA certificates to trust for `https` instead of the Mozilla roots
    /// (`WEAVIATE_CA_CERT`).
    pub ca_file: Option<PathBuf>,
    /// Bounds connecting and each whole request (`WEAVIATE_TIMEOUT`, default 10 s).
    pub timeout: Duration,
}

impl fmt::Display for WeaviateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url)
    }
}

impl WeaviateConfig {
    /// Reads `WEAVIATE_URL`, `WEAVIATE_API_KEY`, `WEAVIATE_CA_CERT` and `WEAVIATE_TIMEOUT`.
    pub fn from_settings(settings: &Settings) -> Result<WeaviateConfig, ConfigError> {
        let value = settings.get("WEAVIATE_URL")?.ok_or_else(|| ConfigError::Incomplete {
            datastore: Datastore::Weaviate,
            reason: "WEAVIATE_URL is not set".into(),
        })?;
        let mut url = url::Url::parse(&value.text).map_err(|e| invalid(&value, format!("not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(&value, "expected http://host:port or https://host:port"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(&value, "put the API key in WEAVIATE_API_KEY, not the URL"));
        }
        // Accept a URL that already ends in /v1.
        let path = url.path().trim_end_matches('/').trim_end_matches("/v1").to_owned();
        url.set_path(&format!("{path}/"));
        Ok(WeaviateConfig {
            url,
            api_key: settings.get("WEAVIATE_API_KEY")?.map(|v| Secret::new(v.text)),
            ca_file: settings.get("WEAVIATE_CA_CERT")?.map(|v| PathBuf::from(v.text)),
            timeout: settings.duration("WEAVIATE_TIMEOUT")?.unwrap_or(Duration::from_secs(10)),
        })
    }

    /// `host:port` of the URL, for messages.
    pub fn endpoint(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// A client for the `/v1` API that verifies the server's certificate and sends the API key.
    /// Fails when the CA file cannot be used; nothing is sent before the first request.
    pub fn client(&self) -> Result<WeaviateClient, ConnectError> {
        let tls = tls::client_config(Verification::Full, self.ca_file.as_deref())
            .map_err(|m| ConnectError::message(Datastore::Weaviate, &self.endpoint(), m))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .user_agent(concat!("dbkit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectError::failed(Datastore::Weaviate, &self.endpoint(), e))?;
        Ok(WeaviateClient { http, config: self.clone() })
    }

    /// Checks liveness and readiness, then reads the version from `/v1/meta`.
    pub async fn health(&self) -> Result<String, ConnectError> {
        let client = self.client()?;
        with_timeout(Datastore::Weaviate, &self.endpoint(), self.timeout, async {
            client.live().await?;
            client.ready().await?;
            let meta = client.meta().await?;
            Ok(format!("Weaviate {}", meta.version))
        })
        .await
    }
}

/// `GET /v1/meta`, as the OpenAPI `Meta` definition describes it.
#[derive(Clone, Debug, Deserialize)]
pub struct Meta {
    /// The address the server reports for itself, such as `http://[::]:8080`.
    pub hostname: Option<String>,
    /// The server's version, such as `1.22.13`.
    pub version: String,
    /// Module name to module-specific information.
    #[serde(default)]
    pub modules: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A small REST client for Weaviate's `/v1` API.
#[derive(Clone, Debug)]
pub struct WeaviateClient {
    http: reqwest::Client,
    config: WeaviateConfig,
}

impl WeaviateClient {
    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder, ConnectError> {
        let url = self.config.url.join(&format!("v1/{}", path.trim_start_matches('/'))).map_err(|e| {
            ConnectError::message(Datastore::Weaviate, &self.config.endpoint(), format!("bad path {path}: {e}"))
        })?;
        let mut builder = self.http.request(method, url);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        Ok(builder)
    }

    /// Sends a request and fails with Weaviate's own message on a status outside 2xx.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, ConnectError> {
        let endpoint = self.config.endpoint();
        let mut builder = self.request(method.clone(), path)?;
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| ConnectError::failed(Datastore::Weaviate, &endpoint, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let detail = error_detail(&response.bytes().await.unwrap_or_default());
        let hint = match status {
            StatusCode::UNAUTHORIZED => " (check WEAVIATE_API_KEY)",
            StatusCode::FORBIDDEN => " (the API key lacks permission)",
            _ => "",
        };
        Err(ConnectError::message(
            Datastore::Weaviate,
            &endpoint,
            format!("{method} /v1/{path} answered {status}{hint}: {detail}"),
        ))
    }

    /// Sends a request and returns the status and body whatever the status; for callers that
    /// treat some non-2xx answers as data (404 for a missing class).
    pub async fn exchange(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>), ConnectError> {
        let endpoint = self.config.endpoint();
        let mut builder = self.request(method, path)?;
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| ConnectError::failed(Datastore::Weaviate, &endpoint, e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ConnectError::failed(Datastore::Weaviate, &endpoint, e))?;
        Ok((status, bytes.to_vec()))
    }

    /// `GET /v1/.well-known/live`: the process is up.
    pub async fn live(&self) -> Result<(), ConnectError> {
        self.send(reqwest::Method::GET, ".well-known/live", None).await.map(drop)
    }

    /// `GET /v1/.well-known/ready`: the node is ready to serve (503 while starting).
    pub async fn ready(&self) -> Result<(), ConnectError> {
        self.send(reqwest::Method::GET, ".well-known/ready", None).await.map(drop)
    }

    /// `GET /v1/meta`: the server's version and modules.
    pub async fn meta(&self) -> Result<Meta, ConnectError> {
        self.get_json("meta").await
    }

    /// `GET /v1/{path}`, the answer's JSON body parsed as `T`; fails on a status outside 2xx or a
    /// body that does not parse.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ConnectError> {
        let endpoint = self.config.endpoint();
        let response = self.send(reqwest::Method::GET, path, None).await?;
        let bytes = response.bytes().await.map_err(|e| ConnectError::failed(Datastore::Weaviate, &endpoint, e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ConnectError::message(Datastore::Weaviate, &endpoint, format!("GET /v1/{path}: unexpected answer: {e}"))
        })
    }
}

/// Weaviate's own message from an error body, or the start of the body when it is not an
/// `ErrorResponse`.
pub fn error_detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    error_messages(&text).unwrap_or_else(|| text.chars().take(300).collect())
}

/// Weaviate's `ErrorResponse`: `{"error": [{"message": "..."}]}`.
fn error_messages(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorResponse {
        error: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        message: String,
    }
    let parsed: ErrorResponse = serde_json::from_str(body).ok()?;
    Some(parsed.error.into_iter().map(|i| i.message).collect::<Vec<_>>().join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn url_normalisation_and_redaction() {
        let c = WeaviateConfig::from_settings(&env(&[
            ("WEAVIATE_URL", "http://w:8080/v1"),
            ("WEAVIATE_API_KEY", "key-123"),
        ]))
        .unwrap();
        assert_eq!(c.url.as_str(), "http://w:8080/");
        assert_eq!(c.endpoint(), "w:8080");
        assert!(!format!("{c:?} {c}").contains("key-123"));
        let err = WeaviateConfig::from_settings(&env(&[("WEAVIATE_URL", "w:8080")])).unwrap_err().to_string();
        assert!(err.contains("WEAVIATE_URL"), "{err}");
    }

    #[test]
    fn error_bodies() {
        assert_eq!(error_messages(r#"{"error":[{"message":"a"},{"message":"b"}]}"#).as_deref(), Some("a; b"));
        assert_eq!(error_messages("plain"), None);
    }
}
