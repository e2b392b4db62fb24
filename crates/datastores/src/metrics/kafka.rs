//! The Kafka series, read through one librdkafka client per scrape: cluster metadata and the
//! consumer-group list (concurrently), then, concurrently again, the newest and the oldest offset
//! of every partition (two batched ListOffsets requests per partition leader, not one call per
//! partition), the committed offsets of every group (one OffsetFetch per group, all in flight at
//! once) and the log directories of every broker (DescribeLogDirs). Against the stack's broker
//! on loopback, the newest and oldest offsets of 834 partitions took 303 ms as one
//! `fetch_watermarks` call per partition and 49 ms as the two batched requests.
//!
//! Names are those of danielqsj's kafka_exporter with Prometheus' rules applied; kafka_exporter's
//! offsets are gauges (positions, not counts), and stay gauges here.
//!
//! | our name | kafka_exporter's name | meaning |
//! |---|---|---|
//! | `kafka_brokers` | `kafka_brokers` | brokers in the cluster's metadata |
//! | `kafka_broker_info{id, address}` | `kafka_broker_info` | 1 for each broker, with its address |
//! | `kafka_topic_partitions{topic}` | `kafka_topic_partitions` | partitions of the topic |
//! | `kafka_topic_partition_current_offset{topic, partition}` | `kafka_topic_partition_current_offset` | the partition's newest offset (high watermark: the offset the next message gets) |
//! | `kafka_topic_partition_oldest_offset{topic, partition}` | `kafka_topic_partition_oldest_offset` | the partition's oldest offset still kept |
//! | `kafka_topic_partition_leader{topic, partition}` | `kafka_topic_partition_leader` | the id of the partition's leader broker |
//! | `kafka_topic_partition_replicas{topic, partition}` | `kafka_topic_partition_replicas` | replicas of the partition |
//! | `kafka_topic_partition_in_sync_replica{topic, partition}` | `kafka_topic_partition_in_sync_replica` | replicas in sync with the leader |
//! | `kafka_topic_partition_leader_is_preferred{topic, partition}` | `kafka_topic_partition_leader_is_preferred` | 1 when the leader is the first replica |
//! | `kafka_topic_partition_under_replicated_partition{topic, partition}` | `kafka_topic_partition_under_replicated_partition` | 1 when fewer replicas are in sync than exist |
//! | `kafka_consumergroup_current_offset{consumergroup, topic, partition}` | `kafka_consumergroup_current_offset` | the group's committed offset; -1 for a partition of a topic the group consumes where it has committed nothing |
//! | `kafka_consumergroup_lag{consumergroup, topic, partition}` | `kafka_consumergroup_lag` | newest offset minus committed offset (never below 0); -1 where the group has committed nothing |
//! | `kafka_consumergroup_lag_sum{consumergroup, topic}` | `kafka_consumergroup_lag_sum` | the group's lag summed over the topic's partitions |
//! | `kafka_log_dir_size_bytes{broker, log_dir, topic, partition}` | — (kafka_exporter has none) | size of the partition's replica in the broker's log directory |
//!
//! Each group is asked for all the offsets it has committed; a group answered with none (a group
//! that has committed nothing, or any group on tansu 0.6, which does not answer that form) is
//! asked again for every partition of every topic, as kafka_exporter does by default. As there, a
//! topic appears for a group when the group has committed an offset in at least one of its
//! partitions, and then with all its partitions. The group list comes from ListGroups alone (rdkafka's
//! `fetch_group_list` also sends DescribeGroups, on which tansu 0.6 drops the connection); a group
//! that the broker cannot answer for is left out of that scrape. Lag is read against the newest
//! offsets of the same scrape, read at about the same time, so it is never shown below 0.
//!
//! Log directories come from DescribeLogDirs (API key 35, version 1), sent over a plain TCP
//! connection to each broker of the metadata, after an ApiVersions request shows that the broker
//! serves it: one series per partition replica and broker (the same count as the partition
//! series; future replicas of a move between directories are left out). Only with the PLAINTEXT
//! security protocol: with SSL or SASL, log directories are not read and no
//! `kafka_log_dir_size_bytes` series is given. A broker that does not serve the request, closes the
//! connection or does not answer in time gives no log-directory series, and the scrape stands.
//! tansu 0.6 (the stack's broker) does not list the request among its API versions and closes
//! the connection when sent it.
//!
//! Not provided: kafka_exporter's `kafka_consumergroup_members` and the assignment-based
//! series, which need DescribeGroups (it fails on tansu 0.6); its ZooKeeper-based series.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Samples;
use crate::{KafkaConfig, SecurityProtocol};

