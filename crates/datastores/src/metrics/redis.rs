//! The Redis series, named as redis_exporter names them.
//!
//! | series | redis_exporter | meaning |
//! |---|---|---|
//! | `redis_version_info{version,mode,role}` | `redis_instance_info` | 1, with the server's version, mode and role |
//! | `redis_uptime_in_seconds` | same | time since the server started |
//! | `redis_connected_clients` | same | client connections |
//! | `redis_blocked_clients` | same | clients waiting in a blocking command |
//! | `redis_memory_used_bytes` | same | memory Redis has allocated |
//! | `redis_memory_max_bytes` | same | `maxmemory`; 0 means no limit |
//! | `redis_keyspace_hits_total` | same | lookups that found their key |
//! | `redis_keyspace_misses_total` | same | lookups that did not (hit rate: hits / (hits + misses)) |
//! | `redis_evicted_keys_total` | same | keys evicted for the memory limit |
//! | `redis_expired_keys_total` | same | keys expired |
//! | `redis_commands_processed_total` | same | commands run |
//! | `redis_connections_received_total` | same | connections accepted |
//! | `redis_commands_total{cmd}` | same | calls per command |
//! | `redis_commands_duration_seconds_total{cmd}` | same | time spent per command (latency: duration / calls) |
//! | `redis_db_keys{db}` | same | keys per database |
//! | `redis_db_keys_expiring{db}` | same | keys with a TTL per database |
//! | `redis_rdb_last_save_timestamp_seconds` | same | time of the last RDB snapshot |
//! | `redis_aof_enabled` | same | whether the append-only file is on |
//! | `redis_connected_slaves` | same | replicas connected to this master |
//! | `redis_instantaneous_ops_per_sec` | same | commands per second, as the server measures it |
//! | `redis_master_link_up` | same | on a replica: whether its link to the master is up |
//!
//! One `INFO` per scrape.

use super::Samples;
use crate::RedisConfig;
use crate::redis::RedisConnection;

/// Connects and reads the server's figures.
pub async fn collect(config: &RedisConfig) -> Result<Samples, String> {
    let mut connection = config.connect().await.map_err(|e| e.to_string())?;
    collect_with(&mut connection).await
}

/// Reads the server's figures on an open connection.
pub async fn collect_with(connection: &mut RedisConnection) -> Result<Samples, String> {
    let mut command = redis::cmd("INFO");
    command.arg("all");
    let reply: Result<redis::Value, _> = match connection {
        RedisConnection::Single(c) => command.query_async(c).await,
        RedisConnection::Cluster(c) => command.query_async(c).await,
    };
    let reply = reply.map_err(|e| format!("INFO failed: {e}"))?;
    let info = crate::redis::first_text(&reply).ok_or("INFO gave no text answer")?;
    Ok(samples(&info))
}

