//! The command line: parses, calls the library, prints. Nothing else prints.

mod lake;
mod lzo;
mod ml;

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
    /// The lake: a local folder or a URL (file://, s3://).
    #[arg(long, global = true, env = "BERSERKR_LAKE", default_value = "./lake")]
    lake: String,

    #[command(subcommand)]
    command: Command,
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
    /// Score the latest features with a trained model into gold.purchase_scores.
    Score(ml::ScoreArgs),
    /// Export a trained model.
    #[command(subcommand)]
    Model(ml::ModelCommand),
}

/// Runs the parsed command line and returns the exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Lzo(cmd) => lzo::run(cmd),
        Command::Lake(cmd) => runtime().and_then(|rt| rt.block_on(lake::run(&cli.lake, cmd))),
        Command::Train(args) => runtime().and_then(|rt| rt.block_on(ml::train(&cli.lake, args))),
        Command::Score(args) => runtime().and_then(|rt| rt.block_on(ml::score(&cli.lake, args))),
        Command::Model(cmd) => runtime().and_then(|rt| rt.block_on(ml::model(cmd))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("berserkr: error: {}", chain(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
