//! The `kafka` section: topics with their partitions, replication factor and configs.
//!
//! One metadata request reads every topic, one DescribeConfigs request the configs of every
//! existing topic the manifest gives configs for. Apply sends at most one CreateTopics, one
//! CreatePartitions and one IncrementalAlterConfigs request. Nothing is deleted, partitions never
//! decrease, and a replication factor is never changed (that needs a partition reassignment).
//! Configs are compared only for the keys the manifest names, and changed with
//! IncrementalAlterConfigs (SET), which leaves every other key of the topic as it is; the legacy
//! AlterConfigs request would reset them.
//!
//! A replication factor larger than the cluster's broker count is a conflict and the topic is not
//! created: Apache Kafka refuses such a topic, and a broker that accepts it (tansu does) cannot
//! hold the copies the manifest asks for.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;

use super::{Item, Mode, Scalar, SectionReport, State, converge_state, guard_identity};
use crate::error::Datastore;
use crate::kafka::KafkaConfig;

/// The manifest's `kafka` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// The cluster the section is for; a cluster with another id is refused.
    #[serde(default)]
    pub expect: Expect,
    /// The factor of every topic that does not set its own.
    pub replication_factor: Option<u16>,
    /// Topics to create or grow; topics the manifest does not name are left alone.
    #[serde(default)]
    pub topics: Vec<Topic>,
}

/// The identity the `kafka` section pins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The cluster id the brokers report; empty or left out means not pinned (a warning).
    pub cluster_id: Option<String>,
}

/// A topic, its size and its configs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// The topic's name: letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// The number of partitions, at least 1. Apply adds partitions to a topic with fewer, and
    /// reports a topic with more as a conflict.
    pub partitions: u32,
    /// The topic's replication factor; the section's `replication_factor` (else 1) when not given.
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
    let report = SectionReport::new(Datastore::Kafka, config.endpoint(), mode);
    let admin: Arc<Admin> = match config.client_config().create() {
        Ok(admin) => Arc::new(admin),
        Err(e) => return report.failed(format!("cannot create a Kafka client for {}: {e}", config.endpoint())),
    };
    let report = run_with(&admin, config, section, mode, report).await;
    // Destroying a librdkafka client joins its threads, which wait out their 100 ms poll: keep
    // that off the async workers, and do not make the caller wait for it.
    drop(tokio::task::spawn_blocking(move || drop(admin)));
    report
}

type Admin = AdminClient<DefaultClientContext>;

/// A topic as the cluster's metadata shows it.
struct Observed {
    partitions: usize,
    /// Replicas of partition 0: the topic's replication factor.
    replicas: usize,
}

/// The configs of one topic as DescribeConfigs answered (only the keys that are set, on some
/// brokers), or why they could not be read.
type Described = Result<HashMap<String, Option<String>>, String>;

/// Config changes of one topic: (item index, key, value).
type ConfigChanges<'a> = Vec<(usize, &'a str, &'a str)>;

