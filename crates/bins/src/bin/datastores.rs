//! `datastores`: configuration and health of the platform's datastores.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bins::{ConnectOpts, Output, exit};
use clap::{Parser, Subcommand};
use datastores::{Datastore, DatastoresConfig, HealthReport, Status};

#[derive(Parser, Debug)]
#[command(name = "datastores", version, about = "Configuration and health of the platform's datastores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check every configured datastore concurrently. Exits 1 when a checked datastore is
    /// unhealthy, 2 on bad configuration.
    Health(HealthArgs),
}

#[derive(clap::Args, Debug)]
struct HealthArgs {
    /// Time allowed for each check, e.g. 5s or 500ms.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Check only these datastores (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_datastore)]
    only: Vec<Datastore>,
    /// Fail when one of these datastores is not configured (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_datastore)]
    require: Vec<Datastore>,
    /// Also write and delete an object in S3 (the default check only reads the bucket)
    #[arg(long)]
    write_probe: bool,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectOpts,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match datastores::parse_duration(text)? {
        d if d.is_zero() => Err("the timeout must be more than zero".into()),
        d => Ok(d),
    }
}

fn parse_datastore(text: &str) -> Result<Datastore, String> {
    Datastore::from_key(text.trim()).ok_or_else(|| {
        let known: Vec<_> = Datastore::ALL.iter().map(|d| d.key()).collect();
        format!("unknown datastore {text:?}; known: {}", known.join(", "))
    })
}

fn main() -> ExitCode {
    bins::init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            return bins::fail(&anyhow::Error::new(e).context("cannot start the async runtime"), exit::FAILURE);
        }
    };
    match cli.command {
        Command::Health(args) => runtime.block_on(health(&args)),
    }
}

async fn health(args: &HealthArgs) -> ExitCode {
    let config = match DatastoresConfig::from_settings(&args.connect.settings()) {
        Ok(config) => config,
        Err(errors) => {
            return bins::fail(&anyhow::Error::new(errors).context("invalid configuration"), exit::USAGE);
        }
    };
    let missing: Vec<String> =
        args.require.iter().filter(|d| !config.is_configured(**d)).map(|d| describe_missing(*d)).collect();
    if !missing.is_empty() {
        return bins::fail(&anyhow::anyhow!("{}", missing.join("\n")), exit::USAGE);
    }
    let selected: Vec<Datastore> = if args.only.is_empty() { Datastore::ALL.to_vec() } else { args.only.clone() };
    if !selected.iter().any(|d| config.is_configured(*d)) {
        let hint: Vec<String> = selected.iter().map(|d| describe_missing(*d)).collect();
        return bins::fail(&anyhow::anyhow!("no datastore is configured:\n{}", hint.join("\n")), exit::USAGE);
    }
    let options = datastores::CheckOptions { timeout: args.timeout, s3_write_probe: args.write_probe };
    let reports = datastores::check(&config, &selected, &options).await;
    let text = match args.output {
        Output::Json => serde_json::to_string_pretty(&reports).context("cannot encode the report").map(|j| j + "\n"),
        Output::Table => Ok(render(&reports)),
    };
    let printed = text.and_then(|t| bins::print(&t).context("cannot write the report"));
    if let Err(e) = printed {
        return bins::fail(&e, exit::FAILURE);
    }
    if reports.iter().any(|r| r.status == Status::Unhealthy) {
        ExitCode::from(exit::FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

fn describe_missing(datastore: Datastore) -> String {
    format!("{datastore} is not configured: set {}", datastores::triggers(datastore).join(" or "))
}

fn render(reports: &[HealthReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.datastore.to_string(),
                r.status.to_string(),
                r.latency.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "-".into()),
                r.version.clone().unwrap_or_else(|| "-".into()),
                r.endpoint.clone().unwrap_or_else(|| "-".into()),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    bins::table(&["DATASTORE", "STATUS", "LATENCY", "VERSION", "ENDPOINT", "ERROR"], &rows)
}
