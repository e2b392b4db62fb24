//! `pg-backup`: streaming, verified PostgreSQL backups to disk and S3 (the seed's backup.sh,
//! restore.sh and verify.sh), over the `pg-backup` library.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::anyhow;
use bins::{ConnectOpts, Output};
use clap::{Args, Parser, Subcommand};
use datastores::push::JobRun;
use datastores::{Datastore, PostgresConfig, Settings, Source};
use pg_backup::{Compression, Format, Selector, Stores, Tier, Tools};

#[derive(Parser, Debug)]
#[command(
    name = "pg-backup",
    version,
    about = "Streaming, verified PostgreSQL backups to disk and S3",
    after_help = "With PUSHGATEWAY_URL (or PUSHGATEWAY_URL_FILE) set, backup, verify and prune push their run to that \
                  Prometheus Pushgateway (jobs pg_backup, pg_backup_verify, pg_backup_prune); a failed push is a \
                  warning on stderr and does not change the exit status."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Take a backup, then prune old ones
    Backup(BackupArgs),
    /// List complete backups, local and in S3
    List(Common),
    /// Restore a backup: latest, an id, or a file
    Restore(RestoreArgs),
    /// Check a backup: checksum and structure; --compare restores it into a scratch database
    Verify(VerifyArgs),
    /// Delete backups that retention does not keep
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// Local folder of backups [env: BACKUP_DIR]
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    connect: ConnectOpts,
}

