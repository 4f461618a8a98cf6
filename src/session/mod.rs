//! The DataFusion session every query of berserkr runs in: silver and gold refreshes, training
//! and scoring reads, and `berserkr query`.
//!
//! One configuration for all of them: identifiers keep their case (`InvoiceNo`, as Spark reads
//! it), the Spark SQL functions DataFusion lacks are registered ([`spark`]), joins run as the SQL
//! writes them, and one partition per core. Beside it, the small helpers every query site
//! shares: errors naming the table ([`df`]), collecting a query ([`collect_sql`]) and casting
//! query rows to a table's declared schema ([`conform_batch`]).

mod hashed;
pub mod keep;
mod kept;
pub mod pool;
mod spark;

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::common::config::ConfigNonZeroUsize;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::disk_manager::DiskManagerBuilder;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::TableId;
use crate::error::{Error, Result};

/// A DataFusion session whose SQL keeps identifiers' case, like Spark (`InvoiceNo`, not
/// `invoiceno`), and knows the Spark functions DataFusion lacks, so the same SQL runs on both.
pub fn session() -> SessionContext {
    with_config(config())
}

/// A [`session`] whose operators hold at most `limit` bytes between them: joins' hash tables,
/// aggregations' groups, sorts, and what a [`keep::Keeper`] keeps; aggregations and sorts past
/// their share spill to temporary files (in the system's temporary folder, `TMPDIR`). An
/// operator that cannot spill and finds no room fails with an error that says so.
pub fn bounded(limit: usize) -> std::result::Result<SessionContext, DataFusionError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool::SharedFairPool::new(limit)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_max_spill_merge_fan_in(merge_fan_in(limit)),
        )
        .build_arc()?;
    let mut config = config();
    finish_exchange_spill_files(&mut config)?;
    Ok(with_spark(SessionContext::new_with_config_rt(
        config, runtime,
    )))
}

/// Makes `config`'s exchanges between partitions (`RepartitionExec`) finish each spill file with
/// its batch. Every session that runs under a memory limit needs it (ours, [`bounded`], and the
/// one `lake optimize` gives delta-rs).
///
/// An exchange spills a batch it has no room for to a spill pool, and its reader waits on the
/// oldest file of that pool: while an input task that left a file open is held at the
/// exchange's gate, a batch another task wrote to a newer file is never read, and every worker
/// parks (apache/datafusion#24883, not fixed in DataFusion 55.2: the query hung 1 to 2
/// times in 12 in our sessions; gold of the real data under 48 MiB hung the same way once in 650
/// runs). Past `max_spill_file_size_bytes` a file is finished; one byte finishes each file with
/// its batch, so none is left open. It costs a file per spilled batch, only when an exchange
/// spills.
pub fn finish_exchange_spill_files(
    config: &mut SessionConfig,
) -> std::result::Result<(), DataFusionError> {
    config.options_mut().execution.max_spill_file_size_bytes =
        ConfigNonZeroUsize::try_new(EXCHANGE_SPILL_FILE_BYTES)?;
    Ok(())
}

/// The size past which an exchange finishes a spill file ([`finish_exchange_spill_files`]).
const EXCHANGE_SPILL_FILE_BYTES: usize = 1;

/// How many spill files one merge pass of a bounded session reads at once: one per
/// [`MERGE_FAN_IN_BYTES`] of the limit, at least 2, at most [`MERGE_FAN_IN_MAX`].
///
/// An aggregation that spilled merges its spill files at the end, and the merge reserves a
/// buffer for each file it reads while the aggregation that consumes it (which cannot spill
/// again) still needs room for its groups: both come out of the operator's share. Unbounded,
/// the merge took the whole share and the aggregation was refused its next megabyte (gold
/// under 48 MiB, every time). More files than this are merged in several passes.
pub fn merge_fan_in(limit: usize) -> usize {
    (limit / MERGE_FAN_IN_BYTES).clamp(2, MERGE_FAN_IN_MAX)
}

/// The memory limit per spill file one merge pass reads ([`merge_fan_in`]).
pub const MERGE_FAN_IN_BYTES: usize = 32 << 20;

/// The most spill files one merge pass reads ([`merge_fan_in`]).
pub const MERGE_FAN_IN_MAX: usize = 64;

/// A session with `config` (start from [`config`]) and the Spark functions.
pub fn with_config(config: SessionConfig) -> SessionContext {
    with_spark(SessionContext::new_with_config(config))
}

fn with_spark(ctx: SessionContext) -> SessionContext {
    spark::register(&ctx);
    ctx
}

/// The cores this process may use (one when the system cannot tell).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The configuration of [`session`]: one partition per core, identifiers' case kept, joins as
/// written.
pub fn config() -> SessionConfig {
    let partitions = cores();
    let mut config = SessionConfig::new().with_target_partitions(partitions);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    // An input already hash-partitioned by some of an aggregation's keys (a kept result:
    // `keep::Keeper`) is grouped where it is, without an exchange, when it has a partition per
    // core (DataFusion's default waits for 4 partitions, more than this machine's cores).
    config.options_mut().optimizer.subset_repartition_threshold = partitions;
    // Our SQL names the build side of each join (the left input): statistics-driven swapping
    // guessed wrong on gold, holding its 1.5M pairs in a hash table instead of streaming them.
    config.options_mut().optimizer.join_reordering = false;
    config
}

/// Maps DataFusion's errors to [`Error::Query`] naming `table`.
pub fn df(table: &TableId) -> impl Fn(DataFusionError) -> Error + '_ {
    move |e| Error::Query {
        table: table.to_string(),
        source: Box::new(e),
    }
}

