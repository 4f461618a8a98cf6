//! Query results a session reads several times, kept within the session's memory limit.
//!
//! Gold reads silver's columns and its per-pair view several times per cutoff. Kept in memory,
//! those reads cost nothing; but their size grows with the lake. A [`Keeper`] keeps a result in
//! memory while the results it holds fit its allowance (a share of the session's memory pool,
//! reserved there, so the operators that spill see less room), and otherwise writes it to a
//! Parquet file in a temporary folder that lives as long as the keeper, or leaves the table as
//! it was (for a table that is already on storage). Either way the session reads the same rows
//! under the same name; only where they are differs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use deltalake::datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::parquet::arrow::AsyncArrowWriter;
use deltalake::parquet::file::properties::WriterProperties;
use futures::StreamExt;

use crate::catalog::TableId;
use crate::error::{Error, Result};
use crate::session::df;

/// Rows per row group of a spill file: row groups are what the session's partitions read side
/// by side.
const SPILL_ROW_GROUP: usize = 128 * 1024;

/// Where [`Keeper::keep`] put a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// In memory: this many bytes.
    Memory(usize),
    /// In a Parquet file of the keeper's folder: this many rows (over the allowance).
    File(usize),
    /// Not kept: the name still reads what it read before (over the allowance).
    Unchanged,
}

/// What [`Keeper::keep`] does with a result past the allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PastAllowance {
    /// Write it to a Parquet file of the keeper's folder.
    Spill,
    /// Leave the name reading what it read (a table already on storage). With its row count
    /// known (from the Delta log's statistics), the first batch's size tells whether all of it
    /// would fit, so a table that cannot is not read up to the allowance first.
    Leave {
        /// The rows the result will have, when known.
        rows: Option<u64>,
    },
}

/// Keeps query results for a session (see the module's documentation).
pub struct Keeper {
    consumer: MemoryReservation,
    allowance: usize,
    folder: Option<tempfile::TempDir>,
    files: usize,
    /// What each name registered by the keeper holds: its memory (dropping the reservation
    /// gives it back to the pool), or a file.
    held: HashMap<String, Held>,
    /// Names of the results not kept in memory, in order, each once.
    not_in_memory: Vec<String>,
}

enum Held {
    Memory(MemoryReservation),
    File(PathBuf),
}

impl Keeper {
    /// A keeper for `ctx` that holds at most `allowance` bytes in memory, reserved in the
    /// session's memory pool.
    pub fn new(ctx: &SessionContext, allowance: usize) -> Self {
        let pool = &ctx.runtime_env().memory_pool;
        Self {
            consumer: MemoryConsumer::new("berserkr: results kept in memory").register(pool),
            allowance,
            folder: None,
            files: 0,
            held: HashMap::new(),
            not_in_memory: Vec::new(),
        }
    }

    /// The names whose rows did not fit the allowance (read from files instead), each once.
    pub fn not_in_memory(&self) -> &[String] {
        &self.not_in_memory
    }

    /// Bytes held in memory.
    pub fn in_memory(&self) -> usize {
        self.held
            .values()
            .map(|h| match h {
                Held::Memory(r) => r.size(),
                Held::File(_) => 0,
            })
            .sum()
    }

