//! `lake refresh gold`: point-in-time customer-item features with purchase labels.
//!
//! For each cutoff, `tables/gold/customer_item_features.sql` runs over one silver snapshot:
//! features from rows strictly before the cutoff, the label from the window
//! `[cutoff, cutoff + label_window_days]`. The cutoffs' partitions are replaced in one commit that
//! records the silver version (application transaction `berserkr.refresh.<silver>`) and the
//! cutoffs in its metadata. A cutoff whose label window is not yet fully in silver is refused:
//! its labels would be wrong, not just late.

use std::sync::Arc;

use chrono::{Duration, NaiveDateTime};
use deltalake::arrow::array::{Array, AsArray, TimestampMicrosecondArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::catalog::TableId;
use crate::error::{Error, Result};
use crate::lake::{Lakehouse, app_txn_version, partition_values};
use crate::ops::refresh::{collect_sql, conform_batch, df, refresh_app_id, session};
use crate::ops::target::{Target, abort_all, close_all, discard, join_writing};

/// The gold table `lake refresh gold` builds.
pub const GOLD_FEATURES: &str = "gold.customer_item_features";
/// Immediate retries of a gold commit that lost a race to a commit it does not conflict with
/// (delta-rs's own default for its operations).
const GOLD_COMMIT_RETRIES: usize = 15;
/// Format of a cutoff, in the table and on the command line.
pub const CUTOFF_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// What `lake refresh gold` did.
#[derive(Debug, Clone, Serialize)]
pub struct GoldReport {
    /// The gold table.
    pub table: String,
    /// Silver table and version the features were computed from.
    pub source: String,
    /// Its version.
    pub source_version: u64,
    /// Cutoffs (re)built.
    pub cutoffs: Vec<String>,
    /// Rows written, all cutoffs.
    pub rows: u64,
    /// Rows with label 1.
    pub positives: u64,
    /// New gold version, or None when it was already up to date.
    pub version: Option<u64>,
}

/// How cutoffs are chosen.
#[derive(Debug, Clone, Default)]
pub enum Cutoffs {
    /// The last silver timestamp minus the label window (the SPEC's cutoff).
    #[default]
    Latest,
    /// These instants.
    At(Vec<NaiveDateTime>),
    /// The first day of every month after the first month of silver whose label window ends
    /// within silver.
    Monthly,
}

impl Lakehouse {
    /// Builds the gold features for `cutoffs` from the latest silver snapshot.
    pub async fn refresh_gold(&self, cutoffs: Cutoffs) -> Result<GoldReport> {
        let gold_id: TableId = GOLD_FEATURES.parse()?;
        let spec = self.catalog().table(&gold_id)?.clone();
        let silver_id: TableId = spec
            .source
            .as_deref()
            .ok_or_else(|| Error::Catalog {
                file: format!("tables/{}.toml", gold_id.path()),
                message: "a gold table needs a source".into(),
            })?
            .parse()?;
        let window = Duration::days(spec.label_window_days.unwrap_or(90));
        let silver = self.current_table(&silver_id).await?;
        let silver_version = silver.version().unwrap_or(0);
        let gold = self.current_table(&gold_id).await?;

        let ctx = session();
        ctx.register_table(
            "silver",
            silver.table_provider().await.map_err(df(&silver_id))?,
        )
        .map_err(df(&silver_id))?;
        let bounds = collect_sql(
            &ctx,
            "SELECT min(InvoiceDate), max(InvoiceDate) FROM silver",
            &silver_id,
        )
        .await?;
        let (Some(first), Some(last)) = (timestamp(&bounds, 0), timestamp(&bounds, 1)) else {
            return Err(Error::Usage(format!(
                "{silver_id} is empty: run `berserkr lake refresh silver` after appending drops"
            )));
        };
        let mut cuts: Vec<NaiveDateTime> = match cutoffs {
            Cutoffs::Latest => vec![last - window],
            Cutoffs::At(v) => v,
            Cutoffs::Monthly => monthly(first, last - window),
        };
        cuts.sort();
        cuts.dedup();
        if cuts.is_empty() {
            return Err(Error::Usage(format!(
                "no monthly cutoff fits: {silver_id} spans {first} .. {last}, the label window is {} days",
                window.num_days()
            )));
        }
        for c in &cuts {
            if *c + window > last {
                return Err(Error::Usage(format!(
                    "cutoff {c} leaves its {}-day label window past the last silver row ({last}): its labels would be incomplete",
                    window.num_days()
                )));
            }
        }
        let names: Vec<String> = cuts
            .iter()
            .map(|c| c.format(CUTOFF_FORMAT).to_string())
            .collect();

        // Up to date: same silver version, every requested cutoff already there.
        let app_id = refresh_app_id(&silver_id);
        let done = app_txn_version(&gold, &gold_id, &app_id).await? == silver_version as i64;
        if done {
            let have = partition_values(&gold, &gold_id, "cutoff")?;
            if names.iter().all(|n| have.contains(n)) {
                return Ok(GoldReport {
                    table: gold_id.to_string(),
                    source: silver_id.to_string(),
                    source_version: silver_version,
                    cutoffs: names,
                    rows: 0,
                    positives: 0,
                    version: None,
                });
            }
        }

        let template = self
            .catalog()
            .sql(spec.transform.as_deref().unwrap_or_default())?;
        let sql_at = |c: &NaiveDateTime| {
            template
                .replace("${cutoff}", &c.format(CUTOFF_FORMAT).to_string())
                .replace(
                    "${label_end}",
                    &(*c + window).format(CUTOFF_FORMAT).to_string(),
                )
        };
        // The query reads silver several times (features, customers, items, labels; each cutoff
        // again): read the columns it uses once, into memory.
        load_into_memory(&ctx, "silver", &sql_at(&cuts[0]), &silver_id).await?;
        let schema = spec.arrow_schema();
        let label = schema.index_of("label").map_err(|source| Error::Arrow {
            context: format!("{gold_id} schema"),
            source,
        })?;
        // Each cutoff's rows stream from the query into Parquet writers (one per partition of
        // the plan, so both cores encode); nothing is committed until every cutoff is written.
        let mut target = Target::of(self, &gold_id, &gold)?;
        let (mut adds, mut rows, mut positives) = (Vec::new(), 0u64, 0u64);
        for c in &cuts {
            match write_query(&ctx, &sql_at(c), &target, &schema, label).await {
                Ok((a, r, p)) => {
                    adds.extend(a);
                    rows += r;
                    positives += p;
                }
                Err(e) => {
                    discard(&target, &adds).await;
                    return Err(e);
                }
            }
        }
        // The cutoffs' partitions are replaced: their current files go.
        let removes = target
            .state
            .log_data()
            .iter()
            .filter(|f| {
                f.partition_values_map()
                    .remove("cutoff")
                    .flatten()
                    .is_some_and(|v| names.contains(&v))
            })
            .map(|f| Action::Remove(f.remove_action(true)))
            .collect::<Vec<_>>();
        let predicate = format!(
            "cutoff IN ({})",
            names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let props = CommitProperties::default()
            .with_application_transaction(Transaction::new(&app_id, silver_version as i64))
            .with_metadata([(
                "berserkr.gold".to_string(),
                json!({
                    "source": silver_id.to_string(),
                    "source_version": silver_version,
                    "cutoffs": names,
                    "label_window_days": window.num_days(),
                    "rows": rows,
                    "positives": positives,
                }),
            )]);
        let actions = adds
            .iter()
            .cloned()
            .map(Action::Add)
            .chain(removes)
            .collect();
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: None,
            predicate: Some(predicate),
        };
        let version = match target
            .commit(actions, operation, props, GOLD_COMMIT_RETRIES)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                discard(&target, &adds).await;
                return Err(Error::delta(&gold_id, e));
            }
        };
        Ok(GoldReport {
            table: gold_id.to_string(),
            source: silver_id.to_string(),
            source_version: silver_version,
            cutoffs: names,
            rows,
            positives,
            version: Some(version),
        })
    }
}