/// The series of an `INFO all` answer. Pure: unit-tested on a recorded answer.
pub fn samples(info: &str) -> Samples {
    let fields: std::collections::HashMap<&str, &str> =
        info.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.trim_end().split_once(':')).collect();
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<f64>().ok());
    let mut s = Samples::default();
    s.gauge(
        "redis_version_info",
        "The server's version, mode and role, as labels.",
        &[
            ("version", fields.get("redis_version").copied().unwrap_or_default()),
            ("mode", fields.get("redis_mode").copied().unwrap_or_default()),
            ("role", fields.get("role").copied().unwrap_or_default()),
        ],
        1.0,
    );
    let gauges: [(&str, &str, &'static str); 9] = [
        ("uptime_in_seconds", "redis_uptime_in_seconds", "Time since the server started."),
        ("connected_clients", "redis_connected_clients", "Client connections."),
        ("blocked_clients", "redis_blocked_clients", "Clients waiting in a blocking command."),
        ("used_memory", "redis_memory_used_bytes", "Memory Redis has allocated."),
        ("maxmemory", "redis_memory_max_bytes", "The memory limit (maxmemory); 0 means no limit."),
        ("rdb_last_save_time", "redis_rdb_last_save_timestamp_seconds", "Time of the last RDB snapshot."),
        ("aof_enabled", "redis_aof_enabled", "Whether the append-only file is on."),
        ("connected_slaves", "redis_connected_slaves", "Replicas connected to this master."),
        (
            "instantaneous_ops_per_sec",
            "redis_instantaneous_ops_per_sec",
            "Commands per second, as the server measures it.",
        ),
    ];
    for (field, name, help) in gauges {
        if let Some(v) = num(field) {
            s.gauge(name, help, &[], v);
        }
    }
    if let Some(link) = fields.get("master_link_status") {
        s.gauge(
            "redis_master_link_up",
            "On a replica: whether its link to the master is up.",
            &[],
            f64::from(u8::from(*link == "up")),
        );
    }
    let counters: [(&str, &str, &'static str); 6] = [
        ("keyspace_hits", "redis_keyspace_hits_total", "Lookups that found their key."),
        ("keyspace_misses", "redis_keyspace_misses_total", "Lookups that did not find their key."),
        ("evicted_keys", "redis_evicted_keys_total", "Keys evicted for the memory limit."),
        ("expired_keys", "redis_expired_keys_total", "Keys expired."),
        ("total_commands_processed", "redis_commands_processed_total", "Commands run."),
        ("total_connections_received", "redis_connections_received_total", "Connections accepted."),
    ];
    for (field, name, help) in counters {
        if let Some(v) = num(field) {
            s.counter(name, help, &[], v);
        }
    }
    for (key, value) in &fields {
        // cmdstat_get:calls=2,usec=15,usec_per_call=7.50,...
        if let Some(cmd) = key.strip_prefix("cmdstat_") {
            let stat = |k: &str| {
                value
                    .split(',')
                    .find_map(|kv| kv.split_once('=').filter(|(n, _)| *n == k))
                    .and_then(|(_, v)| v.parse::<f64>().ok())
            };
            if let (Some(calls), Some(usec)) = (stat("calls"), stat("usec")) {
                s.counter("redis_commands_total", "Calls per command.", &[("cmd", cmd)], calls);
                s.counter(
                    "redis_commands_duration_seconds_total",
                    "Time spent per command.",
                    &[("cmd", cmd)],
                    usec / 1_000_000.0,
                );
            }
        }
        // db0:keys=1,expires=0,avg_ttl=0
        if key.starts_with("db") && key[2..].chars().all(|c| c.is_ascii_digit()) && !key[2..].is_empty() {
            let stat = |k: &str| {
                value
                    .split(',')
                    .find_map(|kv| kv.split_once('=').filter(|(n, _)| *n == k))
                    .and_then(|(_, v)| v.parse::<f64>().ok())
            };
            if let Some(keys) = stat("keys") {
                s.gauge("redis_db_keys", "Keys per database.", &[("db", key)], keys);
            }
            if let Some(expires) = stat("expires") {
                s.gauge("redis_db_keys_expiring", "Keys with a TTL per database.", &[("db", key)], expires);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::samples;

    #[test]
    fn an_info_answer_becomes_the_exporters_series() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nuptime_in_seconds:42\r\n\
                    # Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\n# Stats\r\nkeyspace_hits:7\r\nkeyspace_misses:3\r\n\
                    # Replication\r\nrole:master\r\nconnected_slaves:0\r\n\
                    # Commandstats\r\ncmdstat_get:calls=10,usec=250,usec_per_call=25.00,rejected_calls=0,failed_calls=0\r\n\
                    # Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=100\r\n";
        let s = samples(info);
        let value = |name: &str, label: Option<(&str, &str)>| {
            s.0.iter()
                .find(|x| x.name == name && label.is_none_or(|(k, v)| x.labels.iter().any(|(a, b)| a == k && b == v)))
                .map(|x| x.value)
        };
        assert_eq!(value("redis_keyspace_hits_total", None), Some(7.0));
        assert_eq!(value("redis_keyspace_misses_total", None), Some(3.0));
        assert_eq!(value("redis_memory_used_bytes", None), Some(1_048_576.0));
        assert_eq!(value("redis_memory_max_bytes", None), Some(0.0));
        assert_eq!(value("redis_commands_total", Some(("cmd", "get"))), Some(10.0));
        assert_eq!(value("redis_commands_duration_seconds_total", Some(("cmd", "get"))), Some(0.00025));
        assert_eq!(value("redis_db_keys", Some(("db", "db0"))), Some(5.0));
        assert_eq!(value("redis_db_keys_expiring", Some(("db", "db0"))), Some(2.0));
        assert!(s.0.iter().filter(|x| x.kind == crate::metrics::Kind::Counter).all(|x| x.name.ends_with("_total")));
    }
}
