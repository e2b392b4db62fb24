//! `cargo xtask image`: one OCI image, `dbkit/jobs:<version>`, with every binary of `crates/bins`
//! and the PostgreSQL 18 client tools (built with OpenSSL) that pg-backup runs; and its smoke test.
//!
//! The image is written by this module, not by a container engine: a `FROM scratch` root of two
//! layers, each a tar with sorted entries, owner 0:0 and one fixed mtime (`SOURCE_DATE_EPOCH`,
//! else 0), compressed with `gzip -n`, and a config and manifest whose JSON is written here. The
//! same binaries and the same Debian packages therefore give the same manifest digest. Layers:
//! - base: the client tools from Debian's `postgresql-client-18`, the shared libraries that they
//!   and the binaries need (found from their ELF `NEEDED` entries, taken from the Debian packages
//!   of the same suite, glibc included), CA certificates, `/etc/passwd` with the user `dbkit`
//!   (65532), the packages' copyright files and `/var/lib/dpkg/status.d` entries for scanners;
//! - binaries: the dbkit binaries in `/usr/local/bin`, debug info stripped.
//!
//! Debian's stable release has no PostgreSQL 18; the suite [`DEBIAN_SUITE`] has. The packages are
//! resolved once (a private apt state under `$DBKIT_CACHE/image/debian`, nothing of the host's apt
//! changes), pinned in `packages.lock` beside the downloaded `.deb` files, and reused until
//! `--refresh-debian`: a warm build needs no network. Podman loads and runs the image (with
//! `runc`, through a `containers.conf` in the cache folder).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::stack::{self, Layout};
use crate::{image_checks, process};

/// The image's name; the tag is the workspace version.
const IMAGE_NAME: &str = "dbkit/jobs";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Debian suite the client tools and libraries come from: the first that packages
/// PostgreSQL 18 (trixie and trixie-backports do not).
const DEBIAN_SUITE: &str = "forky";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// The major version of the client tools: the stack's server's.
const PG_MAJOR: &str = "18";
/// The client tools copied from `postgresql-client-18`.
const PG_TOOLS: &[&str] = &["pg_dump", "pg_dumpall", "pg_restore", "psql", "pg_isready"];
/// The Debian packages to start from; their dependencies in section `libs` follow.
const DEBIAN_ROOTS: &[&str] = &["postgresql-client-18", "libc6", "libgcc-s1", "libssl3t64", "ca-certificates"];
/// The user the image runs as (distroless's `nonroot` id).
const USER_ID: u32 = 65532;
const USER_NAME: &str = "dbkit";
/// The Debian packages this command needs on the host: podman runs the image with runc (crun
/// fails on some cgroup layouts), skopeo copies it to a registry.
const HOST_PACKAGES: &[(&str, &str)] =
    &[("podman", "/usr/bin/podman"), ("runc", "/usr/sbin/runc"), ("skopeo", "/usr/bin/skopeo")];
const TRIPLET: &str = "x86_64-linux-gnu";
const LOADER: &str = "ld-linux-x86-64.so.2";

const USAGE: &str = "\
usage: cargo xtask image [--profile release|dev] [--output FILE] [--refresh-debian] [--smoke]
       cargo xtask image --rootfs DIR [--profile release|dev] [--refresh-debian]

  --profile P        release (default): `cargo build --release -p bins --bins`;
                     dev: the binaries of the test build (`cargo test --workspace --no-run`)
  --output FILE      where to write the OCI archive (default: <target>/<profile>/dbkit-jobs-<version>.oci.tar)
  --refresh-debian   resolve and download the Debian packages again instead of using packages.lock
  --smoke            then run the smoke test: each binary's --help, the client tools' versions,
                     pg-backup backups from inside the container (the stack's PostgreSQL, and a TLS
                     server), the command of every manifest in deploy/, and the Containerfile's last
                     stage built by podman from the same files and compared with this image
  --rootfs DIR       write the image's files into DIR (empty or missing) instead of an archive; needs
                     no container engine (the Containerfile's build stage runs this)";

/// What `cargo xtask image` was asked to do.
#[derive(Debug)]
pub struct Options {
    profile: String,
    output: Option<PathBuf>,
    refresh_debian: bool,
    smoke: bool,
    rootfs: Option<PathBuf>,
    help: bool,
}

pub fn parse_args(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        profile: "release".into(),
        output: None,
        refresh_debian: false,
        smoke: false,
        rootfs: None,
        help: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().map(|v| v.to_string()).ok_or_else(|| format!("{name} needs a value"));
        match *arg {
            "--profile" => options.profile = value("--profile")?,
            "--output" => options.output = Some(value("--output")?.into()),
            "--refresh-debian" => options.refresh_debian = true,
            "--smoke" => options.smoke = true,
            "--rootfs" => options.rootfs = Some(value("--rootfs")?.into()),
            "--help" | "-h" => options.help = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !matches!(options.profile.as_str(), "release" | "dev") {
        return Err(format!("--profile must be release or dev, not {:?}", options.profile));
    }
    if options.rootfs.is_some() && (options.smoke || options.output.is_some()) {
        return Err("--rootfs writes files, not an archive: it cannot be combined with --smoke or --output".into());
    }
    Ok(options)
}

pub fn run(layout: &Layout, options: &Options) -> Result<(), String> {
    if options.help {
        println!("{USAGE}");
        return Ok(());
    }
    if let Some(dir) = &options.rootfs {
        // No container engine is needed, but these tools are (a Debian build image has them).
        for tool in ["apt-get", "apt-cache", "dpkg-deb", "readelf", "strip", "sha256sum"] {
            if !which(tool) {
                return Err(format!(
                    "--rootfs needs {tool}, which is not on PATH (a Debian image with binutils has it)"
                ));
            }
        }
        let Assembled { mut layers, work, .. } = assemble(layout, options)?;
        let written = write_rootfs(&mut layers, dir);
        let _ = fs::remove_dir_all(&work);
        written?;
        println!("rootfs:  {}", dir.display());
        return Ok(());
    }
    let built = build(layout, options)?;
    if options.smoke {
        smoke(layout, &built)?;
    }
    Ok(())
}

/// Writes the layers' files into `dir`, which must be empty or missing, with the archive's modes.
fn write_rootfs(layers: &mut [(&str, Layer)], dir: &Path) -> Result<(), String> {
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} is not empty; --rootfs writes into an empty or missing folder", dir.display()));
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (_, layer) in layers.iter_mut() {
        layer.extract(dir)?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))
}

/// A built and loaded image.
struct Built {
    reference: String,
    /// The image's files, written for the smoke test's Containerfile check.
    rootfs: PathBuf,
    bin_dir: PathBuf,
    binaries: Vec<String>,
}

// ---- build --------------------------------------------------------------------------------------

