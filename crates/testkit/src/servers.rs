//! Servers a test starts for itself on loopback ports, from the packages the stack installs:
//! stopped (and their files removed) when the guard is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{HOW_TO_START, closed_port, unique_name};

/// A child process killed on drop, with a scratch folder removed on drop.
#[derive(Debug)]
pub struct Daemon {
    /// A short name for messages (`postgres`, `redis`, ...); also the log file's name.
    pub name: String,
    child: Option<Child>,
    /// The folder the process works in, where its log is.
    pub dir: PathBuf,
    /// The file holding the process's stdout and stderr.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `command` with its output in `<dir>/<name>.log` and waits until `port` accepts.
    pub fn spawn(name: &str, mut command: Command, dir: &Path, port: u16) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}\n{HOW_TO_START}"));
        let mut daemon = Daemon { name: name.to_owned(), child: Some(child), dir: dir.to_owned(), log };
        daemon.wait_for_port(port, Duration::from_secs(30));
        daemon
    }

    /// Waits until 127.0.0.1:`port` accepts connections; panics with the log when the process
    /// exits first or `timeout` passes.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("{} exited ({status}) before listening on {port}:\n{}", self.name, self.log_text());
            }
            assert!(Instant::now() < deadline, "{} did not listen on {port}:\n{}", self.name, self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process has written so far (empty when the log cannot be read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, `None` once it has been killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A scratch folder for a test's servers, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    /// The folder, under the system's temporary directory.
    pub path: PathBuf,
}

impl Scratch {
    /// Creates a folder named by [`unique_name`] with `prefix`.
    pub fn new(prefix: &str) -> Scratch {
        let path = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&path).unwrap();
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Finds a program installed by the stack (Debian packages), or fails with how to get it.
pub fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is not installed (Debian package {package}); `cargo xtask stack up` installs it.\n{HOW_TO_START}")
}

/// A Prometheus Pushgateway (Debian's `prometheus-pushgateway`) of the test's own.
#[derive(Debug)]
pub struct Pushgateway {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    _daemon: Daemon,
    _scratch: Scratch,
}

impl Pushgateway {
    /// Starts it on a free port and waits until it listens.
    pub fn start() -> Pushgateway {
        let scratch = Scratch::new("pushgateway");
        let port = closed_port();
        let mut command = Command::new(program("prometheus-pushgateway", "prometheus-pushgateway"));
        command.arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let daemon = Daemon::spawn("pushgateway", command, &scratch.path, port);
        Pushgateway { url: format!("http://127.0.0.1:{port}"), port, _daemon: daemon, _scratch: scratch }
    }

    /// The value of the series `name` whose labels include every one of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = http_get(self.port, "/metrics");
        text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
    }
}

/// A plain HTTP/1.0 GET on loopback; the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// Runs `program` as `nobody` when the tests run as root: PostgreSQL and PgBouncer refuse root.
pub fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// Gives `path` (recursively) to the server user, when running as root.
pub fn give_to_server_user(path: &Path) {
    if is_root() {
        let status = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(path).status().unwrap();
        assert!(status.success(), "chown {}", path.display());
    }
}