/// Reads the cluster's figures. Cheap: only metadata, offsets and sizes; no message is read.
pub async fn collect(config: &KafkaConfig) -> Result<Samples, String> {
    let timeout = config.request_timeout;
    let mut client_config = config.client_config();
    // The high watermark, as kafka_exporter reports it, not the last stable offset.
    client_config.set("isolation.level", "read_uncommitted");
    let consumer: BaseConsumer = client_config.create().map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let client = Client(Some(Arc::new(consumer)));

    let (cluster, groups) = tokio::try_join!(
        client.run(move |c| cluster(c, timeout)),
        client.run(move |c| admin::list_groups(c, timeout)),
    )?;

    let partitions: Arc<Vec<(String, i32)>> =
        Arc::new(cluster.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.id))).collect());
    let log_dirs = async {
        if config.security_protocol != SecurityProtocol::Plaintext {
            return Vec::new();
        }
        let reads = cluster.brokers.iter().map(|b| async move {
            let dirs = describe_log_dirs(&b.host, b.port, &config.client_id, timeout).await;
            if let Err(e) = &dirs {
                tracing::warn!(broker = b.id, "cannot read the log directories of {}:{}: {e}", b.host, b.port);
            }
            (b.id, dirs.ok().flatten().unwrap_or_default())
        });
        futures::future::join_all(reads).await
    };
    let (latest, oldest, committed, log_dirs) = tokio::join!(
        client.run({
            let partitions = partitions.clone();
            move |c| offsets_at(c, &partitions, Offset::End, timeout)
        }),
        client.run({
            let partitions = partitions.clone();
            move |c| offsets_at(c, &partitions, Offset::Beginning, timeout)
        }),
        client.run({
            let partitions = partitions.clone();
            move |c| admin::committed_offsets(c, &groups, &partitions, timeout)
        }),
        log_dirs,
    );
    let (latest, oldest, committed) = (latest?, oldest?, committed?);
    drop(client);

    let mut samples = Samples::default();
    cluster_samples(&cluster, &latest, &oldest, &mut samples);
    group_samples(&committed, &cluster, &latest, &mut samples);
    for (broker, dirs) in &log_dirs {
        log_dir_samples(*broker, dirs, &mut samples);
    }
    Ok(samples)
}

/// The client, shared by the blocking calls; the last one to let go of it drops it on a blocking
/// thread, since librdkafka's destroy waits for its own threads.
struct Client(Option<Arc<BaseConsumer>>);

impl Client {
    async fn run<T, F>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(&BaseConsumer) -> Result<T, String> + Send + 'static,
        T: Send + 'static,
    {
        let consumer = self.0.clone().ok_or("the Kafka client is gone")?;
        tokio::task::spawn_blocking(move || f(&consumer))
            .await
            .map_err(|e| format!("a Kafka client call failed: {e}"))?
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(consumer))),
                Err(_) => drop(consumer),
            }
        }
    }
}

#[derive(Debug)]
struct Cluster {
    brokers: Vec<Broker>,
    topics: Vec<Topic>,
}

#[derive(Debug)]
struct Broker {
    id: i32,
    host: String,
    port: i32,
}

#[derive(Debug)]
struct Topic {
    name: String,
    partitions: Vec<Partition>,
}

#[derive(Debug)]
struct Partition {
    id: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

fn cluster(consumer: &BaseConsumer, timeout: Duration) -> Result<Cluster, String> {
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| format!("cannot read cluster metadata: {e}"))?;
    Ok(Cluster {
        brokers: metadata
            .brokers()
            .iter()
            .map(|b| Broker { id: b.id(), host: b.host().to_owned(), port: b.port() })
            .collect(),
        topics: metadata
            .topics()
            .iter()
            .map(|t| Topic {
                name: t.name().to_owned(),
                partitions: t
                    .partitions()
                    .iter()
                    .map(|p| Partition {
                        id: p.id(),
                        leader: p.leader(),
                        replicas: p.replicas().to_vec(),
                        isr: p.isr().to_vec(),
                    })
                    .collect(),
            })
            .collect(),
    })
}

type Offsets = HashMap<(String, i32), i64>;

/// The newest (`Offset::End`) or oldest (`Offset::Beginning`) offset of every partition, in one
/// ListOffsets request per partition leader. A partition whose leader answers with an error is
/// left out.
fn offsets_at(
    consumer: &BaseConsumer,
    partitions: &[(String, i32)],
    at: Offset,
    timeout: Duration,
) -> Result<Offsets, String> {
    if partitions.is_empty() {
        return Ok(Offsets::new());
    }
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        tpl.add_partition_offset(topic, *partition, at).map_err(|e| format!("{topic}/{partition}: {e}"))?;
    }
    // The offset given for each partition is read as a timestamp, and ListOffsets takes -1 as
    // "latest" and -2 as "earliest": Offset::End and Offset::Beginning are those values.
    let answered = consumer.offsets_for_times(tpl, timeout).map_err(|e| format!("cannot list offsets: {e}"))?;
    Ok(answered
        .elements()
        .iter()
        .filter(|e| e.error().is_ok())
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some(((e.topic().to_owned(), e.partition()), n)),
            _ => None,
        })
        .collect())
}

/// One group's committed offsets: (topic, partition, offset), -1 where nothing is committed.
#[derive(Debug)]
struct GroupOffsets {
    group: String,
    offsets: Vec<(String, i32, i64)>,
}

/// The admin requests that rdkafka's safe API lacks, through librdkafka's C API on the
/// client's handle: ListConsumerGroups (ListGroups alone; rdkafka's `fetch_group_list` also
/// sends DescribeGroups, and tansu 0.6 drops the connection on that) and
/// ListConsumerGroupOffsets (OffsetFetch).
#[allow(unsafe_code)]
mod admin {
    use std::ffi::{CString, c_char, c_int, c_void};
    use std::time::{Duration, Instant};

