//! `recommend-db`: the recommendation database's day-to-day operations (the seed's init-db.sh,
//! seed-data.sh and cleanup.sh), over the `recommend-db` library.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use bins::{ConnectOpts, Output};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use datastores::push::JobRun;
use datastores::{PostgresConfig, Settings, Source};
use recommend_db::{CleanupOptions, InitOptions, Roles, SeedOptions, Steps};

#[derive(Parser, Debug)]
#[command(
    name = "recommend-db",
    version,
    about = "The recommendation system's PostgreSQL database: init, seed, partitions, cleanup",
    after_help = "The database is POSTGRES_DB (default: recommend) on the server of POSTGRES_HOST / DATABASE_URL.\n\n\
                  With PUSHGATEWAY_URL (or PUSHGATEWAY_URL_FILE) set, partitions (without --check) and cleanup \
                  (without --report-only) push their run to that Prometheus Pushgateway (jobs \
                  recommend_db_partitions, recommend_db_cleanup); a failed push is a warning on stderr and does \
                  not change the exit status."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the database, extensions, schema and roles (each step idempotent)
    Init(InitArgs),
    /// Load realistic, reproducible test data with COPY
    Seed(SeedArgs),
    /// Create the monthly partitions ahead of time and list them
    Partitions(PartitionArgs),
    /// Remove old behaviours and requests by dropping whole partitions
    Cleanup(CleanupArgs),
}

#[derive(Args, Debug)]
struct InitArgs {
    /// All steps: users, database, extensions, migrations, grants
    #[arg(long)]
    full: bool,
    #[arg(long)]
    create_db: bool,
    #[arg(long)]
    install_extensions: bool,
    #[arg(long)]
    run_migrations: bool,
    /// Create the owner, application and read-only roles; passwords from
    /// RECOMMEND_{OWNER,APP,READONLY}_PASSWORD or their _FILE variants
    #[arg(long)]
    create_users: bool,
    #[arg(long)]
    grant_permissions: bool,
    /// Set the roles' passwords again even when the roles exist
    #[arg(long)]
    reset_passwords: bool,
    /// An existing database to connect to while creating the application database
    #[arg(long, default_value = "postgres", value_name = "NAME")]
    maintenance_db: String,
    /// Monthly partitions kept ahead of the current month
    #[arg(long, default_value_t = recommend_db::migrations::DEFAULT_PARTITIONS_AHEAD, value_name = "MONTHS")]
    partitions_ahead: u32,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectOpts,
}

#[derive(Args, Debug)]
struct SeedArgs {
    #[arg(long, default_value = "1000", value_parser = parse_count, value_name = "N", allow_negative_numbers = true)]
    users: u64,
    #[arg(long, default_value = "5000", value_parser = parse_count, value_name = "N", allow_negative_numbers = true)]
    items: u64,
    #[arg(long, default_value = "50000", value_parser = parse_count, value_name = "N", allow_negative_numbers = true)]
    behaviors: u64,
    /// Recommendation requests (10 results each) [default: behaviors / 10]
    #[arg(long, value_parser = parse_count, value_name = "N", allow_negative_numbers = true)]
    requests: Option<u64>,
    /// Months of history to generate
    #[arg(long, default_value_t = 3, value_name = "N")]
    months: u32,
    /// Random seed: the same seed (and --until) gives the same data
    #[arg(long, default_value_t = 42, value_name = "N")]
    seed: u64,
    /// Last day of the data, YYYY-MM-DD [default: today, UTC]
    #[arg(long, value_name = "DATE")]
    until: Option<NaiveDate>,
    /// Skip item and user embeddings
    #[arg(long)]
    no_embeddings: bool,
    /// Delete all existing data first (needs --yes)
    #[arg(long)]
    clean: bool,
    /// Confirm --clean
    #[arg(long)]
    yes: bool,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectOpts,
}

#[derive(Args, Debug)]
struct PartitionArgs {
    /// Months ahead of the current one
    #[arg(long, default_value_t = recommend_db::migrations::DEFAULT_PARTITIONS_AHEAD, value_name = "MONTHS")]
    ahead: u32,
    /// Months before the current one (for loading history)
    #[arg(long, default_value_t = 0, value_name = "MONTHS")]
    back: u32,
    /// Create nothing; exit 1 when a table lacks a partition for the current month or one of
    /// the months ahead (for a monitor)
    #[arg(long)]
    check: bool,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectOpts,
}

