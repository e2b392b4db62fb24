//! Checks of the Job image against what ships beside it, run by `cargo xtask image --smoke`:
//!
//! - [`containerfile`]: the `Containerfile`'s last stage, built by podman from the files of the
//!   local build, gives the same files and settings: every path with the same type, mode, owner,
//!   size, link target and bytes, and the same user, working folder, environment, entrypoint,
//!   platform, ports, volumes and labels (times, and so the digest, differ).
//!   The build stage (a Rust image from a registry) cannot run on a machine without one; the
//!   files it writes come from the same code (`cargo xtask image --rootfs`).
//! - [`manifests`]: every container of every manifest in `deploy/` names this image and its
//!   command runs in it: the program is on the image's `PATH` and takes the subcommand and flag names
//!   (the command with `--help` appended exits 0 and prints a usage).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::image::{container, output, podman};

/// Labels that may differ: the Containerfile cannot know the Debian package's version before
/// its build stage runs, the smoke test builds the dev profile, and buildah adds its version.
const UNCOMPARED_LABELS: &[&str] = &["dbkit.postgresql-client", "dbkit.cargo-profile", "io.buildah.version"];
/// The one line of the last stage that takes the build stage's files; the check copies them
/// from its build context instead.
const COPY_FROM_BUILD: &str = "COPY --from=build /rootfs/ /";
/// What the build stage runs to write those files.
const BUILD_COMMAND: &str = "cargo xtask image --rootfs /rootfs";

/// Builds the Containerfile's last stage from `rootfs` (the files of `image`) and compares.
pub(crate) fn containerfile(root: &Path, rootfs: &Path, image: &str) -> Result<(), String> {
    let path = root.join("Containerfile");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The build stage writes the files with the code the local build runs.
    if !text.contains(BUILD_COMMAND) {
        return Err(format!("{}'s build stage must run `{BUILD_COMMAND}`", path.display()));
    }
    let stage = last_stage(&text).ok_or_else(|| format!("{} has no FROM line", path.display()))?;
    if stage.lines().filter(|l| l.trim() == COPY_FROM_BUILD).count() != 1 {
        return Err(format!(
            "the last stage of {} must take the files with exactly one `{COPY_FROM_BUILD}` (the check replaces that line)",
            path.display()
        ));
    }
    let context = rootfs.parent().ok_or("the rootfs folder has no parent")?;
    let name = rootfs.file_name().ok_or("the rootfs folder has no name")?.to_string_lossy();
    let file = context.join("Containerfile.last-stage");
    let stage = stage.replace(COPY_FROM_BUILD, &format!("COPY {name}/ /"));
    fs::write(&file, stage).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let built = format!("{image}-containerfile");
    output(podman()?.args(["build", "--quiet", "--tag", &built, "--file"]).arg(&file).arg(context))
        .map_err(|e| format!("podman build of the Containerfile's last stage: {e}"))?;

    let compared = compare(image, &built);
    let _ = podman().map(|mut p| p.args(["rmi", "--force", &built]).output());
    let (count, bytes) = compared?;
    eprintln!(
        "smoke: the Containerfile's last stage gives the same files and settings ({count} paths, {:.1} MB)",
        bytes as f64 / 1e6
    );
    Ok(())
}

/// Compares the settings and then the files of two images; returns the number of paths and the
/// bytes compared.
fn compare(image: &str, built: &str) -> Result<(usize, u64), String> {
    let ours = config(image)?;
    let theirs = config(built)?;
    let keys: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .map(|k| format!("{k}: xtask {:?}, Containerfile {:?}", ours.get(k), theirs.get(k)))
        .collect();
    if !differences.is_empty() {
        return Err(format!(
            "the Containerfile's image is configured differently from {image}:\n  {}",
            differences.join("\n  ")
        ));
    }
    with_mounted(image, |a| with_mounted(built, |b| same_trees(a, b)))
}

/// The global `ARG`s (before the first `FROM`) and the last stage.
fn last_stage(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| l.trim_start().starts_with("FROM "))?;
    let last = lines.iter().rposition(|l| l.trim_start().starts_with("FROM "))?;
    let globals = lines[..first].iter().filter(|l| l.trim_start().starts_with("ARG "));
    Some(globals.chain(&lines[last..]).map(|l| format!("{l}\n")).collect())
}

