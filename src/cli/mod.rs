//! The command line: parses, calls the library, prints. Nothing else prints.

pub mod alloc;
mod lake;
mod lzo;
mod ml;
mod query;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status: everything worked.
pub const EXIT_OK: u8 = 0;
/// Exit status: the input data is bad (a corrupt drop, a failed lzo test); what could be done was
/// done and nothing half-written was left.
pub const EXIT_BAD_INPUT: u8 = 1;
/// Exit status: any other error (usage, configuration, I/O, a failed commit).
pub const EXIT_ERROR: u8 = 2;

/// berserkr: raw retail drops to purchase-likelihood models, through a Delta Lake medallion.
#[derive(Debug, Parser)]
#[command(name = "berserkr", version, about, max_term_width = 100)]
pub struct Cli {
    /// The lake: a local folder or a URL (file://, s3://) [default: the config's `lake`, else
    /// ./lake].
    #[arg(long, global = true, env = "BERSERKR_LAKE")]
    lake: Option<String>,

    /// Configuration file: `lake = "..."`, a `[storage]` table of object-store options
    /// (aws_endpoint, aws_region, aws_access_key_id, ...) and `[sources."PREFIX"]` tables
    /// (`encoding = "windows-1252"`) [default: ./berserkr.toml if present].
    #[arg(long, global = true, env = "BERSERKR_CONFIG")]
    config: Option<std::path::PathBuf>,

    /// Log what each step does, with timestamps and durations, on standard error (-v: steps,
    /// drops and commits, -vv: each cutoff too). RUST_LOG (e.g. `berserkr=debug,deltalake=info`)
    /// overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// The memory the refreshes' and optimize's queries may hold (2GiB, 512MiB, ...): past it,
    /// aggregations and sorts spill to temporary files and gold reads silver from its files
    /// instead of memory [default: the config's `memory_limit`, else 2GiB].
    #[arg(long, global = true, env = "BERSERKR_MEMORY_LIMIT", value_parser = parse_size)]
    memory_limit: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

/// A size as `berserkr.toml` and every size flag take it (2GiB, 512MiB, 1.5G, bytes).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    berserkr::config::parse_bytes(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read lzop files (the format of the drops).
    #[command(subcommand)]
    Lzo(lzo::LzoCommand),
    /// Create, fill and inspect the lake's tables.
    #[command(subcommand)]
    Lake(lake::LakeCommand),
    /// Train a purchase-likelihood model on a pinned snapshot of the gold features.
    Train(ml::TrainArgs),
    /// Score the present (features as of the last silver timestamp) with a trained model into
    /// gold.purchase_scores, or print one customer's most likely items.
    Score(ml::ScoreArgs),
    /// Serve a model's scores and the model over HTTP (GET /customers/{id}/top, POST /score).
    Serve(ml::ServeArgs),
    /// Export a trained model.
    #[command(subcommand)]
    Model(ml::ModelCommand),
    /// Run read-only SQL over the lake's tables (`SELECT ... FROM gold.customer_item_features`).
    Query(query::QueryArgs),
}

/// Runs the parsed command line and returns the exit status.
pub fn run(cli: Cli) -> ExitCode {
    init_logs(cli.verbose);
    let lake = || open_lake(cli.lake.as_deref(), cli.config.as_deref(), cli.memory_limit);
    let result = match cli.command {
        Command::Lzo(cmd) => lzo::run(cmd),
        Command::Lake(cmd) => {
            lake().and_then(|l| runtime().and_then(|rt| rt.block_on(lake::run(l, cmd))))
        }
        Command::Train(args) => {
            lake().and_then(|l| runtime().and_then(|rt| rt.block_on(ml::train(l, args))))
        }
        Command::Score(args) => {
            lake().and_then(|l| runtime().and_then(|rt| rt.block_on(ml::score(l, args))))
        }
        Command::Serve(args) => {
            lake().and_then(|l| runtime().and_then(|rt| rt.block_on(ml::serve(l, args))))
        }
        Command::Model(cmd) => runtime().and_then(|rt| rt.block_on(ml::model(cmd))),
        Command::Query(args) => {
            lake().and_then(|l| runtime().and_then(|rt| rt.block_on(query::run(l, args))))
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("berserkr: error: {}", chain(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The lake named by `--lake` (or BERSERKR_LAKE), else by the config file, else `./lake`; with
/// the config file's storage options. An explicit `--config` must exist; `./berserkr.toml` is
/// read when present.
fn open_lake(
    lake: Option<&str>,
    config: Option<&std::path::Path>,
    memory_limit: Option<usize>,
) -> anyhow::Result<berserkr::Lakehouse> {
    let default = std::path::Path::new(berserkr::config::FILE_NAME);
    let config = match config {
        Some(path) => berserkr::Config::load(path)?,
        None if default.is_file() => berserkr::Config::load(default)?,
        None => berserkr::Config::default(),
    };
    let location = lake.or(config.lake.as_deref()).unwrap_or("./lake");
    let mut lake = berserkr::Lakehouse::open(location)?
        .with_storage_options(config.storage)
        .with_sources(config.sources);
    if let Some(limit) = memory_limit.or(config.memory_limit) {
        lake = lake.with_memory_limit(limit);
    }
    Ok(lake)
}

/// The error and its causes on one line, without the repeats delta-rs messages carry.
fn chain(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for c in e.chain() {
        let t = c.to_string();
        if !s.contains(&t) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&t);
        }
    }
    s
}

/// Logs on standard error: quiet (warnings) by default, berserkr's steps with -v, its details
/// with -vv; RUST_LOG's `target=level` directives replace these. Nothing logged holds a secret:
/// storage options are never logged.
fn init_logs(verbose: u8) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The Delta kernel logs every snapshot it fails to load at ERROR, including the tables
    // `lake init` looks for before it creates them; its errors reach berserkr as results and are
    // reported there, with the table named, when they matter.
    let default = match verbose {
        0 => "warn,buoyant_kernel=off,delta_kernel=off",
        1 => "warn,buoyant_kernel=off,delta_kernel=off,berserkr=info",
        _ => "warn,buoyant_kernel=off,delta_kernel=off,berserkr=debug",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| default.parse().expect("valid directives"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(true);
    // A second initialisation (never in the binary) is not an error worth failing for.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