fn run_checked(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Debian's PostgreSQL 15 (`postgresql-15`): its server and client tools are built with
/// OpenSSL, while the stack's PostgreSQL 18 (the PyPI wheel) has no SSL at all.
pub fn debian_postgres15_bin() -> PathBuf {
    let bin = PathBuf::from("/usr/lib/postgresql/15/bin");
    assert!(
        bin.join("postgres").exists() && bin.join("pg_dump").exists(),
        "Debian's postgresql-15 is not installed: TLS tests need its SSL-enabled server and tools.\n{HOW_TO_START}"
    );
    bin
}

/// A PostgreSQL server of the test's own, from `bin_dir` (the stack's PostgreSQL 18, or
/// Debian's 15), trusting connections from 127.0.0.1. With `tls`, it serves TLS only:
/// connections without it are rejected.
#[derive(Debug)]
pub struct TestPostgres {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// The folder of the server's programs (`postgres`, `pg_dump`, ...).
    pub bin_dir: PathBuf,
    daemon: Daemon,
    _scratch: Scratch,
}

impl TestPostgres {
    /// Creates a cluster (superuser `postgres`, UTF-8) in a scratch folder, starts it on a free
    /// port, with `tls` serving these certificate files, and waits until it accepts sessions.
    pub fn start(bin_dir: &Path, tls: Option<&crate::tls::ServerFiles>) -> TestPostgres {
        let scratch = Scratch::new("pg");
        let data = scratch.path.join("data");
        give_to_server_user(&scratch.path);
        let mut initdb = as_server_user(&bin_dir.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        ]);
        run_checked(initdb, "initdb");
        let port = closed_port();
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_owned(),
            format!("unix_socket_directories={}", scratch.path.display()),
            "fsync=off".to_owned(),
            "log_connections=on".to_owned(),
        ];
        if let Some(tls) = tls {
            std::fs::copy(&tls.cert, data.join("server.crt")).unwrap();
            std::fs::copy(&tls.key, data.join("server.key")).unwrap();
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
            give_to_server_user(&data);
            settings.extend(["ssl=on", "ssl_cert_file=server.crt", "ssl_key_file=server.key"].map(String::from));
        }
        let mut postgres = as_server_user(&bin_dir.join("postgres"));
        postgres.arg("-D").arg(&data).args(["-p", &port.to_string()]);
        for setting in settings {
            postgres.arg("-c").arg(setting);
        }
        let daemon = Daemon::spawn("postgres", postgres, &scratch.path, port);
        // The port opens before the server accepts sessions ("the database system is starting up").
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new(bin_dir.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "PostgreSQL did not become ready:\n{}", daemon.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        TestPostgres { port, bin_dir: bin_dir.to_owned(), daemon, _scratch: scratch }
    }

    /// A configuration for this server as its superuser.
    pub fn config(&self, host: &str) -> datastores::PostgresConfig {
        let mut config = datastores::PostgresConfig::new(host);
        config.port = self.port;
        config.connect_timeout = Duration::from_secs(10);
        config
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }
}

/// Options for a Redis server of the test's own.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// `requirepass` (and `masterauth`); `None`: no password.
    pub password: Option<String>,
    /// Serve TLS only, with these files; clients need no certificate.
    pub tls: Option<crate::tls::ServerFiles>,
    /// More `redis.conf` lines.
    pub extra: Vec<String>,
}

/// A Redis server (Debian's `redis-server`) of the test's own.
#[derive(Debug)]
pub struct TestRedis {
    /// The port it listens on, on 127.0.0.1 (the TLS port with TLS).
    pub port: u16,
    /// The server process, for tests that kill it.
    pub daemon: Daemon,
    scratch: Scratch,
}

impl TestRedis {
    /// Starts a server that saves nothing on a free port and waits until it listens.
    pub fn start(options: &RedisOptions) -> TestRedis {
        let scratch = Scratch::new("redis");
        let port = closed_port();
        let mut conf = vec![
            "bind 127.0.0.1".to_owned(),
            "save \"\"".to_owned(),
            "appendonly no".to_owned(),
            format!("dir {}", scratch.path.display()),
        ];
        match &options.tls {
            Some(tls) => conf.extend([
                "port 0".to_owned(),
                format!("tls-port {port}"),
                format!("tls-cert-file {}", tls.cert.display()),
                format!("tls-key-file {}", tls.key.display()),
                format!("tls-ca-cert-file {}", tls.ca.display()),
                "tls-auth-clients no".to_owned(),
                "tls-replication yes".to_owned(),
            ]),
            None => conf.push(format!("port {port}")),
        }
        if let Some(password) = &options.password {
            conf.push(format!("requirepass {password}"));
            conf.push(format!("masterauth {password}"));
        }
        conf.extend(options.extra.iter().cloned());
        std::fs::write(scratch.path.join("redis.conf"), conf.join("\n") + "\n").unwrap();
        let daemon = Self::spawn(&scratch.path, port);
        TestRedis { port, daemon, scratch }
    }

    fn spawn(dir: &Path, port: u16) -> Daemon {
        let mut command = Command::new(program("redis-server", "redis-server"));
        command.arg(dir.join("redis.conf"));
        Daemon::spawn("redis", command, dir, port)
    }

