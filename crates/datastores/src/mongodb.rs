//! MongoDB (and MongoDB-wire-compatible servers).

use std::fmt;
use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::{ClientOptions, ConnectionString, Credential};

use crate::error::{ConfigError, ConnectError, Datastore, with_timeout};
use crate::settings::{Secret, Settings, Value, invalid, percent_decode};

/// How to reach MongoDB. The URI is kept without its credentials, which live in `username` and
/// `password`, so `Debug` and `Display` never show the password.
#[derive(Clone, Debug)]
pub struct MongoConfig {
    /// `mongodb://` or `mongodb+srv://` connection string, without `user:password@`.
    pub uri: String,
    /// The user name: `MONGODB_USERNAME`, else the URI's `user@`.
    pub username: Option<String>,
    /// The password: `MONGODB_PASSWORD` (or `_FILE`), else the URI's; needs a user name.
    pub password: Option<Secret>,
    /// The application's database: `MONGODB_DATABASE`, else the URI's path.
    pub database: Option<String>,
    /// The application name the server logs for each connection; `dbkit` unless the caller sets it.
    pub app_name: String,
    /// The time a connection may take (`MONGODB_CONNECT_TIMEOUT`, default 5 s).
    pub connect_timeout: Duration,
    /// The time an operation waits for a suitable server (`MONGODB_SERVER_SELECTION_TIMEOUT`, default 5 s).
    pub server_selection_timeout: Duration,
}

impl fmt::Display for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl MongoConfig {
    /// Reads `MONGODB_URI`, `MONGODB_USERNAME`, `MONGODB_PASSWORD` (override the URI's
    /// credentials), `MONGODB_DATABASE`, `MONGODB_CONNECT_TIMEOUT` and
    /// `MONGODB_SERVER_SELECTION_TIMEOUT`.
    pub fn from_settings(settings: &Settings) -> Result<MongoConfig, ConfigError> {
        let value = settings.get("MONGODB_URI")?.ok_or_else(|| ConfigError::Incomplete {
            datastore: Datastore::MongoDb,
            reason: "MONGODB_URI is not set".into(),
        })?;
        let (uri, username, password) = split_credentials(&value)?;
        // Validate now, so a malformed URI fails before anything connects.
        let parsed = ConnectionString::parse(&uri).map_err(|e| invalid(&value, e.to_string()))?;
        let mut config = MongoConfig {
            uri,
            username,
            password,
            database: parsed.default_database.clone(),
            app_name: "dbkit".into(),
            connect_timeout: Duration::from_secs(5),
            server_selection_timeout: Duration::from_secs(5),
        };
        if let Some(v) = settings.get("MONGODB_USERNAME")? {
            config.username = Some(v.text);
        }
        if let Some(v) = settings.get("MONGODB_PASSWORD")? {
            config.password = Some(Secret::new(v.text));
        }
        if let Some(v) = settings.get("MONGODB_DATABASE")? {
            config.database = Some(v.text);
        }
        if let Some(d) = settings.duration("MONGODB_CONNECT_TIMEOUT")? {
            config.connect_timeout = d;
        }
        if let Some(d) = settings.duration("MONGODB_SERVER_SELECTION_TIMEOUT")? {
            config.server_selection_timeout = d;
        }
        if config.password.is_some() && config.username.is_none() {
            return Err(ConfigError::Incomplete {
                datastore: Datastore::MongoDb,
                reason: "a password is set but no user name (MONGODB_USERNAME or user@ in MONGODB_URI)".into(),
            });
        }
        Ok(config)
    }

