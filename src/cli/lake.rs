//! `berserkr lake …`.

use std::io::IsTerminal;
use std::sync::Mutex;

use berserkr::Lakehouse;
use berserkr::catalog::BRONZE;
use berserkr::ingest::DropFormat;
use berserkr::ops::append::{AppendProgress, AppendReport, DropStatus};
use berserkr::ops::engines::Engine;
use berserkr::ops::gold::Cutoffs;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::{EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK};

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Create the tables and apply pending migrations (a no-op when up to date).
    Init {
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Bring silver up to date with bronze (only new bronze versions are read), and/or rebuild
    /// the gold features from the latest silver.
    Refresh {
        /// Which layer.
        #[arg(value_enum, default_value = "all")]
        layer: LayerArg,
        /// Gold cutoff ('YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'); repeatable. Default: the last
        /// silver timestamp minus the label window.
        #[arg(long)]
        cutoff: Vec<String>,
        /// Gold cutoffs: `monthly` (every month start whose label window is complete),
        /// `latest`, dates, or several separated by commas [default: the lake's setting (`lake
        /// settings`), else latest].
        #[arg(long, conflicts_with = "cutoff")]
        cutoffs: Option<String>,
        /// Rebuild every cutoff asked for (default: only those new silver rows can change).
        #[arg(long)]
        full: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Land lzop drops (files, folders, glob patterns) in bronze, each exactly once.
    Append(AppendArgs),
    /// The daily job in one idempotent command: append the drops given, refresh silver and
    /// gold (the lake's cutoffs, see `lake settings`), optionally train and score. A second
    /// run with nothing new does nothing; a run that failed resumes at the failed step.
    Run(RunArgs),
    /// Show or change the lake's settings (kept in the gold table's properties).
    Settings {
        /// Gold's cutoffs for `lake run` and `lake refresh gold`: `latest`, `monthly`, dates
        /// ('YYYY-MM-DD[ HH:MM:SS]'), or several separated by commas (e.g. `monthly,latest`).
        #[arg(long)]
        cutoffs: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compact small files (or Z-order them); rows and versions are unchanged.
    Optimize {
        /// Only this table (default: every table).
        #[arg(long)]
        table: Option<String>,
        /// Z-order by these columns (comma-separated; needs --table), e.g. CustomerID,StockCode.
        #[arg(long, value_delimiter = ',', requires = "table")]
        zorder: Vec<String>,
        /// Target file size (bytes, or with KiB/MiB/GiB) [default: delta.targetFileSize, 100 MiB].
        #[arg(long, value_parser = super::parse_size)]
        target_size: Option<usize>,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Delete files no version inside the retention needs (nor any pinned training snapshot).
    Vacuum {
        /// Only this table (default: every table).
        #[arg(long)]
        table: Option<String>,
        /// Hours of history to keep; under 168 (seven days) needs --force.
        #[arg(long, default_value_t = berserkr::ops::care::MIN_RETAIN_HOURS)]
        retain: u64,
        /// List what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a retention under seven days.
        #[arg(long)]
        force: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// The commits of a table, newest first.
    History {
        /// The table.
        #[arg(long, default_value = BRONZE)]
        table: String,
        /// At most this many commits.
        #[arg(long)]
        limit: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a table's latest version hold what an earlier version held (a new commit).
    Restore {
        /// The table.
        #[arg(long)]
        table: String,
        /// The version to restore.
        #[arg(long)]
        version: u64,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Check that every engine berserkr promises (Spark, Trino, Databricks, DuckDB, polars, and
    /// readers of the symlink manifests) can read every table: protocol, types, checkpoint,
    /// partition values, manifests. Exit 1 when one cannot.
    Check {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the symlink manifests (`_symlink_format_manifest/`) that Presto, Trino's Hive
    /// connector, Athena, Redshift Spectrum and BigQuery read: of one table, or of every table
    /// that keeps them current (delta.compatibility.symlinkFormatManifest.enabled).
    Manifest {
        /// Only this table (written even when its property is off).
        #[arg(long)]
        table: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the statements that make the lake's tables queryable in another engine.
    Register {
        /// The engine.
        #[arg(long, value_enum)]
        engine: EngineArg,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// A view of this version of --table (Spark, Trino and DuckDB time travel).
        #[arg(long, requires = "table")]
        version: Option<u64>,
        /// The lake's root as the engine reaches it, e.g. s3a://bucket/lake [default: --lake].
        #[arg(long)]
        lake_url: Option<String>,
        /// Trino catalog of the Delta Lake connector.
        #[arg(long, default_value = "delta")]
        catalog: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Version, files, rows, bytes, last checkpoint and small files of every table (or of one
    /// table at an earlier version).
    Status {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// The table's state at this version (time travel; needs --table).
        #[arg(long, requires = "table")]
        version: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Drops: .lzo files, folders of them, or glob patterns.
    #[arg(required = true)]
    paths: Vec<String>,
    /// Bronze table to append to.
    #[arg(long, default_value = BRONZE)]
    table: String,
    /// Let the sound drops land when others fail (exit status is still 1).
    #[arg(long)]
    keep_going: bool,
    /// Text format of the drops (default: from the name, else from the content).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Text encoding of the drops, transcoded to UTF-8 as they are read: a WHATWG label such as
    /// windows-1252 (latin1, cp1252), iso-8859-15, shift_jis [default: the config's
    /// [sources."PREFIX"] encoding for the drop, else utf-8].
    #[arg(long, value_parser = parse_encoding)]
    encoding: Option<berserkr::config::TextEncoding>,
    /// Parquet writers per drop (default: one per core for drops over 16 MiB, else one).
    #[arg(long)]
    writers: Option<usize>,
    /// Print a machine-readable JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    /// Spark SQL with delta-spark.
    Spark,
    /// Trino's Delta Lake connector.
    Trino,
    /// Hive, over the symlink manifests.
    Hive,
    /// Athena, over the symlink manifests.
    Athena,
    /// DuckDB's delta extension.
    Duckdb,
}

fn parse_encoding(s: &str) -> Result<berserkr::config::TextEncoding, String> {
    s.parse().map_err(|e: berserkr::Error| e.to_string())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn rows(r: Option<u64>) -> String {
    r.map_or_else(|| "?".to_string(), |r| r.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayerArg {
    /// silver.* from bronze.
    Silver,
    /// gold.customer_item_features from silver.
    Gold,
    /// silver, then gold.
    All,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// New drops: .lzo files, folders of them, or glob patterns (none: start at silver).
    paths: Vec<String>,
    /// Let the sound drops land and the later steps run when a drop fails (exit status is
    /// still 1).
    #[arg(long)]
    keep_going: bool,
    /// Gold cutoffs for this run [default: the lake's setting (`lake settings`), else latest].
    #[arg(long)]
    cutoffs: Option<String>,
    /// Train a model on the new gold version into --out (skipped when --out already holds a
    /// model of that version with these parameters).
    #[arg(long)]
    train: bool,
    /// Learner for --train.
    #[arg(long, value_enum, default_value = "gradient-boosting")]
    model: super::ml::ModelArg,
    /// Seed for --train.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Score the present with the model in --out into gold.purchase_scores.
    #[arg(long)]
    score: bool,
    /// Model directory.
    #[arg(long, default_value = "model")]
    out: std::path::PathBuf,
    /// Print one JSON summary on standard output.
    #[arg(long)]
    json: bool,
}

fn parse_cutoff(s: &str) -> anyhow::Result<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(s, berserkr::catalog::CUTOFF_FORMAT)
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        })
        .map_err(|_| anyhow::anyhow!("cutoff {s:?} is not 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Json,
}

fn print_silver(report: &berserkr::ops::refresh::RefreshReport) {
    for t in &report.tables {
        match t.version {
            Some(v) => println!(
                "{:<32} +{} rows from {} versions {}..={} (version {v})",
                t.table,
                t.rows,
                t.source,
                t.from_source_version.map_or(0, |f| f + 1),
                t.to_source_version
            ),
            None => println!(
                "{:<32} up to date with {} version {}",
                t.table, t.source, t.to_source_version
            ),
        }
    }
    for (source, rules) in &report.expectations {
        for (rule, c) in rules {
            if c.violations > 0 {
                println!(
                    "expectation {rule} ({:?}) on {source}: {} rows",
                    c.action, c.violations
                );
            }
        }
    }
}

/// Runs one `lake` subcommand.
pub async fn run(lake: Lakehouse, cmd: LakeCommand) -> anyhow::Result<u8> {
    match cmd {
        LakeCommand::Init { json } => init(lake, json).await,
        LakeCommand::Refresh {
            layer,
            cutoff,
            cutoffs,
            full,
            json,
        } => refresh(lake, layer, &cutoff, cutoffs, full, json).await,
        LakeCommand::Append(args) => append(lake, args).await,
        LakeCommand::Run(args) => run_daily(lake, args).await,
        LakeCommand::Settings { cutoffs, json } => settings(lake, cutoffs, json).await,
        LakeCommand::Optimize {
            table,
            zorder,
            target_size,
            json,
        } => optimize(lake, table, zorder, target_size, json).await,
        LakeCommand::Vacuum {
            table,
            retain,
            dry_run,
            force,
            json,
        } => vacuum(lake, table, retain, dry_run, force, json).await,
        LakeCommand::History { table, limit, json } => history(lake, table, limit, json).await,
        LakeCommand::Restore {
            table,
            version,
            json,
        } => restore(lake, table, version, json).await,
        LakeCommand::Check { table, json } => check(lake, table, json).await,
        LakeCommand::Manifest { table, json } => manifest(lake, table, json).await,
        LakeCommand::Register {
            engine,
            table,
            version,
            lake_url,
            catalog,
            json,
        } => register(lake, engine, table, version, lake_url, catalog, json).await,
        LakeCommand::Status {
            table,
            version,
            json,
        } => status(lake, table, version, json).await,
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn init(lake: Lakehouse, json: bool) -> anyhow::Result<u8> {
    let report = lake.init().await?;
    if json {
        print_json(&report)?;
        return Ok(EXIT_OK);
    }
    if report.applied.is_empty() {
        println!("lake {} is up to date", lake.root());
    }
    for m in &report.applied {
        println!("applied {} to {} (version {})", m.name, m.table, m.version);
    }
    for (t, v) in &report.tables {
        println!("{t:<32} version {v}");
    }
    Ok(EXIT_OK)
}

async fn refresh(
    lake: Lakehouse,
    layer: LayerArg,
    cutoff: &[String],
    cutoffs: Option<String>,
    full: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let gold_cutoffs = match (cutoffs, cutoff.is_empty()) {
        (Some(text), _) => Some(text.parse::<Cutoffs>()?),
        (None, true) => None,
        (None, false) => Some(Cutoffs::At(
            cutoff
                .iter()
                .map(|c| parse_cutoff(c))
                .collect::<anyhow::Result<_>>()?,
        )),
    };
    let mut out = serde_json::Map::new();
    if matches!(layer, LayerArg::Silver | LayerArg::All) {
        let report = match lake.refresh_silver().await {
            Ok(r) => r,
            Err(e @ berserkr::Error::ExpectationFailed { .. }) => {
                eprintln!("berserkr: {e}");
                return Ok(EXIT_BAD_INPUT);
            }
            Err(e) => return Err(e.into()),
        };
        if json {
            out.insert("silver".into(), serde_json::to_value(&report)?);
        } else {
            print_silver(&report);
        }
        if matches!(layer, LayerArg::All) {
            // Gold starts from what is in use, not from silver's peak.
            super::alloc::give_back();
        }
    }
    if matches!(layer, LayerArg::Gold | LayerArg::All) {
        let report = lake
            .refresh_gold()
            .with_cutoffs(gold_cutoffs)
            .with_full(full)
            .await?;
        if json {
            out.insert("gold".into(), serde_json::to_value(&report)?);
        } else {
            print_gold(&report);
        }
    }
    if json {
        print_json(&out)?;
    }
    Ok(EXIT_OK)
}

async fn settings(lake: Lakehouse, cutoffs: Option<String>, json: bool) -> anyhow::Result<u8> {
    let report = match cutoffs {
        Some(text) => {
            let r = lake.set_cutoffs(text.parse::<Cutoffs>()?).await?;
            serde_json::json!({ "table": r.table, "cutoffs": r.cutoffs, "version": r.version })
        }
        None => serde_json::json!({
            "cutoffs": lake.cutoffs().await?.map(|c| c.to_string()),
        }),
    };
    if json {
        print_json(&report)?;
        return Ok(EXIT_OK);
    }
    match (&report["cutoffs"], &report["version"]) {
        (serde_json::Value::Null, _) => println!("cutoffs: not set (latest)"),
        (c, serde_json::Value::Null) if report.get("table").is_some() => {
            println!("cutoffs: {} (unchanged)", c.as_str().unwrap_or_default())
        }
        (c, serde_json::Value::Null) => println!("cutoffs: {}", c.as_str().unwrap_or_default()),
        (c, v) => println!(
            "cutoffs: {} (set in {} version {v})",
            c.as_str().unwrap_or_default(),
            report["table"].as_str().unwrap_or_default()
        ),
    }
    Ok(EXIT_OK)
}

async fn run_daily(lake: Lakehouse, args: RunArgs) -> anyhow::Result<u8> {
    use berserkr::pipeline::{RunEvent, StepStatus, TrainStep};
    let cutoffs = match args.cutoffs {
        Some(text) => Some(text.parse::<Cutoffs>()?),
        None => None,
    };
    let train = args.train.then(|| {
        let mut params = berserkr::ml::Params::defaults(args.model.kind());
        params.seed = args.seed;
        TrainStep {
            params,
            out: args.out.clone(),
        }
    });
    let json = args.json;
    let report = lake
        .run(args.paths)
        .with_keep_going(args.keep_going)
        .with_cutoffs(cutoffs)
        .with_train(train)
        .with_score(args.score.then_some(args.out))
        .with_observer(move |e| {
            if let RunEvent::Finished(s) = e
                && s.status != StepStatus::Skipped
            {
                // The next step starts from what is in use, not from this one's peak.
                super::alloc::give_back();
                if !json {
                    println!(
                        "{:<8} {:<10} {:>7.2} s  {}",
                        format!("{:?}", s.step).to_lowercase(),
                        format!("{:?}", s.status).to_lowercase(),
                        s.seconds,
                        step_summary(s)
                    );
                }
            }
        })
        .await?;
    if json {
        print_json(&report)?;
    } else if let Some(f) = &report.error {
        eprintln!("berserkr: {:?} failed: {}", f.step, f.message);
    } else if !report.did_work {
        println!("nothing to do: the lake is up to date");
    }
    Ok(match &report.error {
        None => EXIT_OK,
        Some(f) if f.bad_input => EXIT_BAD_INPUT,
        Some(_) => EXIT_ERROR,
    })
}

/// One line about a step of `lake run`, from its report.
fn step_summary(s: &berserkr::pipeline::StepReport) -> String {
    use berserkr::pipeline::Step;
    let d = &s.detail;
    match s.step {
        Step::Append => format!(
            "{} drops added ({} rows), {} already in, {} failed; {} version {}",
            d["added"],
            d["rows"],
            d["skipped"],
            d["failed"],
            d["table"].as_str().unwrap_or(""),
            d["version_after"]
        ),
        Step::Silver => d["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| format!("{} +{} rows", t["table"].as_str().unwrap_or(""), t["rows"]))
            .collect::<Vec<_>>()
            .join(", "),
        Step::Gold => format!(
            "built cutoffs [{}], unchanged {}, scoring as of {}",
            d["cutoffs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            d["unchanged"].as_array().map_or(0, Vec::len),
            d["scoring"]["cutoff"].as_str().unwrap_or("-")
        ),
        Step::Train => format!(
            "model {} on {} version {}",
            d["model_id"].as_str().unwrap_or(""),
            d["table"].as_str().unwrap_or(""),
            d["version"]
        ),
        Step::Score => format!(
            "{} rows into {}",
            d["rows"],
            d["table"].as_str().unwrap_or("")
        ),
    }
}

fn print_gold(report: &berserkr::ops::gold::GoldReport) {
    if let Some(s) = &report.scoring {
        match s.version {
            Some(v) => println!(
                "{:<32} {} rows as of {} (the last silver timestamp; no label) (version {v})",
                s.table, s.rows, s.cutoff
            ),
            None => println!("{:<32} up to date as of {}", s.table, s.cutoff),
        }
    }
    match report.version {
        Some(v) => println!(
            "{:<32} {} rows ({} labelled 1) for cutoffs {} from {} version {} (version {v})",
            report.table,
            report.rows,
            report.positives,
            report.cutoffs.join(", "),
            report.source,
            report.source_version
        ),
        None if report.cutoffs.is_empty() => println!(
            "{:<32} up to date with {} version {} for cutoffs {}",
            report.table,
            report.source,
            report.source_version,
            report.unchanged.join(", ")
        ),
        None => println!(
            "{:<32} already refreshed from {} version {} for cutoffs {}",
            report.table,
            report.source,
            report.source_version,
            report.cutoffs.join(", ")
        ),
    }
    if report.version.is_some() && !report.unchanged.is_empty() {
        println!(
            "{:<32} unchanged by the new silver rows: cutoffs {}",
            "",
            report.unchanged.join(", ")
        );
    }
    if !report.not_in_memory.is_empty() {
        println!(
            "{:<32} past the memory limit, read from files: {}",
            "",
            report.not_in_memory.join(", ")
        );
    }
}

async fn append(lake: Lakehouse, args: AppendArgs) -> anyhow::Result<u8> {
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .expect("valid template"),
        );
        b
    });
    let bar_cb = Mutex::new(bar.clone());
    let report = lake
        .append(args.paths)
        .with_table(args.table)
        .with_keep_going(args.keep_going)
        .with_writers(args.writers)
        .with_encoding(args.encoding)
        .with_format(args.format.map(|f| match f {
            FormatArg::Csv => DropFormat::Csv,
            FormatArg::Json => DropFormat::JsonLines,
        }))
        .with_progress(move |p| {
            let guard = bar_cb.lock().expect("progress lock");
            let Some(b) = guard.as_ref() else { return };
            match p {
                AppendProgress::Planned { bytes, .. } => b.set_length(*bytes),
                AppendProgress::Started { file } => {
                    b.set_message(file.rsplit('/').next().unwrap_or(file).to_string())
                }
                AppendProgress::Finished { report } => b.inc(report.bytes),
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.json {
        print_json(&report)?;
    } else {
        print_append(&report);
    }
    let failed: Vec<_> = report
        .drops
        .iter()
        .filter(|d| matches!(d.status, DropStatus::Failed))
        .collect();
    Ok(if failed.is_empty() {
        EXIT_OK
    } else if failed.iter().all(|d| d.bad_input) {
        EXIT_BAD_INPUT
    } else {
        EXIT_ERROR
    })
}

fn print_append(report: &AppendReport) {
    for d in &report.drops {
        match d.status {
            DropStatus::Failed => eprintln!(
                "berserkr: failed: {}",
                d.error.as_deref().unwrap_or("unknown error")
            ),
            DropStatus::NotAttempted => eprintln!("berserkr: not attempted: {}", d.file),
            _ => {}
        }
    }
    println!(
        "{}: {} drops added ({} rows, {} rejected lines), {} already ingested, {} failed; version {} -> {}",
        report.table,
        report.added,
        report.rows,
        report.rejects,
        report.skipped,
        report.failed,
        report.version_before,
        report.version_after
    );
    for c in &report.compacted {
        println!(
            "auto-compacted {}: {} files ({}) -> {} files ({}), version {}",
            c.table,
            c.before.files,
            human(c.before.bytes),
            c.after.files,
            human(c.after.bytes),
            c.version.map_or("unchanged".into(), |v| v.to_string())
        );
    }
    if let Some(e) = &report.compact_error {
        eprintln!("berserkr: warning: auto-compaction failed (the appends stand): {e}");
    }
}

async fn optimize(
    lake: Lakehouse,
    table: Option<String>,
    zorder: Vec<String>,
    target_size: Option<usize>,
    json: bool,
) -> anyhow::Result<u8> {
    let report = lake
        .optimize()
        .with_table(table)
        .with_zorder(zorder)
        .with_target_size(target_size.map(|b| b as u64))
        .await?;
    if json {
        print_json(&report)?;
        return Ok(EXIT_OK);
    }
    for t in &report.tables {
        println!(
            "{:<32} {} files ({}, {} rows) -> {} files ({}, {} rows): {} rewritten into {}{} in {:.2} s",
            t.table,
            t.before.files,
            human(t.before.bytes),
            rows(t.before.rows),
            t.after.files,
            human(t.after.bytes),
            rows(t.after.rows),
            t.files_removed,
            t.files_added,
            t.version
                .map_or(", nothing to do".to_string(), |v| format!(" (version {v})")),
            t.seconds
        );
    }
    Ok(EXIT_OK)
}

async fn vacuum(
    lake: Lakehouse,
    table: Option<String>,
    retain: u64,
    dry_run: bool,
    force: bool,
    json: bool,
) -> anyhow::Result<u8> {
    // A refused retention is an error like any other (exit 2, the reason printed).
    let report = lake
        .vacuum()
        .with_table(table)
        .with_retain_hours(retain)
        .with_dry_run(dry_run)
        .with_force(force)
        .await?;
    if json {
        print_json(&report)?;
        return Ok(EXIT_OK);
    }
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for t in &report.tables {
        println!("{:<32} {verb} {} files", t.table, t.files.len());
        if report.dry_run {
            for f in &t.files {
                println!("  {f}");
            }
        }
        if !t.pinned_versions.is_empty() {
            println!(
                "{:<32} kept versions pinned by models: {:?}",
                "", t.pinned_versions
            );
        }
    }
    Ok(EXIT_OK)
}

async fn history(
    lake: Lakehouse,
    table: String,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<u8> {
    let entries = lake.history(table).with_limit(limit).await?;
    if json {
        print_json(&entries)?;
        return Ok(EXIT_OK);
    }
    println!(
        "{:>7}  {:<23}  {:<18}  details",
        "version", "time (UTC)", "operation"
    );
    for e in &entries {
        let time = e
            .timestamp
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or("?".to_string(), |t| {
                t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
            });
        let details = if e.berserkr.is_empty() {
            e.parameters.to_string()
        } else {
            serde_json::to_string(&e.berserkr)?
        };
        let details: String = details.chars().take(160).collect();
        println!(
            "{:>7}  {time:<23}  {:<18}  {details}",
            e.version, e.operation
        );
    }
    Ok(EXIT_OK)
}

async fn restore(lake: Lakehouse, table: String, version: u64, json: bool) -> anyhow::Result<u8> {
    let r = lake.restore(table, version).await?;
    if json {
        print_json(&r)?;
        return Ok(EXIT_OK);
    }
    println!(
        "{}: restored version {} as version {} ({} files removed, {} restored)",
        r.table, r.restored_version, r.version, r.files_removed, r.files_restored
    );
    if !r.transactions.is_empty() {
        println!(
            "{}: {} application transactions set back (drops or source versions to read again)",
            r.table,
            r.transactions.len()
        );
    }
    for d in &r.downstream {
        println!("note: {d} is built from {} and was not changed", r.table);
    }
    Ok(EXIT_OK)
}

async fn check(lake: Lakehouse, table: Option<String>, json: bool) -> anyhow::Result<u8> {
    let report = lake.check().with_table(table).await?;
    if json {
        print_json(&report)?;
    } else {
        for t in &report.tables {
            let mut features = t.reader_features.clone();
            features.extend(
                t.writer_features
                    .iter()
                    .filter(|f| !t.reader_features.contains(f))
                    .cloned(),
            );
            let features = if features.is_empty() {
                String::new()
            } else {
                format!(" [{}]", features.join(", "))
            };
            let checkpoint = t
                .checkpoint
                .map_or("no checkpoint".to_string(), |c| format!("checkpoint {c}"));
            let verdict = if t.problems.is_empty() { "ok" } else { "FAILS" };
            println!(
                "{:<34} {verdict:<6} version {}, protocol {}/{}{features}, {checkpoint}{}",
                t.table,
                t.version,
                t.min_reader_version,
                t.min_writer_version,
                if t.manifests { ", manifests" } else { "" }
            );
            for p in &t.problems {
                println!("  {}: {}", p.feature, p.reason);
            }
        }
    }
    if report.ok() {
        Ok(EXIT_OK)
    } else {
        if !json {
            eprintln!(
                "berserkr: some tables are outside what every promised engine reads (see above)"
            );
        }
        Ok(EXIT_BAD_INPUT)
    }
}

async fn manifest(lake: Lakehouse, table: Option<String>, json: bool) -> anyhow::Result<u8> {
    let report = lake.manifest().with_table(table).await?;
    if json {
        print_json(&report)?;
        return Ok(EXIT_OK);
    }
    if report.tables.is_empty() {
        println!("no table keeps symlink manifests (name one with --table)");
    }
    for t in &report.tables {
        println!(
            "{:<32} version {}: {} manifests listing {} files{}",
            t.table,
            t.version,
            t.manifests,
            t.files,
            if t.removed > 0 {
                format!(", {} of emptied partitions deleted", t.removed)
            } else {
                String::new()
            }
        );
    }
    Ok(EXIT_OK)
}

#[allow(clippy::too_many_arguments)]
async fn register(
    lake: Lakehouse,
    engine: EngineArg,
    table: Option<String>,
    version: Option<u64>,
    lake_url: Option<String>,
    catalog: String,
    json: bool,
) -> anyhow::Result<u8> {
    let engine = match engine {
        EngineArg::Spark => Engine::Spark,
        EngineArg::Trino => Engine::Trino,
        EngineArg::Hive => Engine::Hive,
        EngineArg::Athena => Engine::Athena,
        EngineArg::Duckdb => Engine::Duckdb,
    };
    let registrations = lake
        .register(engine)
        .with_table(table)
        .with_version(version)
        .with_lake_url(lake_url)
        .with_catalog(catalog)
        .await?;
    if json {
        print_json(&registrations)?;
        return Ok(EXIT_OK);
    }
    for r in &registrations {
        println!("-- {} ({})", r.table, r.location);
        for s in &r.statements {
            println!("{s}");
        }
    }
    Ok(EXIT_OK)
}

async fn status(
    lake: Lakehouse,
    table: Option<String>,
    version: Option<u64>,
    json: bool,
) -> anyhow::Result<u8> {
    let status = lake
        .status()
        .with_table(table)
        .with_version(version)
        .await?;
    if json {
        print_json(&status)?;
        return Ok(EXIT_OK);
    }
    println!(
        "{:<34}{:>8}{:>8}{:>11}{:>12}{:>8}{:>12}{:>9}",
        "table", "version", "files", "rows", "bytes", "small", "checkpoint", "orphans"
    );
    for t in &status {
        match t.version {
            None => println!("{:<34}{:>8}", t.table, "-"),
            Some(v) => println!(
                "{:<34}{v:>8}{:>8}{:>11}{:>12}{:>8}{:>12}{:>9}",
                t.table,
                t.files.files,
                rows(t.files.rows),
                human(t.files.bytes),
                t.files.small_files,
                t.last_checkpoint.map_or("-".to_string(), |c| c.to_string()),
                t.orphans
                    .as_ref()
                    .map_or("-".to_string(), |o| o.files.to_string())
            ),
        }
    }
    Ok(EXIT_OK)
}