#[derive(Args, Debug)]
struct CleanupArgs {
    /// Keep user behaviours this many days
    #[arg(long, default_value_t = 90, value_name = "DAYS")]
    behaviors_days: u32,
    /// Keep recommendation requests and results this many days
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    requests_days: u32,
    /// Print what would be removed (rows and bytes per partition); change nothing
    #[arg(long)]
    report_only: bool,
    /// Rows deleted per statement in the partition that straddles the cutoff
    #[arg(long, default_value_t = 10_000, value_name = "ROWS")]
    batch_size: u32,
    /// Count the rows of the report exactly (reads every partition); estimates otherwise
    #[arg(long)]
    exact: bool,
    /// How long one attempt to lock a partition may wait
    #[arg(long, default_value = "5s", value_parser = datastores::parse_duration, value_name = "DURATION")]
    lock_timeout: std::time::Duration,
    /// How long to retry before leaving a detach to the next run (long transactions, such as a
    /// pg_dump, hold the locks)
    #[arg(long, default_value = "2m", value_parser = datastores::parse_duration, value_name = "DURATION")]
    lock_wait: std::time::Duration,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectOpts,
}

fn parse_count(text: &str) -> Result<u64, String> {
    let n: i128 = text.trim().parse().map_err(|_| format!("{text:?} is not a whole number"))?;
    if n < 0 {
        return Err(format!("{n} is negative; counts start at 0"));
    }
    if n > i128::from(recommend_db::MAX_ROWS) {
        return Err(format!("{n} is more than the limit of {}", recommend_db::MAX_ROWS));
    }
    Ok(n as u64)
}

fn main() -> ExitCode {
    bins::init();
    let cli = Cli::parse();
    let output = match &cli.command {
        Command::Init(a) => a.output,
        Command::Seed(a) => a.output,
        Command::Partitions(a) => a.output,
        Command::Cleanup(a) => a.output,
    };
    let command = async {
        match cli.command {
            Command::Init(args) => init(args).await,
            Command::Seed(args) => seed(args).await,
            Command::Partitions(args) => partitions(args).await,
            Command::Cleanup(args) => cleanup(args).await,
        }
    };
    bins::run(
        command,
        |e| matches!(e.downcast_ref::<recommend_db::Error>(), Some(recommend_db::Error::Invalid(_))),
        output,
    )
}

/// The connection settings, with the application database `recommend` unless POSTGRES_DB or a
/// URL names another.
fn settings(connect: &ConnectOpts) -> Settings {
    connect.settings().layer(
        Source::Other("default".into()),
        [("POSTGRES_DB", "recommend"), ("POSTGRES_APPLICATION_NAME", "recommend-db")],
    )
}

fn postgres(settings: &Settings) -> anyhow::Result<PostgresConfig> {
    if !datastores::triggers(datastores::Datastore::Postgres).iter().any(|n| settings.is_set(n)) {
        return Err(anyhow!(
            "PostgreSQL is not configured: set POSTGRES_HOST (and POSTGRES_USER, POSTGRES_PASSWORD_FILE) or DATABASE_URL"
        ));
    }
    Ok(PostgresConfig::from_settings(settings)?)
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    bins::print(&(serde_json::to_string_pretty(value)? + "\n"))?;
    Ok(())
}