#[derive(Args, Debug)]
struct BackupArgs {
    /// custom (parallel restore), directory (parallel dump and restore) or plain (SQL)
    #[arg(long, default_value = "custom", value_parser = Format::parse)]
    format: Format,
    /// zstd[:1-19], gzip[:1-9] or none [default: zstd:3; gzip:6 for plain, as backup.sh]
    #[arg(long, value_parser = Compression::parse, value_name = "ALGO[:LEVEL]")]
    compress: Option<Compression>,
    /// Parallel pg_dump jobs (directory format)
    #[arg(long, default_value_t = 2)]
    jobs: u32,
    /// daily, weekly, monthly, or auto (monthly on the 1st, weekly on Sundays)
    #[arg(long, default_value = "auto", value_name = "TIER")]
    tier: String,
    /// Also count every table with count(*) in the dump's snapshot and fail when a count differs
    /// from the archive's (the manifest always records the archive's exact counts)
    #[arg(long)]
    exact_counts: bool,
    /// Skip pruning after the backup
    #[arg(long)]
    no_prune: bool,
    /// Size of the first S3 parts in MiB (later parts grow)
    #[arg(long, default_value_t = 8, value_name = "MIB")]
    part_size_mib: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct RestoreArgs {
    /// latest, a backup id, or the path of a backup file
    #[arg(value_name = "BACKUP", required_unless_present = "from_s3")]
    backup: Option<String>,
    /// Restore this key from the bucket (relative to S3_PREFIX), e.g. daily/recommend_....sql.gz
    #[arg(long, value_name = "KEY")]
    from_s3: Option<String>,
    /// Restore into this database [default: POSTGRES_DB]
    #[arg(long, value_name = "NAME")]
    target_db: Option<String>,
    #[arg(long, default_value_t = 2)]
    jobs: u32,
    /// Replace a target that is not empty (needs --yes): the backup is restored into a new
    /// database, checked, then swapped in; the old one is kept as <target>_old_<time>
    #[arg(long)]
    clean: bool,
    /// Confirm --clean
    #[arg(long)]
    yes: bool,
    /// Drop the replaced database once the new one is in place, instead of keeping it
    #[arg(long, requires = "clean")]
    drop_old: bool,
    /// Terminate other sessions connected to the target
    #[arg(long)]
    terminate_connections: bool,
    /// Do not restore object ownership (roles missing on this server)
    #[arg(long)]
    no_owner: bool,
    /// maintenance_work_mem of the restore's sessions: index builds need it (per parallel job)
    #[arg(long, default_value = pg_backup::DEFAULT_MAINTENANCE_WORK_MEM, value_name = "SIZE")]
    maintenance_work_mem: String,
    #[arg(long, default_value = "postgres", value_name = "NAME")]
    maintenance_db: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// latest, a backup id, or the path of a backup file
    #[arg(value_name = "BACKUP", default_value = "latest")]
    backup: String,
    /// Restore into a scratch database and compare row counts
    #[arg(long)]
    compare: bool,
    /// With --compare, compare each table's content too (hashes recorded at backup time)
    #[arg(long, requires = "compare")]
    checksums: bool,
    /// With --compare, compare with the live database instead of the manifest (for backups
    /// without exact counts; a busy database always differs)
    #[arg(long, requires = "compare")]
    against_live: bool,
    #[arg(long, default_value_t = 2)]
    jobs: u32,
    /// maintenance_work_mem of the scratch restore's sessions
    #[arg(long, default_value = pg_backup::DEFAULT_MAINTENANCE_WORK_MEM, value_name = "SIZE")]
    maintenance_work_mem: String,
    #[arg(long, default_value = "postgres", value_name = "NAME")]
    maintenance_db: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct PruneArgs {
    /// Show what would be deleted
    #[arg(long)]
    dry_run: bool,
    /// Drop databases that restores replaced and kept, once older than this many days
    /// [env: RETENTION_REPLACED_DAYS, default 7]
    #[arg(long, value_name = "DAYS")]
    replaced_after_days: Option<u32>,
    #[arg(long, default_value = "postgres", value_name = "NAME")]
    maintenance_db: String,
    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    bins::init();
    let cli = Cli::parse();
    let output = match &cli.command {
        Command::Backup(a) => a.common.output,
        Command::List(a) => a.output,
        Command::Restore(a) => a.common.output,
        Command::Verify(a) => a.common.output,
        Command::Prune(a) => a.common.output,
    };
    let command = async {
        match cli.command {
            Command::Backup(args) => backup(args).await,
            Command::List(args) => list(args).await,
            Command::Restore(args) => restore(args).await,
            Command::Verify(args) => verify(args).await,
            Command::Prune(args) => prune(args).await,
        }
    };
    bins::run(command, |e| matches!(e.downcast_ref::<pg_backup::Error>(), Some(pg_backup::Error::Invalid(_))), output)
}

/// Everything a command needs from flags and environment.
struct Context {
    settings: Settings,
    stores: Stores,
    tools: Tools,
}

fn context(common: &Common) -> anyhow::Result<Context> {
    let settings =
        common.connect.settings().layer(Source::Other("default".into()), [("POSTGRES_APPLICATION_NAME", "pg-backup")]);
    let stores = bins::backups::stores(&settings, common.backup_dir.as_ref())?;
    let tools = Tools { bin_dir: settings.get("PG_BIN_DIR")?.map(|v| PathBuf::from(v.text)) };
    Ok(Context { settings, stores, tools })
}

fn postgres(settings: &Settings) -> anyhow::Result<PostgresConfig> {
    if !datastores::triggers(Datastore::Postgres).iter().any(|n| settings.is_set(n)) {
        return Err(anyhow!(pg_backup::Error::Invalid(
            "PostgreSQL is not configured: set POSTGRES_HOST (with POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD_FILE) or DATABASE_URL"
                .into()
        )));
    }
    Ok(PostgresConfig::from_settings(settings)?)
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let ctx = context(&args.common)?;
    let pg = postgres(&ctx.settings)?;
    let tier = Tier::parse(&args.tier, chrono::Utc::now().date_naive())
        .map_err(|e| anyhow!(pg_backup::Error::Invalid(format!("--tier: {e}"))))?;
    let compression =
        args.compress.unwrap_or(if args.format == Format::Plain { Compression::Gzip(6) } else { Compression::Zstd(3) });
    let mut policy = pg_backup::Policy::from_settings(&ctx.settings)?;
    policy.prune_after_backup = !args.no_prune;
    let options = pg_backup::BackupOptions {
        format: args.format,
        compression,
        jobs: args.jobs.max(1),
        tier,
        local_dir: ctx.stores.local_dir.clone(),
        s3: ctx.stores.s3.clone(),
        tools: ctx.tools.clone(),
        exact_counts: args.exact_counts,
        part_size: args.part_size_mib.max(5) << 20,
    };
    let mut progress = bins::backups::Progress::new(&pg.dbname);
    let run = pg_backup::backup_and_prune(&pg, &options, &policy, &mut |p| progress.stored(p.stored_bytes)).await;
    progress.finish();
    let (manifest, failure) = match run.backup {
        Ok(m) => (Some(m), None),
        Err(pg_backup::Error::Incomplete { failures, manifest }) => {
            (Some(*manifest), Some(anyhow!(failures.join("; "))))
        }
        // Kept typed: bad input exits 2.
        Err(e) => (None, Some(anyhow::Error::new(e))),
    };
    let printed = match &manifest {
        Some(m) => print_backup(m, args.common.output),
        None => Ok(()),
    };
    let outcome = printed.and_then(|()| match failure {
        Some(f) => Err(f),
        None => bins::backups::report_prune(run.prune),
    });
    bins::backups::report_notices(outcome, run.notices, policy.notifications)
}

fn print_backup(m: &pg_backup::Manifest, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => bins::backups::print_json(m),
        Output::Table => Ok(bins::print(&format!(
            "Backup {} ({} tier): {} stored ({} dumped), sha256 {}, {:.1} s, in {}\n",
            m.id,
            m.tier,
            bins::backups::human(m.size_bytes),
            bins::backups::human(m.dump_bytes),
            m.sha256,
            m.duration_seconds,
            m.destinations.join(" and ")
        ))?),
    }
}

async fn list(args: Common) -> anyhow::Result<()> {
    let ctx = context(&args)?;
    let listed = pg_backup::list(&ctx.stores).await?;
    match args.output {
        Output::Json => bins::backups::print_json(&listed)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = listed
                .iter()
                .map(|l| {
                    vec![
                        l.id.clone(),
                        l.tier.to_string(),
                        format!("{:?}", l.format).to_lowercase(),
                        bins::backups::human(l.size_bytes),
                        l.finished_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        if l.verified { "yes".into() } else { "no".into() },
                        l.stored_in.join("+"),
                    ]
                })
                .collect();
            bins::print(&bins::table(&["ID", "TIER", "FORMAT", "SIZE", "FINISHED (UTC)", "VERIFIED", "WHERE"], &rows))?;
        }
    }
    Ok(())
}