/// The image's layers, before they are written.
struct Assembled {
    layers: Vec<(&'static str, Layer)>,
    pg_version: String,
    bin_dir: PathBuf,
    binaries: Vec<String>,
    /// The stripped binaries the layers read; the caller removes it once they are written.
    work: PathBuf,
}

/// Builds the binaries, fetches the Debian packages and lays out both layers.
fn assemble(layout: &Layout, options: &Options) -> Result<Assembled, String> {
    let started = Instant::now();
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!("the image is built for x86_64 hosts only, not {}", std::env::consts::ARCH));
    }
    let root = workspace_root();
    let binaries = bin_names(&root)?;
    eprintln!("image: building {} with the {} profile", binaries.join(", "), options.profile);
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(&root);
    if options.profile == "dev" {
        // The binaries `cargo test --workspace` builds for the tests (`cargo xtask test`): the
        // same command, so the same features and the same files. `cargo build -p bins` unifies
        // features differently and would build everything a second time. The environment is
        // the stack's, as there, in case a build script reads a variable of it.
        cargo.args(["test", "--quiet", "--workspace", "--no-run"]).envs(stack::env_vars(layout));
    } else {
        // --locked: the release binaries are built from the dependencies Cargo.lock pins.
        cargo.args(["build", "--quiet", "--locked", "-p", "bins", "--bins", "--profile", &options.profile]);
    }
    let status = cargo.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo failed to build the binaries ({status})"));
    }
    let bin_dir = target_dir(&root).join(if options.profile == "dev" { "debug" } else { &options.profile });
    let compiled = started.elapsed();

    let cache = layout.cache.join("image");
    let work = cache.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let debian = Debian::new(&cache.join("debian").join(DEBIAN_SUITE));
    let packages = debian.packages(options.refresh_debian)?;

    // The binaries, stripped of debug info (symbols stay, for backtraces).
    let mut bins_layer = Layer::default();
    bins_layer.dir("usr/local/bin", 0o755);
    let mut programs = Vec::new();
    for name in &binaries {
        let source = bin_dir.join(name);
        let stripped = work.join(name);
        process::run(Command::new("strip").arg("--strip-debug").arg("-o").arg(&stripped).arg(&source))
            .map_err(|e| format!("cannot strip {} (was it built?): {e}", source.display()))?;
        programs.push(stripped.clone());
        bins_layer.file(&format!("usr/local/bin/{name}"), 0o755, Content::Path(stripped));
    }
    let base_layer = base_layer(&packages, &programs)?;
    let pg_version = packages
        .iter()
        .find(|p| p.name == format!("postgresql-client-{PG_MAJOR}"))
        .map(|p| p.version.clone())
        .unwrap_or_default();
    eprintln!("image: layers assembled after {:.1?} (cargo {compiled:.1?})", started.elapsed());
    Ok(Assembled { layers: vec![("base", base_layer), ("binaries", bins_layer)], pg_version, bin_dir, binaries, work })
}

fn build(layout: &Layout, options: &Options) -> Result<Built, String> {
    let started = Instant::now();
    ensure_host_packages()?;
    let Assembled { mut layers, pg_version, bin_dir, binaries, work } = assemble(layout, options)?;
    let cache = layout.cache.join("image");
    let compiled = started.elapsed();
    // The smoke test builds the Containerfile's last stage from these files.
    let rootfs = cache.join(format!("containerfile-{}", options.profile)).join("rootfs");
    if options.smoke {
        let _ = fs::remove_dir_all(rootfs.parent().unwrap_or(&rootfs));
        write_rootfs(&mut layers, &rootfs)?;
    }

    let epoch = source_date_epoch()?;
    let blobs = cache.join("blobs");
    fs::create_dir_all(&blobs).map_err(|e| format!("cannot create {}: {e}", blobs.display()))?;
    let layers = layers
        .into_iter()
        .map(|(what, layer)| Ok((what, layer.write(&work.join(format!("{what}.tar")), epoch, &blobs)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let _ = fs::remove_dir_all(&work);
    prune_blobs(&blobs, &options.profile, layers.iter().map(|(_, l)| &l.diff_id))?;
    let config = image_config(&options.profile, &pg_version, epoch, &layers);
    let config_blob = Blob::of_bytes(config.into_bytes(), "application/vnd.oci.image.config.v1+json")?;
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{},\"layers\":[{}]}}",
        config_blob.descriptor(),
        layers.iter().map(|(_, l)| l.blob.descriptor()).collect::<Vec<_>>().join(",")
    );
    let manifest_blob = Blob::of_bytes(manifest.into_bytes(), "application/vnd.oci.image.manifest.v1+json")?;
    let reference = format!("{IMAGE_NAME}:{VERSION}");
    let index = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{}]}}",
        manifest_blob.descriptor_with(&format!(
            ",\"annotations\":{{\"org.opencontainers.image.ref.name\":{}}}",
            json(&reference)
        ))
    );

    let output = match &options.output {
        Some(path) => path.clone(),
        None => bin_dir.join(format!("dbkit-jobs-{VERSION}.oci.tar")),
    };
    let partial = output.with_extension("tar.partial");
    {
        let file = fs::File::create(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let mut tar = Tar::new(io::BufWriter::new(file), epoch);
        let fail = |e: io::Error| format!("cannot write {}: {e}", partial.display());
        tar.entry("oci-layout", 0o644, &Content::Bytes(b"{\"imageLayoutVersion\":\"1.0.0\"}".to_vec()))
            .map_err(fail)?;
        tar.entry("index.json", 0o644, &Content::Bytes(index.into_bytes())).map_err(fail)?;
        tar.entry("blobs/", 0o755, &Content::Dir).map_err(fail)?;
        tar.entry("blobs/sha256/", 0o755, &Content::Dir).map_err(fail)?;
        let mut blobs: Vec<&Blob> = vec![&config_blob, &manifest_blob];
        blobs.extend(layers.iter().map(|(_, l)| &l.blob));
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        blobs.dedup_by(|a, b| a.digest == b.digest);
        for blob in blobs {
            tar.entry(&format!("blobs/sha256/{}", blob.digest), 0o644, &blob.content).map_err(fail)?;
        }
        tar.finish().and_then(|mut w| w.flush()).map_err(fail)?;
    }
    fs::rename(&partial, &output).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    let digest = format!("sha256:{}", manifest_blob.digest);
    let written = started.elapsed();

    let loaded = load(&output, &reference)?;
    if loaded != digest {
        return Err(format!("podman loaded {reference} as {loaded}, but the archive's manifest is {digest}"));
    }
    let size = fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    println!("image:   localhost/{reference}");
    println!("digest:  {digest}");
    println!("archive: {} ({:.1} MB)", output.display(), size as f64 / 1e6);
    for (what, layer) in &layers {
        println!("layer:   {what} {:.1} MB compressed (sha256:{})", layer.blob.size as f64 / 1e6, layer.blob.digest);
    }
    eprintln!(
        "image: built in {:.1?} (cargo and layout {:.1?}, layers and archive {:.1?}, podman load {:.1?})",
        started.elapsed(),
        compiled,
        written - compiled,
        started.elapsed() - written
    );
    Ok(Built { reference: format!("localhost/{reference}"), rootfs, bin_dir, binaries })
}

