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

pub async fn run(location: &str, cmd: LakeCommand) -> anyhow::Result<u8> {
    let lake = Lakehouse::open(location)?;
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
            Ok(if failed.is_empty() {
                EXIT_OK
            } else if failed.iter().all(|d| d.bad_input) {
                EXIT_BAD_INPUT
            } else {
                EXIT_ERROR
            })
        }
    }
}
