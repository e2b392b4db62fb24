//! The `redis` section: authentication required, a memory limit and an eviction policy, and
//! persistence as the manifest says.

use serde::Deserialize;

use super::{Mode, Scalar, SectionReport};
use crate::redis::RedisConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// The server must refuse commands without credentials. Apply cannot turn this on (every
    /// client without the password would be locked out): a server that answers is a conflict.
    #[serde(default)]
    pub require_auth: bool,
    /// `maxmemory` (`1gb`, `512mb`, bytes); must not be 0.
    pub maxmemory: Option<Scalar>,
    pub maxmemory_policy: Option<String>,
    pub persistence: Option<Persistence>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    pub appendonly: Option<Scalar>,
    pub appendfsync: Option<String>,
    /// RDB snapshots, as `CONFIG GET save` shows them (`3600 1 300 100`); empty for none.
    pub save: Option<Scalar>,
}

impl Section {
    pub(crate) fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Reads the server, compares it with `section`, and in [`Mode::Apply`] converges it.
pub async fn run(config: &RedisConfig, section: &Section, mode: Mode) -> SectionReport {
    let _ = section;
    SectionReport::new(crate::Datastore::Redis, config.to_string(), mode).failed("not implemented yet")
}
