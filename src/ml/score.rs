//! Batch scoring: a trained model over one cutoff of the feature table, written to
//! `gold.purchase_scores` as one Delta commit (the model's partition replaced), and one
//! customer's most likely purchases for a quick look.

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use serde::Serialize;
use serde_json::json;

use super::data::{At, FeatureFrame, latest_cutoff, read_features};
use super::{Model, read_manifest, read_model};
use crate::catalog::TableId;
use crate::error::{Error, Result};
use crate::lake::{Lakehouse, app_txn_version};

/// The table batch scores go to.
pub const SCORES_TABLE: &str = "gold.purchase_scores";

/// What a scoring run did.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    /// The model.
    pub model_id: String,
    /// Feature table scored.
    pub source_table: String,
    /// Its version.
    pub source_version: u64,
    /// The cutoff scored.
    pub cutoff: String,
    /// Rows scored.
    pub rows: u64,
    /// Customers scored.
    pub customers: u64,
    /// The scores table.
    pub table: String,
    /// Its new version (None: these scores were already there).
    pub version: Option<u64>,
}

/// One scored item of a customer.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredItem {
    /// Rank among the customer's items (1 = most likely).
    pub rank: u32,
    /// The item.
    pub stock_code: String,
    /// Purchase probability.
    pub score: f64,
}

/// Builder of a scoring run: `lake.score("models/m1").await`.
#[derive(Debug, Clone)]
pub struct ScoreBuilder {
    lake: Lakehouse,
    model_dir: PathBuf,
    at: At,
    cutoff: Option<String>,
}

impl Lakehouse {
    /// Scores the latest cutoff of the feature table's latest version with the model in
    /// `model_dir`, into `gold.purchase_scores`.
    pub fn score(&self, model_dir: impl Into<PathBuf>) -> ScoreBuilder {
        ScoreBuilder {
            lake: self.clone(),
            model_dir: model_dir.into(),
            at: At::Latest,
            cutoff: None,
        }
    }
}

/// A scored cutoff, before writing.
struct Scored {
    model_id: String,
    source_table: TableId,
    source_version: u64,
    cutoff: String,
    frame: FeatureFrame,
    scores: Vec<f64>,
    ranks: Vec<u32>,
}

impl ScoreBuilder {
    /// Which feature-table snapshot (default latest).
    pub fn with_at(mut self, at: At) -> Self {
        self.at = at;
        self
    }

    /// Which cutoff (default: the latest in the snapshot).
    pub fn with_cutoff(mut self, cutoff: Option<String>) -> Self {
        self.cutoff = cutoff;
        self
    }

    async fn scored(&self, customer: Option<i64>) -> Result<Scored> {
        let manifest = read_manifest(&self.model_dir).await?;
        let model = read_model(&self.model_dir).await?;
        let id: TableId = manifest.snapshot.table.parse()?;
        let table = self.lake.table_at(&id, &self.at).await?;
        let source_version = table.version().unwrap_or(0);
        let cutoff = match &self.cutoff {
            Some(c) => c.clone(),
            None => latest_cutoff(&table, &id).await?.ok_or_else(|| {
                Error::Usage(format!(
                    "{id} version {source_version} has no rows to score: run `berserkr lake refresh gold`"
                ))
            })?,
        };
        let frame = read_features(&table, &id, Some(&cutoff), customer).await?;
        if frame.is_empty() && customer.is_none() {
            return Err(Error::Usage(format!(
                "{id} version {source_version} has no rows at cutoff {cutoff}"
            )));
        }
        let columns = columns_for(&model, &frame, &id)?;
        let scores = tokio::task::spawn_blocking(move || model.predict_columns(&columns))
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        let ranks = rank(&frame, &scores);
        Ok(Scored {
            model_id: manifest.model_id,
            source_table: id,
            source_version,
            cutoff,
            frame,
            scores,
            ranks,
        })
    }

    /// One customer's `top` most likely items (nothing is written).
    pub async fn top_for_customer(&self, customer: i64, top: usize) -> Result<Vec<ScoredItem>> {
        let s = self.scored(Some(customer)).await?;
        let mut items: Vec<ScoredItem> = (0..s.frame.len())
            .map(|i| ScoredItem {
                rank: s.ranks[i],
                stock_code: s.frame.item[i].clone(),
                score: s.scores[i],
            })
            .collect();
        items.sort_by_key(|i| i.rank);
        items.truncate(top);
        Ok(items)
    }

