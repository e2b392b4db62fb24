//! Servers a test starts for itself on loopback ports, from the packages the stack installs:
//! stopped (and their files removed) when the guard is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{HOW_TO_START, closed_port, unique_name};

/// A child process killed on drop, with a scratch folder removed on drop.
#[derive(Debug)]
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    pub dir: PathBuf,
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

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

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
    pub path: PathBuf,
}

impl Scratch {
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
    pub url: String,
    pub port: u16,
    _daemon: Daemon,
    _scratch: Scratch,
}

impl Pushgateway {
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