/// What an image runs with: user, working folder, entrypoint, command, platform, ports,
/// volumes, stop signal, environment (sorted) and labels (without [`UNCOMPARED_LABELS`]).
fn config(image: &str) -> Result<BTreeMap<String, String>, String> {
    let format = "{{.Config.User}}\n{{.Config.WorkingDir}}\n{{json .Config.Entrypoint}}\n{{json .Config.Cmd}}\n\
                  {{.Architecture}}\n{{.Os}}\n{{json .Config.ExposedPorts}}\n{{json .Config.Volumes}}\n\
                  {{json .Config.StopSignal}}\n\
                  {{range .Config.Env}}env {{.}}\n{{end}}{{range $k, $v := .Config.Labels}}label {{$k}}={{$v}}\n{{end}}";
    let text = output(podman()?.args(["image", "inspect", "--format", format, image]))?;
    let mut lines = text.lines();
    let mut config = BTreeMap::new();
    for key in ["user", "workdir", "entrypoint", "cmd", "architecture", "os", "ports", "volumes", "stop signal"] {
        config.insert(key.to_owned(), lines.next().unwrap_or_default().to_owned());
    }
    for line in lines {
        if let Some(label) = line.strip_prefix("label ") {
            let (key, value) = label.split_once('=').unwrap_or((label, ""));
            if !UNCOMPARED_LABELS.contains(&key) {
                config.insert(format!("label {key}"), value.to_owned());
            }
        } else if let Some(env) = line.strip_prefix("env ") {
            let (key, value) = env.split_once('=').unwrap_or((env, ""));
            config.insert(format!("env {key}"), value.to_owned());
        }
    }
    Ok(config)
}

/// Runs `f` on the image's root folder, mounted by podman, and unmounts it.
fn with_mounted<T>(image: &str, f: impl FnOnce(&Path) -> Result<T, String>) -> Result<T, String> {
    let mount = output(podman()?.args(["image", "mount", image]))?;
    let result = f(Path::new(mount.trim()));
    let _ = podman().map(|mut p| p.args(["image", "unmount", image]).output());
    result
}

/// One path of an image: type, mode, owner, size and link target.
#[derive(Debug, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    size: u64,
    target: Option<PathBuf>,
}

fn entries(root: &Path) -> Result<BTreeMap<PathBuf, Entry>, String> {
    let mut found = BTreeMap::new();
    let mut queue = vec![PathBuf::new()];
    while let Some(relative) = queue.pop() {
        let path = root.join(&relative);
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let kind = if meta.is_dir() {
            "folder"
        } else if meta.file_type().is_symlink() {
            "link"
        } else if meta.is_file() {
            "file"
        } else {
            "special"
        };
        if meta.is_dir() {
            for child in fs::read_dir(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))? {
                queue.push(relative.join(child.map_err(|e| e.to_string())?.file_name()));
            }
        }
        let target =
            meta.file_type().is_symlink().then(|| fs::read_link(&path)).transpose().map_err(|e| e.to_string())?;
        let size = if meta.is_file() { meta.len() } else { 0 };
        found.insert(
            relative,
            Entry { kind, mode: meta.mode() & 0o7777, owner: (meta.uid(), meta.gid()), size, target },
        );
    }
    Ok(found)
}