    async fn run(self) -> Result<ScoreReport> {
        let scores_id: TableId = SCORES_TABLE.parse()?;
        let target = self.lake.current_table(&scores_id).await?;
        let s = self.scored(None).await?;
        let app_id = format!("berserkr.score.{}", s.model_id);
        let customers = {
            let mut c = s.frame.customer.clone();
            c.dedup();
            c.len() as u64
        };
        let mut report = ScoreReport {
            model_id: s.model_id.clone(),
            source_table: s.source_table.to_string(),
            source_version: s.source_version,
            cutoff: s.cutoff.clone(),
            rows: s.frame.len() as u64,
            customers,
            table: scores_id.to_string(),
            version: None,
        };
        // Already scored: same model, same source version and cutoff.
        let done = app_txn_version(&target, &scores_id, &app_id).await? == s.source_version as i64
            && self.cutoff.is_none();
        if done {
            return Ok(report);
        }
        let schema = self.lake.catalog().table(&scores_id)?.arrow_schema();
        let n = s.frame.len();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![s.model_id.as_str(); n])),
                Arc::new(Int64Array::from(s.frame.customer.clone())),
                Arc::new(StringArray::from_iter_values(s.frame.item.iter())),
                Arc::new(Float64Array::from(s.scores.clone())),
                Arc::new(Int32Array::from_iter_values(
                    s.ranks.iter().map(|&r| r as i32),
                )),
                Arc::new(StringArray::from(vec![s.cutoff.as_str(); n])),
                Arc::new(StringArray::from(vec![s.source_table.to_string(); n])),
                Arc::new(Int64Array::from(vec![s.source_version as i64; n])),
            ],
        )
        .map_err(|source| Error::Arrow {
            context: format!("rows for {scores_id}"),
            source,
        })?;
        let props = CommitProperties::default()
            .with_application_transaction(Transaction::new(&app_id, s.source_version as i64))
            .with_metadata([(
                "berserkr.score".to_string(),
                json!({
                    "model_id": s.model_id,
                    "source": s.source_table.to_string(),
                    "source_version": s.source_version,
                    "cutoff": s.cutoff,
                    "rows": n,
                }),
            )]);
        let table = target
            .write(vec![batch])
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(format!("model_id = '{}'", s.model_id))
            .with_commit_properties(props)
            .await
            .map_err(|e| Error::delta(&scores_id, e))?;
        report.version = table.version();
        Ok(report)
    }
}

impl std::future::IntoFuture for ScoreBuilder {
    type Output = Result<ScoreReport>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The frame's columns in the model's feature order.
fn columns_for(model: &Model, frame: &FeatureFrame, id: &TableId) -> Result<Vec<Vec<f64>>> {
    model
        .features
        .iter()
        .map(|f| {
            frame
                .names
                .iter()
                .position(|n| n == f)
                .map(|i| frame.features[i].clone())
                .ok_or_else(|| Error::Usage(format!("{id} has no feature {f} the model needs")))
        })
        .collect()
}

/// Rank of each row among its customer's rows (score descending, then item code).
fn rank(frame: &FeatureFrame, scores: &[f64]) -> Vec<u32> {
    let n = frame.customer.len();
    let mut ranks = vec![0u32; n];
    let mut start = 0;
    // Rows come ordered by (cutoff, customer, item): each customer's rows are contiguous.
    while start < n {
        let mut end = start;
        while end < n && frame.customer[end] == frame.customer[start] {
            end += 1;
        }
        let mut idx: Vec<usize> = (start..end).collect();
        idx.sort_by(|&a, &b| {
            scores[b]
                .total_cmp(&scores[a])
                .then_with(|| frame.item[a].cmp(&frame.item[b]))
        });
        for (r, i) in idx.into_iter().enumerate() {
            ranks[i] = r as u32 + 1;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_per_customer_best_first_ties_by_item() {
        let frame = FeatureFrame {
            cutoff: vec!["c".into(); 5],
            customer: vec![1, 1, 1, 2, 2],
            item: ["b", "a", "c", "x", "y"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        };
        assert_eq!(
            rank(&frame, &[0.5, 0.5, 0.9, 0.1, 0.2]),
            vec![3, 2, 1, 2, 1]
        );
    }
}
