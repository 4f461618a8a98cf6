//! Reading one snapshot of a feature table into columns a learner uses.
//!
//! The snapshot is pinned through the Delta log (a version, or the last version committed at or
//! before a time), its file list is digested, and its rows are read by DataFusion over exactly
//! that snapshot, ordered by `(cutoff, CustomerID, StockCode)` so the matrix is the same whatever
//! the file layout. Each Arrow column is cast to `f64` and appended to its feature vector: no
//! row-by-row copies.

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use futures::StreamExt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{CUTOFF_COLUMN, TableId};
use crate::error::{Error, Result};
use crate::lake::{Lakehouse, log, partition_values};
use crate::session::{collect_sql, df, session};

/// The features every model uses: the numeric columns of `gold.customer_item_features`: the 13
/// of `../shared/peers/train.py`, then those of the next purchase (migration 0017).
pub const FEATURES: [&str; 22] = [
    "n_purchases",
    "n_lines",
    "total_qty",
    "total_revenue",
    "recency_days",
    "tenure_days",
    "cust_n_invoices",
    "cust_n_items",
    "cust_total_qty",
    "cust_total_revenue",
    "cust_recency_days",
    "item_n_customers",
    "item_total_qty",
    "cust_interval_days",
    "cust_overdue",
    "pair_interval_days",
    "pair_overdue",
    "pair_share",
    "item_n_invoices",
    "item_recent_customers",
    "item_trend",
    "item_season_customers",
];

/// Identity of one table snapshot: enough to find it again and to prove it is the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotId {
    /// The lake's root URL.
    pub lake: String,
    /// The table.
    pub table: String,
    /// Its version.
    pub version: u64,
    /// The commit's timestamp (ms since the epoch, from its commitInfo).
    pub commit_timestamp_ms: i64,
    /// SHA-256 over the snapshot's data files (`path\tsize\n`, sorted by path).
    pub files_sha256: String,
    /// How many data files.
    pub files: usize,
}

/// A snapshot's rows as columns.
#[derive(Debug, Clone, Default)]
pub struct FeatureFrame {
    /// Cutoff of each row.
    pub cutoff: Vec<String>,
    /// Customer of each row.
    pub customer: Vec<i64>,
    /// Item of each row.
    pub item: Vec<String>,
    /// Feature names.
    pub names: Vec<String>,
    /// `features[f][row]`.
    pub features: Vec<Vec<f64>>,
    /// 0/1 label of each row (empty when the table has no label: a scoring table).
    pub label: Vec<u8>,
}

impl FeatureFrame {
    /// Rows.
    pub fn len(&self) -> usize {
        self.customer.len()
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.customer.is_empty()
    }

    /// True when the rows carry labels (a training table; a scoring table has none).
    pub fn labelled(&self) -> bool {
        self.label.len() == self.customer.len() && !self.is_empty()
    }

    /// Distinct cutoffs, ascending.
    pub fn cutoffs(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&String> = self.cutoff.iter().collect();
        set.into_iter().cloned().collect()
    }
}

/// The identity of a loaded snapshot.
pub async fn snapshot_id(lake: &Lakehouse, id: &TableId, table: &DeltaTable) -> Result<SnapshotId> {
    let version = table.version().unwrap_or(0);
    let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
    let mut files: Vec<(String, i64)> = state
        .log_data()
        .iter()
        .map(|f| (f.path().into_owned(), f.size()))
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for (p, s) in &files {
        h.update(format!("{p}\t{s}\n").as_bytes());
    }
    Ok(SnapshotId {
        lake: lake.root().to_string(),
        table: id.to_string(),
        version,
        commit_timestamp_ms: commit_timestamp(table, id, version).await?,
        files_sha256: hex::encode(h.finalize()),
        files: files.len(),
    })
}

