//! `mongo-backup`: streaming, verified MongoDB backups to disk and S3 in mongodump's layout, with
//! the same commands, stores, retention and notices as `pg-backup`, over the `mongo-backup`
//! library.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::anyhow;
use bins::backups::{human, print_json};
use bins::{ConnectOpts, Output};
use clap::{Args, Parser, Subcommand};
use datastores::push::JobRun;
use datastores::{Datastore, MongoConfig, Settings};
use mongo_backup::{Selector, Stores};

#[derive(Parser, Debug)]
#[command(
    name = "mongo-backup",
    version,
    about = "Streaming, verified MongoDB backups to disk and S3, in mongodump's layout",
    after_help = "A backup is <tier>/<id>.zip.zst beside <tier>/<id>.manifest.json, in BACKUP_DIR and/or \
                  s3://S3_BUCKET/S3_PREFIX (shared with pg-backup; each lists only its own backups). \
                  `zstd -d <id>.zip.zst && unzip <id>.zip -d dump && mongorestore --dir dump` restores one \
                  without dbkit. With PUSHGATEWAY_URL set, backup, verify and prune push their run \
                  (jobs mongo_backup, mongo_backup_verify, mongo_backup_prune)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Take a backup, then prune old ones
    Backup(BackupArgs),
    /// List complete MongoDB backups, local and in S3
    List(Common),
    /// Restore a backup: latest, an id, or a file
    Restore(RestoreArgs),
    /// Check a backup: checksum, every document, counts; --compare restores it into scratch databases
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
    /// A database to back up (repeat for several) [default: MONGODB_DATABASE, else every database
    /// but admin, local and config]
    #[arg(long = "db", value_name = "NAME")]
    databases: Vec<String>,
    /// zstd[:1-19], gzip[:1-9] or none
    #[arg(long, default_value = "zstd:3", value_parser = backup_core::Compression::parse, value_name = "ALGO[:LEVEL]")]
    compress: backup_core::Compression,
    /// daily, weekly, monthly, or auto (monthly on the 1st, weekly on Sundays)
    #[arg(long, default_value = "auto", value_name = "TIER")]
    tier: String,
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
    /// Restore this key from the bucket (relative to S3_PREFIX), e.g. daily/mongodb-platform_....zip.zst
    #[arg(long, value_name = "KEY")]
    from_s3: Option<String>,
    /// With latest: the newest backup of this name (a database's name, or all) [default: MONGODB_DATABASE]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Restore the backup's database under this name
    #[arg(long, value_name = "NAME")]
    target_db: Option<String>,
    /// Only this collection (`coll` or `db.coll`; repeat)
    #[arg(long, value_name = "COLLECTION")]
    include: Vec<String>,
    /// Not this collection (`coll` or `db.coll`; repeat)
    #[arg(long, value_name = "COLLECTION")]
    exclude: Vec<String>,
    /// Replace collections that hold documents (needs --yes): each is loaded beside its target,
    /// checked, then renamed over it in one step
    #[arg(long)]
    clean: bool,
    /// Confirm --clean
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// latest, a backup id, or the path of a backup file
    #[arg(value_name = "BACKUP", default_value = "latest")]
    backup: String,
    /// With latest: the newest backup of this name [default: MONGODB_DATABASE]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Restore into scratch databases and compare each collection's count and content hash
    #[arg(long)]
    compare: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct PruneArgs {
    /// The backups to prune: a database's name, or all [default: MONGODB_DATABASE, else all]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Show what would be deleted
    #[arg(long)]
    dry_run: bool,
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
    bins::run(
        command,
        |e| matches!(e.downcast_ref::<mongo_backup::Error>(), Some(mongo_backup::Error::Invalid(_))),
        output,
    )
}

struct Context {
    settings: Settings,
    stores: Stores,
}

fn context(common: &Common) -> anyhow::Result<Context> {
    let settings = common.connect.settings();
    let stores = bins::backups::stores(&settings, common.backup_dir.as_ref())?;
    Ok(Context { settings, stores })
}

