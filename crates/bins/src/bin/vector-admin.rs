//! `vector-admin`: Milvus collections and Weaviate classes from specs, index presets and
//! maintenance. Glue over the `vector-admin` library.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bins::{ConnectOpts, Output};
use clap::{Parser, Subcommand};
use datastores::metrics::Kind;
use datastores::push::{Figure, JobRun};
use datastores::{MilvusConfig, Settings, WeaviateConfig};
use serde::Serialize;
use vector_admin::workflow::{self, Waits};
use vector_admin::{
    Backend, BuildParams, CollectionSpec, MilvusStore, PresetChoice, SearchParams, SpecFile, VectorStore, WeaviateStore,
};

#[derive(Parser, Debug)]
#[command(
    name = "vector-admin",
    version,
    about = "Milvus collections and Weaviate classes: specs, index presets, maintenance",
    after_help = "With PUSHGATEWAY_URL (or PUSHGATEWAY_URL_FILE) set, init (without --dry-run) and maintain push their \
                  run to that Prometheus Pushgateway (jobs vector_admin_init, vector_admin_maintain); a failed push \
                  is a warning on stderr and does not change the exit status."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(clap::Args, Debug)]
struct Global {
    /// Which vector database (default: Milvus when MILVUS_HOST or MILVUS_URI is set, else Weaviate
    /// when WEAVIATE_URL is set)
    #[arg(long, global = true, value_enum)]
    backend: Option<BackendArg>,
    /// A YAML spec file that extends or replaces the built-in collections
    #[arg(long, global = true, value_name = "FILE")]
    spec: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t)]
    output: Output,
    /// Report an index build as stuck when its progress has not moved for this long
    #[arg(long, global = true, default_value = "10m", value_parser = parse_duration)]
    index_stall: Duration,
    /// The longest any single wait (index build, load, compaction) may take
    #[arg(long, global = true, default_value = "1h", value_parser = parse_duration)]
    deadline: Duration,
    #[command(flatten)]
    connect: ConnectOpts,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BackendArg {
    Milvus,
    Weaviate,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the spec'd collections that are missing, build missing indexes, load; never drops
    /// or rebuilds (drift is reported)
    Init {
        /// Print what would be done and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the differences between the specs and the server; changes nothing
    Plan,
    /// Create, describe or drop a collection's index
    #[command(subcommand)]
    Index(IndexCommand),
    /// Load collections for search (default: every spec'd collection)
    Load { collections: Vec<String> },
    /// Release collections from memory
    Release {
        #[arg(required = true)]
        collections: Vec<String>,
    },
    /// Rows, index, load state and segments or shards
    Stats { collections: Vec<String> },
    /// Server version and state; each collection's existence, rows, index and load state. Exits 1
    /// when something is wrong
    Health {
        /// Also report collections no spec names
        #[arg(long)]
        all: bool,
    },
    /// Persist what was written
    Flush { collections: Vec<String> },
    /// Compact collections and wait for it
    Compact { collections: Vec<String> },
    /// The routine for a CronJob: health, flush, compact, index check, load. Exits 1 when a step failed
    Maintain,
    /// Drop a collection and all its rows
    Drop {
        collection: String,
        /// Consent: the collection and its rows are deleted
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
enum IndexCommand {
    /// Build the index of a collection (the spec's preset unless --preset), and wait for it
    Create {
        collection: String,
        /// auto, small_exact, medium_ivf, large_hnsw, xlarge_diskann, high_recall, low_latency
        #[arg(long)]
        preset: Option<PresetChoice>,
        #[arg(long)]
        nlist: Option<u32>,
        #[arg(long = "m")]
        m: Option<u32>,
        #[arg(long)]
        ef_construction: Option<u32>,
        /// Consent to replace an existing index: release, drop, create, wait, load
        #[arg(long)]
        replace: bool,
    },
    Describe {
        collection: String,
    },
    /// Drop a collection's index (Milvus; the collection must be released)
    Drop {
        collection: String,
        #[arg(long)]
        yes: bool,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    datastores::parse_duration(text)
}

fn main() -> ExitCode {
    bins::init();
    let cli = Cli::parse();
    let output = cli.global.output;
    bins::run(run(cli), is_usage, output)
}

fn is_usage(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.downcast_ref::<vector_admin::Error>().is_some_and(vector_admin::Error::is_usage))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.global.connect.settings();
    let backend = match cli.global.backend {
        Some(BackendArg::Milvus) => Backend::Milvus,
        Some(BackendArg::Weaviate) => Backend::Weaviate,
        None if settings.is_set("MILVUS_HOST") || settings.is_set("MILVUS_URI") => Backend::Milvus,
        None if settings.is_set("WEAVIATE_URL") => Backend::Weaviate,
        None => Backend::Milvus,
    };
    let file = match &cli.global.spec {
        Some(path) => SpecFile::load(path)?,
        None => SpecFile::default(),
    };
    let specs = file.specs(backend)?;
    // The commands that run as Jobs report their runs, connection failures included.
    let job = match cli.command {
        Command::Init { dry_run: false } => Some("vector_admin_init"),
        Command::Maintain => Some("vector_admin_maintain"),
        _ => None,
    };
    let started = Instant::now();
    let mut figures = Vec::new();
    let result = match backend {
        Backend::Milvus => {
            let config = MilvusConfig::from_settings(&settings)?;
            match MilvusStore::connect(&config).await {
                Ok(store) => command(&store, &cli, &specs, &mut figures).await,
                Err(e) => Err(e.into()),
            }
        }
        Backend::Weaviate => {
            let config = weaviate_config(&settings)?;
            match WeaviateStore::connect(&config) {
                Ok(store) => command(&store, &cli, &specs, &mut figures).await,
                Err(e) => Err(e.into()),
            }
        }
    };
    if let Some(job) = job {
        let run = JobRun { figures, ..JobRun::new(job, result.is_ok(), started.elapsed()) }
            .label("backend", backend.to_string().to_lowercase());
        bins::push_run(&settings, &run).await;
    }
    result
}

/// A gauge of a job's run.
fn figure(name: &str, help: &str, value: usize) -> Figure {
    Figure { name: name.into(), help: help.into(), kind: Kind::Gauge, labels: Vec::new(), value: value as f64 }
}

fn weaviate_config(settings: &Settings) -> anyhow::Result<WeaviateConfig> {
    Ok(WeaviateConfig::from_settings(settings)?)
}

/// Progress of long waits on stderr, at most every two seconds per message.
fn progress_reporter() -> impl Fn(&str, u64, u64) + Send + Sync {
    let last: Mutex<Option<(String, Instant)>> = Mutex::new(None);
    move |what: &str, done: u64, total: u64| {
        let Ok(mut last) = last.lock() else { return };
        if last.as_ref().is_some_and(|(w, at)| w == what && at.elapsed() < Duration::from_secs(2)) {
            return;
        }
        *last = Some((what.to_owned(), Instant::now()));
        if total > 0 {
            tracing::info!(target: "progress", "{what}: {done} of {total}");
        } else {
            tracing::info!(target: "progress", "{what}");
        }
    }
}

fn emit<T: Serialize>(output: Output, value: &T, table: impl FnOnce(&T) -> String) -> anyhow::Result<()> {
    let text = match output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Output::Table => table(value),
    };
    bins::print(&text)?;
    Ok(())
}

fn spec<'a>(specs: &'a [CollectionSpec], name: &str) -> anyhow::Result<&'a CollectionSpec> {
    specs.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        anyhow::Error::new(vector_admin::Error::Invalid(format!(
            "no spec names collection {name:?} (known: {}); add it with --spec FILE",
            known.join(", ")
        )))
    })
}

