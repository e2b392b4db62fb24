//! `datastores`: configuration, health and declarative bootstrap of the platform's datastores.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bins::{ConnectOpts, Output, exit};
use clap::{Parser, Subcommand};
use datastores::bootstrap::{Manifest, Mode, SectionReport, State};
use datastores::metrics::Kind;
use datastores::push::{Figure, JobRun};
use datastores::{Datastore, DatastoresConfig, HealthReport, Status};

#[derive(Parser, Debug)]
#[command(
    name = "datastores",
    version,
    about = "Configuration and health of the platform's datastores",
    after_help = "With PUSHGATEWAY_URL (or PUSHGATEWAY_URL_FILE) set, apply and check push their run to that Prometheus \
                  Pushgateway (jobs datastores_apply, datastores_check); a failed push is a warning on stderr and does \
                  not change the exit status."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check every configured datastore concurrently. Exits 1 when a checked datastore is
    /// unhealthy, 2 on bad configuration.
    Health(HealthArgs),
    /// Show what `apply` would change to reach the manifest; changes nothing. Exits 1 when a
    /// section cannot run or has a conflict.
    Plan(BootstrapArgs),
    /// Create what is missing and converge what can be converged safely; never drops or
    /// shrinks anything. Exits 1 when a section fails or has a conflict.
    Apply(BootstrapArgs),
    /// Report drift from the manifest; changes nothing. Exits 1 when anything differs.
    Check(BootstrapArgs),
    /// Serve Prometheus metrics of every configured datastore on /metrics. Each scrape reads
    /// the datastores concurrently, each within --deadline; one that fails or is late shows
    /// `<prefix>_up 0` without holding up the others.
    ServeMetrics(MetricsArgs),
}

#[derive(clap::Args, Debug)]
struct MetricsArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:9187")]
    listen: std::net::SocketAddr,
    /// Time each datastore has per scrape, e.g. 5s or 500ms.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    deadline: Duration,
    /// Print one scrape on stdout and exit (exit 1 when a datastore is down).
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    connect: ConnectOpts,
}

#[derive(clap::Args, Debug)]
struct BootstrapArgs {
    /// The manifest (YAML); the built-in one (seed 003's platform) when not given.
    #[arg(long, short = 'f', value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Print the built-in manifest and exit.
    #[arg(long, conflicts_with = "manifest")]
    print_builtin: bool,
    /// Run only these sections (comma-separated: postgres, mongodb, redis, kafka, weaviate, milvus).
    #[arg(long, value_delimiter = ',', value_parser = parse_datastore)]
    only: Vec<Datastore>,
    /// Fail when a section of these datastores cannot run because the datastore is not
    /// configured (by default such a section is skipped with a warning).
    #[arg(long, value_delimiter = ',', value_parser = parse_datastore)]
    require: Vec<Datastore>,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectOpts,
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
        Command::Plan(args) => runtime.block_on(bootstrap(&args, Mode::Plan)),
        Command::Apply(args) => runtime.block_on(bootstrap(&args, Mode::Apply)),
        Command::Check(args) => runtime.block_on(bootstrap(&args, Mode::Check)),
        Command::ServeMetrics(args) => runtime.block_on(serve_metrics(&args)),
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

async fn bootstrap(args: &BootstrapArgs, mode: Mode) -> ExitCode {
    if args.print_builtin {
        return match bins::print(datastores::bootstrap::BUILTIN) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => bins::fail(&anyhow::Error::new(e), exit::FAILURE),
        };
    }
    let settings = args.connect.settings();
    let usage = |e: anyhow::Error| bins::fail_as(&e, exit::USAGE, args.output);
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path, &settings),
        None => Manifest::builtin(&settings),
    };
    let manifest = match manifest {
        Ok(m) => m,
        Err(e) => return usage(anyhow::Error::new(e).context("invalid manifest")),
    };
    // Vector sections are parsed before anything runs, like the rest of the manifest.
    for (section, backend) in
        [(&manifest.weaviate, vector_admin::Backend::Weaviate), (&manifest.milvus, vector_admin::Backend::Milvus)]
    {
        if let Some(value) = section
            && let Err(e) = vector_admin::bootstrap::section_specs(value, backend)
        {
            return usage(anyhow::Error::new(e).context("invalid manifest"));
        }
    }
    let config = match DatastoresConfig::from_settings(&settings) {
        Ok(config) => config,
        Err(errors) => return usage(anyhow::Error::new(errors).context("invalid configuration")),
    };
    let pick = datastores::bootstrap::Selection { mode, selected: &args.only, required: &args.require };
    let started = Instant::now();
    let (mut reports, weaviate, milvus) = tokio::join!(
        datastores::bootstrap::run(&manifest, &config, mode, &args.only, &args.require),
        pick.run(Datastore::Weaviate, manifest.weaviate.as_ref(), config.weaviate.as_ref(), |c, s| {
            vector_admin::bootstrap::weaviate(c, s, mode)
        }),
        pick.run(Datastore::Milvus, manifest.milvus.as_ref(), config.milvus.as_ref(), |c, s| {
            vector_admin::bootstrap::milvus(c, s, mode)
        }),
    );
    reports.extend(weaviate.into_iter().chain(milvus));
    let text = match args.output {
        Output::Json => serde_json::to_string_pretty(&reports).context("cannot encode the report").map(|j| j + "\n"),
        Output::Table => Ok(render_sections(&reports)),
    };
    let printed = text.and_then(|t| bins::print(&t).context("cannot write the report"));
    for report in &reports {
        for warning in &report.warnings {
            eprintln!("warning: {}: {warning}", report.datastore);
        }
    }
    let failed = match mode {
        Mode::Check => reports.iter().any(|r| r.drift() > 0),
        Mode::Plan | Mode::Apply => reports.iter().any(SectionReport::has_errors),
    };
    if let Some(run) = job_run(mode, &reports, !failed, started.elapsed()) {
        bins::push_run(&settings, &run).await;
    }
    if let Err(e) = printed {
        return bins::fail(&e, exit::FAILURE);
    }
    if failed { ExitCode::from(exit::FAILURE) } else { ExitCode::SUCCESS }
}