async fn run_with(
    admin: &Arc<Admin>,
    config: &KafkaConfig,
    section: &Section,
    mode: Mode,
    mut report: SectionReport,
) -> SectionReport {
    let endpoint = config.endpoint();
    let timeout = config.request_timeout;

    let cluster_id = match blocking(admin, move |a| a.inner().fetch_cluster_id(timeout)).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            // No answer, or a broker that does not tell its cluster id: a short metadata request
            // tells which, with librdkafka's reason.
            let probe = Duration::from_secs(1).min(timeout);
            let metadata = blocking(admin, move |a| a.inner().fetch_metadata(None, probe).map(|_| ())).await;
            return report.failed(match metadata {
                Ok(Ok(())) => format!(
                    "the Kafka cluster at {endpoint} does not tell its cluster id, which the identity guard needs"
                ),
                Ok(Err(e)) => format!("cannot reach the Kafka cluster at {endpoint} within {timeout:?}: {e}"),
                Err(e) => e,
            });
        }
        Err(e) => return report.failed(e),
    };
    if let Err(refused) = guard_identity(&mut report, "cluster id", section.expect.cluster_id.as_deref(), &cluster_id) {
        return report.failed(refused);
    }

    let metadata = blocking(admin, move |a| {
        a.inner().fetch_metadata(None, timeout).map(|metadata| {
            let topics: HashMap<String, Result<Observed, String>> = metadata
                .topics()
                .iter()
                .filter(|t| {
                    t.error().is_none_or(|e| RDKafkaErrorCode::from(e) != RDKafkaErrorCode::UnknownTopicOrPartition)
                })
                .map(|t| {
                    let observed = match t.error() {
                        Some(e) => Err(format!("the metadata of the topic has an error: {}", describe_code(e.into()))),
                        None => Ok(Observed {
                            partitions: t.partitions().len(),
                            replicas: t
                                .partitions()
                                .iter()
                                .find(|p| p.id() == 0)
                                .or(t.partitions().first())
                                .map_or(0, |p| p.replicas().len()),
                        }),
                    };
                    (t.name().to_owned(), observed)
                })
                .collect();
            (metadata.brokers().len(), topics)
        })
    })
    .await;
    let (brokers, topics) = match metadata {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return report.failed(format!("cannot read the topics of the Kafka cluster at {endpoint}: {e}")),
        Err(e) => return report.failed(e),
    };
    report.identity = Some(format!("cluster id {cluster_id}, {brokers} broker(s)"));

    let options = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    // Every admin future resolves once its request times out; this bounds a client that hangs.
    let bound = timeout * 2 + Duration::from_secs(5);

    // Configs of the existing topics that name any, in one request.
    let to_describe: Vec<&str> = section
        .topics
        .iter()
        .filter(|t| !t.configs.is_empty() && matches!(topics.get(&t.name), Some(Ok(_))))
        .map(|t| t.name.as_str())
        .collect();
    let mut described: HashMap<String, Described> = HashMap::new();
    if !to_describe.is_empty() {
        let specifiers: Vec<ResourceSpecifier<'_>> = to_describe.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        match with_bound(bound, admin.describe_configs(&specifiers, &options)).await {
            Ok(resources) => {
                for resource in resources {
                    match resource {
                        Ok(resource) => {
                            if let OwnedResourceSpecifier::Topic(name) = resource.specifier {
                                let entries = resource.entries.into_iter().map(|e| (e.name, e.value)).collect();
                                described.insert(name, Ok(entries));
                            }
                        }
                        // rdkafka 0.39 does not say which resource failed; none of them is trusted.
                        Err(code) => {
                            let message = format!("DescribeConfigs failed: {}", describe_code(code));
                            for name in &to_describe {
                                described.insert((*name).to_owned(), Err(message.clone()));
                            }
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                for name in &to_describe {
                    described.insert((*name).to_owned(), Err(format!("DescribeConfigs failed: {e}")));
                }
            }
        }
    }

    // Compare; note what apply would do with the index of the item it changes.
    let mut creates: Vec<(usize, &Topic)> = Vec::new();
    let mut grows: Vec<(usize, &Topic)> = Vec::new();
    let mut alters: BTreeMap<&str, ConfigChanges<'_>> = BTreeMap::new();
    for topic in &section.topics {
        let name = topic.name.as_str();
        let factor = section.factor(topic);
        let observed = match topics.get(name) {
            None if usize::from(factor) > brokers => {
                report.push(Item::new(
                    "topic",
                    name,
                    State::Conflict,
                    format!(
                        "replication factor {factor} is larger than the {brokers} broker(s) of the cluster; set \
                         KAFKA_REPLICATION_FACTOR or the topic's replication_factor; not created"
                    ),
                ));
                continue;
            }
            None => {
                creates.push((report.items.len(), topic));
                report.push(Item::new("topic", name, converge_state(mode, true), describe_new(topic, factor)));
                continue;
            }
            Some(Err(e)) => {
                report.push(Item::new("topic", name, State::Failed, e.clone()));
                continue;
            }
            Some(Ok(observed)) => observed,
        };
        report.push(Item::ok("topic", name));

        let wanted = topic.partitions as usize;
        let server = observed.partitions;
        report.push(match server.cmp(&wanted) {
            std::cmp::Ordering::Equal => Item::ok("partitions", name),
            std::cmp::Ordering::Less => {
                grows.push((report.items.len(), topic));
                Item::new(
                    "partitions",
                    name,
                    converge_state(mode, false),
                    format!("server {server}, manifest {wanted}"),
                )
            }
            std::cmp::Ordering::Greater => Item::new(
                "partitions",
                name,
                State::Conflict,
                format!("partitions cannot decrease: server {server}, manifest {wanted}"),
            ),
        });

        report.push(if observed.replicas == usize::from(factor) {
            Item::ok("replication_factor", name)
        } else {
            Item::new(
                "replication_factor",
                name,
                State::Conflict,
                format!(
                    "server {}, manifest {factor}; changing it needs a partition reassignment, which apply does not do",
                    observed.replicas
                ),
            )
        });

        for (key, value) in &topic.configs {
            let item_name = format!("{name}/{key}");
            let wanted = value.0.as_str();
            let server = match described.get(name) {
                Some(Ok(entries)) => entries.get(key.as_str()).cloned().flatten(),
                Some(Err(e)) => {
                    report.push(Item::new("config", item_name, State::Failed, e.clone()));
                    continue;
                }
                None => {
                    report.push(Item::new("config", item_name, State::Failed, "not in the DescribeConfigs answer"));
                    continue;
                }
            };
            if server.as_deref().map(normal_config) == Some(normal_config(wanted)) {
                report.push(Item::ok("config", item_name));
                continue;
            }
            alters.entry(name).or_default().push((report.items.len(), key.as_str(), wanted));
            let mut detail = format!("server {}, manifest {wanted}", server.as_deref().unwrap_or("not set"));
            let shrinks = |s: &str| matches!((s.parse::<i64>(), wanted.parse::<i64>()), (Ok(s), Ok(w)) if w >= 0 && (s < 0 || w < s));
            if matches!(key.as_str(), "retention.ms" | "retention.bytes") && server.as_deref().is_some_and(shrinks) {
                detail.push_str("; the broker deletes the segments past the new retention at its next check");
            }
            report.push(Item::new("config", item_name, converge_state(mode, false), detail));
        }
    }
    if !mode.writes() {
        return report;
    }

    // Apply: the three requests are independent of one another.
    let create = async {
        if creates.is_empty() {
            return None;
        }
        let new_topics: Vec<NewTopic<'_>> = creates
            .iter()
            .map(|(_, t)| {
                let replication = TopicReplication::Fixed(i32::from(section.factor(t)));
                let partitions = i32::try_from(t.partitions).unwrap_or(i32::MAX);
                t.configs.iter().fold(NewTopic::new(&t.name, partitions, replication), |new, (k, v)| new.set(k, &v.0))
            })
            .collect();
        Some(with_bound(bound, admin.create_topics(&new_topics, &options)).await)
    };
    let grow = async {
        if grows.is_empty() {
            return None;
        }
        let new_partitions: Vec<NewPartitions<'_>> =
            grows.iter().map(|(_, t)| NewPartitions::new(&t.name, t.partitions as usize)).collect();
        Some(with_bound(bound, admin.create_partitions(&new_partitions, &options)).await)
    };
    let alter = async {
        if alters.is_empty() {
            return None;
        }
        let changes: Vec<(String, Vec<(String, String)>)> = alters
            .iter()
            .map(|(topic, keys)| {
                ((*topic).to_owned(), keys.iter().map(|(_, k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
            })
            .collect();
        Some(blocking(admin, move |a| incremental_alter_topic_configs(a, &changes, timeout)).await.and_then(|r| r))
    };
    let (created, grown, altered) = futures::join!(create, grow, alter);

    if let Some(outcome) = created {
        let indexes = creates.iter().map(|(i, t)| (*i, t.name.as_str()));
        settle(&mut report, indexes, outcome, "CreateTopics", |code| {
            format!("the broker refused to create it: {}", describe_code(code))
        });
    }
    if let Some(outcome) = grown {
        let indexes = grows.iter().map(|(i, t)| (*i, t.name.as_str()));
        settle(&mut report, indexes, outcome, "CreatePartitions", |code| match code {
            RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion => {
                format!("the broker does not support CreatePartitions: {}", describe_code(code))
            }
            _ => format!("the broker refused CreatePartitions: {}", describe_code(code)),
        });
    }
    if let Some(outcome) = altered {
        for (topic, keys) in &alters {
            let failure = match &outcome {
                Ok(results) => match results.get(*topic) {
                    Some(Ok(())) => None,
                    Some(Err(e)) => Some(format!("the broker refused IncrementalAlterConfigs: {e}")),
                    None => Some("not in the IncrementalAlterConfigs answer".to_owned()),
                },
                Err(e) => Some(format!("IncrementalAlterConfigs failed: {e}")),
            };
            if let Some(failure) = failure {
                for (index, _, _) in keys {
                    fail(&mut report.items[*index], &failure);
                }
            }
        }
    }
    report
}

/// Marks the items of a CreateTopics or CreatePartitions request that failed.
fn settle<'a>(
    report: &mut SectionReport,
    indexes: impl Iterator<Item = (usize, &'a str)>,
    outcome: Result<Vec<rdkafka::admin::TopicResult>, Failure>,
    request: &str,
    refused: impl Fn(RDKafkaErrorCode) -> String,
) {
    for (index, name) in indexes {
        let failure = match &outcome {
            Err(Failure::Code(code)) => Some(refused(*code)),
            Err(Failure::Other(reason)) => Some(format!("{request} failed: {reason}")),
            Ok(results) => match results.iter().find(|r| r.as_ref().unwrap_or_else(|(n, _)| n) == name) {
                Some(Ok(_)) => None,
                Some(Err((_, code))) => Some(refused(*code)),
                None => Some(format!("not in the {request} answer")),
            },
        };
        if let Some(failure) = failure {
            fail(&mut report.items[index], &failure);
        }
    }
}

fn fail(item: &mut Item, failure: &str) {
    item.state = State::Failed;
    item.detail = if item.detail.is_empty() { failure.to_owned() } else { format!("{}; {failure}", item.detail) };
}

/// What a missing topic is created with.
fn describe_new(topic: &Topic, factor: u16) -> String {
    let mut detail = format!("partitions {}, replication factor {factor}", topic.partitions);
    if !topic.configs.is_empty() {
        let configs: Vec<String> = topic.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        detail.push_str(&format!(", configs {}", configs.join(" ")));
    }
    detail
}

/// librdkafka's name of an error (`UNSUPPORTED_FEATURE`, `_TIMED_OUT` for a local one) and its
/// description.
fn describe_code(code: RDKafkaErrorCode) -> String {
    let mut name = String::new();
    if (code as i32) < 0 {
        name.push('_');
    }
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    let display = code.to_string();
    let description =
        display.strip_prefix(&format!("{code:?} (")).and_then(|d| d.strip_suffix(')')).unwrap_or(&display);
    format!("{name} ({description})")
}

/// Runs a blocking librdkafka call off the async workers.
async fn blocking<T: Send + 'static>(
    admin: &Arc<Admin>,
    f: impl FnOnce(&Admin) -> T + Send + 'static,
) -> Result<T, String> {
    let admin = Arc::clone(admin);
    tokio::task::spawn_blocking(move || f(&admin)).await.map_err(|e| format!("a Kafka request task failed: {e}"))
}

/// Awaits an admin request, at most `bound`.
async fn with_bound<T>(bound: Duration, request: impl Future<Output = Result<T, KafkaError>>) -> Result<T, Failure> {
    match tokio::time::timeout(bound, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(KafkaError::AdminOp(code))) => Err(Failure::Code(code)),
        Ok(Err(e)) => Err(Failure::Other(e.to_string())),
        Err(_) => Err(Failure::Other(format!("no answer within {bound:?}"))),
    }
}

/// Why a whole admin request failed: an error code of the broker or of librdkafka, or another
/// reason.
enum Failure {
    Code(RDKafkaErrorCode),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Code(code) => f.write_str(&describe_code(*code)),
            Failure::Other(reason) => f.write_str(reason),
        }
    }
}