/// The image's configuration: user 65532, PATH with the client tools, working folder /tmp
/// (the one writable place when the root filesystem is read-only), labels, and the layers.
fn image_config(profile: &str, pg_version: &str, epoch: u64, layers: &[(&str, WrittenLayer)]) -> String {
    let created = rfc3339(epoch);
    let labels = [
        ("org.opencontainers.image.title", "dbkit-jobs".to_owned()),
        ("org.opencontainers.image.description", "dbkit binaries and the PostgreSQL client tools".to_owned()),
        ("org.opencontainers.image.version", VERSION.to_owned()),
        ("org.opencontainers.image.licenses", "MIT OR Apache-2.0".to_owned()),
        ("dbkit.cargo-profile", profile.to_owned()),
        ("dbkit.postgresql-client", pg_version.to_owned()),
        ("dbkit.debian-suite", DEBIAN_SUITE.to_owned()),
    ];
    format!(
        "{{\"created\":{created},\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"User\":\"{USER_ID}:{USER_ID}\",\
         \"Env\":[{env}],\"WorkingDir\":\"/tmp\",\"Labels\":{{{labels}}}}},\"rootfs\":{{\"type\":\"layers\",\
         \"diff_ids\":[{diff_ids}]}},\"history\":[{history}]}}",
        created = json(&created),
        env = [
            format!("PATH=/usr/local/bin:/usr/lib/postgresql/{PG_MAJOR}/bin"),
            "HOME=/tmp".into(),
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into()
        ]
        .iter()
        .map(|v| json(v))
        .collect::<Vec<_>>()
        .join(","),
        labels = labels.iter().map(|(k, v)| format!("{}:{}", json(k), json(v))).collect::<Vec<_>>().join(","),
        diff_ids = layers.iter().map(|(_, l)| json(&format!("sha256:{}", l.diff_id))).collect::<Vec<_>>().join(","),
        history = layers
            .iter()
            .map(|(what, _)| format!(
                "{{\"created\":{},\"created_by\":{}}}",
                json(&created),
                json(&format!("cargo xtask image: {what}"))
            ))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Records which cached layers this profile's build used and deletes those that no profile's
/// latest build uses, so that the cache holds at most one image per profile.
fn prune_blobs<'a>(blobs: &Path, profile: &str, used: impl Iterator<Item = &'a String>) -> Result<(), String> {
    let list: String = used.map(|diff_id| format!("{diff_id}.tar.gz\n")).collect();
    fs::write(blobs.join(format!("{profile}.used")), list).map_err(|e| e.to_string())?;
    let mut keep = BTreeSet::new();
    for entry in fs::read_dir(blobs).map_err(|e| e.to_string())?.flatten() {
        if entry.path().extension().is_some_and(|x| x == "used") {
            keep.extend(fs::read_to_string(entry.path()).unwrap_or_default().lines().map(str::to_owned));
        }
    }
    for entry in fs::read_dir(blobs).map_err(|e| e.to_string())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar.gz") && !keep.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).map(Path::to_path_buf).unwrap_or_else(|| ".".into())
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// The `[[bin]]` names of `crates/bins/Cargo.toml`: every binary goes into the image.
fn bin_names(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join("crates/bins/Cargo.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(value) = line.strip_prefix("name").map(str::trim)
            && let Some(name) = value.strip_prefix('=').map(|v| v.trim().trim_matches('"'))
        {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err(format!("{} declares no [[bin]]", path.display()));
    }
    Ok(names)
}

fn source_date_epoch() -> Result<u64, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse().map_err(|_| format!("SOURCE_DATE_EPOCH is not a number: {value:?}")),
        Err(_) => Ok(0),
    }
}

/// `epoch` as `YYYY-MM-DDTHH:MM:SSZ` (days to civil date after Howard Hinnant's algorithm).
fn rfc3339(epoch: u64) -> String {
    let (days, secs) = ((epoch / 86400) as i64, epoch % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A JSON string literal.
fn json(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Installs podman, runc and skopeo from Debian when they are missing (root only).
pub(crate) fn ensure_host_packages() -> Result<(), String> {
    let missing: Vec<&str> =
        HOST_PACKAGES.iter().filter(|(_, program)| !Path::new(program).exists()).map(|(package, _)| *package).collect();
    for tool in ["strip", "readelf", "gzip", "sha256sum", "dpkg-deb", "apt-get"] {
        if !which(tool) {
            return Err(format!("{tool} is not installed (Debian packages binutils, gzip, coreutils, dpkg, apt)"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !process::is_root() {
        return Err(format!("the image needs these Debian packages: apt-get install {}", missing.join(" ")));
    }
    eprintln!("image: installing {} from Debian", missing.join(", "));
    process::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    process::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

// ---- Debian packages ----------------------------------------------------------------------------

/// A Debian package of the lock, downloaded and extracted.
#[derive(Clone, Debug)]
struct Package {
    name: String,
    version: String,
    /// Where its files are extracted.
    tree: PathBuf,
    /// Its control fields (`dpkg-deb -f`).
    control: String,
}

/// The packages of one suite: a private apt state, the `.deb` files, their lock and their
/// extracted trees, all under one folder of the cache.
struct Debian {
    dir: PathBuf,
}

impl Debian {
    fn new(dir: &Path) -> Debian {
        Debian { dir: dir.to_path_buf() }
    }

    fn lock_file(&self) -> PathBuf {
        self.dir.join("packages.lock")
    }

    fn debs(&self) -> PathBuf {
        self.dir.join("debs")
    }

    /// The packages of `packages.lock`, each checked against its SHA-256 and extracted once.
    /// Without a lock (or with `refresh`) they are resolved first; the pinned versions of a lock
    /// (one copied from another machine, say) are downloaded when their files are missing.
    /// Files and trees of packages no longer in the lock are removed.
    fn packages(&self, refresh: bool) -> Result<Vec<Package>, String> {
        let lock = self.lock_file();
        if refresh || !lock.exists() {
            self.resolve()?;
        }
        let text = fs::read_to_string(&lock).map_err(|e| format!("cannot read {}: {e}", lock.display()))?;
        let mut pinned = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, version, architecture, sha256] = fields[..] else {
                return Err(format!("{}: bad line {line:?}; delete the file to resolve again", lock.display()));
            };
            pinned.push((name, version, architecture, sha256));
        }
        let missing: Vec<String> = pinned
            .iter()
            .filter(|(name, version, architecture, _)| !self.deb_path(name, version, architecture).exists())
            .map(|(name, version, _, _)| format!("{name}={version}"))
            .collect();
        if !missing.is_empty() {
            self.download(&missing)?;
        }
        let packages = pinned
            .iter()
            .map(|(name, version, architecture, sha256)| self.extract(name, version, architecture, sha256))
            .collect::<Result<Vec<_>, _>>()?;
        let debs: BTreeSet<PathBuf> = pinned.iter().map(|(n, v, a, _)| self.deb_path(n, v, a)).collect();
        let trees: BTreeSet<&Path> = packages.iter().map(|p| p.tree.as_path()).collect();
        for (dir, keep) in
            [(self.debs(), &debs.iter().map(PathBuf::as_path).collect()), (self.dir.join("tree"), &trees)]
        {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if !keep.contains(entry.path().as_path()) {
                    let _ = fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
                }
            }
        }
        Ok(packages)
    }

    /// Downloads `name=version` packages into the `.deb` folder.
    fn download(&self, wanted: &[String]) -> Result<(), String> {
        let debs = self.debs();
        fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
        if !self.dir.join("apt/lists").read_dir().is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_file()))) {
            process::run(self.apt("apt-get")?.args(["update", "-qq"]))?;
        }
        eprintln!("image: downloading {} Debian packages from {DEBIAN_SUITE}", wanted.len());
        process::run(self.apt("apt-get")?.current_dir(&debs).arg("download").arg("-qq").args(wanted)).map_err(|e| {
            format!(
                "{e}\nThe mirror may no longer have a pinned version: `cargo xtask image --refresh-debian` resolves \
                 the current ones (the image's digest changes with them)"
            )
        })
    }

    fn deb_path(&self, name: &str, version: &str, architecture: &str) -> PathBuf {
        // apt-get download's file name: the epoch's colon is escaped.
        self.debs().join(format!("{name}_{}_{architecture}.deb", version.replace(':', "%3a")))
    }

    fn extract(&self, name: &str, version: &str, architecture: &str, sha256: &str) -> Result<Package, String> {
        let deb = self.deb_path(name, version, architecture);
        let tree = self.dir.join("tree").join(format!("{name}_{}", version.replace(':', "%3a")));
        let marker = tree.join(".extracted");
        if !marker.exists() {
            let actual = sha256_file(&deb)
                .map_err(|e| format!("{e}; run `cargo xtask image --refresh-debian` to download the packages again"))?;
            if actual != sha256 {
                return Err(format!(
                    "{} has SHA-256 {actual}, the lock says {sha256}; run `cargo xtask image --refresh-debian`",
                    deb.display()
                ));
            }
            let _ = fs::remove_dir_all(&tree);
            fs::create_dir_all(&tree).map_err(|e| format!("cannot create {}: {e}", tree.display()))?;
            process::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
            let control = output(Command::new("dpkg-deb").arg("-f").arg(&deb))?;
            fs::write(tree.join(".control"), control).map_err(|e| e.to_string())?;
            fs::write(&marker, sha256).map_err(|e| e.to_string())?;
        } else if fs::read_to_string(&marker).map_err(|e| e.to_string())?.trim() != sha256 {
            let _ = fs::remove_file(&marker);
            return self.extract(name, version, architecture, sha256);
        }
        let control = fs::read_to_string(tree.join(".control")).map_err(|e| e.to_string())?;
        Ok(Package { name: name.into(), version: version.into(), tree, control })
    }

    /// apt with a configuration of its own: its lists and downloads stay in this folder, and
    /// nothing of the host's apt state is read or changed.
    fn apt(&self, program: &str) -> Result<Command, String> {
        let apt = self.dir.join("apt");
        for dir in ["etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d", "lists/partial"] {
            fs::create_dir_all(apt.join(dir)).map_err(|e| format!("cannot create {}: {e}", apt.display()))?;
        }
        fs::create_dir_all(apt.join("cache/archives/partial")).map_err(|e| e.to_string())?;
        fs::write(
            apt.join("etc/apt/sources.list"),
            format!(
                "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {DEBIAN_MIRROR} {DEBIAN_SUITE} main\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        fs::write(apt.join("status"), "").map_err(|e| e.to_string())?;
        let d = apt.display();
        // Mirrors may serve a suite whose Release file's Valid-Until has passed; the signature
        // is still checked.
        let conf = format!(
            "Dir::Etc \"{d}/etc/apt\";\nDir::State \"{d}\";\nDir::State::lists \"{d}/lists\";\n\
             Dir::State::status \"{d}/status\";\nDir::Cache \"{d}/cache\";\nAPT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\nAcquire::Languages \"none\";\nAcquire::Check-Valid-Until \"false\";\n"
        );
        let conf_path = apt.join("apt.conf");
        fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut command = Command::new(program);
        command.env("APT_CONFIG", conf_path).env("DEBIAN_FRONTEND", "noninteractive");
        Ok(command)
    }

    /// Resolves [`DEBIAN_ROOTS`] and their library dependencies in the suite and writes the lock.
    fn resolve(&self) -> Result<(), String> {
        eprintln!("image: resolving Debian {DEBIAN_SUITE} packages ({DEBIAN_MIRROR})");
        process::run(self.apt("apt-get")?.args(["update", "-qq"]))?;
        let mut chosen: BTreeMap<String, Stanza> = BTreeMap::new();
        let mut seen: BTreeSet<String> = DEBIAN_ROOTS.iter().map(|s| s.to_string()).collect();
        let mut queue: Vec<String> = seen.iter().cloned().collect();
        while !queue.is_empty() {
            let text = output(self.apt("apt-cache")?.args(["show", "--no-all-versions"]).args(&queue))?;
            queue.clear();
            for stanza in text.split("\n\n").filter_map(Stanza::parse) {
                // Only libraries are followed: the client tools' wrapper scripts (Perl) are not
                // needed to run them.
                if !DEBIAN_ROOTS.contains(&stanza.name.as_str()) && !stanza.section.ends_with("libs") {
                    continue;
                }
                for dep in &stanza.depends {
                    if seen.insert(dep.clone()) {
                        queue.push(dep.clone());
                    }
                }
                chosen.insert(stanza.name.clone(), stanza);
            }
        }
        let mut lock = format!(
            "# The Debian {DEBIAN_SUITE} packages of the dbkit/jobs image: name version architecture sha256.\n\
             # `cargo xtask image --refresh-debian` resolves them again; copy this file to build the same image elsewhere.\n"
        );
        for stanza in chosen.values() {
            lock.push_str(&format!("{} {} {} {}\n", stanza.name, stanza.version, stanza.architecture, stanza.sha256));
        }
        fs::write(self.lock_file(), lock).map_err(|e| e.to_string())
    }
}

/// The fields of an `apt-cache show` stanza that the resolution needs.
struct Stanza {
    name: String,
    version: String,
    architecture: String,
    section: String,
    sha256: String,
    /// Depends and Pre-Depends, the first of each set of alternatives, without versions.
    depends: Vec<String>,
}

impl Stanza {
    fn parse(text: &str) -> Option<Stanza> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
                .map(|v| v.trim().to_owned())
        };
        let mut depends = Vec::new();
        for key in ["Pre-Depends", "Depends"] {
            for group in field(key).unwrap_or_default().split(',') {
                let first = group.split('|').next().unwrap_or("").trim();
                let name = first.split([' ', '(', ':']).next().unwrap_or("").trim();
                if !name.is_empty() {
                    depends.push(name.to_owned());
                }
            }
        }
        Some(Stanza {
            name: field("Package")?,
            version: field("Version")?,
            architecture: field("Architecture")?,
            section: field("Section").unwrap_or_default(),
            sha256: field("SHA256")?,
            depends,
        })
    }
}

pub(crate) fn output(command: &mut Command) -> Result<String, String> {
    let out =
        command.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            command.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let text = output(Command::new("sha256sum").arg("--").arg(path))?;
    text.split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| format!("sha256sum printed nothing for {}", path.display()))
}

// ---- the base layer -----------------------------------------------------------------------------

/// Follows symbolic links inside `root` (an extracted package), as the image will.
fn resolve_in(root: &Path, relative: &str) -> Option<PathBuf> {
    let mut path = root.join(relative);
    for _ in 0..16 {
        let meta = fs::symlink_metadata(&path).ok()?;
        if !meta.file_type().is_symlink() {
            return Some(path);
        }
        let target = fs::read_link(&path).ok()?;
        path =
            if target.is_absolute() { root.join(target.strip_prefix("/").ok()?) } else { path.parent()?.join(target) };
    }
    None
}

/// The shared libraries (`NEEDED`) of an ELF file.
fn needed(path: &Path) -> Result<Vec<String>, String> {
    let text = output(Command::new("readelf").args(["--dynamic", "--wide"]).arg(path))?;
    Ok(text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split_once('[').and_then(|(_, rest)| rest.split_once(']')).map(|(lib, _)| lib.to_owned()))
        .collect())
}

fn base_layer(packages: &[Package], programs: &[PathBuf]) -> Result<Layer, String> {
    let mut layer = Layer::default();
    let mut used: BTreeSet<usize> = BTreeSet::new();
    let client = format!("postgresql-client-{PG_MAJOR}");
    let (client_index, client_pkg) = packages
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == client)
        .ok_or_else(|| format!("{client} is not in the package lock; run with --refresh-debian"))?;
    used.insert(client_index);

    // The client tools, and every program whose libraries must be found.
    let mut elves: Vec<PathBuf> = programs.to_vec();
    for tool in PG_TOOLS {
        let path = format!("usr/lib/postgresql/{PG_MAJOR}/bin/{tool}");
        let file = resolve_in(&client_pkg.tree, &path).ok_or_else(|| format!("{client} has no {path}"))?;
        layer.file(&path, 0o755, Content::Path(file.clone()));
        elves.push(file);
    }

    // Where each package's shared libraries are, by file name.
    let mut libraries: BTreeMap<String, (usize, PathBuf)> = BTreeMap::new();
    for (index, package) in packages.iter().enumerate() {
        for dir in [format!("usr/lib/{TRIPLET}"), format!("lib/{TRIPLET}"), "usr/lib".into(), "lib".into()] {
            let Ok(entries) = fs::read_dir(package.tree.join(&dir)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains(".so") {
                    libraries.entry(name.clone()).or_insert((index, PathBuf::from(format!("{dir}/{name}"))));
                }
            }
        }
    }
    let mut queue = elves;
    let mut placed: BTreeSet<String> = BTreeSet::new();
    while let Some(elf) = queue.pop() {
        for soname in needed(&elf)? {
            if !placed.insert(soname.clone()) {
                continue;
            }
            let (index, relative) = libraries.get(&soname).ok_or_else(|| {
                format!(
                    "{} needs {soname}, which none of the Debian packages provides: add its package to DEBIAN_ROOTS in \
                     crates/xtask/src/image.rs",
                    elf.display()
                )
            })?;
            let file = resolve_in(&packages[*index].tree, &relative.to_string_lossy())
                .ok_or_else(|| format!("{} of {} is a dangling link", relative.display(), packages[*index].name))?;
            used.insert(*index);
            // The loader must stay executable: the kernel runs it.
            let executable = fs::metadata(&file).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
            let mode = if executable { 0o755 } else { 0o644 };
            layer.file(&format!("usr/lib/{TRIPLET}/{soname}"), mode, Content::Path(file.clone()));
            queue.push(file);
        }
    }
    if !placed.contains(LOADER) {
        return Err(format!("no program needs {LOADER}: is libc6 in the lock?"));
    }
    layer.symlink("lib", "usr/lib");
    layer.symlink("lib64", "usr/lib64");
    layer.symlink(&format!("usr/lib64/{LOADER}"), &format!("../lib/{TRIPLET}/{LOADER}"));

    // CA certificates: the bundle that update-ca-certificates would write, from the package.
    let (ca_index, ca) = packages
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == "ca-certificates")
        .ok_or("ca-certificates is not in the package lock; run with --refresh-debian")?;
    used.insert(ca_index);
    let mozilla = ca.tree.join("usr/share/ca-certificates/mozilla");
    let mut certs: Vec<PathBuf> = fs::read_dir(&mozilla)
        .map_err(|e| format!("cannot read {}: {e}", mozilla.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    certs.sort();
    let mut bundle = Vec::new();
    for cert in &certs {
        let mut pem = fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        bundle.extend(pem);
    }
    layer.file("etc/ssl/certs/ca-certificates.crt", 0o644, Content::Bytes(bundle));
    layer.symlink("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt");
    layer.symlink("usr/lib/ssl/certs", "/etc/ssl/certs");

    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\n{USER_NAME}:x:{USER_ID}:{USER_ID}:{USER_NAME}:/tmp:/sbin/nologin\n"
    );
    layer.file("etc/passwd", 0o644, Content::Bytes(passwd.into_bytes()));
    layer.file("etc/group", 0o644, Content::Bytes(format!("root:x:0:\n{USER_NAME}:x:{USER_ID}:\n").into_bytes()));
    layer.file("etc/nsswitch.conf", 0o644, Content::Bytes(b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec()));
    layer.dir("tmp", 0o1777);

    // What a scanner needs to find the Debian packages, and their licences.
    for index in used {
        let package = &packages[index];
        layer.file(
            &format!("var/lib/dpkg/status.d/{}", package.name),
            0o644,
            Content::Bytes(package.control.clone().into_bytes()),
        );
        if let Some(copyright) = resolve_in(&package.tree, &format!("usr/share/doc/{}/copyright", package.name)) {
            layer.file(&format!("usr/share/doc/{}/copyright", package.name), 0o644, Content::Path(copyright));
        }
    }
    Ok(layer)
}