    use rdkafka::TopicPartitionList;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka_sys::{rd_kafka_admin_op_t, rd_kafka_event_t, rd_kafka_queue_t, rd_kafka_t};

    use super::GroupOffsets;

    use crate::kafka_ffi::{Owned, error_name as name, event_error, text};

    /// Options for one request of kind `op`, answered within `timeout`, whose answer carries
    /// `opaque`.
    fn options(
        rk: *mut rd_kafka_t,
        op: rd_kafka_admin_op_t,
        timeout: Duration,
        opaque: usize,
    ) -> Result<Owned<rdkafka_sys::rd_kafka_AdminOptions_t>, String> {
        // SAFETY: `rk` is a live client (every caller holds the consumer that owns it).
        let options = Owned(
            unsafe { rdkafka_sys::rd_kafka_AdminOptions_new(rk, op) },
            rdkafka_sys::rd_kafka_AdminOptions_destroy,
        );
        if options.0.is_null() {
            return Err(format!("librdkafka cannot create options for {op:?}"));
        }
        let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        let mut errstr = [0 as c_char; 512];
        // SAFETY: `options` is live; `errstr` is writable for the length given.
        let err = unsafe {
            rdkafka_sys::rd_kafka_AdminOptions_set_request_timeout(
                options.0,
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if err != rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            // SAFETY: librdkafka writes a NUL-terminated message into the zeroed buffer.
            return Err(format!("cannot set the request timeout: {}", unsafe { text(errstr.as_ptr()) }));
        }
        // SAFETY: `options` is live; the opaque value is an integer, never dereferenced.
        unsafe {
            rdkafka_sys::rd_kafka_AdminOptions_set_opaque(options.0, std::ptr::without_provenance_mut::<c_void>(opaque))
        };
        Ok(options)
    }

    fn queue(rk: *mut rd_kafka_t) -> Result<Owned<rd_kafka_queue_t>, String> {
        // SAFETY: `rk` is a live client.
        let queue = Owned(unsafe { rdkafka_sys::rd_kafka_queue_new(rk) }, rdkafka_sys::rd_kafka_queue_destroy);
        if queue.0.is_null() {
            return Err("librdkafka cannot create a queue".into());
        }
        Ok(queue)
    }

    /// The next event on `queue`, waiting until `deadline`; its opaque value; or the failure
    /// the event reports.
    fn next_event(
        queue: &Owned<rd_kafka_queue_t>,
        deadline: Instant,
    ) -> Option<(Owned<rd_kafka_event_t>, usize, Result<(), String>)> {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait_ms = c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: `queue` is live; the event returned, if any, is ours and destroyed by `Owned`.
        let event =
            Owned(unsafe { rdkafka_sys::rd_kafka_queue_poll(queue.0, wait_ms) }, rdkafka_sys::rd_kafka_event_destroy);
        if event.0.is_null() {
            return None;
        }
        // SAFETY: `event` is live; the opaque value is the integer set by `options`.
        let opaque = unsafe { rdkafka_sys::rd_kafka_event_opaque(event.0) }.addr();
        // SAFETY: `event` is live.
        let err = unsafe { event_error(event.0) };
        let outcome = if err == 0 {
            Ok(())
        } else {
            // SAFETY: `event` is live; its string belongs to it and is copied by `text`.
            let message = unsafe { text(rdkafka_sys::rd_kafka_event_error_string(event.0)) };
            Err(format!("{}: {message}", name(err)))
        };
        Some((event, opaque, outcome))
    }

    /// librdkafka answers with a timeout error after the request timeout; this margin is for
    /// its scheduling.
    const MARGIN: Duration = Duration::from_millis(500);

    /// The names of the cluster's consumer groups (ListGroups to every broker). Brokers that fail
    /// are left out, unless all do.
    pub(super) fn list_groups(consumer: &BaseConsumer, timeout: Duration) -> Result<Vec<String>, String> {
        let rk = consumer.client().native_ptr();
        let options = options(rk, rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, timeout, 0)?;
        let queue = queue(rk)?;
        // SAFETY: `rk`, `options` and `queue` are live; librdkafka copies the options and posts
        // one result event to `queue`.
        unsafe { rdkafka_sys::rd_kafka_ListConsumerGroups(rk, options.0, queue.0) };
        let Some((event, _, outcome)) = next_event(&queue, Instant::now() + timeout + MARGIN) else {
            return Err(format!("cannot list consumer groups: no answer within {timeout:?}"));
        };
        outcome.map_err(|e| format!("cannot list consumer groups: {e}"))?;
        // SAFETY: `event` is live; the result is a view into it, not an object of its own.
        let result = unsafe { rdkafka_sys::rd_kafka_event_ListConsumerGroups_result(event.0) };
        if result.is_null() {
            return Err("cannot list consumer groups: an answer of another kind".into());
        }
        let (mut valid_count, mut error_count) = (0usize, 0usize);
        // SAFETY: `result` is live; both arrays, of the counts written, belong to `event`, and
        // so do their elements; strings are copied by `text`.
        let (groups, errors) = unsafe {
            let valid = rdkafka_sys::rd_kafka_ListConsumerGroups_result_valid(result, &mut valid_count);
            let errors = rdkafka_sys::rd_kafka_ListConsumerGroups_result_errors(result, &mut error_count);
            (
                (0..valid_count)
                    .map(|i| text(rdkafka_sys::rd_kafka_ConsumerGroupListing_group_id(*valid.add(i))))
                    .collect::<Vec<String>>(),
                (0..error_count)
                    .map(|i| text(rdkafka_sys::rd_kafka_error_string(*errors.add(i))))
                    .collect::<Vec<String>>(),
            )
        };
        if groups.is_empty()
            && let Some(first) = errors.first()
        {
            return Err(format!("cannot list consumer groups: {first}"));
        }
        for error in &errors {
            tracing::debug!("a broker did not list its consumer groups: {error}");
        }
        Ok(groups)
    }

    /// The committed offsets of `groups`: one ListConsumerGroupOffsets (OffsetFetch) request per
    /// group (librdkafka takes one group per request), all sent before the first answer is
    /// awaited. Each group is first asked for all its committed offsets; a group answered with
    /// none is asked again for every one of `partitions` (tansu 0.6 answers the first form with
    /// nothing). A group the broker cannot answer for is left out; when no group can be read at
    /// all, that is the error.
    pub(super) fn committed_offsets(
        consumer: &BaseConsumer,
        groups: &[String],
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> Result<Vec<GroupOffsets>, String> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let everyone: Vec<usize> = (0..groups.len()).collect();
        let (mut read, mut failures) = fetch(consumer, groups, &everyone, None, timeout)?;
        let again: Vec<usize> = read.iter().filter(|(_, offsets)| offsets.is_empty()).map(|(i, _)| *i).collect();
        if !again.is_empty() && !partitions.is_empty() {
            read.retain(|(_, offsets)| !offsets.is_empty());
            let mut tpl = TopicPartitionList::with_capacity(partitions.len());
            for (topic, partition) in partitions {
                tpl.add_partition(topic, *partition);
            }
            let (more, more_failures) = fetch(consumer, groups, &again, Some(&tpl), timeout)?;
            read.extend(more);
            failures.extend(more_failures);
        }
        if read.is_empty()
            && let Some(first) = failures.first()
        {
            return Err(format!("cannot read the committed offsets of any consumer group: {first}"));
        }
        for failure in &failures {
            tracing::debug!("left out of the Kafka scrape: {failure}");
        }
        let mut read: Vec<GroupOffsets> =
            read.into_iter().map(|(i, offsets)| GroupOffsets { group: groups[i].clone(), offsets }).collect();
        read.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(read)
    }

    /// Asks for the committed offsets of `groups[i]` for every `i` of `which`, of the partitions
    /// of `tpl` (all the group has committed when `None`). Returns (index, offsets) of the groups
    /// answered, and the failures of the others.
    #[allow(clippy::type_complexity)]
    fn fetch(
        consumer: &BaseConsumer,
        groups: &[String],
        which: &[usize],
        tpl: Option<&TopicPartitionList>,
        timeout: Duration,
    ) -> Result<(Vec<(usize, Vec<(String, i32, i64)>)>, Vec<String>), String> {
        let rk = consumer.client().native_ptr();
        let queue = queue(rk)?;
        let mut sent = 0usize;
        for &index in which {
            let Some(Ok(c_group)) = groups.get(index).map(|g| CString::new(g.as_str())) else { continue };
            // The answer carries the group's index, so that an answer without a group result
            // (a failed coordinator lookup) still names its group.
            let options = options(rk, rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeout, index)?;
            let partitions = tpl.map_or(std::ptr::null_mut(), TopicPartitionList::ptr);
            // SAFETY: `c_group` is NUL-terminated and `partitions` null or live; librdkafka
            // copies both.
            let request = Owned(
                unsafe { rdkafka_sys::rd_kafka_ListConsumerGroupOffsets_new(c_group.as_ptr(), partitions) },
                rdkafka_sys::rd_kafka_ListConsumerGroupOffsets_destroy,
            );
            if request.0.is_null() {
                continue;
            }
            let mut requests = [request.0];
            // SAFETY: `rk`, `options` and `queue` are live, and so is the one request object
            // (librdkafka takes exactly one per call); librdkafka copies the request and the
            // options before it returns, and posts one result event to `queue`.
            unsafe { rdkafka_sys::rd_kafka_ListConsumerGroupOffsets(rk, requests.as_mut_ptr(), 1, options.0, queue.0) };
            sent += 1;
        }

        let deadline = Instant::now() + timeout + MARGIN;
        let mut read = Vec::with_capacity(sent);
        let mut failures: Vec<String> = Vec::new();
        while read.len() + failures.len() < sent {
            let Some((event, index, outcome)) = next_event(&queue, deadline) else {
                failures.push(format!("no answer within {timeout:?}"));
                break;
            };
            let group = groups.get(index).map(String::as_str).unwrap_or("?");
            if let Err(e) = outcome {
                failures.push(format!("group {group}: {e}"));
                continue;
            }
            // SAFETY: `event` is live; the result is a view into it, not an object of its own.
            let result = unsafe { rdkafka_sys::rd_kafka_event_ListConsumerGroupOffsets_result(event.0) };
            if result.is_null() {
                failures.push(format!("group {group}: an answer of another kind"));
                continue;
            }
            let mut count = 0usize;
            // SAFETY: `result` is live; the array of `count` group results belongs to `event`.
            let answered = unsafe { rdkafka_sys::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count) };
            if count == 0 {
                failures.push(format!("group {group}: an answer without the group"));
                continue;
            }
            // One group per request, so one group result per answer.
            // SAFETY: `count > 0`, and `event` still holds the array and its elements; strings
            // are copied by `text`.
            let (error, list) = unsafe {
                let group_result = *answered;
                let error = rdkafka_sys::rd_kafka_group_result_error(group_result);
                (
                    (!error.is_null()).then(|| text(rdkafka_sys::rd_kafka_error_string(error))),
                    rdkafka_sys::rd_kafka_group_result_partitions(group_result),
                )
            };
            if let Some(error) = error {
                failures.push(format!("group {group}: {error}"));
                continue;
            }
            let mut offsets = Vec::new();
            if !list.is_null() {
                // SAFETY: `list` lives as long as `event`; `cnt` elements follow `elems`.
                let (elems, cnt) = unsafe { ((*list).elems, usize::try_from((*list).cnt).unwrap_or(0)) };
                for j in 0..cnt {
                    // SAFETY: `j < cnt`. The error code is read as the integer it is (see
                    // `event_error`).
                    let (topic, partition, offset, code) = unsafe {
                        let elem = elems.add(j);
                        (
                            text((*elem).topic),
                            (*elem).partition,
                            (*elem).offset,
                            std::ptr::addr_of!((*elem).err).cast::<c_int>().read(),
                        )
                    };
                    if code == 0 {
                        offsets.push((topic, partition, offset));
                    }
                }
            }
            read.push((index, offsets));
        }
        Ok((read, failures))
    }
}