    /// Runs `data` and registers its rows as `name` in `ctx`, replacing what `name` was: in
    /// memory when they fit the allowance with what the keeper holds already; else as `past`
    /// says. `table` names the table in errors.
    pub async fn keep(
        &mut self,
        ctx: &SessionContext,
        name: &str,
        data: DataFrame,
        past: PastAllowance,
        table: &TableId,
    ) -> Result<Kept> {
        self.release(ctx, name, table)?;
        let room = self.allowance.saturating_sub(self.in_memory());
        let schema: SchemaRef = Arc::new(data.schema().as_arrow().clone());
        let mut stream = data.execute_stream().await.map_err(df(table))?;
        // This result's memory: given back to the pool if it is not kept, or on an error.
        let reservation = self.consumer.new_empty();
        let mut held = Vec::new();
        let mut over = None;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df(table))?;
            let size = memory_size(&batch);
            let projected = match past {
                PastAllowance::Leave { rows: Some(rows) } if held.is_empty() => {
                    (size as f64 / batch.num_rows().max(1) as f64 * rows as f64) as usize
                }
                _ => reservation.size() + size,
            };
            if projected > room || reservation.try_grow(size).is_err() {
                over = Some(batch);
                break;
            }
            held.push(batch);
        }
        let Some(first_over) = over else {
            let partitions = ctx.copied_config().target_partitions().max(1);
            let mut parts = vec![Vec::new(); partitions];
            for (i, b) in held.into_iter().enumerate() {
                parts[i % partitions].push(b);
            }
            let provider = MemTable::try_new(schema, parts).map_err(df(table))?;
            register(ctx, name, Arc::new(provider), table)?;
            let bytes = reservation.size();
            self.held
                .insert(name.to_string(), Held::Memory(reservation));
            return Ok(Kept::Memory(bytes));
        };
        self.note_not_in_memory(name);
        if let PastAllowance::Leave { .. } = past {
            return Ok(Kept::Unchanged);
        }
        let path = self.spill_path(name)?;
        let io = |e: std::io::Error| Error::io(path.display(), e);
        let parquet = |e: deltalake::parquet::errors::ParquetError| {
            Error::io(path.display(), std::io::Error::other(e))
        };
        let file = tokio::fs::File::create(&path).await.map_err(io)?;
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(SPILL_ROW_GROUP))
            .build();
        let mut writer = AsyncArrowWriter::try_new(file, schema, Some(props)).map_err(parquet)?;
        let mut rows = 0;
        for b in held.drain(..).chain(std::iter::once(first_over)) {
            rows += b.num_rows();
            writer.write(&b).await.map_err(parquet)?;
        }
        drop(reservation);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df(table))?;
            rows += batch.num_rows();
            writer.write(&batch).await.map_err(parquet)?;
        }
        writer.close().await.map_err(parquet)?;
        let utf8 = path.to_str().ok_or_else(|| {
            io(std::io::Error::other(
                "the temporary folder's path is not UTF-8",
            ))
        })?;
        let frame = ctx
            .read_parquet(utf8, ParquetReadOptions::default())
            .await
            .map_err(df(table))?;
        register(ctx, name, frame.into_view(), table)?;
        self.held.insert(name.to_string(), Held::File(path));
        Ok(Kept::File(rows))
    }

    /// Forgets what the keeper registered as `name` (the name no longer reads it): its memory
    /// goes back to the pool, its file is removed.
    pub fn release(&mut self, ctx: &SessionContext, name: &str, table: &TableId) -> Result<()> {
        let Some(held) = self.held.remove(name) else {
            return Ok(());
        };
        ctx.deregister_table(TableReference::bare(name.to_string()))
            .map_err(df(table))?;
        if let Held::File(path) = held {
            std::fs::remove_file(&path).map_err(|e| Error::io(path.display(), e))?;
        }
        Ok(())
    }

    fn note_not_in_memory(&mut self, name: &str) {
        if !self.not_in_memory.iter().any(|n| n == name) {
            self.not_in_memory.push(name.to_string());
        }
    }

    /// A new file's path in the keeper's folder (made on first use).
    fn spill_path(&mut self, name: &str) -> Result<std::path::PathBuf> {
        if self.folder.is_none() {
            let dir = std::env::temp_dir();
            self.folder = Some(
                tempfile::Builder::new()
                    .prefix("berserkr-spill-")
                    .tempdir_in(&dir)
                    .map_err(|e| Error::io(dir.display(), e))?,
            );
        }
        self.files += 1;
        let folder = self.folder.as_ref().expect("made above");
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Ok(folder
            .path()
            .join(format!("{:03}-{safe}.parquet", self.files)))
    }
}

/// Registers `provider` as `name` in `ctx`, replacing what the name was. `name` is taken as
/// written: a `&str` table reference would be parsed as SQL again, and lower-cased.
pub fn register(
    ctx: &SessionContext,
    name: &str,
    provider: Arc<dyn TableProvider>,
    table: &TableId,
) -> Result<()> {
    let name = TableReference::bare(name.to_string());
    ctx.deregister_table(name.clone()).map_err(df(table))?;
    ctx.register_table(name, provider).map_err(df(table))?;
    Ok(())
}

