//! `lake refresh gold`: point-in-time customer-item features with purchase labels.
//!
//! For each cutoff, `tables/gold/customer_item_features.sql` runs over one silver snapshot:
//! features from rows strictly before the cutoff, the label from the window
//! `[cutoff, cutoff + label_window_days]`. The cutoffs' partitions are replaced in one commit that
//! records the silver version (application transaction `berserkr.refresh.<silver>`) and the
//! cutoffs in its metadata. A cutoff whose label window is not yet fully in silver is refused:
//! its labels would be wrong, not just late.

use chrono::{Duration, NaiveDateTime};
use deltalake::arrow::array::{Array, ArrayRef, Int64Array, TimestampMicrosecondArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use serde::Serialize;
use serde_json::json;

use crate::catalog::TableId;
use crate::error::{Error, Result};
use crate::lake::{Lakehouse, app_txn_version, partition_values};
use crate::ops::refresh::{collect_sql, conform, df, refresh_app_id, session};

/// The gold table `lake refresh gold` builds.
pub const GOLD_FEATURES: &str = "gold.customer_item_features";
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
        register_unix_micros(&ctx);
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
        let schema = spec.arrow_schema();
        let mut batches = Vec::new();
        for c in &cuts {
            let sql = template
                .replace("${cutoff}", &c.format(CUTOFF_FORMAT).to_string())
                .replace(
                    "${label_end}",
                    &(*c + window).format(CUTOFF_FORMAT).to_string(),
                );
            let out = collect_sql(&ctx, &sql, &gold_id).await?;
            batches.extend(conform(out, &schema, &gold_id)?);
        }
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let label = schema.index_of("label").map_err(|source| Error::Arrow {
            context: format!("{gold_id} schema"),
            source,
        })?;
        let mut positives = 0u64;
        for b in &batches {
            let l = cast(b.column(label), &DataType::Int64).map_err(|source| Error::Arrow {
                context: format!("labels of {gold_id}"),
                source,
            })?;
            if let Some(l) = l.as_any().downcast_ref::<Int64Array>() {
                positives += l.iter().flatten().sum::<i64>() as u64;
            }
        }
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
        let table = gold
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate)
            .with_commit_properties(props)
            .await
            .map_err(|e| Error::delta(&gold_id, e))?;
        Ok(GoldReport {
            table: gold_id.to_string(),
            source: silver_id.to_string(),
            source_version: silver_version,
            cutoffs: names,
            rows,
            positives,
            version: table.version(),
        })
    }
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

/// Spark's `unix_micros(timestamp)`: microseconds since the epoch, so gold's SQL runs unchanged
/// on Spark and here.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UnixMicros {
    signature: Signature,
}

impl ScalarUDFImpl for UnixMicros {
    fn name(&self) -> &str {
        "unix_micros"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> deltalake::datafusion::error::Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> deltalake::datafusion::error::Result<ColumnarValue> {
        let micros = |a: &ArrayRef| -> deltalake::datafusion::error::Result<ArrayRef> {
            let t = cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            Ok(cast(&t, &DataType::Int64)?)
        };
        Ok(match &args.args[0] {
            ColumnarValue::Array(a) => ColumnarValue::Array(micros(a)?),
            ColumnarValue::Scalar(s) => {
                let a = micros(&s.to_array()?)?;
                ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?)
            }
        })
    }
}

fn register_unix_micros(ctx: &SessionContext) {
    let ts = |u| TypeSignature::Exact(vec![DataType::Timestamp(u, None)]);
    let signature = Signature::one_of(
        vec![
            ts(TimeUnit::Nanosecond),
            ts(TimeUnit::Microsecond),
            ts(TimeUnit::Millisecond),
            ts(TimeUnit::Second),
        ],
        Volatility::Immutable,
    );
    ctx.register_udf(ScalarUDF::new_from_impl(UnixMicros { signature }));
}