/// Runs `sql` and collects its rows (for small results: bounds, counts).
pub async fn collect_sql(
    ctx: &SessionContext,
    sql: &str,
    table: &TableId,
) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql)
        .await
        .map_err(df(table))?
        .collect()
        .await
        .map_err(df(table))
}

/// Casts a batch to the table's Arrow schema (SQL yields nullable fields, and may yield other
/// timestamp units or string layouts; the table wants its own, and `try_new` checks nullability).
pub fn conform_batch(
    batch: RecordBatch,
    schema: &SchemaRef,
    table: &TableId,
) -> Result<RecordBatch> {
    conform_columns(batch.columns().to_vec(), schema, table)
}

/// Casts the columns of `batch` named as the schema's fields to the table's schema (columns the
/// table does not have are left out; one it has that the batch lacks is an error).
pub fn conform_by_name(
    batch: RecordBatch,
    schema: &SchemaRef,
    table: &TableId,
) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .ok_or_else(|| Error::InvalidData {
                    table: table.to_string(),
                    reason: format!("the query yields no column {}", f.name()),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    conform_columns(columns, schema, table)
}

/// [`conform_batch`] for columns in the schema's order.
pub fn conform_columns(
    columns: Vec<ArrayRef>,
    schema: &SchemaRef,
    table: &TableId,
) -> Result<RecordBatch> {
    let cols = schema
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|cols| RecordBatch::try_new(schema.clone(), cols));
    cols.map_err(|source| Error::Arrow {
        context: format!("rows for {table}"),
        source,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use deltalake::datafusion::physical_plan::{ExecutionPlan, collect};

    /// 10,000 rows `(k, x)` in 10 batches: `x` counts from 0, `k = 7x mod 97` (every key 0..97,
    /// none in order), for tests of how rows are partitioned by `k`.
    pub(crate) fn scattered_keys() -> Vec<RecordBatch> {
        use deltalake::arrow::array::Int64Array;
        (0..10i64)
            .map(|b| {
                let x = Int64Array::from_iter_values((0..1000).map(|i| b * 1000 + i));
                let k = Int64Array::from_iter_values((0..1000).map(|i| (b * 1000 + i) * 7 % 97));
                RecordBatch::try_from_iter([("k", Arc::new(k) as _), ("x", Arc::new(x) as _)])
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn merge_fan_in_follows_the_limit_within_its_bounds() {
        assert_eq!(merge_fan_in(256 << 10), 2);
        assert_eq!(merge_fan_in(64 << 20), 2);
        assert_eq!(merge_fan_in(256 << 20), 8);
        assert_eq!(merge_fan_in(2 << 30), 64);
        assert_eq!(merge_fan_in(64 << 30), 64);
    }

    /// apache/datafusion#24883's query: under a small limit on two partitions, the exchange
    /// spills to its spill pool, and the query hung now and then (1 to 2 attempts in 12 with
    /// DataFusion 55.2) before bounded sessions finished each spill file with its batch. Each
    /// attempt takes well under a second; one that has not ended after 20 s is a hang. The
    /// exchanges must have spilled, or the test no longer tests anything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exchange_under_a_small_limit_does_not_hang() {
        let mut exchange_spills = 0;
        for attempt in 0..48 {
            let session = bounded(2 << 20).unwrap();
            let config = session
                .copied_config()
                .with_target_partitions(2)
                .with_batch_size(64);
            let ctx = SessionContext::new_with_config_rt(config, session.runtime_env());
            let run = async {
                ctx.sql(
                    "CREATE TABLE t AS SELECT v % 13 AS g, md5(CAST(v % 337 AS VARCHAR)) AS trace_id \
                     FROM generate_series(1, 40000) AS s(v)",
                )
                .await?
                .collect()
                .await?;
                let sql = "SELECT g, count(DISTINCT trace_id) AS n FROM t GROUP BY g";
                let plan = ctx.sql(sql).await?.create_physical_plan().await?;
                let rows = collect(plan.clone(), ctx.task_ctx()).await?;
                Ok::<_, DataFusionError>((rows, plan))
            };
            let (rows, plan) = tokio::time::timeout(std::time::Duration::from_secs(20), run)
                .await
                .unwrap_or_else(|_| panic!("attempt {attempt} hung"))
                .unwrap();
            assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 13);
            exchange_spills += spills_of(plan.as_ref(), "RepartitionExec");
        }
        assert!(
            exchange_spills > 0,
            "the exchanges never spilled: raise the data or lower the limit"
        );
    }

    /// How many times the operators named `name` in `plan` spilled.
    fn spills_of(plan: &dyn ExecutionPlan, name: &str) -> usize {
        let own = if plan.name() == name {
            plan.metrics().and_then(|m| m.spill_count()).unwrap_or(0)
        } else {
            0
        };
        own + plan
            .children()
            .into_iter()
            .map(|c| spills_of(c.as_ref(), name))
            .sum::<usize>()
    }

    #[test]
    fn sessions_under_a_limit_finish_each_exchange_spill_file() {
        let ctx = bounded(256 << 20).unwrap();
        let spill_file = ctx
            .copied_config()
            .options()
            .execution
            .max_spill_file_size_bytes;
        assert_eq!(usize::from(spill_file), EXCHANGE_SPILL_FILE_BYTES);
    }

    #[test]
    fn a_bounded_session_merges_with_that_fan_in() {
        let ctx = bounded(256 << 20).unwrap();
        let disk = &ctx.runtime_env().disk_manager;
        assert_eq!(disk.max_spill_merge_fan_in(), 8);
    }
}