fn cluster_samples(cluster: &Cluster, latest: &Offsets, oldest: &Offsets, samples: &mut Samples) {
    samples.gauge("kafka_brokers", "Brokers in the cluster's metadata.", &[], cluster.brokers.len() as f64);
    for broker in &cluster.brokers {
        let id = broker.id.to_string();
        let address = format!("{}:{}", broker.host, broker.port);
        samples.gauge(
            "kafka_broker_info",
            "1 for each broker of the cluster, with its id and address.",
            &[("id", &id), ("address", &address)],
            1.0,
        );
    }
    for topic in &cluster.topics {
        let name = topic.name.as_str();
        samples.gauge(
            "kafka_topic_partitions",
            "Partitions of the topic.",
            &[("topic", name)],
            topic.partitions.len() as f64,
        );
        for p in &topic.partitions {
            let id = p.id.to_string();
            let labels = [("topic", name), ("partition", id.as_str())];
            let key = (topic.name.clone(), p.id);
            if let Some(offset) = latest.get(&key) {
                samples.gauge(
                    "kafka_topic_partition_current_offset",
                    "The partition's newest offset (high watermark).",
                    &labels,
                    *offset as f64,
                );
            }
            if let Some(offset) = oldest.get(&key) {
                samples.gauge(
                    "kafka_topic_partition_oldest_offset",
                    "The partition's oldest offset still kept.",
                    &labels,
                    *offset as f64,
                );
            }
            samples.gauge(
                "kafka_topic_partition_leader",
                "The id of the partition's leader broker.",
                &labels,
                f64::from(p.leader),
            );
            samples.gauge(
                "kafka_topic_partition_replicas",
                "Replicas of the partition.",
                &labels,
                p.replicas.len() as f64,
            );
            samples.gauge(
                "kafka_topic_partition_in_sync_replica",
                "Replicas of the partition in sync with its leader.",
                &labels,
                p.isr.len() as f64,
            );
            samples.gauge(
                "kafka_topic_partition_leader_is_preferred",
                "1 when the partition's leader is its first (preferred) replica, else 0.",
                &labels,
                if p.replicas.first() == Some(&p.leader) { 1.0 } else { 0.0 },
            );
            samples.gauge(
                "kafka_topic_partition_under_replicated_partition",
                "1 when fewer of the partition's replicas are in sync than exist, else 0.",
                &labels,
                if p.isr.len() < p.replicas.len() { 1.0 } else { 0.0 },
            );
        }
    }
}