async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let ctx = context(&args.common)?;
    let pg = postgres(&ctx.settings)?;
    if args.clean && !args.yes {
        return Err(anyhow!(pg_backup::Error::Invalid(
            "--clean drops the target database before restoring: add --yes to confirm".into()
        )));
    }
    let selector = match (&args.from_s3, &args.backup) {
        (Some(key), _) => Selector::S3Key(key.clone()),
        (None, Some(text)) => Selector::parse(text),
        (None, None) => {
            return Err(anyhow!(pg_backup::Error::Invalid(
                "name a backup: latest, an id, a path, or --from-s3 KEY".into()
            )));
        }
    };
    let options = pg_backup::RestoreOptions {
        selector,
        target_db: args.target_db.clone(),
        jobs: args.jobs.max(1),
        clean: args.clean,
        yes: args.yes,
        terminate: args.terminate_connections,
        drop_old: args.drop_old,
        no_owner: args.no_owner,
        maintenance_work_mem: args.maintenance_work_mem.clone(),
        tools: ctx.tools.clone(),
        stores: ctx.stores.clone(),
        maintenance_db: args.maintenance_db.clone(),
    };
    let report = pg_backup::restore(&pg, &options).await?;
    match args.common.output {
        Output::Json => bins::backups::print_json(&report)?,
        Output::Table => {
            let mut text = format!(
                "Restored {} into {}: {} tables, {} rows, checked against {}, {:.1} s\n",
                report.backup,
                report.database,
                report.tables.len(),
                report.rows,
                report.checked_against,
                report.seconds
            );
            if let Some(old) = &report.replaced {
                text.push_str(&format!(
                    "The database it replaced is kept as {old}; `pg-backup prune` drops it after the grace period\n"
                ));
            } else if report.dropped_old {
                text.push_str("The database it replaced was dropped\n");
            }
            bins::print(&text)?
        }
    }
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let ctx = context(&args.common)?;
    let pg = postgres(&ctx.settings)?;
    let options = pg_backup::VerifyOptions {
        selector: Selector::parse(&args.backup),
        compare: args.compare,
        checksums: args.checksums,
        against_live: args.against_live,
        jobs: args.jobs.max(1),
        maintenance_work_mem: args.maintenance_work_mem.clone(),
        tools: ctx.tools.clone(),
        stores: ctx.stores.clone(),
        maintenance_db: args.maintenance_db.clone(),
    };
    let started = Instant::now();
    let verified = pg_backup::verify(&pg, &options).await;
    let mut run = JobRun::new("pg_backup_verify", verified.is_ok(), started.elapsed()).label("instance", &pg.dbname);
    if let Ok(report) = &verified {
        run = run.gauge(
            "pg_backup_verify_tables_compared",
            "Tables whose rows the last successful verification compared.",
            report.tables_compared as f64,
        );
    }
    bins::push_run(&ctx.settings, &run).await;
    let report = verified?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    match args.common.output {
        Output::Json => bins::backups::print_json(&report)?,
        Output::Table => {
            let mut text = format!("Backup {} is good:\n", report.backup);
            for check in &report.checks {
                text.push_str(&format!("  - {check}\n"));
            }
            if let Some(against) = &report.compared_with {
                text.push_str(&format!("  (row counts compared with {against})\n"));
            }
            bins::print(&text)?;
        }
    }
    Ok(())
}