async fn init(args: InitArgs) -> anyhow::Result<()> {
    let settings = settings(&args.connect);
    let admin = postgres(&settings)?;
    let steps = if args.full {
        Steps::full()
    } else {
        Steps {
            create_db: args.create_db,
            install_extensions: args.install_extensions,
            run_migrations: args.run_migrations,
            create_users: args.create_users,
            grant_permissions: args.grant_permissions,
        }
    };
    // Passwords are read only when roles may be created or reset.
    let roles = match steps.create_users {
        true => Roles::from_settings(&settings)?,
        false => Roles::names_from_settings(&settings)?,
    };
    let roles = roles.reset_passwords(args.reset_passwords);
    let options = InitOptions {
        database: admin.dbname.clone(),
        maintenance_db: args.maintenance_db.clone(),
        roles,
        extensions: recommend_db::EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
        steps,
        partitions_ahead: args.partitions_ahead,
    };
    let report = recommend_db::init(&admin, &options).await.map_err(|e| match e {
        recommend_db::Error::Admin(a) if a.message.contains("no password") => anyhow!(
            "{a}: set RECOMMEND_OWNER_PASSWORD, RECOMMEND_APP_PASSWORD and RECOMMEND_READONLY_PASSWORD (or their _FILE variants)"
        ),
        other => anyhow!(other),
    })?;
    match args.output {
        Output::Json => print_json(&report)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = report
                .steps
                .iter()
                .map(|s| vec![s.step.to_owned(), s.object.clone(), s.outcome.to_string(), s.detail.clone()])
                .collect();
            let mut text = bins::table(&["STEP", "OBJECT", "OUTCOME", "DETAIL"], &rows);
            text.push_str(if report.changed() {
                "Done.\n"
            } else {
                "Nothing changed: everything was already in place.\n"
            });
            bins::print(&text)?;
        }
    }
    Ok(())
}

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    if args.clean && !args.yes {
        return Err(anyhow::anyhow!(recommend_db::Error::Invalid(
            "--clean deletes every row of the database's tables before seeding: add --yes to confirm".into()
        )));
    }
    let options = SeedOptions {
        users: args.users,
        items: args.items,
        behaviors: args.behaviors,
        requests: args.requests.unwrap_or(args.behaviors / 10),
        months: args.months,
        seed: args.seed,
        until: args.until.unwrap_or_else(|| chrono::Utc::now().date_naive()),
        embeddings: !args.no_embeddings,
        clean: args.clean,
    };
    options.validate()?;
    let settings = settings(&args.connect);
    let pg = postgres(&settings)?;
    let client = pg.connect().await?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let mut last_phase = None;
    let mut progress = |p: recommend_db::Progress| {
        let phase = format!("{:?}", p.phase).to_lowercase();
        if let Some(bar) = &bar {
            bar.set_message(phase);
            bar.set_length(p.total);
            bar.set_position(p.done);
        } else if last_phase != Some(p.phase) {
            tracing::info!(target: "progress", phase, total = p.total, "loading");
            last_phase = Some(p.phase);
        }
    };
    let report = recommend_db::seed(&client, &options, &mut progress)
        .await
        .context(format!("seeding database {}", pg.dbname))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match args.output {
        Output::Json => print_json(&report)?,
        Output::Table => bins::print(&format!(
            "Seeded {}: {} users, {} items, {} behaviours, {} requests with {} results, {} item and {} user embeddings in {:.1} s\n",
            pg.dbname,
            report.users,
            report.items,
            report.behaviors,
            report.requests,
            report.results,
            report.item_embeddings,
            report.user_embeddings,
            report.seconds
        ))?,
    }
    Ok(())
}

async fn partitions(args: PartitionArgs) -> anyhow::Result<()> {
    let settings = settings(&args.connect);
    let pg = postgres(&settings)?;
    if args.check {
        let client = pg.connect().await?;
        let missing = recommend_db::missing_ahead(&client, args.ahead, chrono::Utc::now()).await?;
        if args.output == Output::Json {
            print_json(&missing)?;
        }
        if missing.is_empty() {
            if args.output == Output::Table {
                bins::print(&format!(
                    "Every partitioned table has its partitions for this month and {} ahead\n",
                    args.ahead
                ))?;
            }
            return Ok(());
        }
        let detail: Vec<String> = missing.iter().map(|m| format!("{}: {}", m.table, m.months.join(", "))).collect();
        return Err(anyhow::anyhow!(
            "partitions missing for the current month or the {} ahead (inserts dated then will fail): {}; run \
             `recommend-db partitions` to create them",
            args.ahead,
            detail.join("; ")
        ));
    }
    // Creating the month that enters the window is routine; a nearer month missing means the
    // job had stopped running, and inserts dated then were failing or soon would.
    let started = Instant::now();
    let created = async {
        let client = pg.connect().await?;
        let missing = recommend_db::missing_ahead(&client, args.ahead, chrono::Utc::now()).await?;
        let partitions = recommend_db::ensure_partitions(&client, args.back, args.ahead).await?;
        Ok::<_, anyhow::Error>((missing, partitions))
    }
    .await;
    let mut run =
        JobRun::new("recommend_db_partitions", created.is_ok(), started.elapsed()).label("instance", &pg.dbname);
    if let Ok((missing, partitions)) = &created {
        let overdue: usize = missing.iter().map(|m| m.months.len().saturating_sub(1)).sum();
        run = run
            .gauge(
                "recommend_db_partitions_created",
                "Partitions the last successful run created.",
                partitions.iter().filter(|p| p.created).count() as f64,
            )
            .gauge("recommend_db_partitions_present", "Partitions present after the last successful run.", partitions.len() as f64)
            .gauge(
                "recommend_db_partitions_overdue",
                "Partitions of the current month or the next ones that the last successful run found missing and created \
                 (the job had stopped running).",
                overdue as f64,
            );
    }
    bins::push_run(&settings, &run).await;
    let (missing, partitions) = created?;
    for m in &missing {
        let overdue: Vec<&String> = m.months.iter().rev().skip(1).collect();
        if !overdue.is_empty() {
            let months: Vec<&str> = overdue.iter().rev().map(|s| s.as_str()).collect();
            tracing::warn!(
                table = %m.table,
                months = %months.join(", "),
                "partitions were missing for the current month or the next ones; created now"
            );
        }
    }
    match args.output {
        Output::Json => print_json(&partitions)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = partitions
                .iter()
                .map(|p| {
                    vec![
                        p.table.clone(),
                        p.name.clone(),
                        p.range_start.format("%Y-%m-%d").to_string(),
                        p.range_end.format("%Y-%m-%d").to_string(),
                        p.rows_estimate.to_string(),
                        p.bytes.to_string(),
                        if p.created { "created".into() } else { "exists".into() },
                    ]
                })
                .collect();
            let mut text = bins::table(&["TABLE", "PARTITION", "FROM", "TO", "ROWS (EST.)", "BYTES", "STATE"], &rows);
            let created = partitions.iter().filter(|p| p.created).count();
            text.push_str(&format!("{created} partition(s) created, {} present\n", partitions.len()));
            bins::print(&text)?;
        }
    }
    Ok(())
}