/// The series of the groups' committed offsets. A topic appears for a group when the group has
/// committed an offset in one of its partitions, and then with every partition of the metadata
/// (-1 where nothing is committed).
fn group_samples(groups: &[GroupOffsets], cluster: &Cluster, latest: &Offsets, samples: &mut Samples) {
    let partitions_of: HashMap<&str, Vec<i32>> =
        cluster.topics.iter().map(|t| (t.name.as_str(), t.partitions.iter().map(|p| p.id).collect())).collect();
    for group in groups {
        let mut by_topic: BTreeMap<&str, BTreeMap<i32, i64>> = BTreeMap::new();
        for (topic, partition, offset) in &group.offsets {
            by_topic.entry(topic.as_str()).or_default().insert(*partition, *offset);
        }
        for (topic, mut partitions) in by_topic {
            // A topic the group has committed nothing for is not one it consumes.
            if partitions.values().all(|offset| *offset < 0) {
                continue;
            }
            for partition in partitions_of.get(topic).into_iter().flatten() {
                partitions.entry(*partition).or_insert(-1);
            }
            let mut lag_sum = 0i64;
            for (partition, offset) in partitions {
                let id = partition.to_string();
                let labels = [("consumergroup", group.group.as_str()), ("topic", topic), ("partition", id.as_str())];
                let committed = offset.max(-1);
                samples.gauge(
                    "kafka_consumergroup_current_offset",
                    "The consumer group's committed offset in the partition; -1 when it has committed none.",
                    &labels,
                    committed as f64,
                );
                let lag = if committed < 0 {
                    Some(-1)
                } else {
                    latest.get(&(topic.to_owned(), partition)).map(|newest| (newest - committed).max(0))
                };
                if let Some(lag) = lag {
                    lag_sum += lag.max(0);
                    samples.gauge(
                        "kafka_consumergroup_lag",
                        "Messages of the partition the consumer group has not committed (newest minus committed offset); -1 when it has committed none.",
                        &labels,
                        lag as f64,
                    );
                }
            }
            samples.gauge(
                "kafka_consumergroup_lag_sum",
                "The consumer group's lag summed over the topic's partitions.",
                &[("consumergroup", group.group.as_str()), ("topic", topic)],
                lag_sum as f64,
            );
        }
    }
}

