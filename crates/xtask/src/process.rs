//! Small process helpers for the stack: start a server in its own process group, remember its pid,
//! stop exactly that group again, and probe ports.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `command` detached from this process, in a process group of its own, with stdout and
/// stderr appended to `log`. Returns its pid.
pub fn spawn_daemon(mut command: Command, log: &Path) -> Result<u32, String> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open log {}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    command.stdin(Stdio::null()).stdout(file).stderr(err).process_group(0);
    let child = command.spawn().map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    Ok(child.id())
}

/// Runs `command` to completion; an error carries its output.
pub fn run(command: &mut Command) -> Result<(), String> {
    let output =
        command.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{:?} failed ({}):\n{}{}",
        command.get_program(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Whether `pid` is a live process whose command line mentions `needle`. The check on the command
/// line keeps `down` from signalling an unrelated process that reused a recorded pid.
pub fn is_ours(pid: u32, needle: &str) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains(needle),
        Err(_) => false,
    }
}

pub fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn write_pid(path: &Path, pid: u32) -> Result<(), String> {
    fs::write(path, format!("{pid}\n")).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Sends SIGTERM to the process group `pid`, waits up to `grace`, then SIGKILLs what is left.
pub fn stop_group(pid: u32, needle: &str, grace: Duration) -> Result<(), String> {
    signal_group(pid, "TERM")?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_ours(pid, needle) && !group_alive(pid) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    signal_group(pid, "KILL")?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

fn signal_group(pid: u32, signal: &str) -> Result<(), String> {
    // `kill -SIG -PGID` signals the whole group, which includes children that wrappers such as
    // milvus-server or runuser start.
    let status = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pid}")])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    let _ = status; // The group may already be gone; that is the outcome we want.
    Ok(())
}

fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // Fields after the command name (which may contain spaces) start after the last ')':
        // state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(pgid) && fields.first() != Some(&"Z")
    })
}

pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Sends `request` to 127.0.0.1:`port` and returns what the server answered, if anything.
pub fn exchange(port: u16, request: &[u8]) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(request).ok()?;
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A random alphanumeric secret from the kernel's generator.
pub fn random_secret() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    Ok(bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
}

/// Writes `contents` to `path` readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())
}

pub fn is_root() -> bool {
    // The effective uid is the second number of the Uid: line.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// A port of 127.0.0.1 that nothing listens on now.
pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}