    /// Kills the server, as a crash would (unless `daemon.kill()` already did), and starts it
    /// again on the same port with the same configuration and folder: its data is gone (nothing
    /// is saved), a cluster node keeps its `nodes.conf` and rejoins its cluster.
    pub fn restart(&mut self) {
        self.daemon.kill();
        self.daemon = Self::spawn(&self.scratch.path, self.port);
    }

    /// Runs `redis-cli` against this server (the password, if any, through REDISCLI_AUTH).
    pub fn cli(&self, password: Option<&str>, args: &[&str]) -> String {
        redis_cli(self.port, password, args)
    }
}

/// Runs `redis-cli -p PORT ARGS` and returns its output.
pub fn redis_cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new(program("redis-cli", "redis-tools"));
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args);
    match password {
        Some(p) => command.env("REDISCLI_AUTH", p),
        None => command.env_remove("REDISCLI_AUTH"),
    };
    let output = command.output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// One master, one replica and a Sentinel watching them, all on loopback.
#[derive(Debug)]
pub struct TestSentinel {
    /// The master at start.
    pub master: TestRedis,
    /// Its replica.
    pub replica: TestRedis,
    /// The Sentinel's port, on 127.0.0.1.
    pub sentinel_port: u16,
    /// The monitored master's name, `mymaster`.
    pub name: String,
    /// The password of master and replica (the Sentinel has none).
    pub password: String,
    _sentinel: Daemon,
    _scratch: Scratch,
}

impl TestSentinel {
    /// Starts master, replica and Sentinel (down after 1 s, failover timeout 5 s) and waits until
    /// the replica has synced and the Sentinel sees it.
    pub fn start() -> TestSentinel {
        let password = unique_name("pw");
        let options = RedisOptions { password: Some(password.clone()), ..RedisOptions::default() };
        let master = TestRedis::start(&options);
        let replica = TestRedis::start(&RedisOptions {
            extra: vec![format!("replicaof 127.0.0.1 {}", master.port)],
            ..options.clone()
        });
        let scratch = Scratch::new("sentinel");
        let port = closed_port();
        let name = "mymaster".to_owned();
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {} 1\n\
             sentinel auth-pass {name} {password}\nsentinel down-after-milliseconds {name} 5000\n\
             sentinel failover-timeout {name} 5000\n",
            scratch.path.display(),
            master.port
        );
        let file = scratch.path.join("sentinel.conf");
        std::fs::write(&file, conf).unwrap();
        let mut command = Command::new(program("redis-sentinel", "redis-sentinel"));
        command.arg(&file);
        let sentinel = Daemon::spawn("sentinel", command, &scratch.path, port);
        let deadline = Instant::now() + Duration::from_secs(30);
        // The replica has synced, and the Sentinel is linked to it and has its INFO: until then
        // it is no candidate, and SENTINEL FAILOVER answers NOGOODREPLICA.
        let candidate = || {
            let out = redis_cli(port, None, &["sentinel", "replicas", &name]);
            let field = |key: &str| {
                let mut lines = out.lines().map(str::trim);
                lines.by_ref().find(|l| *l == key);
                lines.next().unwrap_or("").to_owned()
            };
            field("port") == replica.port.to_string()
                && field("flags") == "slave"
                && field("master-link-status") == "ok"
        };
        while !(replica.cli(Some(&password), &["info", "replication"]).contains("master_link_status:up") && candidate())
        {
            assert!(Instant::now() < deadline, "the replica did not sync or the Sentinel did not see it");
            std::thread::sleep(Duration::from_millis(100));
        }
        TestSentinel { master, replica, sentinel_port: port, name, password, _sentinel: sentinel, _scratch: scratch }
    }

    /// The port of the master the Sentinel names now.
    pub fn current_master_port(&self) -> u16 {
        let out = redis_cli(self.sentinel_port, None, &["sentinel", "get-master-addr-by-name", &self.name]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok()).unwrap_or(0)
    }
}

/// A Redis Cluster of three masters on loopback.
#[derive(Debug)]
pub struct TestRedisCluster {
    /// The three master nodes.
    pub nodes: Vec<TestRedis>,
    /// The password of every node.
    pub password: String,
}