/// Runs `sql` and writes its rows, conformed to `schema`, to new files of `target`: the files,
/// the rows and the rows whose column `label` is 1.
async fn write_query(
    ctx: &SessionContext,
    sql: &str,
    target: &Target,
    schema: &SchemaRef,
    label: usize,
) -> Result<(Vec<Add>, u64, u64)> {
    let id = &target.id;
    let streams = ctx
        .sql(sql)
        .await
        .map_err(df(id))?
        .execute_stream_partitioned()
        .await
        .map_err(df(id))?;
    let mut tasks = Vec::new();
    for mut stream in streams {
        let mut writer = target.writer();
        let (schema, id) = (schema.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let (mut rows, mut positives) = (0u64, 0u64);
            let written: Result<()> = async {
                while let Some(batch) = stream.next().await {
                    let batch = conform_batch(batch.map_err(df(&id))?, &schema, &id)?;
                    rows += batch.num_rows() as u64;
                    let l = cast(batch.column(label), &DataType::Int64).map_err(|source| {
                        Error::Arrow {
                            context: format!("labels of {id}"),
                            source,
                        }
                    })?;
                    positives += l.as_primitive::<Int64Type>().iter().flatten().sum::<i64>() as u64;
                    writer
                        .write(&batch)
                        .await
                        .map_err(|e| Error::delta(&id, e))?;
                }
                Ok(())
            }
            .await;
            (writer, written.map(|()| (rows, positives)))
        }));
    }
    let (writers, counts) = join_writing(tasks, &format!("writing {id}")).await;
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            abort_all(writers).await;
            return Err(e);
        }
    };
    let (rows, positives) = counts
        .iter()
        .fold((0, 0), |(r, p), (r1, p1)| (r + r1, p + p1));
    let adds = close_all(writers).await.map_err(|e| Error::delta(id, e))?;
    Ok((adds, rows, positives))
}