async fn cleanup(args: CleanupArgs) -> anyhow::Result<()> {
    let options = CleanupOptions {
        behaviors_days: args.behaviors_days,
        requests_days: args.requests_days,
        batch_size: args.batch_size,
        exact: args.exact,
        lock_timeout: args.lock_timeout,
        lock_wait: args.lock_wait,
    };
    options.validate()?;
    let settings = settings(&args.connect);
    let pg = postgres(&settings)?;
    let started = Instant::now();
    let cleaned = async {
        let client = pg.connect().await?;
        recommend_db::cleanup(&client, &options, args.report_only, chrono::Utc::now())
            .await
            .map_err(anyhow::Error::from)
    }
    .await;
    // A report-only run is not a run of the job.
    if !args.report_only {
        bins::push_run(&settings, &cleanup_run(&pg.dbname, &cleaned, started.elapsed())).await;
    }
    let report = cleaned?;
    match args.output {
        Output::Json => print_json(&report)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = report
                .tables
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| {
                        vec![
                            t.table.clone(),
                            p.partition.clone(),
                            p.action.to_owned(),
                            if p.rows_exact { p.rows.to_string() } else { format!("~{}", p.rows) },
                            p.bytes.to_string(),
                            p.outcome.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                })
                .collect();
            let mut text = bins::table(&["TABLE", "PARTITION", "ACTION", "ROWS", "BYTES", "OUTCOME"], &rows);
            for table in &report.leftovers_dropped {
                text.push_str(&format!("Dropped {table}, detached by an earlier run\n"));
            }
            if report
                .tables
                .iter()
                .flat_map(|t| &t.partitions)
                .any(|p| p.outcome.as_deref().is_some_and(|o| o.contains("pending")))
            {
                text.push_str(
                    "Some partitions wait for long transactions (a backup?) to end; the next cleanup finishes them\n",
                );
            }
            let verb = if report.report_only { "Would remove" } else { "Removed" };
            text.push_str(&format!(
                "{verb} {} row(s); {} byte(s) freed by dropped partitions ({:.1} s)\n",
                report.rows_removed, report.bytes_freed, report.seconds
            ));
            bins::print(&text)?;
        }
    }
    Ok(())
}

/// A cleanup as pushed to the Pushgateway: the figures of a successful run only, so a failed one
/// keeps the last good run's.
fn cleanup_run(
    database: &str,
    cleaned: &anyhow::Result<recommend_db::CleanupReport>,
    duration: std::time::Duration,
) -> JobRun {
    let run = JobRun::new("recommend_db_cleanup", cleaned.is_ok(), duration).label("instance", database);
    let Ok(report) = cleaned else { return run };
    let outcomes: Vec<&str> =
        report.tables.iter().flat_map(|t| &t.partitions).filter_map(|p| p.outcome.as_deref()).collect();
    let count = |outcome: &str| outcomes.iter().filter(|o| **o == outcome).count();
    let left = outcomes.len() - count("dropped") - count("trimmed");
    run.gauge(
        "recommend_db_cleanup_rows_removed",
        "Rows the last successful cleanup removed.",
        report.rows_removed as f64,
    )
    .gauge(
        "recommend_db_cleanup_bytes_freed",
        "Bytes the partitions dropped by the last successful cleanup freed.",
        report.bytes_freed as f64,
    )
    .gauge(
        "recommend_db_cleanup_partitions_dropped",
        "Partitions the last successful cleanup dropped, leftovers of earlier runs included.",
        (count("dropped") + report.leftovers_dropped.len()) as f64,
    )
    .gauge(
        "recommend_db_cleanup_partitions_trimmed",
        "Partitions the last successful cleanup trimmed.",
        count("trimmed") as f64,
    )
    .gauge(
        "recommend_db_cleanup_partitions_left",
        "Partitions the last successful cleanup left to the next one: long transactions held their locks.",
        left as f64,
    )
}