/// Compares two root folders path by path and file by file; returns the number of paths and
/// the bytes compared.
fn same_trees(a: &Path, b: &Path) -> Result<(usize, u64), String> {
    let (ours, theirs) = (entries(a)?, entries(b)?);
    let mut differences = Vec::new();
    for (path, entry) in &ours {
        match theirs.get(path) {
            None => differences.push(format!("/{}: only in the xtask image", path.display())),
            Some(other) if other != entry => {
                differences.push(format!("/{}: xtask {entry:?}, Containerfile {other:?}", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in theirs.keys().filter(|p| !ours.contains_key(*p)) {
        differences.push(format!("/{}: only in the Containerfile's image", path.display()));
    }
    let mut bytes = 0;
    for (path, entry) in ours.iter().filter(|(_, e)| e.kind == "file") {
        if theirs.get(path) == Some(entry) {
            if !same_bytes(&a.join(path), &b.join(path))? {
                differences.push(format!("/{}: the contents differ", path.display()));
            }
            bytes += entry.size;
        }
    }
    if differences.is_empty() {
        Ok((ours.len(), bytes))
    } else {
        let shown = differences.len().min(20);
        Err(format!(
            "the Containerfile's image differs from the xtask image in {} paths:\n  {}",
            differences.len(),
            differences[..shown].join("\n  ")
        ))
    }
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool, String> {
    let open = |p: &Path| fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let (mut a, mut b) = (io::BufReader::new(open(a)?), io::BufReader::new(open(b)?));
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut a, &mut x).map_err(|e| e.to_string())?;
        let m = read_full(&mut b, &mut y).map_err(|e| e.to_string())?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

// ---- deploy/ ------------------------------------------------------------------------------------

/// A container's command in a manifest.
struct Command {
    place: String,
    argv: Vec<String>,
}

/// Runs every manifest container's command, with `--help` appended, in the image.
pub(crate) fn manifests(root: &Path, image: &str, name: &str) -> Result<(), String> {
    let commands = manifest_commands(&root.join("deploy"), name)?;
    for command in &commands {
        let text = output(container("none")?.arg(image).args(&command.argv).arg("--help"))
            .map_err(|e| format!("{}: `{}` does not run in the image: {e}", command.place, command.argv.join(" ")))?;
        if !text.contains("Usage:") {
            return Err(format!("{}: `{} --help` printed no usage:\n{text}", command.place, command.argv.join(" ")));
        }
    }
    eprintln!("smoke: the {} commands of deploy/'s manifests run in the image", commands.len());
    Ok(())
}

/// Every `command:` of the manifests in `dir`, which must be one-line flow sequences of strings
/// (the form the manifests use, readable without a YAML parser; a test of the bins crate checks
/// with a YAML parser that no container is missed), in containers whose image is `name`.
fn manifest_commands(dir: &Path, name: &str) -> Result<Vec<Command>, String> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut commands = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let shown = file.strip_prefix(dir.parent().unwrap_or(dir)).unwrap_or(&file).display().to_string();
        for (number, line) in text.lines().enumerate() {
            let place = format!("{shown}:{}", number + 1);
            let trimmed = line.trim_start().trim_start_matches("- ");
            if let Some(value) = trimmed.strip_prefix("image:") {
                let value = value.trim().trim_matches('"');
                if value != name {
                    return Err(format!(
                        "{place}: the image is {value:?}, not the one `cargo xtask image` builds ({name})"
                    ));
                }
            } else if let Some(value) = trimmed.strip_prefix("command:").or_else(|| trimmed.strip_prefix("args:")) {
                let argv = flow_sequence(value.trim()).ok_or_else(|| {
                    format!("{place}: write the command as a one-line sequence of quoted strings, [\"program\", \"arg\", ...]")
                })?;
                if trimmed.starts_with("args:") {
                    return Err(format!("{place}: put the arguments in `command:` (the image has no entrypoint)"));
                }
                commands.push(Command { place, argv });
            }
        }
    }
    if commands.is_empty() {
        return Err(format!("no container commands found in {}", dir.display()));
    }
    Ok(commands)
}

/// `["a", "b c"]` as strings; None for anything else (escapes included: the manifests need none).
fn flow_sequence(text: &str) -> Option<Vec<String>> {
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    let mut items = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let quoted = rest.strip_prefix('"')?;
        let end = quoted.find('"')?;
        let item = &quoted[..end];
        if item.contains('\\') {
            return None;
        }
        items.push(item.to_owned());
        rest = quoted[end + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(after) => after.trim_start(),
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    (!items.is_empty()).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_sequences_are_read_and_anything_else_refused() {
        assert_eq!(
            flow_sequence(r#"["pg-backup", "backup", "--tier", "daily"]"#).unwrap(),
            ["pg-backup", "backup", "--tier", "daily"]
        );
        assert_eq!(flow_sequence(r#"["a b"]"#).unwrap(), ["a b"]);
        for bad in ["", "[]", "pg-backup", r#"["a", b]"#, r#"["a" "b"]"#, r#"["a\"b"]"#, r#"["a""#] {
            assert!(flow_sequence(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_last_stage_keeps_the_global_args() {
        let text = "# c\nARG A=1\nFROM x AS build\nARG B\nRUN y\n\nFROM scratch AS jobs\nARG V=2\nCOPY a b\n";
        assert_eq!(last_stage(text).unwrap(), "ARG A=1\nFROM scratch AS jobs\nARG V=2\nCOPY a b\n");
    }

    #[test]
    fn the_repository_manifests_are_readable() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let name = format!("dbkit/jobs:{}", env!("CARGO_PKG_VERSION"));
        let commands = manifest_commands(&root.join("deploy"), &name).unwrap();
        assert!(commands.iter().any(|c| c.argv.starts_with(&["pg-backup".to_owned(), "backup".to_owned()])));
    }
}