/// Replaces the table `name` of `ctx` by an in-memory copy of the columns `sql` reads of it.
async fn load_into_memory(ctx: &SessionContext, name: &str, sql: &str, id: &TableId) -> Result<()> {
    use deltalake::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use deltalake::datafusion::logical_expr::LogicalPlan;

    let plan = ctx
        .sql(sql)
        .await
        .map_err(df(id))?
        .into_optimized_plan()
        .map_err(df(id))?;
    let mut used: Vec<String> = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == name
        {
            let filtered = scan.filters.iter().flat_map(|f| f.column_refs());
            for c in scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .chain(filtered.map(|c| c.name.clone()))
            {
                if !used.contains(&c) {
                    used.push(c);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(df(id))?;
    if used.is_empty() {
        return Ok(());
    }
    let data = ctx
        .sql(&format!("SELECT {} FROM {name}", used.join(", ")))
        .await
        .map_err(df(id))?;
    let schema = data.schema().as_arrow().clone();
    let partitions = data.collect_partitioned().await.map_err(df(id))?;
    let table = MemTable::try_new(Arc::new(schema), partitions).map_err(df(id))?;
    ctx.deregister_table(name).map_err(df(id))?;
    ctx.register_table(name, Arc::new(table)).map_err(df(id))?;
    Ok(())
}

/// Month starts after `first`'s month, up to `last_cutoff`.
fn monthly(first: NaiveDateTime, last_cutoff: NaiveDateTime) -> Vec<NaiveDateTime> {
    use chrono::Datelike;
    let mut out = Vec::new();
    let (mut y, mut m) = (first.year(), first.month());
    loop {
        m += 1;
        if m == 13 {
            m = 1;
            y += 1;
        }
        let Some(d) = chrono::NaiveDate::from_ymd_opt(y, m, 1).and_then(|d| d.and_hms_opt(0, 0, 0))
        else {
            break;
        };
        if d > last_cutoff {
            break;
        }
        out.push(d);
    }
    out
}

fn timestamp(
    batches: &[deltalake::arrow::array::RecordBatch],
    col: usize,
) -> Option<NaiveDateTime> {
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let c = cast(
        b.column(col),
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )
    .ok()?;
    let a = c.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
    if a.is_null(0) {
        return None;
    }
    chrono::DateTime::from_timestamp_micros(a.value(0)).map(|t| t.naive_utc())
}