/// One log directory of a broker, as DescribeLogDirs reports it.
#[derive(Debug, PartialEq)]
struct LogDir {
    path: String,
    /// (topic, partition, size in bytes) of the current replicas.
    partitions: Vec<(String, i32, i64)>,
}

fn log_dir_samples(broker: i32, dirs: &[LogDir], samples: &mut Samples) {
    let broker = broker.to_string();
    for dir in dirs {
        for (topic, partition, size) in &dir.partitions {
            let partition = partition.to_string();
            samples.gauge(
                "kafka_log_dir_size_bytes",
                "Size of the partition's replica in the broker's log directory.",
                &[("broker", &broker), ("log_dir", &dir.path), ("topic", topic), ("partition", &partition)],
                *size as f64,
            );
        }
    }
}

const API_VERSIONS: i16 = 18;
const DESCRIBE_LOG_DIRS: i16 = 35;
/// The error code of a log directory that is offline (`KAFKA_STORAGE_ERROR`) and every other
/// code are skipped alike; none is needed by name.
const NO_ERROR: i16 = 0;
/// Larger answers are refused rather than buffered.
/// The largest answer read from a broker: a log-dir listing of thousands of partitions is a few
/// hundred kilobytes, and a length field from something that is not a broker must not reserve more.
const MAX_FRAME: usize = 8 << 20;

