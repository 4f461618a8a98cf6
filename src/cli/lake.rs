//! `berserkr lake …`.

use std::io::IsTerminal;
use std::sync::Mutex;

use berserkr::Lakehouse;
use berserkr::ingest::DropFormat;
use berserkr::ops::append::{AppendProgress, DEFAULT_BRONZE, DropStatus};
use berserkr::ops::gold::Cutoffs;
use clap::{Subcommand, ValueEnum};
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
        /// Gold cutoffs at every month start whose label window is complete.
        #[arg(long, value_enum, conflicts_with = "cutoff")]
        cutoffs: Option<CutoffsArg>,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Land lzop drops (files, folders, glob patterns) in bronze, each exactly once.
    Append {
        /// Drops: .lzo files, folders of them, or glob patterns.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Bronze table to append to.
        #[arg(long, default_value = DEFAULT_BRONZE)]
        table: String,
        /// Let the sound drops land when others fail (exit status is still 1).
        #[arg(long)]
        keep_going: bool,
        /// Text format of the drops (default: from the name, else from the content).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Parquet writers per drop (default: one per core for drops over 16 MiB, else one).
        #[arg(long)]
        writers: Option<usize>,
        /// Print a machine-readable JSON summary.
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
        #[arg(long, value_parser = parse_size)]
        target_size: Option<u64>,
        /// Memory the Z-order sort may hold before spilling to disk.
        #[arg(long, value_parser = parse_size, default_value = "512MiB")]
        memory: u64,
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
        #[arg(long, default_value = DEFAULT_BRONZE)]
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

/// Sizes such as `134217728`, `128MiB`, `128MB`, `1GiB`, `512k`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 128MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CutoffsArg {
    /// The first day of every month.
    Monthly,
}

fn parse_cutoff(s: &str) -> anyhow::Result<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(s, berserkr::ops::gold::CUTOFF_FORMAT)
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

pub async fn run(lake: Lakehouse, cmd: LakeCommand) -> anyhow::Result<u8> {
    match cmd {
        LakeCommand::Init { json } => {
            let report = lake.init().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                if report.applied.is_empty() {
                    println!("lake {} is up to date", lake.root());
                }
                for m in &report.applied {
                    println!("applied {} to {} (version {})", m.name, m.table, m.version);
                }
                for (t, v) in &report.tables {
                    println!("{t:<32} version {v}");
                }
            }
            Ok(EXIT_OK)
        }
        LakeCommand::Refresh {
            layer,
            cutoff,
            cutoffs,
            json,
        } => {
            let gold_cutoffs = match (cutoffs, cutoff.is_empty()) {
                (Some(CutoffsArg::Monthly), _) => Cutoffs::Monthly,
                (None, true) => Cutoffs::Latest,
                (None, false) => Cutoffs::At(
                    cutoff
                        .iter()
                        .map(|c| parse_cutoff(c))
                        .collect::<anyhow::Result<_>>()?,
                ),
            };
            let silver = matches!(layer, LayerArg::Silver | LayerArg::All);
            let gold = matches!(layer, LayerArg::Gold | LayerArg::All);
            let mut out = serde_json::Map::new();
            if silver {
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
            }
            if gold {
                let report = lake.refresh_gold(gold_cutoffs).await?;
                if json {
                    out.insert("gold".into(), serde_json::to_value(&report)?);
                } else {
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
                        None => println!(
                            "{:<32} up to date with {} version {} for cutoffs {}",
                            report.table,
                            report.source,
                            report.source_version,
                            report.cutoffs.join(", ")
                        ),
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(EXIT_OK)
        }
        LakeCommand::Append {
            paths,
            table,
            keep_going,
            format,
            writers,
            json,
        } => {
            let bar = (!json && std::io::stderr().is_terminal()).then(|| {
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
                .append(paths)
                .with_table(table)
                .with_keep_going(keep_going)
                .with_writers(writers)
                .with_format(format.map(|f| match f {
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
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for d in &report.drops {
                    match d.status {
                        DropStatus::Failed => eprintln!(
                            "berserkr: failed: {}",
                            d.error.as_deref().unwrap_or("unknown error")
                        ),
                        DropStatus::NotAttempted => {
                            eprintln!("berserkr: not attempted: {}", d.file)
                        }
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
            }
            let failed: Vec<_> = report
                .drops
                .iter()
                .filter(|d| matches!(d.status, DropStatus::Failed))
                .collect();
            if !json {
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
            Ok(if failed.is_empty() {
                EXIT_OK
            } else if failed.iter().all(|d| d.bad_input) {
                EXIT_BAD_INPUT
            } else {
                EXIT_ERROR
            })
        }
        LakeCommand::Optimize {
            table,
            zorder,
            target_size,
            memory,
            json,
        } => {
            let report = lake
                .optimize()
                .with_table(table)
                .with_zorder(zorder)
                .with_target_size(target_size)
                .with_memory_limit(usize::try_from(memory).unwrap_or(usize::MAX))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
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
            }
            Ok(EXIT_OK)
        }
        LakeCommand::Vacuum {
            table,
            retain,
            dry_run,
            force,
            json,
        } => {
            // A refused retention is an error like any other (exit 2, the reason printed).
            let report = lake
                .vacuum()
                .with_table(table)
                .with_retain_hours(retain)
                .with_dry_run(dry_run)
                .with_force(force)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
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
            }
            Ok(EXIT_OK)
        }
        LakeCommand::History { table, limit, json } => {
            let entries = lake.history(&table, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
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
            }
            Ok(EXIT_OK)
        }
        LakeCommand::Restore {
            table,
            version,
            json,
        } => {
            let r = lake.restore(&table, version).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
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
            }
            Ok(EXIT_OK)
        }
        LakeCommand::Status {
            table,
            version,
            json,
        } => {
            let status = match (&table, version) {
                (Some(t), Some(v)) => vec![lake.status_at(t, v).await?],
                (Some(t), None) => {
                    let all = lake.status().await?;
                    let one: Vec<_> = all.into_iter().filter(|s| &s.table == t).collect();
                    anyhow::ensure!(!one.is_empty(), "unknown table {t} (see tables/)");
                    one
                }
                _ => lake.status().await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "{:<34}{:>8}{:>8}{:>11}{:>12}{:>8}{:>12}",
                    "table", "version", "files", "rows", "bytes", "small", "checkpoint"
                );
                for t in &status {
                    match t.version {
                        None => println!("{:<34}{:>8}", t.table, "-"),
                        Some(v) => println!(
                            "{:<34}{v:>8}{:>8}{:>11}{:>12}{:>8}{:>12}",
                            t.table,
                            t.files.files,
                            rows(t.files.rows),
                            human(t.files.bytes),
                            t.files.small_files,
                            t.last_checkpoint.map_or("-".to_string(), |c| c.to_string())
                        ),
                    }
                }
            }
            Ok(EXIT_OK)
        }
    }
}