/// The run of `apply` or `check` (the Jobs; `plan` is not one) as pushed to the Pushgateway:
/// per datastore whose section ran, the objects that differ from the manifest, and for `apply`
/// the changes made.
fn job_run(mode: Mode, reports: &[SectionReport], success: bool, duration: Duration) -> Option<JobRun> {
    let job = match mode {
        Mode::Apply => "datastores_apply",
        Mode::Check => "datastores_check",
        Mode::Plan => return None,
    };
    let mut run = JobRun::new(job, success, duration);
    for report in reports.iter().filter(|r| !r.skipped) {
        let gauge = |name: String, help: &str, value: usize| Figure {
            name,
            help: help.into(),
            kind: Kind::Gauge,
            labels: vec![("datastore".into(), report.datastore.key().into())],
            value: value as f64,
        };
        run = run.figure(gauge(
            format!("{job}_drift"),
            "Objects of the datastore's section that differ from the manifest after the last run (a section that \
             could not run counts one).",
            report.drift(),
        ));
        if mode == Mode::Apply {
            run = run.figure(gauge(
                format!("{job}_changes"),
                "Objects of the datastore's section that the last run created or changed.",
                report.changes(),
            ));
        }
    }
    Some(run)
}

fn render_sections(reports: &[SectionReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let counts = |state: State| report.items.iter().filter(|i| i.state == state).count();
        let mut summary: Vec<String> = [
            State::Ok,
            State::Missing,
            State::Drift,
            State::Created,
            State::Changed,
            State::NeedsRestart,
            State::Conflict,
            State::Failed,
        ]
        .into_iter()
        .filter(|s| counts(*s) > 0)
        .map(|s| format!("{} {s}", counts(s)))
        .collect();
        if report.skipped {
            summary.push("skipped".into());
        }
        let identity = report.identity.as_deref().map(|i| format!(" ({i})")).unwrap_or_default();
        out.push_str(&format!("== {} {}{identity}: {}\n", report.datastore, report.endpoint, summary.join(", ")));
        if let Some(error) = &report.error {
            out.push_str(&format!("error: {error}\n"));
        }
        if !report.items.is_empty() {
            let rows: Vec<Vec<String>> = report
                .items
                .iter()
                .map(|i| vec![i.state.to_string(), i.kind.to_owned(), i.name.clone(), i.detail.clone()])
                .collect();
            out.push_str(&bins::table(&["STATE", "KIND", "NAME", "DETAIL"], &rows));
        }
        out.push('\n');
    }
    let changes: usize = reports.iter().map(SectionReport::changes).sum();
    let drift: usize = reports.iter().map(SectionReport::drift).sum();
    let mode = reports.first().map(|r| r.mode);
    out.push_str(&match mode {
        Some(Mode::Apply) => format!("{changes} change(s) made; {drift} object(s) still differ from the manifest\n"),
        Some(_) if drift == 0 => "everything is as the manifest says\n".to_owned(),
        Some(_) => format!("{drift} object(s) differ from the manifest\n"),
        None => "the manifest has no section to run\n".to_owned(),
    });
    out
}

async fn serve_metrics(args: &MetricsArgs) -> ExitCode {
    let config = match DatastoresConfig::from_settings(&args.connect.settings()) {
        Ok(config) => config,
        Err(errors) => return bins::fail(&anyhow::Error::new(errors).context("invalid configuration"), exit::USAGE),
    };
    if !Datastore::ALL.iter().any(|d| config.is_configured(*d)) {
        let hint: Vec<String> = Datastore::ALL.iter().map(|d| describe_missing(*d)).collect();
        return bins::fail(&anyhow::anyhow!("no datastore is configured:\n{}", hint.join("\n")), exit::USAGE);
    }
    let options = datastores::metrics::ScrapeOptions { deadline: args.deadline };
    let exporter = std::sync::Arc::new(datastores::metrics::Exporter::new(config, options));
    if args.once {
        let collected = exporter.collect().await;
        let text = datastores::metrics::render(&collected);
        if let Err(e) = bins::print(&text) {
            return bins::fail(&anyhow::Error::new(e), exit::FAILURE);
        }
        let down: Vec<String> =
            collected.iter().filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.datastore))).collect();
        for line in &down {
            eprintln!("warning: {line}");
        }
        return if down.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(exit::FAILURE) };
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            return bins::fail(
                &anyhow::Error::new(e).context(format!("cannot listen on {}", args.listen)),
                exit::FAILURE,
            );
        }
    };
    let metrics = {
        let exporter = exporter.clone();
        move || {
            let exporter = exporter.clone();
            async move {
                let collected = exporter.collect().await;
                for c in &collected {
                    if let Some(error) = &c.error {
                        tracing::warn!(datastore = %c.datastore, %error, "scrape failed");
                    }
                }
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    datastores::metrics::render(&collected),
                )
            }
        }
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/", axum::routing::get(|| async { "dbkit datastores exporter: see /metrics\n" }));
    tracing::info!(listen = %args.listen, "serving metrics");
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    match axum::serve(listener, app).with_graceful_shutdown(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => bins::fail(&anyhow::Error::new(e).context("the metrics server failed"), exit::FAILURE),
    }
}