/// The bytes of memory a batch's columns take: their slices of shared buffers, so that the
/// slices of one buffer (an aggregate's output, cut into batches) are counted once in all. A
/// column whose slice Arrow cannot measure counts whole buffers (more, never less).
pub fn memory_size(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::bounded;
    use deltalake::arrow::array::{AsArray, Int64Array};
    use deltalake::arrow::datatypes::Int64Type;

    async fn sum(ctx: &SessionContext, name: &str) -> i64 {
        let rows = ctx
            .sql(&format!("SELECT sum(x) FROM {name}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        rows[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    fn numbers(ctx: &SessionContext, n: i64) -> DataFrame {
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from_iter_values(0..n)) as _)])
                .unwrap();
        ctx.read_batch(batch).unwrap()
    }

    #[tokio::test]
    async fn results_stay_in_memory_within_the_allowance_else_go_to_a_file() {
        let ctx = bounded(64 << 20).unwrap();
        let id: TableId = "gold.customer_item_features".parse().unwrap();
        let mut keeper = Keeper::new(&ctx, 1 << 20);
        // 8 KB: in memory, reserved in the pool.
        let kept = keeper
            .keep(
                &ctx,
                "Small",
                numbers(&ctx, 1000),
                PastAllowance::Spill,
                &id,
            )
            .await
            .unwrap();
        assert!(matches!(kept, Kept::Memory(b) if b >= 8000), "{kept:?}");
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), keeper.in_memory());
        assert_eq!(sum(&ctx, "Small").await, 999 * 1000 / 2);
        // 8 MB: past the allowance, in a file; nothing more reserved.
        let before = keeper.in_memory();
        let kept = keeper
            .keep(
                &ctx,
                "Big",
                numbers(&ctx, 1 << 20),
                PastAllowance::Spill,
                &id,
            )
            .await
            .unwrap();
        assert_eq!(kept, Kept::File(1 << 20));
        assert_eq!(keeper.in_memory(), before);
        assert_eq!(sum(&ctx, "Big").await, ((1i64 << 20) - 1) * (1 << 20) / 2);
        let file = match keeper.held.get("Big") {
            Some(Held::File(p)) => p.clone(),
            _ => panic!("Big is in a file"),
        };
        assert!(file.exists());
        // Not to be spilled: the name keeps what it was.
        ctx.register_batch(
            "source",
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![7i64])) as _)])
                .unwrap(),
        )
        .unwrap();
        let kept = keeper
            .keep(
                &ctx,
                "source",
                numbers(&ctx, 1 << 20),
                PastAllowance::Leave { rows: None },
                &id,
            )
            .await
            .unwrap();
        assert_eq!(kept, Kept::Unchanged);
        assert_eq!(sum(&ctx, "source").await, 7);
        assert_eq!(keeper.not_in_memory(), ["Big", "source"]);
        // A row count (the log's) that cannot fit: given up at the first batch, which alone
        // would have fit.
        let kept = keeper
            .keep(
                &ctx,
                "source",
                numbers(&ctx, 1000),
                PastAllowance::Leave {
                    rows: Some(10_000_000),
                },
                &id,
            )
            .await
            .unwrap();
        assert_eq!(kept, Kept::Unchanged);
        assert_eq!(sum(&ctx, "source").await, 7);
        assert_eq!(keeper.in_memory(), before);
        // Kept again under the same name: the old rows are let go (memory, file).
        let kept = keeper
            .keep(&ctx, "Big", numbers(&ctx, 10), PastAllowance::Spill, &id)
            .await
            .unwrap();
        assert!(matches!(kept, Kept::Memory(_)));
        assert!(!file.exists(), "the replaced spill file is removed");
        keeper.release(&ctx, "Small", &id).unwrap();
        keeper.release(&ctx, "Big", &id).unwrap();
        assert_eq!(keeper.in_memory(), 0);
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
        assert!(!ctx.table_exist(TableReference::bare("Big")).unwrap());
    }

    #[test]
    fn slices_of_one_buffer_count_once() {
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from_iter_values(0..1000)) as _,
        )])
        .unwrap();
        let whole = memory_size(&batch);
        let halves = memory_size(&batch.slice(0, 500)) + memory_size(&batch.slice(500, 500));
        assert_eq!(whole, 8000);
        assert_eq!(halves, whole);
    }
}