// ---- layers, blobs and tar ----------------------------------------------------------------------

/// Where an entry's bytes come from.
enum Content {
    Dir,
    Path(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
}

/// The entries of a layer, by path; missing parent folders are added when it is written.
#[derive(Default)]
struct Layer {
    entries: BTreeMap<String, (u32, Content)>,
}

/// A written layer: its uncompressed digest (the config's `diff_id`) and the compressed blob.
struct WrittenLayer {
    diff_id: String,
    blob: Blob,
}

impl Layer {
    fn dir(&mut self, path: &str, mode: u32) {
        self.entries.insert(format!("{path}/"), (mode, Content::Dir));
    }

    fn file(&mut self, path: &str, mode: u32, content: Content) {
        self.entries.insert(path.to_owned(), (mode, content));
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.entries.insert(path.to_owned(), (0o777, Content::Symlink(target.to_owned())));
    }

    /// Adds the folders that hold the entries, as the tar needs them.
    fn add_parents(&mut self) {
        let paths: Vec<String> = self.entries.keys().cloned().collect();
        for entry in paths {
            let mut parent = Path::new(entry.trim_end_matches('/')).parent();
            while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
                self.entries.entry(format!("{}/", dir.display())).or_insert((0o755, Content::Dir));
                parent = dir.parent();
            }
        }
    }