impl TestRedisCluster {
    /// Starts three nodes, creates the cluster over all 16384 slots and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start() -> TestRedisCluster {
        let password = unique_name("pw");
        let nodes: Vec<TestRedis> = (0..3)
            .map(|_| {
                TestRedis::start(&RedisOptions {
                    password: Some(password.clone()),
                    extra: vec![
                        "cluster-enabled yes".into(),
                        "cluster-config-file nodes.conf".into(),
                        "cluster-node-timeout 2000".into(),
                    ],
                    ..RedisOptions::default()
                })
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.push("--cluster-yes");
        let out = redis_cli(nodes[0].port, Some(&password), &args);
        assert!(out.contains("[OK] All 16384 slots covered"), "cluster create: {out}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes.iter().all(|n| n.cli(Some(&password), &["cluster", "info"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        TestRedisCluster { nodes, password }
    }
}

/// PgBouncer (Debian's) in front of a PostgreSQL server, in `pool_mode`.
#[derive(Debug)]
pub struct TestPgBouncer {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    _daemon: Daemon,
    _scratch: Scratch,
}

impl TestPgBouncer {
    /// Pools connections to `upstream` for its user, whose password it reads from a userlist,
    /// with up to 4 server connections.
    pub fn start(upstream: &datastores::PostgresConfig, pool_mode: &str) -> TestPgBouncer {
        TestPgBouncer::start_with_pool_size(upstream, pool_mode, 4)
    }

    /// As [`TestPgBouncer::start`], with up to `pool_size` server connections.
    pub fn start_with_pool_size(
        upstream: &datastores::PostgresConfig,
        pool_mode: &str,
        pool_size: u32,
    ) -> TestPgBouncer {
        let scratch = Scratch::new("pgbouncer");
        let port = closed_port();
        let password = upstream.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
        let userlist = scratch.path.join("userlist.txt");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&userlist).unwrap();
            writeln!(file, "\"{}\" \"{}\"", upstream.user, password.replace('"', "\"\"")).unwrap();
        }
        let ini = format!(
            "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = plain\nauth_file = {}\npool_mode = {pool_mode}\n\
             max_client_conn = 200\ndefault_pool_size = {pool_size}\nignore_startup_parameters = extra_float_digits,options\n",
            upstream.host,
            upstream.port,
            userlist.display(),
        );
        let file = scratch.path.join("pgbouncer.ini");
        std::fs::write(&file, ini).unwrap();
        give_to_server_user(&scratch.path);
        let mut command = as_server_user(&program("pgbouncer", "pgbouncer"));
        command.arg(&file);
        let daemon = Daemon::spawn("pgbouncer", command, &scratch.path, port);
        TestPgBouncer { port, _daemon: daemon, _scratch: scratch }
    }
}

/// A Prometheus server (Debian's `prometheus`) of the test's own, scraping `targets`
/// (`host:port`) every 3 s, with a 3 s scrape timeout (give an exporter a shorter deadline).
#[derive(Debug)]
pub struct TestPrometheus {
    /// The port of its web API, on 127.0.0.1.
    pub port: u16,
    daemon: Daemon,
    _scratch: Scratch,
}

impl TestPrometheus {
    /// Starts it on a free port and waits (up to a minute) until it reports ready.
    pub fn start(targets: &[String]) -> TestPrometheus {
        let scratch = Scratch::new("prometheus");
        let port = closed_port();
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let config = scratch.path.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 3s\n  scrape_timeout: 3s\nscrape_configs:\n  - job_name: dbkit\n    \
                 static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .unwrap();
        let mut command = Command::new(program("prometheus", "prometheus"));
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", scratch.path.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let daemon = Daemon::spawn("prometheus", command, &scratch.path, port);
        // The port opens before the server is ready ("Service Unavailable").
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http_get(port, "/-/ready").contains("Ready") {
            assert!(Instant::now() < deadline, "Prometheus did not become ready:\n{}", daemon.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        TestPrometheus { port, daemon, _scratch: scratch }
    }

    /// The values of an instant PromQL query, each with its labels.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let body = http_get(self.port, &format!("/api/v1/query?query={encoded}"));
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let value = r["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Waits (up to a minute) until `promql` gives exactly one value that `accept` takes, and
    /// returns it; panics with the last answer otherwise.
    pub fn wait_for(&self, promql: &str, accept: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.query(promql);
            if let [(_, value)] = answer.as_slice()
                && accept(*value)
            {
                return *value;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} never gave the expected value: {answer:?}\n{}",
                self.daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
