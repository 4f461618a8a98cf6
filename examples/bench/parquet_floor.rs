//! `parquet-floor LAKE [ROUNDS]`: the least time arrow-rs's Parquet writer needs to encode the
//! rows a pipeline run wrote, the floor under berserkr's end to end time (`make bench` prints it
//! next to the peers' times).
//!
//! For each table a full build writes (bronze, silver, both gold snapshots), the table's current
//! files are read into memory first (not timed), then written again, on as many threads as the
//! machine has cores (each thread one file of a contiguous share of the rows, as berserkr's
//! writers do), with the table's declared encodings (`tables/`: dictionary on or off, delta
//! encoding) and berserkr's writer settings (snappy, 256 Ki-row row groups), into a sink that only
//! counts the bytes: no disk, no statistics, no Delta log. The best of ROUNDS (default 3) is
//! printed per table, then their sum. Whatever else a run does (decompressing, parsing, queries,
//! commits) comes on top of that sum.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use berserkr::catalog::ValueEncoding;
use berserkr::{Catalog, TableId};
use deltalake::arrow::datatypes::Schema;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::basic::{Compression, Encoding};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;

/// The tables a full build writes (append, refresh silver, refresh gold), in that order.
const TABLES: [&str; 4] = [
    "bronze.online_retail",
    "silver.transactions",
    "gold.customer_item_features",
    "gold.scoring_features",
];

/// A `Write` that keeps nothing and counts what it was given.
struct Count(usize);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// berserkr's writer settings for a table (see `ops::target`), without statistics.
fn properties(catalog: &Catalog, id: &TableId) -> Result<WriterProperties> {
    let spec = catalog.table(id)?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some(256 * 1024));
    for c in &spec.columns {
        let path = || ColumnPath::from(c.name.as_str());
        if !c.dictionary {
            props = props.set_column_dictionary_enabled(path(), false);
        }
        if c.encoding == ValueEncoding::DeltaBinaryPacked {
            props = props.set_column_encoding(path(), Encoding::DELTA_BINARY_PACKED);
        }
    }
    Ok(props.build())
}

/// The rows of a table's current files (partition columns, kept in paths, are not among them).
async fn rows(lake: &std::path::Path, id: &TableId) -> Result<(Arc<Schema>, Vec<RecordBatch>)> {
    let dir = lake.join(id.path());
    let url = url::Url::from_directory_path(&dir)
        .map_err(|()| anyhow::anyhow!("{} is not an absolute path", dir.display()))?;
    let table = deltalake::open_table(url)
        .await
        .with_context(|| format!("opening {id} at {}", dir.display()))?;
    let mut batches = Vec::new();
    let mut schema = None;
    for uri in table.get_file_uris()? {
        // A local table's files come as paths; a URL is taken if it is a file's.
        let path = match url::Url::parse(&uri) {
            Ok(u) => u
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("{uri} is not a local file"))?,
            Err(_) => std::path::PathBuf::from(&uri),
        };
        let file = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(8192)
            .build()?;
        schema.get_or_insert_with(|| {
            deltalake::arrow::record_batch::RecordBatchReader::schema(&reader)
        });
        for b in reader {
            batches.push(b?);
        }
    }
    let schema = schema.with_context(|| format!("{id} has no files"))?;
    Ok((schema, batches))
}

/// Writes `batches` on `threads` threads, one file each; returns the bytes written.
fn write(
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
    props: &WriterProperties,
    threads: usize,
) -> Result<usize> {
    let share = batches.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = batches
            .chunks(share)
            .map(|part| {
                s.spawn(move || -> Result<usize> {
                    let mut w =
                        ArrowWriter::try_new(Count(0), schema.clone(), Some(props.clone()))?;
                    for b in part {
                        w.write(b)?;
                    }
                    Ok(w.into_inner()?.0)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .sum()
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let lake = std::path::absolute(args.next().context("usage: parquet-floor LAKE [ROUNDS]")?)?;
    let rounds: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let threads = std::thread::available_parallelism()?.get();
    let catalog = Catalog::embedded()?;
    let mut total = 0.0;
    for name in TABLES {
        let id: TableId = name.parse()?;
        let props = properties(&catalog, &id)?;
        let (schema, batches) = rows(&lake, &id).await?;
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut best = f64::INFINITY;
        let mut bytes = 0;
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            bytes = write(&schema, &batches, &props, threads)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        total += best;
        println!(
            "{name:<28} {n:>10} rows {:>3} columns {:>8.1} MB written in {best:.3} s",
            schema.fields().len(),
            bytes as f64 / 1e6
        );
    }
    println!("parquet writing floor ({threads} threads, best of {rounds}): {total:.3} s");
    Ok(())
}