    /// Writes the entries as files under `root`, with the modes the tar gives them. Folders are
    /// created first and their modes set last, so that a read-only folder can still be filled.
    fn extract(&mut self, root: &Path) -> Result<(), String> {
        self.add_parents();
        let fail = |path: &Path, e: io::Error| format!("cannot write {}: {e}", path.display());
        let mut folders = Vec::new();
        for (name, (mode, content)) in &self.entries {
            let path = root.join(name.trim_end_matches('/'));
            match content {
                Content::Dir => {
                    fs::create_dir_all(&path).map_err(|e| fail(&path, e))?;
                    folders.push((path, *mode));
                }
                Content::Symlink(target) => {
                    let _ = fs::remove_file(&path);
                    std::os::unix::fs::symlink(target, &path).map_err(|e| fail(&path, e))?;
                }
                Content::Bytes(bytes) => {
                    fs::write(&path, bytes).map_err(|e| fail(&path, e))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).map_err(|e| fail(&path, e))?;
                }
                Content::Path(file) => {
                    let _ = fs::remove_file(&path);
                    fs::copy(file, &path).map_err(|e| fail(&path, e))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).map_err(|e| fail(&path, e))?;
                }
            }
        }
        for (path, mode) in folders.into_iter().rev() {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(|e| fail(&path, e))?;
        }
        Ok(())
    }

    /// Writes the layer as a tar to `path`, then its gzip'd blob into `blobs` (kept by the
    /// tar's digest, so an unchanged layer is not compressed again).
    fn write(mut self, path: &Path, epoch: u64, blobs: &Path) -> Result<WrittenLayer, String> {
        self.add_parents();
        {
            let file = fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let mut tar = Tar::new(io::BufWriter::new(file), epoch);
            for (name, (mode, content)) in &self.entries {
                tar.entry(name, *mode, content)
                    .map_err(|e| format!("cannot write {name} into {}: {e}", path.display()))?;
            }
            tar.finish().and_then(|mut w| w.flush()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let diff_id = sha256_file(path)?;
        let gz = blobs.join(format!("{diff_id}.tar.gz"));
        if !gz.exists() {
            let partial = blobs.join(format!("{diff_id}.tar.gz.partial"));
            let out = fs::File::create(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
            let input = fs::File::open(path).map_err(|e| e.to_string())?;
            // -n: no file name or time in the header, so the same tar gives the same bytes.
            let status = Command::new("gzip")
                .args(["-n", "-6", "-c"])
                .stdin(input)
                .stdout(out)
                .status()
                .map_err(|e| format!("cannot run gzip: {e}"))?;
            if !status.success() {
                return Err(format!("gzip failed ({status})"));
            }
            fs::rename(&partial, &gz).map_err(|e| e.to_string())?;
        }
        let _ = fs::remove_file(path);
        let blob = Blob::of_file(&gz, "application/vnd.oci.image.layer.v1.tar+gzip")?;
        Ok(WrittenLayer { diff_id, blob })
    }
}

/// A content-addressed blob of the OCI layout.
struct Blob {
    digest: String,
    size: u64,
    media_type: &'static str,
    content: Content,
}

impl Blob {
    fn of_bytes(bytes: Vec<u8>, media_type: &'static str) -> Result<Blob, String> {
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run sha256sum: {e}"))?;
        child.stdin.take().ok_or("no stdin")?.write_all(&bytes).map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let digest = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned();
        Ok(Blob { digest, size: bytes.len() as u64, media_type, content: Content::Bytes(bytes) })
    }

    fn of_file(path: &Path, media_type: &'static str) -> Result<Blob, String> {
        let size = fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
        Ok(Blob { digest: sha256_file(path)?, size, media_type, content: Content::Path(path.to_path_buf()) })
    }

    fn descriptor(&self) -> String {
        self.descriptor_with("")
    }

    fn descriptor_with(&self, extra: &str) -> String {
        format!(
            "{{\"mediaType\":{},\"digest\":\"sha256:{}\",\"size\":{}{extra}}}",
            json(self.media_type),
            self.digest,
            self.size
        )
    }
}

/// A ustar writer whose output depends only on the entries: owner 0:0, one mtime, no user or
/// group names, no extended headers.
struct Tar<W: Write> {
    out: W,
    mtime: u64,
}

impl<W: Write> Tar<W> {
    fn new(out: W, mtime: u64) -> Tar<W> {
        Tar { out, mtime }
    }

    fn entry(&mut self, path: &str, mode: u32, content: &Content) -> io::Result<()> {
        match content {
            Content::Dir => self.header(path, b'5', mode, 0, ""),
            Content::Symlink(target) => self.header(path, b'2', mode, 0, target),
            Content::Bytes(bytes) => {
                self.header(path, b'0', mode, bytes.len() as u64, "")?;
                self.out.write_all(bytes)?;
                self.pad(bytes.len() as u64)
            }
            Content::Path(file) => {
                let mut input = fs::File::open(file)?;
                let size = input.metadata()?.len();
                self.header(path, b'0', mode, size, "")?;
                let copied = io::copy(&mut (&mut input).take(size), &mut self.out)?;
                if copied != size {
                    return Err(io::Error::other(format!("{} shrank while it was read", file.display())));
                }
                self.pad(size)
            }
        }
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (512 - size % 512) % 512;
        self.out.write_all(&vec![0u8; rest as usize])
    }

    fn header(&mut self, path: &str, kind: u8, mode: u32, size: u64, link: &str) -> io::Result<()> {
        let too_long = || io::Error::other(format!("path too long for a tar header: {path}"));
        let (prefix, name) = if path.len() <= 100 {
            ("", path)
        } else {
            // ustar splits a long path at a slash: up to 155 bytes of prefix, 100 of name.
            let split = path[..path.len().min(156)].rfind('/').ok_or_else(too_long)?;
            (&path[..split], &path[split + 1..])
        };
        if name.len() > 100 || prefix.len() > 155 || link.len() > 100 {
            return Err(too_long());
        }
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
        put(&mut h, 0, name.as_bytes());
        put(&mut h, 100, format!("{:07o}\0", mode & 0o7777).as_bytes());
        put(&mut h, 108, b"0000000\0");
        put(&mut h, 116, b"0000000\0");
        put(&mut h, 124, format!("{size:011o}\0").as_bytes());
        put(&mut h, 136, format!("{:011o}\0", self.mtime).as_bytes());
        put(&mut h, 148, b"        ");
        h[156] = kind;
        put(&mut h, 157, link.as_bytes());
        put(&mut h, 257, b"ustar\0");
        put(&mut h, 263, b"00");
        put(&mut h, 329, b"0000000\0");
        put(&mut h, 337, b"0000000\0");
        put(&mut h, 345, prefix.as_bytes());
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        self.out.write_all(&h)
    }

    fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        Ok(self.out)
    }
}

// ---- podman -------------------------------------------------------------------------------------

/// podman with the containers.conf this host needs: runc, and open-file and process limits
/// within what the sandbox allows.
pub(crate) fn podman() -> Result<Command, String> {
    let layout = Layout::from_env();
    let conf = layout.cache.join("image").join("containers.conf");
    let text =
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\n[engine]\nruntime = \"runc\"\n";
    if fs::read_to_string(&conf).ok().as_deref() != Some(text) {
        fs::create_dir_all(conf.parent().ok_or("no parent")?).map_err(|e| e.to_string())?;
        fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    }
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", conf);
    Ok(command)
}

/// Loads the archive into the local containers-storage as `localhost/<reference>` and returns
/// the digest podman reports. The image the name pointed to before is removed when nothing else
/// names it.
fn load(archive: &Path, reference: &str) -> Result<String, String> {
    let name = format!("localhost/{reference}");
    let inspect = |name: &str| -> Option<(String, String)> {
        let text = output(podman().ok()?.args(["image", "inspect", "--format", "{{.Id}} {{.Digest}}", name])).ok()?;
        let (id, digest) = text.trim().split_once(' ')?;
        Some((id.to_owned(), digest.to_owned()))
    };
    let before = inspect(&name);
    process::run(
        Command::new("skopeo")
            .arg("copy")
            .arg("--quiet")
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("containers-storage:{name}")),
    )?;
    let (id, digest) = inspect(&name).ok_or_else(|| format!("{name} is not in podman's storage after loading"))?;
    if let Some((old, _)) = before
        && old != id
    {
        // Fails, harmlessly, when another name still points to it.
        let _ = output(podman()?.args(["image", "rm", &old]));
    }
    Ok(digest)
}

