//! Query results a session reads several times, kept within the session's memory limit.
//!
//! Gold reads silver's columns and its per-pair view several times per cutoff. Kept in memory,
//! those reads cost nothing; but their size grows with the lake. A [`Keeper`] keeps a result in
//! memory while the results it holds fit its allowance (a share of the session's memory pool,
//! reserved there, so the operators that spill see less room), and otherwise writes it to a
//! Parquet file in a temporary folder that lives as long as the keeper, or leaves the table as
//! it was (for a table that is already on storage). Either way the session reads the same rows
//! under the same name; only where they are differs.
//!
//! What is kept in memory keeps the partitions the query made ([`KeptTable`]): a result
//! hash-partitioned by a column (silver by the customer, [`Keeper::keep_hashed`]; the per-pair
//! view, grouped over it) is grouped and joined by that column where it is, not exchanged
//! between partitions again. Each partition of the query runs in a task of its own. A hashed
//! result left on storage is read through an exchange by its column ([`HashedScan`]), so the
//! same plans run over it as over the result kept in memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::error::Result as DfResult;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use deltalake::datafusion::physical_expr::expressions::Column;
use deltalake::datafusion::physical_plan::repartition::RepartitionExec;
use deltalake::datafusion::physical_plan::{
    ExecutionPlanProperties, Partitioning, execute_stream_partitioned,
};
use deltalake::datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::parquet::arrow::AsyncArrowWriter;
use deltalake::parquet::file::properties::WriterProperties;
use futures::StreamExt;

