//! Glue shared by the binaries: process set-up, the connection flags every binary accepts, output
//! formats and exit codes. Logic belongs in the library crates, not here.
#![warn(missing_docs)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::io::Write;
use std::process::ExitCode;

use datastores::{Settings, Source};

pub mod backups;

/// Exit codes shared by every binary.
pub mod exit {
    /// The work failed or a checked datastore is unhealthy.
    pub const FAILURE: u8 = 1;
    /// Bad flags or configuration: nothing was attempted.
    pub const USAGE: u8 = 2;
}

/// Process set-up every binary does first: logging to stderr (`RUST_LOG`, `LOG_FORMAT=json`) and
/// one rustls crypto provider for the whole process. Several client libraries link rustls with
/// different providers; without an explicit default, TLS set-up panics.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Progress lines (target `progress`) stand in for progress bars when stderr is not a terminal.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,progress=info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Connection flags shared by every binary. Each flag overrides the environment variable of the
/// same name; every variable, and so every flag's variable, also has a `_FILE` form.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Datastore connections (flags override the environment)")]
pub struct ConnectOpts {
    /// PostgreSQL URL: postgres://user@host:port/db?sslmode=require [env: DATABASE_URL]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// [env: POSTGRES_HOST]
    #[arg(long, value_name = "HOST")]
    pub postgres_host: Option<String>,
    /// [env: POSTGRES_PORT]
    #[arg(long, value_name = "PORT")]
    pub postgres_port: Option<String>,
    /// [env: POSTGRES_DB]
    #[arg(long, value_name = "NAME")]
    pub postgres_db: Option<String>,
    /// [env: POSTGRES_USER]
    #[arg(long, value_name = "USER")]
    pub postgres_user: Option<String>,
    /// File holding the PostgreSQL password [env: POSTGRES_PASSWORD_FILE]
    #[arg(long, value_name = "PATH")]
    pub postgres_password_file: Option<String>,
    /// disable, allow, prefer, require, verify-ca or verify-full [env: POSTGRES_SSLMODE]
    #[arg(long, value_name = "MODE")]
    pub postgres_sslmode: Option<String>,
    /// redis://[user[:password]@]host[:port][/db], rediss:// for TLS [env: REDIS_URL]
    // This text is also the flag's `--help`, where brackets mark optional parts, not links.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// mongodb://host:port/db?options [env: MONGODB_URI]
    #[arg(long, value_name = "URI")]
    pub mongodb_uri: Option<String>,
    /// host:port,host:port [env: KAFKA_BOOTSTRAP_SERVERS]
    #[arg(long, value_name = "SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// [env: MILVUS_HOST]
    #[arg(long, value_name = "HOST")]
    pub milvus_host: Option<String>,
    /// [env: MILVUS_PORT]
    #[arg(long, value_name = "PORT")]
    pub milvus_port: Option<String>,
    /// http(s)://host:port [env: WEAVIATE_URL]
    #[arg(long, value_name = "URL")]
    pub weaviate_url: Option<String>,
    /// File holding the Weaviate API key [env: WEAVIATE_API_KEY_FILE]
    #[arg(long, value_name = "PATH")]
    pub weaviate_api_key_file: Option<String>,
    /// [env: S3_BUCKET]
    #[arg(long, value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket [env: S3_PREFIX]
    #[arg(long, value_name = "PREFIX")]
    pub s3_prefix: Option<String>,
    /// Endpoint of an S3-compatible store: http(s)://host:port [env: S3_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// [env: AWS_REGION]
    #[arg(long, value_name = "REGION")]
    pub aws_region: Option<String>,
}