// ---- smoke test ---------------------------------------------------------------------------------

/// A `podman run` of the image, as a Kubernetes Job with a restricted security context runs it:
/// read-only root (podman mounts a tmpfs at /tmp), no capabilities, no privilege escalation.
pub(crate) fn container(network: &str) -> Result<Command, String> {
    let mut command = podman()?;
    command.args(["run", "--rm", "--read-only", "--cap-drop=all", "--security-opt=no-new-privileges"]);
    command.arg(format!("--network={network}"));
    Ok(command)
}

fn smoke(layout: &Layout, built: &Built) -> Result<(), String> {
    let started = Instant::now();
    let image = built.reference.as_str();
    for name in &built.binaries {
        let text = output(container("none")?.args([image, name, "--help"]))
            .map_err(|e| format!("{name} --help in the image: {e}"))?;
        if !text.contains("Usage:") {
            return Err(format!("{name} --help printed no usage:\n{text}"));
        }
        eprintln!("smoke: {name} --help ok");
    }
    for tool in ["pg_dump", "pg_restore", "psql"] {
        let text = output(container("none")?.args([image, tool, "--version"]))?;
        if !text.contains(&format!("(PostgreSQL) {PG_MAJOR}.")) {
            return Err(format!("{tool} --version in the image printed {text:?}, not PostgreSQL {PG_MAJOR}"));
        }
        eprintln!("smoke: {}", text.trim());
    }
    // libpq in the image takes sslmode=require (the PyPI wheel's refuses it): the connection to
    // a closed port fails, but not on the option.
    let probe = container("none")?
        .args([image, "pg_dump", "--schema-only", "host=127.0.0.1 port=1 sslmode=require connect_timeout=1"])
        .output()
        .map_err(|e| format!("cannot run podman: {e}"))?;
    let stderr = String::from_utf8_lossy(&probe.stderr);
    if probe.status.success() || stderr.contains("SSL support is not compiled in") || !stderr.contains("127.0.0.1") {
        return Err(format!("pg_dump in the image did not take sslmode=require: {stderr}"));
    }
    eprintln!("smoke: pg_dump takes sslmode=require ({})", stderr.lines().next().unwrap_or("").trim());

    let dir = layout.cache.join("image").join("smoke");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    backup_from_stack(layout, built, &dir)?;
    backup_over_tls(layout, built, &dir)?;
    // Kept after a failure, for a look at the backups and the TLS server's log.
    let _ = fs::remove_dir_all(&dir);
    let root = workspace_root();
    image_checks::manifests(&root, image, &format!("{IMAGE_NAME}:{VERSION}"))?;
    image_checks::containerfile(&root, &built.rootfs, image)?;
    let _ = fs::remove_dir_all(built.rootfs.parent().unwrap_or(&built.rootfs));
    eprintln!("smoke: passed in {:.1?}", started.elapsed());
    Ok(())
}

