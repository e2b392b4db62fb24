//! The `redis` section: authentication required, a memory limit and an eviction policy, and
//! persistence as the manifest says.

use serde::Deserialize;

use super::{Item, Mode, Scalar, SectionReport, State};
use crate::Datastore;
use crate::redis::{RedisConfig, RedisConnection, Topology};

/// The manifest's `redis` section. A cluster's nodes are each checked, since each holds its own
/// configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// The server must refuse commands without credentials. Apply cannot turn this on (every
    /// client without the password would be locked out): a server that answers is a conflict.
    #[serde(default)]
    pub require_auth: bool,
    /// `maxmemory` (`1gb`, `512mb`, bytes); must not be 0.
    pub maxmemory: Option<Scalar>,
    /// `maxmemory-policy`: `noeviction`, `allkeys-lru`, `allkeys-lfu`, `allkeys-random`,
    /// `volatile-lru`, `volatile-lfu`, `volatile-random` or `volatile-ttl`.
    pub maxmemory_policy: Option<String>,
    /// AOF and RDB persistence.
    pub persistence: Option<Persistence>,
}

/// How Redis persists its data; a parameter left out is not compared.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// `appendonly`: whether the append-only file is on (`yes`/`no`, `true`/`false`).
    pub appendonly: Option<Scalar>,
    /// `appendfsync`: `always`, `everysec` or `no`.
    pub appendfsync: Option<String>,
    /// RDB snapshots, as `CONFIG GET save` shows them (`3600 1 300 100`); empty for none.
    pub save: Option<Scalar>,
}

const POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

impl Section {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(m) = &self.maxmemory {
            match parse_memory(&m.0) {
                Ok(0) => return Err("maxmemory must not be 0 (no limit); give a size such as 1gb".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("maxmemory: {e}")),
            }
        }
        if let Some(p) = &self.maxmemory_policy
            && !POLICIES.contains(&p.to_ascii_lowercase().as_str())
        {
            return Err(format!("maxmemory_policy {p:?} is not one of {}", POLICIES.join(", ")));
        }
        if let Some(p) = &self.persistence {
            if let Some(a) = &p.appendonly {
                yes_no(&a.0).map_err(|e| format!("persistence.appendonly: {e}"))?;
            }
            if let Some(f) = &p.appendfsync
                && !["always", "everysec", "no"].contains(&f.as_str())
            {
                return Err(format!("persistence.appendfsync {f:?} is not always, everysec or no"));
            }
            if let Some(save) = &p.save {
                let parts: Vec<&str> = save.0.split_whitespace().collect();
                if !parts.len().is_multiple_of(2) || parts.iter().any(|p| p.parse::<u64>().is_err()) {
                    return Err(format!("persistence.save {:?} is not pairs of seconds and changes", save.0));
                }
            }
        }
        Ok(())
    }

    /// The `CONFIG` parameters the manifest names, with their wanted values as Redis shows them.
    fn wanted(&self) -> Vec<(&'static str, String, String)> {
        let mut wanted = Vec::new();
        if let Some(m) = &self.maxmemory {
            wanted.push(("maxmemory", parse_memory(&m.0).unwrap_or(0).to_string(), m.0.clone()));
        }
        if let Some(p) = &self.maxmemory_policy {
            wanted.push(("maxmemory-policy", p.to_ascii_lowercase(), p.clone()));
        }
        if let Some(p) = &self.persistence {
            if let Some(a) = &p.appendonly {
                wanted.push(("appendonly", yes_no(&a.0).unwrap_or("no").to_owned(), a.0.clone()));
            }
            if let Some(f) = &p.appendfsync {
                wanted.push(("appendfsync", f.clone(), f.clone()));
            }
            if let Some(save) = &p.save {
                let normal = save.0.split_whitespace().collect::<Vec<_>>().join(" ");
                wanted.push(("save", normal, save.0.clone()));
            }
        }
        wanted
    }
}

fn yes_no(value: &str) -> Result<&'static str, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Ok("yes"),
        "no" | "false" | "off" => Ok("no"),
        other => Err(format!("{other:?} is not yes or no")),
    }
}

