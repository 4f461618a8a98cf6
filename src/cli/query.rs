//! `berserkr query`: read-only SQL over the lake, printed as an aligned table or written as CSV,
//! JSON lines or Parquet.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use berserkr::Lakehouse;
use clap::{Args, ValueEnum};
use deltalake::arrow::record_batch::RecordBatch;
use futures::StreamExt;

use super::EXIT_OK;

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL: one read-only statement over tables named layer.name, e.g.
    /// "SELECT cutoff, count(*) FROM gold.customer_item_features GROUP BY cutoff".
    sql: String,
    /// Read a table at a version: TABLE=VERSION (repeatable), e.g.
    /// gold.customer_item_features=12.
    #[arg(long = "version", value_name = "TABLE=VERSION", value_parser = parse_version)]
    versions: Vec<(String, u64)>,
    /// Read every other table at the last version committed at or before this time (RFC 3339,
    /// or 'YYYY-MM-DD HH:MM:SS' UTC).
    #[arg(long)]
    as_of: Option<String>,
    /// Output format [default: an aligned table on a terminal, CSV otherwise].
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
    /// Write to this file instead of standard output (needed for parquet on a terminal).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the plan and the files it scans per table (after partition pruning and skipping
    /// by statistics) instead of running it.
    #[arg(long)]
    explain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned table (all rows are held to size the columns).
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON, one object per line.
    Json,
    /// Parquet.
    Parquet,
}

fn parse_version(s: &str) -> Result<(String, u64), String> {
    let (table, version) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not TABLE=VERSION"))?;
    let version = version
        .parse()
        .map_err(|_| format!("{version:?} is not a version number"))?;
    Ok((table.to_string(), version))
}

pub async fn run(lake: Lakehouse, args: QueryArgs) -> anyhow::Result<u8> {
    let as_of = args
        .as_of
        .as_deref()
        .map(super::ml::parse_as_of)
        .transpose()?;
    if args.explain {
        let mut b = lake.explain(&args.sql).with_as_of(as_of);
        for (t, v) in &args.versions {
            b = b.with_version(t, *v);
        }
        let e = b.await?;
        for t in &e.tables {
            println!(
                "{}: version {}, {} of {} files scanned",
                t.table,
                t.version,
                e.scanned.get(&t.table).copied().unwrap_or(0),
                t.files
            );
        }
        println!("{}", e.plan);
        return Ok(EXIT_OK);
    }
    let mut b = lake.query(&args.sql).with_as_of(as_of);
    for (t, v) in &args.versions {
        b = b.with_version(t, *v);
    }
    let output = b.await?;
    let to_terminal = args.out.is_none() && std::io::stdout().is_terminal();
    let format = args.format.unwrap_or(if to_terminal {
        OutputFormat::Table
    } else {
        OutputFormat::Csv
    });
    anyhow::ensure!(
        !(format == OutputFormat::Parquet && to_terminal),
        "Parquet is binary: write it to a file (--out FILE) or a pipe"
    );
    let sink: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    write_rows(output, format, sink).await?;
    Ok(EXIT_OK)
}

/// Writes the rows as they come (the aligned table holds them all to size its columns).
async fn write_rows(
    mut output: berserkr::ops::query::QueryOutput,
    format: OutputFormat,
    mut sink: Box<dyn Write + Send>,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(b) = output.rows.next().await {
                batches.push(b?);
            }
            if batches.is_empty() {
                batches.push(RecordBatch::new_empty(output.schema.clone()));
            }
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(
                sink,
                "{}",
                deltalake::arrow::util::pretty::pretty_format_batches(&batches)?
            )?;
            writeln!(sink, "({rows} rows)")?;
        }
        OutputFormat::Csv => {
            let mut w = deltalake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(sink);
            while let Some(b) = output.rows.next().await {
                w.write(&b?)?;
            }
            w.into_inner().flush()?;
        }
        OutputFormat::Json => {
            let mut w = deltalake::arrow::json::LineDelimitedWriter::new(sink);
            while let Some(b) = output.rows.next().await {
                w.write(&b?)?;
            }
            w.finish()?;
            w.into_inner().flush()?;
        }
        OutputFormat::Parquet => {
            let mut w =
                deltalake::parquet::arrow::ArrowWriter::try_new(sink, output.schema.clone(), None)?;
            while let Some(b) = output.rows.next().await {
                w.write(&b?)?;
            }
            w.into_inner()?.flush()?;
        }
    }
    Ok(())
}
