//! S3 and S3-compatible object stores.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::error::{ConfigError, ConnectError, Datastore, with_timeout};
use crate::settings::{Secret, Settings, invalid};

/// How the S3 client authenticates. `Debug` hides the secret key and session token.
#[derive(Clone, Debug)]
pub enum S3Credentials {
    /// Keys given in the configuration.
    Static {
        /// `AWS_ACCESS_KEY_ID`.
        access_key_id: String,
        /// `AWS_SECRET_ACCESS_KEY` (or `_FILE`).
        secret_access_key: Secret,
        /// `AWS_SESSION_TOKEN` (or `_FILE`), for temporary credentials.
        session_token: Option<Secret>,
    },
    /// The AWS SDK's default chain: environment, shared profile, web identity (EKS IRSA),
    /// container and instance metadata. This chain reads the process environment itself.
    DefaultChain,
}

/// Server-side encryption requested on every object written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sse {
    /// `AES256`: SSE-S3, keys managed by the store.
    Aes256,
    /// `aws:kms`: SSE-KMS.
    Kms {
        /// The KMS key (`S3_SSE_KMS_KEY_ID`); `None` for the bucket's default key.
        key_id: Option<String>,
    },
}

/// Where objects go. `Debug` and `Display` never show the secret key.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The bucket (`S3_BUCKET`).
    pub bucket: String,
    /// Prepended to every key; empty or ending in `/`.
    pub prefix: String,
    /// The region (`AWS_REGION` or `AWS_DEFAULT_REGION`, default `us-east-1`).
    pub region: String,
    /// For S3-compatible stores (MinIO, Ceph, ...): `http(s)://host:port`.
    pub endpoint: Option<String>,
    /// Address the bucket in the path (`host/bucket/key`) rather than the host name
    /// (`S3_FORCE_PATH_STYLE`; on by default with a custom `endpoint`).
    pub force_path_style: bool,
    /// Static keys, or the AWS default chain when none are configured.
    pub credentials: S3Credentials,
    /// Server-side encryption of objects written (`S3_SSE`); `None` leaves it to the bucket.
    pub sse: Option<Sse>,
    /// Bounds each read of a response, and connecting too, at most 10 s of it (`S3_TIMEOUT`,
    /// default 30 s).
    pub timeout: Duration,
    /// Attempts per request, the first included, with the SDK's standard retries (`S3_MAX_ATTEMPTS`,
    /// 1 to 100, default 5).
    pub max_attempts: u32,
}

impl fmt::Display for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " at {endpoint}")?;
        }
        Ok(())
    }
}

impl S3Config {
    /// Reads `S3_BUCKET`, `S3_PREFIX`, `AWS_REGION` (or `AWS_DEFAULT_REGION`), `S3_ENDPOINT` (or
    /// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`), `S3_FORCE_PATH_STYLE` (on by default with a
    /// custom endpoint), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `S3_SSE` (`AES256` or `aws:kms`), `S3_SSE_KMS_KEY_ID`, `S3_TIMEOUT`, `S3_MAX_ATTEMPTS`.
    /// Without keys, credentials come from the AWS default chain.
    pub fn from_settings(settings: &Settings) -> Result<S3Config, ConfigError> {
        let incomplete = |reason: &str| ConfigError::Incomplete { datastore: Datastore::S3, reason: reason.into() };
        let bucket = settings.get("S3_BUCKET")?.ok_or_else(|| incomplete("S3_BUCKET is not set"))?;
        if !valid_bucket_name(&bucket.text) {
            return Err(invalid(
                &bucket,
                format!("{:?} is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')", bucket.text),
            ));
        }
        let mut prefix = settings.get("S3_PREFIX")?.map(|v| v.text).unwrap_or_default();
        prefix = prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let endpoint = match settings.get_any(&["S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])? {
            None => None,
            Some(v) => {
                let url = url::Url::parse(&v.text).map_err(|e| invalid(&v, format!("not a valid URL ({e})")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(invalid(&v, "expected http(s)://host[:port]"));
                }
                Some(v.text.trim_end_matches('/').to_owned())
            }
        };
        let access_key = settings.get("AWS_ACCESS_KEY_ID")?;
        let secret_key = settings.get("AWS_SECRET_ACCESS_KEY")?;
        let credentials = match (access_key, secret_key) {
            (Some(id), Some(secret)) => S3Credentials::Static {
                access_key_id: id.text,
                secret_access_key: Secret::new(secret.text),
                session_token: settings.get("AWS_SESSION_TOKEN")?.map(|v| Secret::new(v.text)),
            },
            (None, None) => S3Credentials::DefaultChain,
            (Some(_), None) => {
                return Err(incomplete("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"));
            }
            (None, Some(_)) => {
                return Err(incomplete("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"));
            }
        };
        let sse = match settings.get("S3_SSE")? {
            None => None,
            Some(v) => match v.text.trim() {
                "AES256" => Some(Sse::Aes256),
                "aws:kms" => Some(Sse::Kms { key_id: settings.get("S3_SSE_KMS_KEY_ID")?.map(|k| k.text) }),
                other => {
                    return Err(invalid(&v, format!("unknown encryption {other:?}; use AES256 or aws:kms")));
                }
            },
        };
        let max_attempts = settings.count("S3_MAX_ATTEMPTS")?.unwrap_or(5);
        if max_attempts == 0 || max_attempts > 100 {
            return Err(incomplete("S3_MAX_ATTEMPTS must be between 1 and 100"));
        }
        Ok(S3Config {
            bucket: bucket.text,
            prefix,
            region: settings
                .get_any(&["AWS_REGION", "AWS_DEFAULT_REGION"])?
                .map(|v| v.text)
                .unwrap_or_else(|| "us-east-1".into()),
            force_path_style: settings.boolean("S3_FORCE_PATH_STYLE")?.unwrap_or(endpoint.is_some()),
            endpoint,
            credentials,
            sse,
            timeout: settings.duration("S3_TIMEOUT")?.unwrap_or(Duration::from_secs(30)),
            max_attempts: max_attempts as u32,
        })
    }

    /// Where the bucket is, for messages: `endpoint/bucket`, or `s3://bucket (region)` on AWS.
    pub fn endpoint(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("{endpoint}/{}", self.bucket),
            None => format!("s3://{} ({})", self.bucket, self.region),
        }
    }

    /// The full key for `name` under the configured prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name.trim_start_matches('/'))
    }