impl ConnectOpts {
    /// Flags first, then the process environment. Each value remembers its flag or variable, so
    /// that a configuration error names it.
    ///
    /// ```rust
    /// use bins::ConnectOpts;
    ///
    /// let opts = ConnectOpts { postgres_port: Some("6432".into()), ..ConnectOpts::default() };
    /// let settings = opts.settings();
    /// let port = settings.get("POSTGRES_PORT")?.expect("set by the flag");
    /// assert_eq!(port.text, "6432");
    /// assert_eq!(port.origin.to_string(), "flag --postgres-port");
    /// # Ok::<(), datastores::ConfigError>(())
    /// ```
    pub fn settings(&self) -> Settings {
        let flags: [(&str, &str, &Option<String>); 18] = [
            ("DATABASE_URL", "--database-url", &self.database_url),
            ("POSTGRES_HOST", "--postgres-host", &self.postgres_host),
            ("POSTGRES_PORT", "--postgres-port", &self.postgres_port),
            ("POSTGRES_DB", "--postgres-db", &self.postgres_db),
            ("POSTGRES_USER", "--postgres-user", &self.postgres_user),
            ("POSTGRES_PASSWORD_FILE", "--postgres-password-file", &self.postgres_password_file),
            ("POSTGRES_SSLMODE", "--postgres-sslmode", &self.postgres_sslmode),
            ("REDIS_URL", "--redis-url", &self.redis_url),
            ("MONGODB_URI", "--mongodb-uri", &self.mongodb_uri),
            ("KAFKA_BOOTSTRAP_SERVERS", "--kafka-bootstrap-servers", &self.kafka_bootstrap_servers),
            ("MILVUS_HOST", "--milvus-host", &self.milvus_host),
            ("MILVUS_PORT", "--milvus-port", &self.milvus_port),
            ("WEAVIATE_URL", "--weaviate-url", &self.weaviate_url),
            ("WEAVIATE_API_KEY_FILE", "--weaviate-api-key-file", &self.weaviate_api_key_file),
            ("S3_BUCKET", "--s3-bucket", &self.s3_bucket),
            ("S3_PREFIX", "--s3-prefix", &self.s3_prefix),
            ("S3_ENDPOINT", "--s3-endpoint", &self.s3_endpoint),
            ("AWS_REGION", "--aws-region", &self.aws_region),
        ];
        let names: BTreeMap<String, String> =
            flags.iter().map(|(var, flag, _)| ((*var).to_owned(), (*flag).to_owned())).collect();
        let values: Vec<(String, String)> =
            flags.iter().filter_map(|(var, _, value)| value.as_ref().map(|v| ((*var).to_owned(), v.clone()))).collect();
        Settings::new().layer(Source::Flags(names), values).layer(Source::Environment, std::env::vars())
    }
}

/// Reports a Job's run: pushes `run` to the Pushgateway of `PUSHGATEWAY_URL` (or
/// `PUSHGATEWAY_URL_FILE`) when `settings` set it, and does nothing otherwise, as a backup job
/// pushes its own ([`backup_core::push_run`]). A push that fails, or a setting that cannot be
/// read, is a warning on stderr and never changes the exit status of the run.
pub async fn push_run(settings: &Settings, run: &datastores::push::JobRun) {
    let notifications = backup_core::Notifications::from_settings(settings);
    backups::warn_unsent(&backup_core::push_run(&notifications, run).await);
}

/// How results are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns and sentences for people (the default).
    #[default]
    Table,
    /// One JSON document on stdout for programs; errors too (see [`fail_as`]).
    Json,
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs a command on a Tokio runtime and turns its result into the exit status: 0 on success,
/// 2 when `usage` says the error is bad input (nothing was done), 1 otherwise. With `output`
/// JSON, a failure is also printed as a JSON object on stdout.
pub fn run(
    command: impl Future<Output = anyhow::Result<()>>,
    usage: impl Fn(&anyhow::Error) -> bool,
    output: Output,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the async runtime"), exit::FAILURE),
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if usage(&e) || is_config_error(&e) { exit::USAGE } else { exit::FAILURE };
            fail_as(&e, code, output)
        }
    }
}

/// Whether `error` is a configuration error: a bad flag, variable or file. [`run`] exits with
/// [`exit::USAGE`] for these.
///
/// ```rust
/// use datastores::{Settings, Source};
///
/// let settings = Settings::new().layer(Source::Environment, [("POSTGRES_PORT", "five")]);
/// let error = anyhow::Error::new(settings.port("POSTGRES_PORT").unwrap_err());
/// assert!(bins::is_config_error(&error.context("cannot connect")));
/// assert!(!bins::is_config_error(&anyhow::anyhow!("connection refused")));
/// ```
pub fn is_config_error(error: &anyhow::Error) -> bool {
    error.downcast_ref::<datastores::ConfigError>().is_some()
}

/// Prints an error with its causes and returns the exit code.
pub fn fail(error: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(code)
}

/// A failure whose report is already on stdout (an unhealthy `health`, a failed `maintain`):
/// with `--output json` no second JSON document follows it.
#[derive(Debug)]
pub struct Reported(pub String);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

/// As [`fail`]; with `--output json`, also prints `{"error": ..., "exit_code": ...}` on stdout,
/// so that a caller parsing stdout always gets JSON (once: not after a [`Reported`] report).
pub fn fail_as(error: &anyhow::Error, code: u8, output: Output) -> ExitCode {
    if output == Output::Json && error.downcast_ref::<Reported>().is_none() {
        let object = serde_json::json!({ "error": format!("{error:#}"), "exit_code": code });
        let _ = print(&format!("{object}\n"));
    }
    fail(error, code)
}

/// Formats rows as left-aligned columns under a header, two spaces apart; every row has as many
/// cells as the header.
///
/// ```rust
/// let text = bins::table(
///     &["database", "size"],
///     &[vec!["recommend".into(), "1.2 GiB".into()], vec!["db".into(), "8 MiB".into()]],
/// );
/// assert_eq!(text, "database   size\nrecommend  1.2 GiB\ndb         8 MiB\n");
/// ```
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