/// A size as redis.conf reads it: `1gb` is 1024^3 bytes, `1g` 10^9, a bare number bytes.
pub fn parse_memory(value: &str) -> Result<u64, String> {
    let text = value.trim().to_ascii_lowercase();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{value:?} is not a size such as 1gb"))?;
    let factor: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1_000_000,
        "mb" => 1024 * 1024,
        "g" => 1_000_000_000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(format!("{value:?}: unknown unit {unit:?}; use b, kb, mb or gb")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("{value:?} is too large"))
}

/// The servers to check: the standalone server, the Sentinel's current master, or every node
/// of a cluster (each holds its own configuration).
fn nodes(config: &RedisConfig) -> Vec<(String, RedisConfig)> {
    match &config.topology {
        Topology::Cluster { nodes } => nodes
            .iter()
            .map(|node| {
                let mut one = config.clone();
                one.topology = Topology::Standalone(node.clone());
                (node.to_string(), one)
            })
            .collect(),
        _ => vec![(String::new(), config.clone())],
    }
}

/// Reads the server, compares it with `section`, and in [`Mode::Apply`] converges it.
pub async fn run(config: &RedisConfig, section: &Section, mode: Mode) -> SectionReport {
    let mut report = SectionReport::new(Datastore::Redis, config.endpoint(), mode);
    let nodes = nodes(config);
    let results = futures::future::join_all(nodes.iter().map(|(label, c)| node(label, c, section, mode))).await;
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok((items, warnings)) => {
                report.items.extend(items);
                report.warnings.extend(warnings);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        report.error = Some(errors.join("; "));
    }
    report
}

async fn query(connection: &mut RedisConnection, command: &redis::Cmd) -> Result<redis::Value, redis::RedisError> {
    match connection {
        RedisConnection::Single(c) => command.query_async(c).await,
        RedisConnection::Cluster(c) => command.query_async(c).await,
    }
}

fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(t) | redis::Value::VerbatimString { text: t, .. } => Some(t.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// `CONFIG GET` answers name/value pairs in the server's order (a flat array in RESP2, a map in
/// RESP3), not in the order asked.
fn pairs(value: &redis::Value) -> Vec<(String, String)> {
    match value {
        redis::Value::Map(entries) => entries.iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect(),
        redis::Value::Array(items) => {
            items.chunks(2).filter_map(|c| Some((text(c.first()?)?, text(c.get(1)?)?))).collect()
        }
        _ => Vec::new(),
    }
}

/// Whether the default user may run commands without a password, from `ACL GETUSER default`.
fn default_user_open(value: &redis::Value) -> Option<bool> {
    let entries: Vec<(String, &redis::Value)> = match value {
        redis::Value::Map(entries) => entries.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        redis::Value::Array(items) => items.chunks(2).filter_map(|c| Some((text(c.first()?)?, c.get(1)?))).collect(),
        _ => return None,
    };
    let flags = entries.iter().find(|(k, _)| k == "flags").map(|(_, v)| *v)?;
    let flags: Vec<String> = match flags {
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().filter_map(text).collect(),
        _ => return None,
    };
    Some(flags.iter().any(|f| f == "on") && flags.iter().any(|f| f == "nopass"))
}

async fn node(
    label: &str,
    config: &RedisConfig,
    section: &Section,
    mode: Mode,
) -> Result<(Vec<Item>, Vec<String>), String> {
    let endpoint = config.endpoint();
    let prefix = if label.is_empty() { String::new() } else { format!("{label} ") };
    let mut connection = config.connect().await.map_err(|e| e.to_string())?;
    let failed = |what: &str, e: redis::RedisError| format!("{prefix}{what} on {endpoint}: {e}");
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    if section.require_auth {
        let reply = query(&mut connection, redis::cmd("ACL").arg("GETUSER").arg("default")).await;
        let name = format!("{prefix}authentication");
        items.push(match reply.as_ref().map(default_user_open) {
            Err(e) => Item::new("auth", name, State::Failed, format!("ACL GETUSER default failed: {e}")),
            Ok(Some(false)) => Item::ok("auth", name),
            Ok(Some(true)) => Item::new(
                "auth",
                name,
                State::Conflict,
                "the server runs commands without credentials (the default user is on with nopass); apply does not \
                 turn authentication on, since it would lock out every client without the password: set \
                 requirepass or ACL users in the server's configuration",
            ),
            Ok(None) => Item::new("auth", name, State::Failed, "cannot read the default user's flags"),
        });
    }
    let wanted = section.wanted();
    if wanted.is_empty() {
        return Ok((items, warnings));
    }
    let mut get = redis::cmd("CONFIG");
    get.arg("GET");
    for (name, _, _) in &wanted {
        get.arg(*name);
    }
    let reply = query(&mut connection, &get).await.map_err(|e| failed("CONFIG GET failed", e))?;
    let server = pairs(&reply);
    let mut changed = false;
    for (name, want, written) in &wanted {
        let item_name = format!("{prefix}{name}");
        let have = server.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let have_normal = have.as_deref().map(|h| match *name {
            "save" => h.split_whitespace().collect::<Vec<_>>().join(" "),
            _ => h.to_ascii_lowercase(),
        });
        if have_normal.as_deref() == Some(want.as_str()) {
            items.push(Item::ok("config", item_name));
            continue;
        }
        let shown = match (*name, have.as_deref()) {
            (_, None) => "not reported".to_owned(),
            ("maxmemory", Some("0")) => "0 (no limit)".to_owned(),
            ("save", Some("")) => "\"\" (no snapshots)".to_owned(),
            (_, Some(h)) => h.to_owned(),
        };
        let mut state = super::converge_state(mode, false);
        let mut detail = format!("server {shown}, manifest {written}");
        if *name == "maxmemory" {
            // A limit below what the server holds evicts keys (or refuses writes) at once.
            let used = query(&mut connection, redis::cmd("INFO").arg("memory")).await.ok().and_then(|info| {
                text(&info)?.lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse::<u64>().ok())
            });
            if let (Some(used), Ok(limit)) = (used, want.parse::<u64>())
                && used > limit
            {
                detail.push_str(&format!(
                    "; the server holds {used} bytes, more than the new limit: keys are evicted (or writes refused) at once"
                ));
            }
        }
        if mode.writes() {
            match query(&mut connection, redis::cmd("CONFIG").arg("SET").arg(*name).arg(want.as_str())).await {
                Ok(_) => changed = true,
                Err(e) => {
                    state = State::Failed;
                    detail = format!("{detail}; CONFIG SET failed: {e}");
                }
            }
        }
        items.push(Item::new("config", item_name, state, detail));
    }
    if changed && let Err(e) = query(&mut connection, redis::cmd("CONFIG").arg("REWRITE")).await {
        warnings.push(format!(
            "{prefix}CONFIG REWRITE failed ({e}): the changes hold until the server restarts; put them in its \
             configuration file"
        ));
    }
    Ok((items, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_redis_reads_them() {
        assert_eq!(parse_memory("1gb").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_memory("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_memory("100").unwrap(), 100);
        assert!(parse_memory("1tb").unwrap_err().contains("unknown unit"));
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn config_get_answers_in_either_protocol() {
        let b = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
        let resp2 = redis::Value::Array(vec![b("maxmemory-policy"), b("noeviction"), b("maxmemory"), b("0")]);
        assert_eq!(pairs(&resp2), [("maxmemory-policy".into(), "noeviction".into()), ("maxmemory".into(), "0".into())]);
        let resp3 = redis::Value::Map(vec![(b("save"), b("3600 1"))]);
        assert_eq!(pairs(&resp3), [("save".to_owned(), "3600 1".to_owned())]);
        let user = redis::Value::Array(vec![b("flags"), redis::Value::Array(vec![b("on"), b("nopass")])]);
        assert_eq!(default_user_open(&user), Some(true));
        let user = redis::Value::Array(vec![b("flags"), redis::Value::Array(vec![b("on")])]);
        assert_eq!(default_user_open(&user), Some(false));
    }
}
