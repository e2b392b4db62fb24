//! The `kafka` section: topics with their partitions, replication factor and configs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Mode, Scalar, SectionReport};
use crate::kafka::KafkaConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    #[serde(default)]
    pub expect: Expect,
    /// The factor of every topic that does not set its own.
    pub replication_factor: Option<u16>,
    #[serde(default)]
    pub topics: Vec<Topic>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub cluster_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: Option<u16>,
    /// Compared key by key: a config the manifest does not name is left alone.
    #[serde(default)]
    pub configs: BTreeMap<String, Scalar>,
}

impl Section {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for topic in &self.topics {
            if topic.name.is_empty() || !topic.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return Err(format!("topic name {:?} is not a valid Kafka topic name", topic.name));
            }
            if !seen.insert(topic.name.as_str()) {
                return Err(format!("topic {} is listed twice", topic.name));
            }
            if topic.partitions == 0 {
                return Err(format!("topic {}: partitions must be at least 1", topic.name));
            }
            if self.factor(topic) == 0 {
                return Err(format!("topic {}: replication_factor must be at least 1", topic.name));
            }
        }
        Ok(())
    }

    /// The replication factor `topic` should have.
    pub fn factor(&self, topic: &Topic) -> u16 {
        topic.replication_factor.or(self.replication_factor).unwrap_or(1)
    }
}

/// Reads the cluster, compares it with `section`, and in [`Mode::Apply`] converges it.
pub async fn run(config: &KafkaConfig, section: &Section, mode: Mode) -> SectionReport {
    let _ = (section, mode);
    SectionReport::new(crate::Datastore::Kafka, config.endpoint(), mode).failed("not implemented yet")
}