fn mongo(settings: &Settings) -> anyhow::Result<MongoConfig> {
    if !datastores::triggers(Datastore::MongoDb).iter().any(|n| settings.is_set(n)) {
        return Err(anyhow!(mongo_backup::Error::Invalid(
            "MongoDB is not configured: set MONGODB_URI (or MONGODB_URI_FILE)".into()
        )));
    }
    Ok(MongoConfig::from_settings(settings)?)
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let ctx = context(&args.common)?;
    let mongo = mongo(&ctx.settings)?;
    let tier = backup_core::Tier::parse(&args.tier, chrono::Utc::now().date_naive())
        .map_err(|e| anyhow!(mongo_backup::Error::Invalid(format!("--tier: {e}"))))?;
    let databases =
        if args.databases.is_empty() { mongo.database.iter().cloned().collect() } else { args.databases.clone() };
    let mut policy = mongo_backup::Policy::from_settings(&ctx.settings)?;
    policy.prune_after_backup = !args.no_prune;
    let mut progress = bins::backups::Progress::new(&mongo_backup::backup_name(&databases));
    let options = mongo_backup::BackupOptions {
        databases,
        compression: args.compress,
        tier,
        local_dir: ctx.stores.local_dir.clone(),
        s3: ctx.stores.s3.clone(),
        part_size: args.part_size_mib.max(5) << 20,
    };
    let run = mongo_backup::backup_and_prune(&mongo, &options, &policy, &mut |p| progress.stored(p.stored_bytes)).await;
    progress.finish();
    let outcome = match run.backup {
        Ok(m) => print_backup(&m, args.common.output).and_then(|()| bins::backups::report_prune(run.prune)),
        // Kept typed: bad input exits 2.
        Err(e) => Err(anyhow::Error::new(e)),
    };
    bins::backups::report_notices(outcome, run.notices, policy.notifications)
}

fn print_backup(m: &mongo_backup::Manifest, output: Output) -> anyhow::Result<()> {
    for c in m.collections.iter().filter(|c| c.note.is_some()) {
        eprintln!("warning: {}.{}: {}", c.database, c.name, c.note.as_deref().unwrap_or_default());
    }
    match output {
        Output::Json => print_json(m),
        Output::Table => Ok(bins::print(&format!(
            "Backup {} ({} tier): {} collections, {} documents, {} stored, sha256 {}, consistency {}, {:.1} s, in {}\n",
            m.id,
            m.tier,
            m.collections.len(),
            m.documents(),
            human(m.size_bytes),
            m.sha256,
            m.consistency,
            m.duration_seconds,
            m.destinations.join(" and ")
        ))?),
    }
}

async fn list(args: Common) -> anyhow::Result<()> {
    let ctx = context(&args)?;
    let listed = mongo_backup::list(&ctx.stores).await?;
    match args.output {
        Output::Json => print_json(&listed)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = listed
                .iter()
                .map(|l| {
                    vec![
                        l.id.clone(),
                        l.tier.to_string(),
                        l.collections.to_string(),
                        l.documents.to_string(),
                        human(l.size_bytes),
                        l.finished_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        if l.verified { "yes".into() } else { "no".into() },
                        l.stored_in.join("+"),
                    ]
                })
                .collect();
            bins::print(&bins::table(
                &["ID", "TIER", "COLLECTIONS", "DOCUMENTS", "SIZE", "FINISHED (UTC)", "VERIFIED", "WHERE"],
                &rows,
            ))?;
        }
    }
    Ok(())
}