/// `commitInfo.timestamp` of a version (the file's modification time when it has none).
async fn commit_timestamp(table: &DeltaTable, id: &TableId, version: u64) -> Result<i64> {
    let commit = log::read_commit(&table.log_store(), id, version).await?;
    let from_info = commit.as_ref().and_then(|c| c.info()?.timestamp);
    match from_info {
        Some(ts) => Ok(ts),
        None => table
            .snapshot()
            .ok()
            .and_then(|s| s.version_timestamp(version))
            .ok_or_else(|| Error::CorruptLog {
                table: id.to_string(),
                version,
                line: None,
                reason: "no commit timestamp in its log".into(),
            }),
    }
}

/// The latest cutoff in a snapshot (None when it has no rows): from the partition values in its
/// log when the table is partitioned by cutoff, else by a query.
pub async fn latest_cutoff(table: &DeltaTable, id: &TableId) -> Result<Option<String>> {
    let partitioned = table
        .snapshot()
        .map_err(|e| Error::delta(id, e))?
        .metadata()
        .partition_columns()
        .iter()
        .any(|c| c == CUTOFF_COLUMN);
    if partitioned {
        return Ok(partition_values(table, id, CUTOFF_COLUMN)?.pop_last());
    }
    let ctx = session();
    ctx.register_table("features", table.table_provider().await.map_err(df(id))?)
        .map_err(df(id))?;
    let b = collect_sql(&ctx, "SELECT max(cutoff) FROM features", id).await?;
    let Some(b) = b.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let c = cast(b.column(0), &DataType::Utf8).map_err(|source| Error::Arrow {
        context: format!("cutoffs of {id}"),
        source,
    })?;
    let c = c
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 gives a StringArray");
    Ok(c.is_valid(0).then(|| c.value(0).to_string()))
}