/// A folder the container's user owns, mounted into it.
fn owned_by_image_user(path: &Path, mode: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(USER_ID), Some(USER_ID))
        .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

/// Runs `pg-backup backup` in the image, with the password and the CA as mounted files, into
/// `backups` mounted at /backups; returns its output.
fn backup_in_container(
    built: &Built,
    secrets: &Path,
    backups: &Path,
    env: &[(&str, String)],
) -> Result<String, String> {
    let mut command = container("host")?;
    command
        .arg("--volume")
        .arg(format!("{}:/run/secrets/dbkit:ro", secrets.display()))
        .arg("--volume")
        .arg(format!("{}:/backups", backups.display()))
        .args(["--env", "POSTGRES_PASSWORD_FILE=/run/secrets/dbkit/postgres-password", "--env", "BACKUP_DIR=/backups"]);
    for (name, value) in env {
        command.arg("--env").arg(format!("{name}={value}"));
    }
    command.args([built.reference.as_str(), "pg-backup", "backup", "--no-prune"]);
    output(&mut command).map_err(|e| format!("pg-backup backup in the image: {e}"))
}

/// The host's pg-backup (same build) verifies a backup the container wrote: the manifest's
/// SHA-256 and the archive read to its end by the stack's pg_restore.
fn verify_from_host(layout: &Layout, built: &Built, backups: &Path, dbname: &str) -> Result<String, String> {
    let mut command = Command::new(built.bin_dir.join("pg-backup"));
    for (name, value) in stack::env_vars(layout) {
        command.env(name, value);
    }
    command.env("POSTGRES_DB", dbname).args(["verify", "latest", "--backup-dir"]).arg(backups);
    output(&mut command).map_err(|e| format!("pg-backup verify on the host: {e}"))
}

/// A secrets folder for the container: the password, readable by the image's user only.
fn secrets_folder(dir: &Path, password: &str) -> Result<PathBuf, String> {
    let secrets = dir.join("secrets");
    fs::create_dir_all(&secrets).map_err(|e| e.to_string())?;
    let file = secrets.join("postgres-password");
    process::write_private(&file, password)?;
    std::os::unix::fs::chown(&file, Some(USER_ID), Some(USER_ID)).map_err(|e| e.to_string())?;
    owned_by_image_user(&secrets, 0o500)?;
    Ok(secrets)
}