async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let ctx = context(&args.common)?;
    let mongo = mongo(&ctx.settings)?;
    if args.clean && !args.yes {
        return Err(anyhow!(mongo_backup::Error::Invalid(
            "--clean replaces collections that hold documents: add --yes to confirm".into()
        )));
    }
    let selector = match (&args.from_s3, &args.backup) {
        (Some(key), _) => Selector::S3Key(key.clone()),
        (None, Some(text)) => Selector::parse(text),
        (None, None) => {
            return Err(anyhow!(mongo_backup::Error::Invalid(
                "name a backup: latest, an id, a path, or --from-s3 KEY".into()
            )));
        }
    };
    let options = mongo_backup::RestoreOptions {
        selector,
        name: args.name.clone().or_else(|| mongo.database.clone()),
        target_db: args.target_db.clone(),
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        clean: args.clean,
        yes: args.yes,
        stores: ctx.stores.clone(),
    };
    let report = mongo_backup::restore(&mongo, &options).await?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    match args.common.output {
        Output::Json => print_json(&report)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = report
                .collections
                .iter()
                .map(|c| {
                    vec![
                        format!("{}.{}", c.database, c.collection),
                        c.documents.to_string(),
                        c.indexes.to_string(),
                        if c.replaced { "replaced".into() } else { "new".into() },
                    ]
                })
                .collect();
            let mut text = bins::table(&["COLLECTION", "DOCUMENTS", "INDEXES", "TARGET"], &rows);
            text.push_str(&format!(
                "Restored {}: {} collections, {} documents, {:.1} s\n",
                report.backup,
                report.collections.len(),
                report.documents,
                report.seconds
            ));
            bins::print(&text)?;
        }
    }
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let ctx = context(&args.common)?;
    let mongo = if args.compare { Some(mongo(&ctx.settings)?) } else { mongo(&ctx.settings).ok() };
    let name = args.name.clone().or_else(|| mongo.as_ref().and_then(|m| m.database.clone()));
    let options = mongo_backup::VerifyOptions {
        selector: Selector::parse(&args.backup),
        name: name.clone(),
        compare: args.compare,
        stores: ctx.stores.clone(),
    };
    let started = Instant::now();
    let verified = mongo_backup::verify(mongo.as_ref(), &options).await;
    let instance = name.unwrap_or_else(|| "all".into());
    let mut run = JobRun::new("mongo_backup_verify", verified.is_ok(), started.elapsed()).label("instance", &instance);
    if let Ok(report) = &verified {
        run = run.gauge(
            "mongo_backup_verify_documents",
            "Documents the last successful verification read.",
            report.documents as f64,
        );
    }
    bins::push_run(&ctx.settings, &run).await;
    let report = verified?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    match args.common.output {
        Output::Json => print_json(&report)?,
        Output::Table => bins::print(&format!(
            "Backup {} is good: SHA-256 matches, {} collections and {} documents read and counted{}\n",
            report.backup,
            report.collections,
            report.documents,
            if report.compared > 0 {
                format!(", {} collections restored and compared", report.compared)
            } else {
                String::new()
            }
        ))?,
    }
    Ok(())
}

async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let ctx = context(&args.common)?;
    let mongo = mongo(&ctx.settings)?;
    let name = args.name.clone().or_else(|| mongo.database.clone()).unwrap_or_else(|| "all".into());
    let retention = mongo_backup::Retention::from_settings(&ctx.settings)?;
    let started = Instant::now();
    let pruned = async {
        let deployment = mongo_backup::Deployment::of(&mongo, &name).await?;
        mongo_backup::prune(&ctx.stores, &deployment, retention, chrono::Utc::now(), args.dry_run).await
    }
    .await;
    if !args.dry_run {
        let mut run = JobRun::new("mongo_backup_prune", pruned.is_ok(), started.elapsed()).label("instance", &name);
        if let Ok(report) = &pruned {
            run = run
                .gauge(
                    "mongo_backup_prune_deleted_backups",
                    "Backups the last prune deleted.",
                    report.deleted.len() as f64,
                )
                .gauge("mongo_backup_prune_kept_backups", "Backups the last prune kept.", report.kept.len() as f64);
        }
        bins::push_run(&ctx.settings, &run).await;
    }
    let report = pruned?;
    match args.common.output {
        Output::Json => print_json(&report)?,
        Output::Table => bins::print(&bins::backups::prune_text(&report, "deployment", None))?,
    }
    Ok(())
}