/// Reads a snapshot's rows, optionally one cutoff and one customer only, ordered by
/// (cutoff, customer, item).
pub async fn read_features(
    table: &DeltaTable,
    id: &TableId,
    cutoff: Option<&str>,
    customer: Option<i64>,
) -> Result<FeatureFrame> {
    let ctx = session();
    ctx.register_table("features", table.table_provider().await.map_err(df(id))?)
        .map_err(df(id))?;
    let mut conditions = Vec::new();
    if let Some(c) = cutoff {
        conditions.push(format!("cutoff = '{}'", c.replace('\'', "''")));
    }
    if let Some(c) = customer {
        conditions.push(format!("CustomerID = {c}"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let labelled = has_label(table, id)?;
    let sql = format!(
        "SELECT cutoff, CustomerID, StockCode, {}{} FROM features {filter}",
        FEATURES.join(", "),
        if labelled { ", label" } else { "" }
    );
    // Each batch becomes columns as it arrives and is dropped; the rows are put in order
    // afterwards (an ORDER BY would hold the whole table a second time in DataFusion's sort).
    let mut stream = ctx
        .sql(&sql)
        .await
        .map_err(df(id))?
        .execute_stream()
        .await
        .map_err(df(id))?;
    let mut f = FeatureFrame {
        names: FEATURES.iter().map(|s| s.to_string()).collect(),
        features: vec![Vec::new(); FEATURES.len()],
        ..Default::default()
    };
    while let Some(b) = stream.next().await {
        append_batch(&mut f, &b.map_err(df(id))?, id, labelled)?;
    }
    sort_rows(&mut f);
    Ok(f)
}

/// Puts the rows in (cutoff, customer, item) order: the order every model is fitted in. The
/// three together are unique, so the order is the same however the rows arrived.
fn sort_rows(f: &mut FeatureFrame) {
    let cutoffs = f.cutoffs();
    let code: Vec<u32> = f
        .cutoff
        .iter()
        .map(|c| cutoffs.binary_search(c).expect("a cutoff of the frame") as u32)
        .collect();
    let mut order: Vec<u32> = (0..f.len() as u32).collect();
    order.par_sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        (code[a], f.customer[a])
            .cmp(&(code[b], f.customer[b]))
            .then_with(|| f.item[a].cmp(&f.item[b]))
    });
    if order.iter().enumerate().all(|(i, &r)| i == r as usize) {
        return;
    }
    fn permute<T: Clone + Send + Sync>(v: &mut Vec<T>, order: &[u32]) {
        if v.len() == order.len() {
            *v = order.par_iter().map(|&r| v[r as usize].clone()).collect();
        }
    }
    permute(&mut f.cutoff, &order);
    permute(&mut f.customer, &order);
    permute(&mut f.item, &order);
    permute(&mut f.label, &order);
    for col in &mut f.features {
        permute(col, &order);
    }
}

/// True when the table has a `label` column (a training table).
pub fn has_label(table: &DeltaTable, id: &TableId) -> Result<bool> {
    Ok(table
        .snapshot()
        .map_err(|e| Error::delta(id, e))?
        .snapshot()
        .arrow_schema()
        .index_of("label")
        .is_ok())
}

/// Appends one batch's rows (cutoff, CustomerID, StockCode, the features, the label) to `f`.
fn append_batch(f: &mut FeatureFrame, b: &RecordBatch, id: &TableId, labelled: bool) -> Result<()> {
    let arrow = |context: &str| {
        let context = format!("{context} of {id}");
        move |source| Error::Arrow { context, source }
    };
    let null = |col: &str| Error::InvalidData {
        table: id.to_string(),
        reason: format!("column {col} holds a null; features cannot"),
    };
    let strings = |i: usize| -> Result<StringArray> {
        let c = cast(b.column(i), &DataType::Utf8).map_err(arrow("strings"))?;
        Ok(c.as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8 gives a StringArray")
            .clone())
    };
    let cut = strings(0)?;
    let item = strings(2)?;
    let cust = cast(b.column(1), &DataType::Int64).map_err(arrow("CustomerID"))?;
    let cust = cust
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64 gives an Int64Array");
    if cut.null_count() + item.null_count() + cust.null_count() > 0 {
        return Err(null("cutoff/CustomerID/StockCode"));
    }
    f.cutoff
        .extend(cut.iter().map(|s| s.unwrap_or_default().to_string()));
    f.item
        .extend(item.iter().map(|s| s.unwrap_or_default().to_string()));
    f.customer.extend_from_slice(cust.values());
    for (j, name) in FEATURES.iter().enumerate() {
        let c = cast(b.column(3 + j), &DataType::Float64).map_err(arrow(name))?;
        let c = c
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64 gives a Float64Array");
        if c.null_count() > 0 {
            return Err(null(name));
        }
        f.features[j].extend_from_slice(c.values());
    }
    if !labelled {
        return Ok(());
    }
    let l = cast(b.column(3 + FEATURES.len()), &DataType::Int64).map_err(arrow("label"))?;
    let l = l
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64 gives an Int64Array");
    if l.null_count() > 0 {
        return Err(null("label"));
    }
    for &v in l.values() {
        if v != 0 && v != 1 {
            return Err(Error::InvalidData {
                table: id.to_string(),
                reason: format!("label {v} is not 0 or 1"),
            });
        }
        f.label.push(v as u8);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_put_in_cutoff_customer_item_order_whatever_their_arrival() {
        let rows = [
            ("2011-02-01 00:00:00", 7, "B", 1.0, 0),
            ("2011-01-01 00:00:00", 9, "A", 2.0, 1),
            ("2011-02-01 00:00:00", 7, "A", 3.0, 1),
            ("2011-01-01 00:00:00", 3, "Z", 4.0, 0),
        ];
        let mut f = FeatureFrame {
            names: vec!["x".into()],
            features: vec![Vec::new()],
            ..Default::default()
        };
        for (c, cu, it, x, l) in rows {
            f.cutoff.push(c.into());
            f.customer.push(cu);
            f.item.push(it.into());
            f.features[0].push(x);
            f.label.push(l);
        }
        sort_rows(&mut f);
        assert_eq!(f.customer, [3, 9, 7, 7]);
        assert_eq!(f.item, ["Z", "A", "A", "B"]);
        assert_eq!(f.features[0], [4.0, 2.0, 3.0, 1.0]);
        assert_eq!(f.label, [0, 1, 1, 0]);
        assert_eq!(f.cutoff[0], "2011-01-01 00:00:00");
        assert_eq!(f.cutoff[3], "2011-02-01 00:00:00");
    }
}