    /// The KMS key for `aws:kms` encryption, when one is named (else the bucket's default key).
    pub fn kms_key_id(&self) -> Option<&str> {
        match &self.sse {
            Some(Sse::Kms { key_id: Some(id) }) => Some(id),
            _ => None,
        }
    }

    /// The encryption to request on each object written, in the SDK's type.
    pub fn server_side_encryption(&self) -> Option<ServerSideEncryption> {
        self.sse.as_ref().map(|sse| match sse {
            Sse::Aes256 => ServerSideEncryption::Aes256,
            Sse::Kms { .. } => ServerSideEncryption::AwsKms,
        })
    }

    /// An S3 client with this configuration's region, endpoint, addressing, credentials, timeouts
    /// and retries. It connects lazily. With the default chain it first loads the AWS SDK's shared
    /// configuration, which reads the process environment and profile files.
    pub async fn client(&self) -> aws_sdk_s3::Client {
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .force_path_style(self.force_path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.timeout.min(Duration::from_secs(10)))
                    .read_timeout(self.timeout)
                    .build(),
            );
        match &self.credentials {
            S3Credentials::Static { access_key_id, secret_access_key, session_token } => {
                builder = builder.credentials_provider(Credentials::new(
                    access_key_id,
                    secret_access_key.expose(),
                    session_token.as_ref().map(|t| t.expose().to_owned()),
                    None,
                    "dbkit-config",
                ));
            }
            S3Credentials::DefaultChain => {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(self.region.clone()))
                    .load()
                    .await;
                if let Some(provider) = shared.credentials_provider() {
                    builder = builder.credentials_provider(provider);
                }
            }
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// Checks that the bucket answers: read-only by default (the bucket exists and its prefix can
    /// be listed), since production credentials often may not delete, and versioned buckets keep
    /// a delete marker for every probe. With `write_probe`, also writes an object under the
    /// prefix (with the configured encryption) and deletes it.
    pub async fn health(&self, write_probe: bool) -> Result<String, ConnectError> {
        let endpoint = self.endpoint();
        let client = self.client().await;
        with_timeout(Datastore::S3, &endpoint, self.timeout, async {
            let failed = |what: &str, e: &(dyn std::error::Error + 'static)| {
                ConnectError::message(Datastore::S3, &endpoint, format!("{what}: {}", crate::error::chain(e)))
            };
            client
                .head_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map_err(|e| failed(&format!("bucket {} is not reachable", self.bucket), &e))?;
            client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .max_keys(1)
                .send()
                .await
                .map_err(|e| failed(&format!("cannot list s3://{}/{}", self.bucket, self.prefix), &e))?;
            if !write_probe {
                return Ok(format!("bucket {} readable", self.bucket));
            }
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
            let key = self.key(&format!(".dbkit-health/{}-{nanos}", std::process::id()));
            let mut put = client.put_object().bucket(&self.bucket).key(&key).body(ByteStream::from_static(b"ok"));
            if let Some(sse) = self.server_side_encryption() {
                put = put.server_side_encryption(sse);
            }
            if let Some(id) = self.kms_key_id() {
                put = put.ssekms_key_id(id);
            }
            put.send().await.map_err(|e| failed(&format!("cannot write {key}"), &e))?;
            client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| failed(&format!("cannot delete {key}"), &e))?;
            Ok(format!("bucket {} writable", self.bucket))
        })
        .await
    }
}

/// The S3 bucket naming rules that matter for a typo: length, characters, ends.
pub fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;

    fn env(vars: &[(&str, &str)]) -> Settings {
        Settings::new().layer(Source::Environment, vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn defaults_and_aliases() {
        let c = S3Config::from_settings(&env(&[
            ("S3_BUCKET", "backups"),
            ("S3_PREFIX", "/recommend"),
            ("AWS_ENDPOINT_URL", "http://minio:9000/"),
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK-very-secret"),
        ]))
        .unwrap();
        assert_eq!(c.prefix, "recommend/");
        assert_eq!(c.key("daily/x"), "recommend/daily/x");
        assert_eq!(c.endpoint.as_deref(), Some("http://minio:9000"));
        assert!(c.force_path_style);
        assert_eq!(c.region, "us-east-1");
        assert!(!format!("{c:?} {c}").contains("SK-very-secret"));
    }

    #[test]
    fn bad_values() {
        let err = S3Config::from_settings(&env(&[("S3_BUCKET", "My_Bucket")])).unwrap_err().to_string();
        assert!(err.contains("S3_BUCKET") && err.contains("My_Bucket"), "{err}");
        let err =
            S3Config::from_settings(&env(&[("S3_BUCKET", "b-1"), ("AWS_ACCESS_KEY_ID", "x")])).unwrap_err().to_string();
        assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
        let err = S3Config::from_settings(&env(&[("S3_BUCKET", "b-1"), ("S3_SSE", "rot13")])).unwrap_err().to_string();
        assert!(err.contains("S3_SSE"), "{err}");
    }
}
