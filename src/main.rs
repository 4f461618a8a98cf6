//! The `berserkr` binary: a thin shell over the library (see `cli`).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    cli::alloc::tune();
    cli::run(cli::Cli::parse())
}