use crate::catalog::TableId;
use crate::error::{Error, Result};
use crate::session::df;
use crate::session::hashed::HashedScan;
use crate::session::kept::KeptTable;

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
    /// Not kept: the name still reads what it read before (over the allowance); after
    /// [`Keeper::keep_hashed`], through an exchange by its column ([`HashedScan`]).
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
        self.keep_as(ctx, name, data, None, past, table).await
    }

    /// [`Self::keep`], with the rows hash-partitioned by the column `by` (by DataFusion's own
    /// exchange, one partition per core) when they are kept in memory: the queries that group
    /// or join them by it then run where the rows are, without an exchange.
    pub async fn keep_hashed(
        &mut self,
        ctx: &SessionContext,
        name: &str,
        data: DataFrame,
        by: &str,
        past: PastAllowance,
        table: &TableId,
    ) -> Result<Kept> {
        self.keep_as(ctx, name, data, Some(by), past, table).await
    }

    async fn keep_as(
        &mut self,
        ctx: &SessionContext,
        name: &str,
        data: DataFrame,
        by: Option<&str>,
        past: PastAllowance,
        table: &TableId,
    ) -> Result<Kept> {
        self.release(ctx, name, table)?;
        let room = self.allowance.saturating_sub(self.in_memory());
        let mut plan = data.create_physical_plan().await.map_err(df(table))?;
        if let Some(by) = by {
            let column = Column::new_with_schema(by, &plan.schema()).map_err(df(table))?;
            let partitions = ctx.copied_config().target_partitions().max(1);
            let hash = Partitioning::Hash(vec![Arc::new(column)], partitions);
            plan = Arc::new(RepartitionExec::try_new(plan, hash).map_err(df(table))?);
        }
        let schema = plan.schema();
        let hashed_by = hash_columns(plan.output_partitioning());
        let partitions = plan.output_partitioning().partition_count();
        // Every partition of the plan runs in a task of its own, side by side (an exchange may
        // feed them all), and each batch stays in the partition it came from.
        let streams = execute_stream_partitioned(plan, ctx.task_ctx()).map_err(df(table))?;
        let mut stream = Partitions::run(streams, table);
        // This result's memory: given back to the pool if it is not kept, or on an error.
        let reservation = self.consumer.new_empty();
        let mut held = Vec::new();
        let mut over = None;
        while let Some((part, batch)) = stream.next().await? {
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
            held.push((part, batch));
        }
        let Some(first_over) = over else {
            let provider = match hashed_by {
                // As the plan partitioned them: its partitioning holds for the kept rows.
                Some(columns) => {
                    let mut parts = vec![Vec::new(); partitions];
                    for (i, b) in held {
                        parts[i].push(b);
                    }
                    KeptTable::new(schema, parts, Some(columns))
                }
                // No partitioning to keep: batches dealt out, one partition per core.
                None => {
                    let n = ctx.copied_config().target_partitions().max(1);
                    let mut parts = vec![Vec::new(); n];
                    for (i, (_, b)) in held.into_iter().enumerate() {
                        parts[i % n].push(b);
                    }
                    KeptTable::new(schema, parts, None)
                }
            };
            register(ctx, name, Arc::new(provider), table)?;
            let bytes = reservation.size();
            self.held
                .insert(name.to_string(), Held::Memory(reservation));
            return Ok(Kept::Memory(bytes));
        };
        self.note_not_in_memory(name);
        if let PastAllowance::Leave { .. } = past {
            // Left on storage, but partitioned as asked all the same: the name reads its files
            // through an exchange by the column (once: a name that already does is left).
            if let Some(by) = by {
                let files = ctx.table_provider(name).await.map_err(df(table))?;
                if !files.is::<HashedScan>() {
                    let partitions = ctx.copied_config().target_partitions().max(1);
                    let hashed = HashedScan::new(name, files, by, partitions).map_err(df(table))?;
                    register(ctx, name, Arc::new(hashed), table)?;
                }
            }
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
        for b in held
            .into_iter()
            .map(|(_, b)| b)
            .chain(std::iter::once(first_over))
        {
            rows += b.num_rows();
            writer.write(&b).await.map_err(parquet)?;
        }
        drop(reservation);
        while let Some((_, batch)) = stream.next().await? {
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

/// The partitions of a plan, each run by a task of its own, read as one sequence of batches
/// tagged with their partition. Dropped, it stops the tasks.
struct Partitions {
    batches: tokio::sync::mpsc::Receiver<(usize, DfResult<RecordBatch>)>,
    tasks: tokio::task::JoinSet<()>,
    table: TableId,
}

impl Partitions {
    fn run(streams: Vec<SendableRecordBatchStream>, table: &TableId) -> Self {
        let (sender, batches) = tokio::sync::mpsc::channel(2 * streams.len().max(1));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut stream) in streams.into_iter().enumerate() {
            let sender = sender.clone();
            tasks.spawn(async move {
                while let Some(batch) = stream.next().await {
                    let failed = batch.is_err();
                    if sender.send((i, batch)).await.is_err() || failed {
                        break;
                    }
                }
            });
        }
        Self {
            batches,
            tasks,
            table: table.clone(),
        }
    }

    /// The next batch of any partition and its partition's index; `None` when every partition
    /// has ended (a task that panicked is an error, [`Error::Task`], not an end).
    async fn next(&mut self) -> Result<Option<(usize, RecordBatch)>> {
        match self.batches.recv().await {
            Some((i, batch)) => Ok(Some((i, batch.map_err(df(&self.table))?))),
            None => {
                while let Some(ended) = self.tasks.join_next().await {
                    ended.map_err(|e| {
                        Error::Task(format!("reading a partition of {}: {e}", self.table))
                    })?;
                }
                Ok(None)
            }
        }
    }
}

/// The columns of a hash partitioning (indices into the plan's schema), when it is one over
/// columns only.
fn hash_columns(partitioning: &Partitioning) -> Option<Vec<usize>> {
    let Partitioning::Hash(exprs, _) = partitioning else {
        return None;
    };
    let columns = exprs
        .iter()
        .map(|e| {
            (e.as_ref() as &dyn std::any::Any)
                .downcast_ref::<Column>()
                .map(|c| c.index())
        })
        .collect::<Option<Vec<_>>>()?;
    (!columns.is_empty()).then_some(columns)
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
    use deltalake::datafusion::datasource::MemTable;

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

    /// Sorted rows of `sql`, as text (for comparing results whatever their order).
    async fn rows_of(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = deltalake::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let mut rows: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| "))
            .skip(1)
            .map(str::to_string)
            .collect();
        rows.sort();
        rows
    }

    async fn physical(ctx: &SessionContext, sql: &str) -> String {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        deltalake::datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string()
    }

    #[tokio::test]
    async fn a_result_kept_in_memory_keeps_its_hash_partitioning() {
        let mut config = crate::session::config().with_target_partitions(2);
        config.options_mut().optimizer.subset_repartition_threshold = 2;
        // Every join partitioned (no build side collected), so co-partitioning is what is tested.
        config
            .options_mut()
            .optimizer
            .hash_join_single_partition_threshold = 0;
        config
            .options_mut()
            .optimizer
            .hash_join_single_partition_threshold_rows = 0;
        let ctx = SessionContext::new_with_config(config);
        let id: TableId = "gold.customer_item_features".parse().unwrap();
        // Keys 0..97 spread over 10 batches, as a table of unknown partitioning.
        let batches = crate::session::tests::scattered_keys();
        let schema = batches[0].schema();
        let source =
            MemTable::try_new(schema, vec![batches[..5].to_vec(), batches[5..].to_vec()]).unwrap();
        ctx.register_table("src", Arc::new(source)).unwrap();
        let mut keeper = Keeper::new(&ctx, 1 << 30);
        let data = ctx.sql("SELECT k, x FROM src").await.unwrap();
        let kept = keeper
            .keep_hashed(&ctx, "kept", data, "k", PastAllowance::Spill, &id)
            .await
            .unwrap();
        assert!(matches!(kept, Kept::Memory(_)), "{kept:?}");

        // Grouped by its key, or by more columns than its key: no exchange, same rows.
        for (over_kept, over_source) in [
            (
                "SELECT k, count(*) AS n, sum(x) AS s FROM kept GROUP BY k",
                "SELECT k, count(*) AS n, sum(x) AS s FROM src GROUP BY k",
            ),
            (
                "SELECT k, x % 3 AS m, count(*) AS n FROM kept GROUP BY k, x % 3",
                "SELECT k, x % 3 AS m, count(*) AS n FROM src GROUP BY k, x % 3",
            ),
        ] {
            let plan = physical(&ctx, over_kept).await;
            assert!(
                plan.contains("KeptExec: partitions=2, partitioning=Hash([k@0], 2)"),
                "{plan}"
            );
            assert!(!plan.contains("RepartitionExec"), "{plan}");
            let rows = rows_of(&ctx, over_kept).await;
            assert_eq!(
                rows.len(),
                if over_kept.contains("% 3") {
                    97 * 3
                } else {
                    97
                }
            );
            assert_eq!(rows, rows_of(&ctx, over_source).await);
        }
        // Joined with another exchange's output partition by partition: the same keys meet.
        let join = "SELECT a.k, count(*) AS n, sum(b.x) AS s FROM kept a \
                    JOIN (SELECT k, x FROM src WHERE x % 5 = 0) b ON a.k = b.k GROUP BY a.k";
        let plan = physical(&ctx, join).await;
        assert!(plan.contains("mode=Partitioned"), "{plan}");
        assert_eq!(
            plan.matches("RepartitionExec: partitioning=Hash").count(),
            1,
            "{plan}"
        );
        assert_eq!(
            rows_of(&ctx, join).await,
            rows_of(&ctx, &join.replace("FROM kept a", "FROM src a")).await
        );
        // A projection without the key: no partitioning is claimed.
        let plan = physical(&ctx, "SELECT x % 7 AS m, count(*) FROM kept GROUP BY x % 7").await;
        assert!(
            plan.contains("partitioning=UnknownPartitioning(2)"),
            "{plan}"
        );
        assert!(plan.contains("RepartitionExec"), "{plan}");
    }

    #[tokio::test]
    async fn a_partition_whose_task_dies_is_an_error_not_an_end() {
        use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
        let id: TableId = "gold.customer_item_features".parse().unwrap();
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as _)])
                .unwrap();
        let schema = batch.schema();
        let fine: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter([Ok(batch)]),
        ));
        let dies: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(async { panic!("a partition's operator panicked") }),
        ));
        let mut partitions = Partitions::run(vec![fine, dies], &id);
        let mut rows = 0;
        let ended = loop {
            match partitions.next().await {
                Ok(Some((i, b))) => {
                    assert_eq!(i, 0);
                    rows += b.num_rows();
                }
                other => break other,
            }
        };
        assert_eq!(rows, 2);
        assert!(
            matches!(ended, Err(Error::Task(ref m)) if m.contains("panicked")),
            "{ended:?}"
        );
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
