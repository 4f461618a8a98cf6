//! Batch scoring: a trained model over one cutoff of the feature table, written to
//! `gold.purchase_scores` as one Delta commit (the model's partition replaced), and one
//! customer's most likely purchases for a quick look.

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::datatypes::SchemaRef;
use serde::Serialize;
use serde_json::json;

use super::data::{FeatureFrame, latest_cutoff, read_features};
use super::{Model, read_manifest, read_model};
use crate::catalog::{GOLD_FEATURES, SCORES, SCORING_FEATURES, TableId};
use crate::error::{Error, Result};
use crate::lake::{At, Lakehouse, operation, score_app_id};
use crate::ops::target::{Change, Committed, Staging, Target, Txn};

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
    /// The snapshot the model was trained on.
    pub train_table: String,
    /// Its version.
    pub train_version: u64,
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
    /// Scores the features of the present (`gold.scoring_features`: as of the last silver
    /// timestamp) with the model in `model_dir`, into `gold.purchase_scores`; with
    /// [`ScoreBuilder::with_cutoff`], a cutoff of the model's training table instead.
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
    train_table: String,
    train_version: u64,
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

    /// Score this cutoff of the model's training table (default: the scoring table's cutoff,
    /// the present).
    pub fn with_cutoff(mut self, cutoff: Option<String>) -> Self {
        self.cutoff = cutoff;
        self
    }

    /// The feature table scored: the model's training table at an explicit cutoff, else its
    /// scoring counterpart (features as of the last silver timestamp).
    fn source_table(&self, manifest: &super::Manifest) -> Result<TableId> {
        let trained: TableId = manifest.snapshot.table.parse()?;
        if self.cutoff.is_some() {
            return Ok(trained);
        }
        if trained.to_string() == GOLD_FEATURES {
            return SCORING_FEATURES.parse();
        }
        Err(Error::InvalidArgument(format!(
            "the model was trained on {trained}, which has no scoring table: name a --cutoff of it"
        )))
    }

    async fn scored(&self, customer: Option<i64>) -> Result<Scored> {
        let manifest = read_manifest(&self.model_dir).await?;
        let model = read_model(&self.model_dir).await?;
        let id = self.source_table(&manifest)?;
        let table = self.lake.table_at(&id, &self.at).await?;
        let source_version = table.version().unwrap_or(0);
        let cutoff = match &self.cutoff {
            Some(c) => c.clone(),
            None => latest_cutoff(&table, &id).await?.ok_or_else(|| {
                Error::Precondition(format!(
                    "{id} version {source_version} has no rows to score: run `berserkr lake refresh gold`"
                ))
            })?,
        };
        same_definition(&manifest, &table, &id, &cutoff, &self.model_dir).await?;
        let frame = read_features(&table, &id, Some(&cutoff), customer).await?;
        if frame.is_empty() && customer.is_none() {
            return Err(Error::InvalidArgument(format!(
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
            train_table: manifest.snapshot.table,
            train_version: manifest.snapshot.version,
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

    async fn execute(self) -> Result<ScoreReport> {
        let scores_id: TableId = SCORES.parse()?;
        let mut target = Target::open(&self.lake, &scores_id).await?;
        let s = self.scored(None).await?;
        // Per model and feature table: the scoring table's versions and the training table's
        // are not comparable.
        let app_id = format!("{}.{}", score_app_id(&s.model_id), s.source_table);
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
            train_table: s.train_table.clone(),
            train_version: s.train_version,
            table: scores_id.to_string(),
            version: None,
        };
        // The latest scores of a model are written once per feature-table version; an explicit
        // cutoff or version is scored again whatever the log says.
        let txn = Txn {
            app_id: &app_id,
            version: s.source_version as i64,
            exactly_once: self.cutoff.is_none() && self.at == At::Latest,
        };
        if txn.exactly_once && target.txn_version(&app_id).await? >= Some(txn.version) {
            return Ok(report);
        }
        let schema = self.lake.catalog().table(&scores_id)?.arrow_schema();
        let batch = score_batch(&schema, &s, &scores_id)?;
        let mut staging = Staging::new([&target]);
        let mut writer = target.writer();
        let written = writer.write(&batch).await;
        staging.hold(0, [writer]);
        if let Err(e) = written {
            return staging.fail(Error::delta(&scores_id, e)).await;
        }
        staging.close().await?;
        let metadata = json!({
            "model_id": s.model_id,
            "train_table": s.train_table,
            "train_version": s.train_version,
            "source": s.source_table.to_string(),
            "source_version": s.source_version,
            "cutoff": s.cutoff,
            "rows": s.frame.len(),
        });
        // The model's partition is replaced as a whole.
        let change = Change::Replace {
            column: "model_id".into(),
            values: vec![s.model_id.clone()],
        };
        let committed = target
            .commit(staging.take(0), change, txn, "berserkr.score", metadata)
            .await?;
        if let Committed::Version(v) = committed {
            report.version = Some(v);
        }
        Ok(report)
    }
}
operation!(ScoreBuilder => ScoreReport);

/// The rows of `gold.purchase_scores` for a scored cutoff, each column filled by its declared
/// name (a declaration with a column scoring does not know is an error, not a silent gap).
fn score_batch(schema: &SchemaRef, s: &Scored, id: &TableId) -> Result<RecordBatch> {
    let n = s.frame.len();
    let columns = schema
        .fields()
        .iter()
        .map(|f| -> Result<ArrayRef> {
            Ok(match f.name().as_str() {
                "model_id" => Arc::new(StringArray::from(vec![s.model_id.as_str(); n])),
                "CustomerID" => Arc::new(Int64Array::from(s.frame.customer.clone())),
                "StockCode" => Arc::new(StringArray::from_iter_values(s.frame.item.iter())),
                "score" => Arc::new(Float64Array::from(s.scores.clone())),
                "rank" => Arc::new(Int32Array::from_iter_values(
                    s.ranks.iter().map(|&r| r as i32),
                )),
                "cutoff" => Arc::new(StringArray::from(vec![s.cutoff.as_str(); n])),
                "source_table" => Arc::new(StringArray::from(vec![s.source_table.to_string(); n])),
                "source_version" => Arc::new(Int64Array::from(vec![s.source_version as i64; n])),
                "train_table" => Arc::new(StringArray::from(vec![s.train_table.as_str(); n])),
                "train_version" => Arc::new(Int64Array::from(vec![s.train_version as i64; n])),
                other => {
                    return Err(Error::Catalog {
                        file: format!("tables/{}.toml", id.path()),
                        message: format!("column {other} is not one scoring fills"),
                    });
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    crate::session::conform_columns(columns, schema, id)
}

/// Refuses to score `cutoff` of `table` unless its features were computed with the definition the
/// model was trained on.
async fn same_definition(
    manifest: &super::Manifest,
    table: &deltalake::DeltaTable,
    id: &TableId,
    cutoff: &str,
    model_dir: &std::path::Path,
) -> Result<()> {
    let path = model_dir.display().to_string();
    let Some(trained) = &manifest.feature_definition else {
        return Err(Error::InvalidModel {
            path,
            reason: "its manifest records no feature definition (trained before berserkr recorded them): retrain it".into(),
        });
    };
    let found = crate::lake::definitions(table, id)
        .await?
        .remove(cutoff)
        .flatten();
    match found {
        Some(d) if &d == trained => Ok(()),
        other => Err(Error::InvalidModel {
            path,
            reason: format!(
                "trained on features of definition {trained}, but {id} cutoff {cutoff} was computed with {}: retrain the model on the current gold, or score with the build that computed its features",
                other.as_deref().unwrap_or("an unrecorded one")
            ),
        }),
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
                .ok_or_else(|| Error::InvalidData {
                    table: id.to_string(),
                    reason: format!("no feature {f}, which the model needs"),
                })
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