/// Sends one IncrementalAlterConfigs request that SETs the given keys of the given topics, and
/// waits for its answer (rdkafka's safe API has no IncrementalAlterConfigs). Returns the outcome
/// per topic, or the error of the whole request.
#[allow(unsafe_code)]
fn incremental_alter_topic_configs(
    admin: &Admin,
    changes: &[(String, Vec<(String, String)>)],
    timeout: Duration,
) -> Result<HashMap<String, Result<(), String>>, String> {
    use std::ffi::{CString, c_char, c_int};

    use rdkafka_sys::{
        rd_kafka_AlterConfigOpType_t, rd_kafka_ResourceType_t, rd_kafka_admin_op_t, rd_kafka_resp_err_t,
    };

    use crate::kafka_ffi::{Owned, text};

    let c_string = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let mut requested = Vec::with_capacity(changes.len());
    for (topic, keys) in changes {
        let keys = keys.iter().map(|(k, v)| Ok((c_string(k)?, c_string(v)?))).collect::<Result<Vec<_>, String>>()?;
        requested.push((topic, c_string(topic)?, keys));
    }
    let no_error = rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);

    let rk = admin.inner().native_ptr();
    // SAFETY (all calls below): `rk` is the live client that `admin` owns for longer than this
    // function runs. Every object created here is held by an `Owned` and destroyed once; strings
    // passed in are NUL-terminated and copied by librdkafka before the call returns.
    let options = Owned(
        unsafe {
            rdkafka_sys::rd_kafka_AdminOptions_new(rk, rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS)
        },
        rdkafka_sys::rd_kafka_AdminOptions_destroy,
    );
    if options.0.is_null() {
        return Err("librdkafka cannot create IncrementalAlterConfigs options".into());
    }
    let mut errstr = [0 as c_char; 512];
    // SAFETY: `options` is live; `errstr` is writable for the length given.
    let err = unsafe {
        rdkafka_sys::rd_kafka_AdminOptions_set_request_timeout(options.0, timeout_ms, errstr.as_mut_ptr(), errstr.len())
    };
    if err != no_error {
        // SAFETY: librdkafka writes a NUL-terminated message into the zeroed buffer.
        return Err(format!("cannot set the request timeout: {}", unsafe { text(errstr.as_ptr()) }));
    }

    let mut resources = Vec::with_capacity(requested.len());
    for (topic, c_topic, keys) in &requested {
        // SAFETY: `c_topic` is NUL-terminated; librdkafka copies it.
        let resource = Owned(
            unsafe {
                rdkafka_sys::rd_kafka_ConfigResource_new(
                    rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                    c_topic.as_ptr(),
                )
            },
            rdkafka_sys::rd_kafka_ConfigResource_destroy,
        );
        if resource.0.is_null() {
            return Err(format!("librdkafka cannot create a config resource for topic {topic}"));
        }
        for (key, value) in keys {
            // SAFETY: `resource` is live; `key` and `value` are NUL-terminated and copied. The
            // error object returned on failure is ours and is destroyed by `Owned`.
            let error = Owned(
                unsafe {
                    rdkafka_sys::rd_kafka_ConfigResource_add_incremental_config(
                        resource.0,
                        key.as_ptr(),
                        rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                        value.as_ptr(),
                    )
                },
                rdkafka_sys::rd_kafka_error_destroy,
            );
            if !error.0.is_null() {
                // SAFETY: `error` is live; its string belongs to it and is copied by `text`.
                let message = unsafe { text(rdkafka_sys::rd_kafka_error_string(error.0)) };
                return Err(format!("cannot set {} of topic {topic}: {message}", key.to_string_lossy()));
            }
        }
        resources.push(resource);
    }

    // SAFETY: `rk` is live. The queue receives the one result event of the request below.
    let queue = Owned(unsafe { rdkafka_sys::rd_kafka_queue_new(rk) }, rdkafka_sys::rd_kafka_queue_destroy);
    if queue.0.is_null() {
        return Err("librdkafka cannot create a queue".into());
    }
    let mut pointers: Vec<*mut rdkafka_sys::rd_kafka_ConfigResource_t> = resources.iter().map(|r| r.0).collect();
    // SAFETY: every pointer is live; librdkafka copies the resources and the options before it
    // returns, and posts exactly one result event to `queue`.
    unsafe {
        rdkafka_sys::rd_kafka_IncrementalAlterConfigs(rk, pointers.as_mut_ptr(), pointers.len(), options.0, queue.0)
    };
    // librdkafka answers with a timeout error after `timeout`; the margin is for its scheduling.
    let wait_ms = timeout_ms.saturating_add(5_000);
    // SAFETY: `queue` is live; the event returned, if any, is ours and destroyed by `Owned`.
    let event =
        Owned(unsafe { rdkafka_sys::rd_kafka_queue_poll(queue.0, wait_ms) }, rdkafka_sys::rd_kafka_event_destroy);
    if event.0.is_null() {
        return Err(format!("no answer within {:?}", Duration::from_millis(wait_ms.unsigned_abs().into())));
    }
    // SAFETY: `event` is live.
    let err = unsafe { crate::kafka_ffi::event_error(event.0) };
    if err != 0 {
        // SAFETY: `event` is live; its string belongs to it and is copied by `text`.
        let message = unsafe { text(rdkafka_sys::rd_kafka_event_error_string(event.0)) };
        return Err(format!("{}: {message}", crate::kafka_ffi::error_name(err)));
    }
    // SAFETY: `event` is live; the result is a view into it, not an object of its own.
    let result = unsafe { rdkafka_sys::rd_kafka_event_IncrementalAlterConfigs_result(event.0) };
    if result.is_null() {
        return Err("librdkafka answered with an event that is not an IncrementalAlterConfigs result".into());
    }
    let mut count = 0usize;
    // SAFETY: `result` is live; the array of `count` resources belongs to `event`.
    let answered = unsafe { rdkafka_sys::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count) };
    let mut outcome = HashMap::with_capacity(count);
    for i in 0..count {
        // SAFETY: `i < count`, so the element is in the array, and `event` still holds it.
        let resource = unsafe { *answered.add(i) };
        // SAFETY: `resource` is live for as long as `event`; strings are copied by `text`.
        let (name, code, message) = unsafe {
            (
                text(rdkafka_sys::rd_kafka_ConfigResource_name(resource)),
                crate::kafka_ffi::resource_error(resource),
                text(rdkafka_sys::rd_kafka_ConfigResource_error_string(resource)),
            )
        };
        let result = if code == 0 {
            Ok(())
        } else if message.is_empty() {
            Err(crate::kafka_ffi::error_name(code))
        } else {
            Err(format!("{}: {message}", crate::kafka_ffi::error_name(code)))
        };
        outcome.insert(name, result);
    }
    Ok(outcome)
}

/// A config value as the broker compares it: list values without the spaces after commas
/// (`compact, delete` is `compact,delete`).
fn normal_config(value: &str) -> String {
    value.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}