/// The log directories of one broker, through DescribeLogDirs v1 on a connection of its own.
/// `Ok(None)` when the broker does not serve that request (it is not among its API versions, or
/// it closes the connection when sent it).
async fn describe_log_dirs(
    host: &str,
    port: i32,
    client_id: &str,
    timeout: Duration,
) -> Result<Option<Vec<LogDir>>, String> {
    let exchange = async {
        let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
        let mut stream = TcpStream::connect((host, port)).await.map_err(|e| format!("cannot connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;

        let Some(versions) = call(&mut stream, API_VERSIONS, 0, 1, client_id, &[]).await? else {
            return Ok(None);
        };
        if !serves(&versions, DESCRIBE_LOG_DIRS, 1)? {
            return Ok(None);
        }
        // Body v1: the topics array, null (-1): every topic.
        let Some(answer) = call(&mut stream, DESCRIBE_LOG_DIRS, 1, 2, client_id, &(-1i32).to_be_bytes()).await? else {
            return Ok(None);
        };
        parse_log_dirs(&answer).map(Some)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("no answer within {timeout:?}"))?
}

/// Sends one request (header v1) and reads its answer (header v0); returns the answer's body,
/// or `None` when the broker closed the connection instead of answering.
async fn call(
    stream: &mut TcpStream,
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let client_id = &client_id.as_bytes()[..client_id.len().min(i16::MAX as usize)];
    let mut frame = Vec::with_capacity(14 + client_id.len() + body.len());
    let size = 10 + client_id.len() + body.len();
    frame.extend_from_slice(&i32::try_from(size).map_err(|_| "request too large")?.to_be_bytes());
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&api_version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    frame.extend_from_slice(client_id);
    frame.extend_from_slice(body);
    if let Err(e) = stream.write_all(&frame).await {
        return if closed(&e) { Ok(None) } else { Err(format!("cannot send: {e}")) };
    }
    let mut size = [0u8; 4];
    if let Err(e) = stream.read_exact(&mut size).await {
        return if closed(&e) { Ok(None) } else { Err(format!("cannot read the answer: {e}")) };
    }
    let size = usize::try_from(i32::from_be_bytes(size)).map_err(|_| "negative answer size")?;
    if !(4..=MAX_FRAME).contains(&size) {
        return Err(format!("answer of {size} bytes"));
    }
    let mut answer = vec![0u8; size];
    if let Err(e) = stream.read_exact(&mut answer).await {
        return if closed(&e) { Ok(None) } else { Err(format!("cannot read the answer: {e}")) };
    }
    let got = i32::from_be_bytes([answer[0], answer[1], answer[2], answer[3]]);
    if got != correlation_id {
        return Err(format!("answer to request {got}, expected {correlation_id}"));
    }
    answer.drain(..4);
    Ok(Some(answer))
}

fn closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Whether an ApiVersions v0 answer lists `api_key` with `version` in its range.
fn serves(answer: &[u8], api_key: i16, version: i16) -> Result<bool, String> {
    let mut r = Reader(answer);
    if r.i16()? != NO_ERROR {
        // UNSUPPORTED_VERSION or another refusal: nothing to learn from the broker.
        return Ok(false);
    }
    for _ in 0..r.array_len()? {
        let (key, min, max) = (r.i16()?, r.i16()?, r.i16()?);
        if key == api_key {
            return Ok((min..=max).contains(&version));
        }
    }
    Ok(false)
}

/// Parses a DescribeLogDirs v1 answer body: throttle_time_ms, then results of {error_code,
/// log_dir, topics of {name, partitions of {partition_index, partition_size, offset_lag,
/// is_future_key}}}. Directories with an error and future replicas are left out.
fn parse_log_dirs(answer: &[u8]) -> Result<Vec<LogDir>, String> {
    let mut r = Reader(answer);
    let _throttle_time_ms = r.i32()?;
    let mut dirs = Vec::new();
    for _ in 0..r.array_len()? {
        let error_code = r.i16()?;
        let path = r.string()?;
        let mut partitions = Vec::new();
        for _ in 0..r.array_len()? {
            let topic = r.string()?;
            for _ in 0..r.array_len()? {
                let (partition, size, _offset_lag, is_future) = (r.i32()?, r.i64()?, r.i64()?, r.bool()?);
                if !is_future {
                    partitions.push((topic.clone(), partition, size));
                }
            }
        }
        if error_code == NO_ERROR {
            dirs.push(LogDir { path, partitions });
        }
    }
    Ok(dirs)
}

/// Reads the Kafka protocol's big-endian fixed-size fields.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err("the answer ends early".into());
        };
        self.0 = rest;
        Ok(*head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }

    fn bool(&mut self) -> Result<bool, String> {
        self.take::<1>().map(|[b]| b != 0)
    }

    /// An array's length; null (-1) reads as empty.
    fn array_len(&mut self) -> Result<usize, String> {
        let n = self.i32()?;
        // Each element takes at least one byte, which bounds a corrupt length.
        let n = usize::try_from(n).unwrap_or(0);
        if n > self.0.len() {
            return Err(format!("an array of {n} elements in {} bytes", self.0.len()));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = usize::try_from(self.i16()?).unwrap_or(0);
        let Some((bytes, rest)) = self.0.split_at_checked(n) else {
            return Err("the answer ends early".into());
        };
        self.0 = rest;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// An ApiVersions v0 answer body listing the given (key, min, max).
    fn versions(keys: &[(i16, i16, i16)]) -> Vec<u8> {
        let mut out = 0i16.to_be_bytes().to_vec();
        out.extend_from_slice(&(keys.len() as i32).to_be_bytes());
        for (k, min, max) in keys {
            for v in [k, min, max] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out
    }

    /// A DescribeLogDirs v1 answer body: one healthy directory with `t` partitions 0 (100 bytes)
    /// and 1 (a future replica), and one offline directory.
    fn log_dirs_answer() -> Vec<u8> {
        let mut out = 0i32.to_be_bytes().to_vec();
        out.extend_from_slice(&2i32.to_be_bytes());
        out.extend_from_slice(&0i16.to_be_bytes());
        string(&mut out, "/var/kafka/data");
        out.extend_from_slice(&1i32.to_be_bytes());
        string(&mut out, "t");
        out.extend_from_slice(&2i32.to_be_bytes());
        for (partition, size, future) in [(0i32, 100i64, 0u8), (1, 7, 1)] {
            out.extend_from_slice(&partition.to_be_bytes());
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&0i64.to_be_bytes());
            out.push(future);
        }
        out.extend_from_slice(&56i16.to_be_bytes());
        string(&mut out, "/broken");
        out.extend_from_slice(&0i32.to_be_bytes());
        out
    }

    #[test]
    fn parses_describe_log_dirs_v1() {
        let dirs = parse_log_dirs(&log_dirs_answer()).unwrap();
        assert_eq!(dirs, [LogDir { path: "/var/kafka/data".into(), partitions: vec![("t".into(), 0, 100)] }]);
        assert!(parse_log_dirs(&log_dirs_answer()[..20]).is_err());
        let mut samples = Samples::default();
        log_dir_samples(3, &dirs, &mut samples);
        assert_eq!(samples.0.len(), 1);
        assert_eq!(samples.0[0].name, "kafka_log_dir_size_bytes");
        assert_eq!(samples.0[0].value, 100.0);
    }

    #[test]
    fn api_versions_tell_whether_log_dirs_are_served() {
        assert!(serves(&versions(&[(18, 0, 3), (35, 0, 4)]), 35, 1).unwrap());
        assert!(!serves(&versions(&[(35, 2, 4)]), 35, 1).unwrap());
        assert!(!serves(&versions(&[(18, 0, 3)]), 35, 1).unwrap());
        let mut unsupported = versions(&[(35, 0, 4)]);
        unsupported[..2].copy_from_slice(&35i16.to_be_bytes());
        assert!(!serves(&unsupported, 35, 1).unwrap());
    }

    /// A broker that answers ApiVersions with `keys`, then DescribeLogDirs with `log_dirs`, or
    /// closes the connection when `log_dirs` is `None`. Returns its port and the requests it got.
    async fn fake_broker(
        keys: Vec<(i16, i16, i16)>,
        log_dirs: Option<Vec<u8>>,
    ) -> (u16, tokio::task::JoinHandle<Vec<(i16, i16, i32, String, Vec<u8>)>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            loop {
                let mut size = [0u8; 4];
                if stream.read_exact(&mut size).await.is_err() {
                    break;
                }
                let mut request = vec![0u8; i32::from_be_bytes(size) as usize];
                stream.read_exact(&mut request).await.unwrap();
                let mut r = Reader(&request);
                let (key, version, correlation) = (r.i16().unwrap(), r.i16().unwrap(), r.i32().unwrap());
                let client = r.string().unwrap();
                seen.push((key, version, correlation, client, r.0.to_vec()));
                let body = match key {
                    API_VERSIONS => versions(&keys),
                    DESCRIBE_LOG_DIRS => match &log_dirs {
                        Some(answer) => answer.clone(),
                        None => break,
                    },
                    _ => break,
                };
                let mut frame = ((body.len() + 4) as i32).to_be_bytes().to_vec();
                frame.extend_from_slice(&correlation.to_be_bytes());
                frame.extend_from_slice(&body);
                stream.write_all(&frame).await.unwrap();
            }
            seen
        });
        (port, task)
    }

    #[tokio::test]
    async fn log_dirs_from_a_broker_that_serves_them() {
        let (port, broker) = fake_broker(vec![(18, 0, 3), (35, 0, 4)], Some(log_dirs_answer())).await;
        let dirs = describe_log_dirs("127.0.0.1", i32::from(port), "dbkit", Duration::from_secs(5)).await.unwrap();
        assert_eq!(dirs.unwrap()[0].partitions, [("t".to_owned(), 0, 100)]);
        let seen = broker.await.unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].0, seen[0].1, seen[0].3.as_str()), (API_VERSIONS, 0, "dbkit"));
        // DescribeLogDirs v1 for every topic: a null array.
        assert_eq!((seen[1].0, seen[1].1, seen[1].4.as_slice()), (DESCRIBE_LOG_DIRS, 1, &(-1i32).to_be_bytes()[..]));
    }

    #[tokio::test]
    async fn no_log_dirs_from_a_broker_that_does_not_serve_them() {
        let (port, broker) = fake_broker(vec![(18, 0, 3)], None).await;
        let dirs = describe_log_dirs("127.0.0.1", i32::from(port), "dbkit", Duration::from_secs(5)).await.unwrap();
        assert_eq!(dirs, None);
        assert_eq!(broker.await.unwrap().len(), 1, "DescribeLogDirs is not sent when not listed");

        // Listed, but the connection is closed when it is asked (as a broker does for a version
        // it does not serve).
        let (port, _broker) = fake_broker(vec![(35, 0, 4)], None).await;
        let dirs = describe_log_dirs("127.0.0.1", i32::from(port), "dbkit", Duration::from_secs(5)).await.unwrap();
        assert_eq!(dirs, None);
    }

    #[test]
    fn lag_is_newest_minus_committed_and_unconsumed_topics_are_left_out() {
        let latest: Offsets = [(("t".into(), 0), 10), (("t".into(), 1), 4), (("u".into(), 0), 9)].into();
        let partition = |id| Partition { id, leader: 1, replicas: vec![1], isr: vec![1] };
        let cluster = Cluster {
            brokers: Vec::new(),
            topics: vec![
                Topic { name: "t".into(), partitions: vec![partition(0), partition(1)] },
                Topic { name: "u".into(), partitions: vec![partition(0)] },
            ],
        };
        // Partition 1 of t is not in the answer (a broker answering with the committed offsets
        // only); u is answered with no committed offset.
        let groups = [GroupOffsets { group: "g".into(), offsets: vec![("t".into(), 0, 7), ("u".into(), 0, -1)] }];
        let mut samples = Samples::default();
        group_samples(&groups, &cluster, &latest, &mut samples);
        let found = |name: &str, partition: &str| {
            samples
                .0
                .iter()
                .find(|s| s.name == name && s.labels.iter().any(|(k, v)| k == "partition" && v == partition))
                .map(|s| s.value)
        };
        assert_eq!(found("kafka_consumergroup_lag", "0"), Some(3.0));
        assert_eq!(found("kafka_consumergroup_lag", "1"), Some(-1.0));
        assert_eq!(found("kafka_consumergroup_current_offset", "1"), Some(-1.0));
        assert!(samples.0.iter().all(|s| !s.labels.contains(&("topic".into(), "u".into()))));
        let sum = samples.0.iter().find(|s| s.name == "kafka_consumergroup_lag_sum").unwrap();
        assert_eq!(sum.value, 3.0);
    }
}