/// A backup of a small database of the stack's PostgreSQL, from inside the image.
fn backup_from_stack(layout: &Layout, built: &Built, dir: &Path) -> Result<(), String> {
    if !process::port_open(stack::POSTGRES_PORT) {
        return Err(format!(
            "no PostgreSQL answers on 127.0.0.1:{}; start the stack first: cargo xtask stack up postgres",
            stack::POSTGRES_PORT
        ));
    }
    let vars: BTreeMap<String, String> = stack::env_vars(layout).into_iter().collect();
    let password_file = vars.get("POSTGRES_PASSWORD_FILE").ok_or("the stack names no password file")?;
    let password = fs::read_to_string(password_file).map_err(|e| format!("cannot read {password_file}: {e}"))?;
    let database = "dbkit_image_smoke";
    let psql = |sql: &str, db: &str| {
        output(
            Command::new(layout.pg_bin().join("psql"))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
                .args(["-p", &stack::POSTGRES_PORT.to_string(), "-d", db, "-c", sql])
                .env("PGPASSWORD", password.trim()),
        )
    };
    psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"), "postgres")?;
    psql(&format!("CREATE DATABASE {database}"), "postgres")?;
    let result = (|| {
        psql(
            "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 1000) g; \
             ALTER TABLE items ADD PRIMARY KEY (id)",
            database,
        )?;
        let secrets = secrets_folder(dir, password.trim())?;
        let backups = dir.join("backups");
        fs::create_dir_all(&backups).map_err(|e| e.to_string())?;
        owned_by_image_user(&backups, 0o700)?;
        let env = [
            ("POSTGRES_HOST", "127.0.0.1".to_owned()),
            ("POSTGRES_PORT", stack::POSTGRES_PORT.to_string()),
            ("POSTGRES_USER", "postgres".to_owned()),
            ("POSTGRES_DB", database.to_owned()),
        ];
        let started = Instant::now();
        backup_in_container(built, &secrets, &backups, &env)?;
        eprintln!("smoke: pg-backup backup of the stack's {database} in the image ok ({:.1?})", started.elapsed());
        let report = verify_from_host(layout, built, &backups, database)?;
        eprintln!("smoke: verified on the host: {}", one_line(&report));
        Ok(())
    })();
    let dropped = psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"), "postgres");
    result.and(dropped.map(|_| ()))
}

/// A backup over TLS with `sslmode=verify-full`, from inside the image, of a PostgreSQL started
/// for it that accepts TLS connections only (Debian's PostgreSQL 15, which the stack installs).
fn backup_over_tls(layout: &Layout, built: &Built, dir: &Path) -> Result<(), String> {
    let bin = Path::new("/usr/lib/postgresql/15/bin");
    if !bin.join("postgres").exists() {
        return Err("Debian's postgresql-15 is not installed (cargo xtask stack up installs it)".into());
    }
    if !which("openssl") {
        return Err("the TLS smoke test makes its certificates with openssl: apt-get install openssl".into());
    }
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).map_err(|e| e.to_string())?;
    make_certificates(&tls)?;
    let password = process::random_secret()?;
    let pwfile = tls.join("pwfile");
    process::write_private(&pwfile, &password)?;
    let data = tls.join("data");
    chown_nobody(&tls)?;
    process::run(
        as_nobody(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions", "--auth-local=trust"])
            .arg(format!("--pwfile={}", pwfile.display())),
    )?;
    let _ = fs::remove_file(&pwfile);
    // TLS connections only: no line admits a connection without it.
    fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n",
    )
    .map_err(|e| e.to_string())?;
    chown_nobody(&tls)?;
    let port = process::free_port()?;
    let log = tls.join("log");
    let mut server = as_nobody(&bin.join("postgres"));
    server.arg("-D").arg(&data).args(["-p", &port.to_string()]);
    for setting in [
        "listen_addresses=127.0.0.1".to_owned(),
        format!("unix_socket_directories={}", tls.display()),
        "ssl=on".to_owned(),
        format!("ssl_cert_file={}", tls.join("server.crt").display()),
        format!("ssl_key_file={}", tls.join("server.key").display()),
        "fsync=off".to_owned(),
        "log_connections=on".to_owned(),
    ] {
        server.arg("-c").arg(setting);
    }
    let log_file = fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut child = server
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot start the TLS PostgreSQL: {e}"))?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !process::port_open(port) {
            if Instant::now() > deadline || child.try_wait().map_err(|e| e.to_string())?.is_some() {
                return Err(format!("the TLS PostgreSQL did not start:\n{}", process::tail(&log, 20)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        process::run(
            Command::new(bin.join("psql"))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres"])
                .arg("-h")
                .arg(&tls)
                .args(["-p", &port.to_string()])
                .args(["-c", "CREATE TABLE secured AS SELECT g AS id FROM generate_series(1, 500) g"]),
        )?;
        let secrets = secrets_folder(&dir.join("tls-run"), &password)?;
        fs::copy(tls.join("ca.crt"), secrets.join("ca.crt")).map_err(|e| e.to_string())?;
        fs::set_permissions(secrets.join("ca.crt"), fs::Permissions::from_mode(0o444)).map_err(|e| e.to_string())?;
        let backups = dir.join("tls-run").join("backups");
        fs::create_dir_all(&backups).map_err(|e| e.to_string())?;
        owned_by_image_user(&backups, 0o700)?;
        let env = [
            ("POSTGRES_HOST", "localhost".to_owned()),
            ("POSTGRES_PORT", port.to_string()),
            ("POSTGRES_USER", "postgres".to_owned()),
            ("POSTGRES_DB", "postgres".to_owned()),
            ("POSTGRES_SSLMODE", "verify-full".to_owned()),
            ("POSTGRES_SSLROOTCERT", "/run/secrets/dbkit/ca.crt".to_owned()),
        ];
        let started = Instant::now();
        backup_in_container(built, &secrets, &backups, &env)?;
        let text = fs::read_to_string(&log).unwrap_or_default();
        // The server logs each connection: pg-backup's own and pg_dump's, both named pg-backup.
        let authorized: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("connection authorized") && l.contains("application_name=pg-backup"))
            .collect();
        if authorized.len() < 2 || !authorized.iter().all(|l| l.contains("SSL enabled")) {
            return Err(format!("the TLS server's log shows a connection without TLS:\n{}", authorized.join("\n")));
        }
        eprintln!(
            "smoke: pg-backup backup over TLS (verify-full, {} connections, all with SSL) in the image ok ({:.1?})",
            authorized.len(),
            started.elapsed()
        );
        let report = verify_from_host(layout, built, &backups, "postgres")?;
        eprintln!("smoke: verified on the host: {}", one_line(&report));
        Ok(())
    })();
    // A fast shutdown (SIGINT to the postmaster, which setpriv became), else a kill.
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 it signed.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let openssl = |args: &[&str]| process::run(Command::new("openssl").current_dir(dir).args(args));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = ["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=dbkit image smoke CA"];
    let ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
    openssl(&[&["req", "-x509"][..], &ec, &ca, &ca_ext].concat())?;
    openssl(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat())?;
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ])?;
    fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())
}

fn chown_nobody(path: &Path) -> Result<(), String> {
    process::run(Command::new("chown").args(["-R", "nobody:nogroup"]).arg(path))
}

fn as_nobody(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(program);
    c
}

fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