fn names(given: &[String], specs: &[CollectionSpec]) -> Vec<String> {
    if given.is_empty() { specs.iter().map(|s| s.name.clone()).collect() } else { given.to_vec() }
}

fn plan_table(plan: &workflow::Plan) -> String {
    let mut out = String::new();
    for c in &plan.collections {
        let state = if c.exists { "exists" } else { "missing" };
        out.push_str(&format!("{} ({state})\n", c.collection));
        for a in &c.actions {
            out.push_str(&format!("  + {}\n", serde_json::to_string(a).unwrap_or_default()));
        }
        for d in &c.drift {
            out.push_str(&format!("  ~ {}: server {} / spec {} (needs: {})\n", d.what, d.server, d.spec, d.needs));
        }
        if c.actions.is_empty() && c.drift.is_empty() {
            out.push_str("  = up to date\n");
        }
    }
    out.push_str(&format!("{} change(s), {} drift(s) needing a rebuild or recreate\n", plan.changes(), plan.drift()));
    out
}

/// Runs the command; the figures of a Job's run go to `figures`.
async fn command<S: VectorStore>(
    store: &S,
    cli: &Cli,
    specs: &[CollectionSpec],
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let output = cli.global.output;
    let waits = Waits {
        index_deadline: cli.global.deadline,
        index_stall: cli.global.index_stall,
        load_deadline: cli.global.deadline,
        compaction_deadline: cli.global.deadline,
        ..Waits::default()
    };
    let reporter = progress_reporter();
    let progress: vector_admin::Progress<'_> = &reporter;
    match &cli.command {
        Command::Plan | Command::Init { dry_run: true } => {
            let plan = workflow::plan(store, specs).await?;
            emit(output, &plan, plan_table)
        }
        Command::Init { dry_run: false } => {
            let report = workflow::apply(store, specs, &waits, progress).await?;
            figures.push(figure("vector_admin_init_changes", "Changes the last init made.", report.done.len()));
            figures.push(figure(
                "vector_admin_init_drift",
                "Differences from the specs the last init left alone (they need a rebuild or recreate).",
                report.plan.drift(),
            ));
            emit(output, &report, |r| {
                let mut out = plan_table(&r.plan);
                if r.done.is_empty() && r.plan.drift() == 0 {
                    out.push_str("nothing to do: every collection is as specified\n");
                } else if r.done.is_empty() {
                    out.push_str(&format!("nothing changed; {} drift(s) left alone (see above)\n", r.plan.drift()));
                }
                for step in &r.done {
                    out.push_str(&format!("done: {step}\n"));
                }
                out
            })
        }
        Command::Index(IndexCommand::Create { collection, preset, nlist, m, ef_construction, replace }) => {
            let mut spec = spec(specs, collection)?.clone();
            if let Some(p) = preset {
                spec.index.preset = *p;
                spec.index.build = BuildParams::default();
                spec.index.search = SearchParams::default();
            }
            spec.index.build =
                spec.index.build.overlay(BuildParams { nlist: *nlist, m: *m, ef_construction: *ef_construction });
            let rows = match store.stats(collection).await {
                Ok(s) => s.rows,
                Err(vector_admin::Error::NotFound { .. }) => 0,
                Err(e) => return Err(e.into()),
            };
            let index = store.native_index(&workflow::wanted_index(&spec, Some(rows))?);
            let steps = workflow::replace_index(store, &spec, &index, *replace, &waits, progress).await?;
            emit(output, &steps, |s| s.iter().map(|l| format!("{l}\n")).collect())
        }
        Command::Index(IndexCommand::Describe { collection }) => {
            let info = store.describe_index(collection).await?;
            emit(output, &info, |i| match i {
                Some(i) => format!("{}: {} ({:?})\n", collection, workflow::describe_index(&i.index), i.state),
                None => format!("{collection}: no index\n"),
            })
        }
        Command::Index(IndexCommand::Drop { collection, yes }) => {
            if !yes {
                return Err(vector_admin::Error::NeedsConsent(format!(
                    "dropping the index of {collection} makes it unsearchable until a new one is built: pass --yes"
                ))
                .into());
            }
            store.drop_index(collection).await?;
            emit(output, &serde_json::json!({"dropped_index": collection}), |_| {
                format!("dropped the index of {collection}\n")
            })
        }
        Command::Load { collections } => {
            for name in names(collections, specs) {
                store.load(&name).await?;
                workflow::wait_for_load(store, &name, &waits, progress).await?;
            }
            emit(output, &names(collections, specs), |n| format!("loaded {}\n", n.join(", ")))
        }
        Command::Release { collections } => {
            for name in collections {
                store.release(name).await?;
            }
            emit(output, collections, |n| format!("released {}\n", n.join(", ")))
        }
        Command::Stats { collections } => {
            let mut all = Vec::new();
            for name in names(collections, specs) {
                all.push(store.stats(&name).await?);
            }
            emit(output, &all, |all| {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.collection.clone(),
                            s.rows.to_string(),
                            s.index
                                .as_ref()
                                .map(|i| format!("{} {:?}", workflow::describe_index(&i.index), i.state))
                                .unwrap_or("-".into()),
                            format!("{:?}", s.load),
                            s.shards.len().to_string(),
                        ]
                    })
                    .collect();
                bins::table(&["COLLECTION", "ROWS", "INDEX", "LOAD", "SEGMENTS/SHARDS"], &rows)
            })
        }
        Command::Health { all } => {
            let report = workflow::health(store, specs, *all).await?;
            emit(output, &report, |r| {
                let mut out = format!(
                    "{} {} {}\n",
                    r.server.backend,
                    r.server.version,
                    if r.server.healthy { "healthy" } else { "UNHEALTHY" }
                );
                let rows: Vec<Vec<String>> = r
                    .collections
                    .iter()
                    .map(|c| {
                        vec![
                            c.collection.clone(),
                            c.rows.to_string(),
                            c.index.as_ref().map(|i| workflow::describe_index(&i.index)).unwrap_or("-".into()),
                            c.load.map(|l| format!("{l:?}")).unwrap_or("-".into()),
                            if c.problems.is_empty() { "ok".into() } else { c.problems.join("; ") },
                        ]
                    })
                    .collect();
                out.push_str(&bins::table(&["COLLECTION", "ROWS", "INDEX", "LOAD", "STATUS"], &rows));
                out
            })?;
            if report.healthy { Ok(()) } else { Err(bins::Reported("unhealthy: see the report".into()).into()) }
        }
        Command::Flush { collections } => {
            let report = store.flush(&names(collections, specs)).await?;
            emit(output, &report, |r| {
                if !r.applicable {
                    return "nothing to flush: Weaviate persists writes itself\n".into();
                }
                r.segments.iter().map(|(n, s)| format!("flushed {n}: {s} segment(s) sealed\n")).collect()
            })
        }
        Command::Compact { collections } => {
            let mut reports = Vec::new();
            for name in names(collections, specs) {
                reports.push(workflow::compact(store, &name, &waits, progress).await?);
            }
            emit(output, &reports, |rs| {
                rs.iter()
                    .map(|r| match r.applicable {
                        false => format!("{}: nothing to do, the server compacts on its own\n", r.collection),
                        true => format!(
                            "{}: {} plan(s), segments {} -> {}\n",
                            r.collection, r.plans, r.segments_before, r.segments_after
                        ),
                    })
                    .collect()
            })
        }
        Command::Maintain => {
            let report = workflow::maintain(store, specs, &waits, progress).await?;
            figures.push(figure(
                "vector_admin_maintain_steps",
                "Steps of the last maintenance run.",
                report.steps.len(),
            ));
            figures.push(figure(
                "vector_admin_maintain_steps_failed",
                "Steps of the last maintenance run that failed.",
                report.steps.iter().filter(|s| !s.ok).count(),
            ));
            emit(output, &report, |r| {
                r.steps
                    .iter()
                    .map(|s| format!("{} {}: {}\n", if s.ok { "ok  " } else { "FAIL" }, s.step, s.detail))
                    .collect()
            })?;
            if report.ok { Ok(()) } else { Err(bins::Reported("maintenance failed: see the report".into()).into()) }
        }
        Command::Drop { collection, yes } => {
            let rows = workflow::drop_collection(store, collection, *yes).await?;
            emit(output, &serde_json::json!({"dropped": collection, "rows": rows}), |_| {
                format!("dropped {collection} ({rows} rows)\n")
            })
        }
    }
}