async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let ctx = context(&args.common)?;
    let pg = postgres(&ctx.settings)?;
    let grace_days = match args.replaced_after_days {
        Some(days) => days,
        None => backup_core::replaced_days(&ctx.settings)?,
    };
    let retention = pg_backup::Retention::from_settings(&ctx.settings)?;
    let now = chrono::Utc::now();
    let started = Instant::now();
    let pruned = async {
        let cluster = pg_backup::Cluster::of(&pg).await?;
        let mut report = pg_backup::prune(&ctx.stores, &cluster, retention, now, args.dry_run).await?;
        report.replaced_databases = pg_backup::prune_replaced_databases(
            &pg,
            &args.maintenance_db,
            &pg.dbname,
            std::time::Duration::from_secs(u64::from(grace_days) * 86_400),
            now,
            args.dry_run,
        )
        .await?;
        Ok::<_, pg_backup::Error>((cluster, report))
    }
    .await;
    // A dry run is not a run of the job.
    if !args.dry_run {
        let mut run = JobRun::new("pg_backup_prune", pruned.is_ok(), started.elapsed()).label("instance", &pg.dbname);
        if let Ok((_, report)) = &pruned {
            run = run
                .gauge(
                    "pg_backup_prune_deleted_backups",
                    "Backups the last prune deleted.",
                    report.deleted.len() as f64,
                )
                .gauge("pg_backup_prune_kept_backups", "Backups the last prune kept.", report.kept.len() as f64)
                .gauge(
                    "pg_backup_prune_dropped_databases",
                    "Databases replaced by a restore that the last prune dropped.",
                    report.replaced_databases.len() as f64,
                );
        }
        bins::push_run(&ctx.settings, &run).await;
    }
    let (_cluster, report) = pruned?;
    match args.common.output {
        Output::Json => bins::backups::print_json(&report)?,
        Output::Table => bins::print(&bins::backups::prune_text(&report, "cluster", Some(grace_days)))?,
    }
    Ok(())
}
