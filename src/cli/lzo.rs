//! `berserkr lzo cat` and `berserkr lzo test`.

use std::io::{BufWriter, Write};

use berserkr::lzo::{LzoError, LzopDecoder};
use clap::Subcommand;

use super::{EXIT_BAD_INPUT, EXIT_OK};

#[derive(Debug, Subcommand)]
pub enum LzoCommand {
    /// Decompress to standard output, like `lzop -dc` (`-` reads standard input).
    Cat {
        /// lzop files.
        #[arg(required = true)]
        files: Vec<String>,
        /// Decode on the calling thread only.
        #[arg(long)]
        single_thread: bool,
    },
    /// Verify every header, block and checksum, like `lzop -t`.
    Test {
        /// lzop files.
        #[arg(required = true)]
        files: Vec<String>,
    },
}

fn open(file: &str) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
    if file == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let f = std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
}

fn decode(file: &str, single: bool, out: &mut impl Write) -> anyhow::Result<Result<u64, LzoError>> {
    let name = if file == "-" { "<stdin>" } else { file };
    let mut total = 0u64;
    for block in LzopDecoder::new(open(file)?, name).with_parallel(!single) {
        match block {
            Ok(b) => {
                out.write_all(&b)?;
                total += b.len() as u64;
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(total))
}

pub fn run(cmd: LzoCommand) -> anyhow::Result<u8> {
    match cmd {
        LzoCommand::Cat {
            files,
            single_thread,
        } => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            for f in &files {
                match decode(f, single_thread, &mut out) {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        out.flush().ok();
                        eprintln!("berserkr: {e}");
                        return Ok(EXIT_BAD_INPUT);
                    }
                    Err(e) if is_broken_pipe(&e) => return Ok(EXIT_OK),
                    Err(e) => return Err(e),
                }
            }
            match out.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
                r => {
                    r?;
                    Ok(EXIT_OK)
                }
            }
        }
        LzoCommand::Test { files } => {
            let mut code = EXIT_OK;
            for f in &files {
                match decode(f, false, &mut std::io::sink())? {
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("berserkr: {e}");
                        code = EXIT_BAD_INPUT;
                    }
                }
            }
            Ok(code)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