    /// The `authSource` option of the URI: the database the user is authenticated against.
    pub fn auth_source(&self) -> Option<String> {
        let query = self.uri.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key.eq_ignore_ascii_case("authSource") && !value.is_empty())
                .then(|| percent_decode(value).unwrap_or_else(|_| value.to_owned()))
        })
    }

    /// The hosts of the URI (`host:port,...`), for messages.
    pub fn endpoint(&self) -> String {
        let rest = self.uri.split_once("://").map(|(_, r)| r).unwrap_or(&self.uri);
        rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
    }

    /// Builds a client; the driver connects lazily, so use [`MongoConfig::health`] to check.
    pub async fn client(&self) -> Result<mongodb::Client, ConnectError> {
        let endpoint = self.endpoint();
        let failed = |e: mongodb::error::Error| ConnectError::failed(Datastore::MongoDb, &endpoint, e);
        let mut options = with_timeout(Datastore::MongoDb, &endpoint, self.connect_timeout, async {
            ClientOptions::parse(&self.uri).await.map_err(failed)
        })
        .await?;
        options.app_name = Some(self.app_name.clone());
        options.connect_timeout = Some(self.connect_timeout);
        options.server_selection_timeout = Some(self.server_selection_timeout);
        if let Some(user) = &self.username {
            let mut credential = options.credential.take().unwrap_or_default();
            credential.username = Some(user.clone());
            credential.password = self.password.as_ref().map(|p| p.expose().to_owned());
            // The driver keeps `authSource` only from a URI that carries credentials, and ours
            // are taken out of it: without this, every user would authenticate against `admin`.
            if credential.source.is_none() {
                credential.source = self.auth_source();
            }
            options.credential = Some(credential);
        } else if options.credential.as_ref().is_some_and(|c: &Credential| c.username.is_none()) {
            options.credential = None;
        }
        mongodb::Client::with_options(options).map_err(failed)
    }

    /// Pings the server and reads its version from `buildInfo`.
    pub async fn health(&self) -> Result<String, ConnectError> {
        let endpoint = self.endpoint();
        let client = self.client().await?;
        let budget = self.server_selection_timeout + self.connect_timeout;
        with_timeout(Datastore::MongoDb, &endpoint, budget, async {
            let admin = client.database("admin");
            let failed = |e: mongodb::error::Error| ConnectError::failed(Datastore::MongoDb, &endpoint, e);
            admin.run_command(doc! { "ping": 1 }).await.map_err(failed)?;
            let info = admin.run_command(doc! { "buildInfo": 1 }).await.map_err(failed)?;
            let version = info.get_str("version").unwrap_or("unknown version");
            Ok(format!("MongoDB {version}"))
        })
        .await
    }
}

/// Splits `scheme://user:password@hosts/...` into the URI without credentials, the user name and
/// the password. Works for host lists (`a:1,b:2`), which URL parsers reject.
fn split_credentials(value: &Value) -> Result<(String, Option<String>, Option<Secret>), ConfigError> {
    let text = value.text.trim();
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(invalid(value, "not a MongoDB connection string (mongodb://host:port/...)"));
    };
    if scheme != "mongodb" && scheme != "mongodb+srv" {
        return Err(invalid(value, format!("scheme {scheme:?} is not mongodb:// or mongodb+srv://")));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, hosts)) = authority.rsplit_once('@') else {
        return Ok((text.to_owned(), None, None));
    };
    let decode = |s: &str| percent_decode(s).map_err(|r| invalid(value, r));
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (decode(user)?, Some(Secret::new(decode(password)?))),
        None => (decode(userinfo)?, None),
    };
    let user = (!user.is_empty()).then_some(user);
    Ok((format!("{scheme}://{hosts}{tail}"), user, password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn credentials_leave_the_uri() {
        let config = MongoConfig::from_settings(&env(&[(
            "MONGODB_URI",
            "mongodb://ai_platform:p%40ss@m1:27017,m2:27017/ai_platform?replicaSet=rs0&authSource=ai_platform",
        )]))
        .unwrap();
        assert_eq!(config.uri, "mongodb://m1:27017,m2:27017/ai_platform?replicaSet=rs0&authSource=ai_platform");
        assert_eq!(config.auth_source().as_deref(), Some("ai_platform"));
        assert_eq!(config.username.as_deref(), Some("ai_platform"));
        assert_eq!(config.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(config.database.as_deref(), Some("ai_platform"));
        assert_eq!(config.endpoint(), "m1:27017,m2:27017");
        let shown = format!("{config:?} {config}");
        assert!(!shown.contains("p@ss") && !shown.contains("p%40ss"), "{shown}");
    }

    #[test]
    fn bad_uris_name_the_variable_without_the_password() {
        let err = MongoConfig::from_settings(&env(&[("MONGODB_URI", "mongo://u:pw123@h")])).unwrap_err().to_string();
        assert!(err.contains("MONGODB_URI") && !err.contains("pw123"), "{err}");
        let err =
            MongoConfig::from_settings(&env(&[("MONGODB_URI", "mongodb://u:pw123@h:port")])).unwrap_err().to_string();
        assert!(err.contains("MONGODB_URI") && !err.contains("pw123"), "{err}");
    }

    #[test]
    fn password_file_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "fromfile\n").unwrap();
        let config = MongoConfig::from_settings(&env(&[
            ("MONGODB_URI", "mongodb://u:old@h/"),
            ("MONGODB_PASSWORD_FILE", file.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(config.password.unwrap().expose(), "fromfile");
    }
}
