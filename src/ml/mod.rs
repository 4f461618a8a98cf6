//! Training, evaluation, scoring and export of purchase-likelihood models.
//!
//! `lake.train()` reads one pinned snapshot of the gold features ([`data`]), splits it honestly
//! (time-based across cutoffs, else a seeded stratified split), fits a model ([`model`], grown by
//! [`tree`]), evaluates it against two baselines ([`metrics`]), and writes a model directory:
//!
//! - `model.json`: the model; the same snapshot, parameters and seed give the same bytes;
//! - `manifest.json`: what was trained on what (lake, table, version, commit time, file-list
//!   digest, schema, features, label, cutoffs, split, parameters, metrics, berserkr version);
//! - `report.html` with `roc.svg`, `precision_at_k.svg`, `importance.svg`.
//!
//! A pin (`<lake>/_berserkr/pins/<model id>.json`, see [`crate::lake::pins`]) records the
//! snapshot so table care keeps the files it needs.

pub mod data;
pub mod metrics;
pub mod model;
pub mod pmml;
pub mod report;
pub mod score;
pub mod tree;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{Duration, NaiveDateTime};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{CUTOFF_FORMAT, GOLD_FEATURES, TableId};
use crate::error::{Error, Result};
use crate::lake::pins::Pin;
use crate::lake::{At, Lakehouse, operation};
pub use data::{FeatureFrame, SnapshotId};
use metrics::{Metrics, Ranked};
pub use model::{AUTO_MIN_LEAF, Model, ModelKind, Params};

/// The source revision berserkr was built from (`git rev-parse HEAD`, or `unknown`).
pub const SOURCE_REVISION: &str = env!("BERSERKR_SOURCE_REVISION");
/// Share of rows held out by the stratified split.
pub const TEST_FRACTION: f64 = 0.2;
/// The model file in a model directory.
pub const MODEL_FILE: &str = "model.json";
/// The manifest file in a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// How the rows were split into training and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Split {
    /// Train on earlier cutoffs, evaluate on the latest.
    Time {
        /// Cutoffs trained on: those whose label window closes by the evaluation cutoff.
        train_cutoffs: Vec<String>,
        /// The evaluation cutoff.
        eval_cutoff: String,
        /// Cutoffs left out because their label window overlaps the evaluation period.
        skipped_cutoffs: Vec<String>,
    },
    /// A seeded stratified split of the rows.
    Stratified {
        /// Share held out.
        test_fraction: f64,
        /// The seed.
        seed: u64,
        /// Why not a time-based split.
        reason: String,
    },
}

/// The label's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSpec {
    /// The column.
    pub column: String,
    /// Days after the cutoff in which a purchase counts.
    pub window_days: i64,
    /// In words.
    pub definition: String,
}

/// Metrics of the model and of the baselines on the evaluation rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Training rows.
    pub train_rows: usize,
    /// Evaluation rows.
    pub eval_rows: usize,
    /// Positive rate of the evaluation rows.
    pub eval_positive_rate: f64,
    /// The model.
    pub model: Metrics,
    /// Baseline: the item's popularity (`item_n_customers`).
    pub popularity: Metrics,
    /// Baseline: the customer's own recency with the item (`-recency_days`).
    pub recency: Metrics,
    /// Whether the model's ROC AUC beats the popularity baseline's.
    pub beats_popularity: bool,
}

/// Everything needed to reproduce and audit a model (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Short id: the first 16 hex digits of the model file's SHA-256.
    pub model_id: String,
    /// SHA-256 of `model.json`.
    pub model_sha256: String,
    /// The snapshot trained on.
    pub snapshot: SnapshotId,
    /// Rows in the snapshot.
    pub rows: usize,
    /// The table's schema at that version (Delta JSON schema).
    pub schema: serde_json::Value,
    /// Features, in model order.
    pub features: Vec<String>,
    /// Digest of the definition the features were computed with (gold's transform SQL, see
    /// [`crate::catalog::Catalog::definition`]): a model scores only features of the same one.
    /// `None` for models trained on gold written before definitions were recorded.
    #[serde(default)]
    pub feature_definition: Option<String>,
    /// The label.
    pub label: LabelSpec,
    /// Cutoffs in the snapshot.
    pub cutoffs: Vec<String>,
    /// The split.
    pub split: Split,
    /// Model parameters (with the seed).
    pub params: Params,
    /// Metrics.
    pub evaluation: Evaluation,
    /// Feature importance (normalised gain), by feature.
    pub importance: BTreeMap<String, f64>,
    /// berserkr's version.
    pub berserkr_version: String,
    /// Source revision of the build.
    pub source_revision: String,
    /// Wall time of the fit (not part of what `--reproduce` compares).
    pub fit_seconds: f64,
}

/// What `lake.train()` produced.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// The model directory.
    pub dir: PathBuf,
    /// Seconds spent reading the snapshot.
    pub load_seconds: f64,
}

/// Builder of a training run: `lake.train().with_version(12).with_out("models/m1").await`.
#[derive(Debug, Clone)]
pub struct TrainBuilder {
    lake: Lakehouse,
    table: String,
    at: At,
    params: Params,
    out: PathBuf,
}

impl Lakehouse {
    /// Trains a model on a snapshot of `gold.customer_item_features` (see [`TrainBuilder`]).
    pub fn train(&self) -> TrainBuilder {
        TrainBuilder {
            lake: self.clone(),
            table: GOLD_FEATURES.to_string(),
            at: At::Latest,
            params: Params::defaults(ModelKind::DecisionTree),
            out: PathBuf::from("model"),
        }
    }
}

impl TrainBuilder {
    /// The feature table (default `gold.customer_item_features`).
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Which snapshot (default: latest).
    pub fn with_at(mut self, at: At) -> Self {
        self.at = at;
        self
    }

    /// Model parameters (default: a depth-8 decision tree, seed 0).
    pub fn with_params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// The model directory to write (created; files in it are replaced).
    pub fn with_out(mut self, out: impl Into<PathBuf>) -> Self {
        self.out = out.into();
        self
    }

    async fn execute(self) -> Result<TrainReport> {
        let id: TableId = self.table.parse()?;
        let started = Instant::now();
        let table = self.lake.table_at(&id, &self.at).await?;
        let snapshot = data::snapshot_id(&self.lake, &id, &table).await?;
        let schema = serde_json::to_value(
            table
                .snapshot()
                .map_err(|e| Error::delta(&id, e))?
                .schema()
                .as_ref(),
        )
        .map_err(|e| Error::serialize(format!("the schema of {id}"), e))?;
        if !data::has_label(&table, &id)? {
            return Err(Error::InvalidArgument(format!(
                "{id} has no label (it is for scoring): train on {GOLD_FEATURES}"
            )));
        }
        let feature_definition = one_definition(&table, &id).await?;
        let frame = data::read_features(&table, &id, None, None).await?;
        if frame.is_empty() {
            return Err(Error::Precondition(format!(
                "{id} version {} has no rows: run `berserkr lake refresh gold`",
                snapshot.version
            )));
        }
        let load_seconds = started.elapsed().as_secs_f64();
        let window_days = self.lake.catalog().table(&id)?.label_window();
        let params = self.params.clone();
        let out = self.out.clone();
        let (manifest, files) = tokio::task::spawn_blocking(move || {
            fit_and_evaluate(
                frame,
                snapshot,
                schema,
                window_days,
                &params,
                feature_definition,
            )
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        write_dir(&out, &files).await?;
        self.lake
            .pin(&Pin {
                model_id: manifest.model_id.clone(),
                table: manifest.snapshot.table.clone(),
                version: manifest.snapshot.version,
            })
            .await?;
        Ok(TrainReport {
            manifest,
            dir: out,
            load_seconds,
        })
    }
}
operation!(TrainBuilder => TrainReport);

/// The one feature definition every cutoff of a snapshot was computed with (`None` when no
/// cutoff has one recorded); cutoffs computed two ways are an error: a model would learn from
/// features that do not mean the same thing.
async fn one_definition(table: &deltalake::DeltaTable, id: &TableId) -> Result<Option<String>> {
    let definitions = crate::lake::definitions(table, id).await?;
    let distinct: std::collections::BTreeSet<&Option<String>> = definitions.values().collect();
    match distinct.len() {
        0 => Ok(None),
        1 => Ok(distinct.into_iter().next().cloned().flatten()),
        _ => Err(Error::InvalidData {
            table: id.to_string(),
            reason: format!(
                "its cutoffs were computed with different feature definitions ({definitions:?}): rebuild them with `berserkr lake refresh gold`"
            ),
        }),
    }
}

/// Rows of the training and evaluation sets.
fn split_rows(frame: &FeatureFrame, window_days: i64, seed: u64) -> (Vec<u32>, Vec<u32>, Split) {
    let cutoffs = frame.cutoffs();
    let parse = |c: &str| NaiveDateTime::parse_from_str(c, CUTOFF_FORMAT).ok();
    if cutoffs.len() > 1 {
        let eval = cutoffs.last().expect("several").clone();
        let eval_at = parse(&eval);
        let (train, skipped): (Vec<String>, Vec<String>) = cutoffs[..cutoffs.len() - 1]
            .iter()
            .cloned()
            .partition(|c| match (parse(c), eval_at) {
                (Some(c), Some(e)) => c + Duration::days(window_days) <= e,
                _ => false,
            });
        if !train.is_empty() {
            let mut tr = Vec::new();
            let mut ev = Vec::new();
            for (i, c) in frame.cutoff.iter().enumerate() {
                if *c == eval {
                    ev.push(i as u32);
                } else if train.contains(c) {
                    tr.push(i as u32);
                }
            }
            return (
                tr,
                ev,
                Split::Time {
                    train_cutoffs: train,
                    eval_cutoff: eval,
                    skipped_cutoffs: skipped,
                },
            );
        }
    }
    let reason = if cutoffs.len() > 1 {
        format!(
            "no earlier cutoff has its {window_days}-day label window closed by the latest cutoff {}",
            cutoffs.last().expect("several")
        )
    } else {
        "one cutoff only".to_string()
    };
    let mut rng = tree::tree_rng(seed, u64::MAX);
    let (mut tr, mut ev) = (Vec::new(), Vec::new());
    for class in [0u8, 1] {
        let mut rows: Vec<u32> = (0..frame.len() as u32)
            .filter(|&r| frame.label[r as usize] == class)
            .collect();
        rows.shuffle(&mut rng);
        let n_test = (rows.len() as f64 * TEST_FRACTION).round() as usize;
        ev.extend_from_slice(&rows[..n_test]);
        tr.extend_from_slice(&rows[n_test..]);
    }
    tr.sort_unstable();
    ev.sort_unstable();
    (
        tr,
        ev,
        Split::Stratified {
            test_fraction: TEST_FRACTION,
            seed,
            reason,
        },
    )
}

/// Evaluation rows' features, labels and ranking groups.
struct EvalSet {
    columns: Vec<Vec<f64>>,
    labels: Vec<u8>,
    group: Vec<u64>,
    item: Vec<String>,
}

impl EvalSet {
    /// The rows grouped per (cutoff, customer), for precision@k.
    fn ranked(&self) -> Ranked<'_> {
        Ranked {
            group: &self.group,
            item: &self.item,
        }
    }
}

fn eval_set(frame: &FeatureFrame, rows: &[u32]) -> EvalSet {
    let mut groups: HashMap<(&str, i64), u64> = HashMap::new();
    let group = rows
        .iter()
        .map(|&r| {
            let r = r as usize;
            let n = groups.len() as u64;
            *groups
                .entry((frame.cutoff[r].as_str(), frame.customer[r]))
                .or_insert(n)
        })
        .collect();
    EvalSet {
        columns: frame
            .features
            .iter()
            .map(|c| rows.iter().map(|&r| c[r as usize]).collect())
            .collect(),
        labels: rows.iter().map(|&r| frame.label[r as usize]).collect(),
        group,
        item: rows
            .iter()
            .map(|&r| frame.item[r as usize].clone())
            .collect(),
    }
}

/// Files of a model directory, by name.
pub(crate) type Files = Vec<(String, Vec<u8>)>;

/// Splits, fits, evaluates and reports: the manifest and the model directory's files.
fn fit_and_evaluate(
    frame: FeatureFrame,
    snapshot: SnapshotId,
    schema: serde_json::Value,
    window_days: i64,
    params: &Params,
    feature_definition: Option<String>,
) -> Result<(Manifest, Files)> {
    let (train, eval, split) = split_rows(&frame, window_days, params.seed);
    if train.is_empty() || eval.is_empty() {
        return Err(Error::Precondition(format!(
            "{} version {}: {} rows are too few to train and evaluate",
            snapshot.table,
            snapshot.version,
            frame.len()
        )));
    }
    let params = &params.resolved(train.len());
    let t = Instant::now();
    let model = Model::fit(&frame.features, &frame.names, &frame.label, &train, params);
    let fit_seconds = t.elapsed().as_secs_f64();
    let model_bytes = serde_json::to_vec(&model).map_err(|e| Error::serialize("the model", e))?;
    let model_sha256 = hex::encode(Sha256::digest(&model_bytes));
    let ev = eval_set(&frame, &eval);
    let scored = Scored::of(&model, &frame, &ev);
    let evaluation = scored.evaluation(&ev, train.len());
    let importance: BTreeMap<String, f64> = frame
        .names
        .iter()
        .cloned()
        .zip(model.importance())
        .collect();
    let manifest = Manifest {
        model_id: model_sha256[..16].to_string(),
        model_sha256,
        snapshot,
        rows: frame.len(),
        schema,
        features: frame.names.clone(),
        feature_definition,
        label: LabelSpec {
            column: "label".into(),
            window_days,
            definition: format!(
                "1 when the customer bought the item in [cutoff, cutoff + {window_days} days], else 0"
            ),
        },
        cutoffs: frame.cutoffs(),
        split,
        params: params.clone(),
        evaluation,
        importance,
        berserkr_version: env!("CARGO_PKG_VERSION").to_string(),
        source_revision: SOURCE_REVISION.to_string(),
        fit_seconds,
    };
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::serialize("the manifest", e))?;
    let mut files = vec![
        (MODEL_FILE.into(), model_bytes),
        (MANIFEST_FILE.into(), manifest_bytes),
    ];
    files.extend(report::model_report(&manifest, &scored.curves(&ev)));
    Ok((manifest, files))
}

/// The scores of the model and of the baselines on the evaluation rows.
struct Scored {
    model: Vec<f64>,
    popularity: Vec<f64>,
    recency: Vec<f64>,
}

impl Scored {
    fn of(model: &Model, frame: &FeatureFrame, ev: &EvalSet) -> Self {
        let col = |name: &str| frame.names.iter().position(|n| n == name);
        let baseline = |name: &str, sign: f64| -> Vec<f64> {
            col(name).map_or_else(
                || vec![0.0; ev.labels.len()],
                |f| ev.columns[f].iter().map(|v| sign * v).collect(),
            )
        };
        Self {
            model: model.predict_columns(&ev.columns),
            popularity: baseline("item_n_customers", 1.0),
            recency: baseline("recency_days", -1.0),
        }
    }

    fn evaluation(&self, ev: &EvalSet, train_rows: usize) -> Evaluation {
        let ranked = ev.ranked();
        let m = Metrics::compute(&self.model, &ev.labels, &ranked, true);
        let pop = Metrics::compute(&self.popularity, &ev.labels, &ranked, false);
        let rec = Metrics::compute(&self.recency, &ev.labels, &ranked, false);
        Evaluation {
            train_rows,
            eval_rows: ev.labels.len(),
            eval_positive_rate: ev.labels.iter().map(|&l| f64::from(l)).sum::<f64>()
                / ev.labels.len() as f64,
            beats_popularity: m.roc_auc > pop.roc_auc,
            model: m,
            popularity: pop,
            recency: rec,
        }
    }

    /// The report's curves: ROC points and precision@k for k = 1..=20, per scorer.
    fn curves(&self, ev: &EvalSet) -> report::Curves {
        let ranked = ev.ranked();
        let roc = |s: &[f64]| report::thin(&metrics::roc_points(s, &ev.labels), 400);
        let ks: Vec<usize> = (1..=20).collect();
        let at_k = |s: &[f64]| -> Vec<(f64, f64)> {
            metrics::at_ks(s, &ev.labels, &ranked, &ks)
                .iter()
                .zip(&ks)
                .map(|(pr, &k)| (k as f64, pr.0))
                .collect()
        };
        report::Curves {
            roc: [roc(&self.model), roc(&self.popularity), roc(&self.recency)],
            precision_at_k: [
                at_k(&self.model),
                at_k(&self.popularity),
                at_k(&self.recency),
            ],
        }
    }
}

async fn write_dir(dir: &Path, files: &Files) -> Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(dir.display(), e))?;
    for (name, bytes) in files {
        // Write beside, then rename: a reader never sees half a model.
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| Error::io(tmp.display(), e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| Error::io(path.display(), e))?;
    }
    Ok(())
}

/// Reads a model directory's manifest (or a manifest file).
pub async fn read_manifest(path: &Path) -> Result<Manifest> {
    let file = if path.is_dir() {
        path.join(MANIFEST_FILE)
    } else {
        path.to_path_buf()
    };
    read_json(&file, "manifest").await
}

/// Reads a model directory's model.
pub async fn read_model(dir: &Path) -> Result<Model> {
    read_json(&dir.join(MODEL_FILE), "model").await
}

async fn read_json<T: serde::de::DeserializeOwned>(file: &Path, what: &str) -> Result<T> {
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|e| Error::io(file.display(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::InvalidModel {
        path: file.display().to_string(),
        reason: format!("not a berserkr {what}: {e}"),
    })
}

/// How a reproduction compared with its manifest.
#[derive(Debug, Clone)]
pub struct Reproduction {
    /// The manifest reproduced.
    pub original: Manifest,
    /// The new run.
    pub report: TrainReport,
    /// Differences found (empty: reproduced exactly).
    pub differences: Vec<String>,
}

/// Builder of a reproduction (see [`Lakehouse::reproduce`]).
#[derive(Debug, Clone)]
pub struct ReproduceBuilder {
    lake: Lakehouse,
    manifest: PathBuf,
    out: PathBuf,
}

impl Lakehouse {
    /// Retrains from a manifest (same table, version and parameters) and compares the snapshot,
    /// the model bytes and the metrics with the manifest's.
    pub fn reproduce(&self, manifest: impl Into<PathBuf>) -> ReproduceBuilder {
        ReproduceBuilder {
            lake: self.clone(),
            manifest: manifest.into(),
            out: PathBuf::from("model"),
        }
    }
}

impl ReproduceBuilder {
    /// The model directory the new run writes (default `./model`).
    pub fn with_out(mut self, out: impl Into<PathBuf>) -> Self {
        self.out = out.into();
        self
    }

    async fn execute(self) -> Result<Reproduction> {
        let original = read_manifest(&self.manifest).await?;
        let lake = &self.lake;
        if original.snapshot.lake != lake.root().as_str() {
            return Err(Error::InvalidArgument(format!(
                "the manifest was trained on lake {}, not {}: pass --lake {}",
                original.snapshot.lake,
                lake.root(),
                original.snapshot.lake
            )));
        }
        let report = lake
            .train()
            .with_table(&original.snapshot.table)
            .with_at(At::Version(original.snapshot.version))
            .with_params(original.params.clone())
            .with_out(&self.out)
            .await?;
        let differences = differences(&original, &report.manifest);
        Ok(Reproduction {
            original,
            report,
            differences,
        })
    }
}
operation!(ReproduceBuilder => Reproduction);

/// How a new manifest differs from the original in what `--reproduce` promises.
fn differences(original: &Manifest, new: &Manifest) -> Vec<String> {
    let mut differences = Vec::new();
    if new.snapshot != original.snapshot {
        differences.push(format!(
            "snapshot differs: files {} / digest {} now, {} / {} in the manifest",
            new.snapshot.files,
            new.snapshot.files_sha256,
            original.snapshot.files,
            original.snapshot.files_sha256
        ));
    }
    if new.model_sha256 != original.model_sha256 {
        differences.push(format!(
            "model differs: sha256 {} now, {} in the manifest",
            new.model_sha256, original.model_sha256
        ));
    }
    let as_json = |e: &Evaluation| serde_json::to_value(e).unwrap_or_default();
    if !same_numbers(&as_json(&new.evaluation), &as_json(&original.evaluation)) {
        differences.push(format!(
            "metrics differ: {} now, {} in the manifest",
            serde_json::to_string(&new.evaluation).unwrap_or_default(),
            serde_json::to_string(&original.evaluation).unwrap_or_default()
        ));
    }
    differences
}

/// Equal JSON, numbers within 1e-12 relative: a manifest's metrics went through serde_json's
/// float parser, which may be an ulp off.
fn same_numbers(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1e-300),
            _ => x == y,
        },
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_numbers(x, y))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_numbers(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_to_an_ulp() {
        let a = serde_json::json!({"auc": 0.1 + 0.2, "k": [1, 2]});
        let b = serde_json::json!({"auc": 0.3, "k": [1, 2]});
        assert!(same_numbers(&a, &b));
        assert!(!same_numbers(
            &a,
            &serde_json::json!({"auc": 0.3001, "k": [1, 2]})
        ));
        assert!(!same_numbers(
            &a,
            &serde_json::json!({"auc": 0.3, "k": [1]})
        ));
    }

    fn frame(cutoffs: &[&str], per: usize) -> FeatureFrame {
        let mut f = FeatureFrame {
            names: vec!["x".into()],
            features: vec![Vec::new()],
            ..Default::default()
        };
        for c in cutoffs {
            for i in 0..per {
                f.cutoff.push(c.to_string());
                f.customer.push(i as i64);
                f.item.push("a".into());
                f.features[0].push(i as f64);
                f.label.push(u8::from(i % 4 == 0));
            }
        }
        f
    }

    #[test]
    fn several_cutoffs_split_by_time_without_overlapping_label_windows() {
        let f = frame(
            &[
                "2011-01-01 00:00:00",
                "2011-05-01 00:00:00",
                "2011-07-01 00:00:00",
                "2011-09-01 00:00:00",
            ],
            10,
        );
        let (tr, ev, split) = split_rows(&f, 90, 0);
        assert_eq!(
            split,
            Split::Time {
                train_cutoffs: vec!["2011-01-01 00:00:00".into(), "2011-05-01 00:00:00".into()],
                eval_cutoff: "2011-09-01 00:00:00".into(),
                skipped_cutoffs: vec!["2011-07-01 00:00:00".into()],
            }
        );
        assert_eq!(tr, (0..20).collect::<Vec<u32>>());
        assert_eq!(ev, (30..40).collect::<Vec<u32>>());
    }

    #[test]
    fn one_cutoff_splits_stratified_and_seeded() {
        let f = frame(&["2011-01-01 00:00:00"], 100);
        let (tr, ev, split) = split_rows(&f, 90, 7);
        assert!(matches!(split, Split::Stratified { seed: 7, .. }));
        assert_eq!(ev.len(), 20);
        assert_eq!(tr.len() + ev.len(), 100);
        // 25 positives: 5 held out, as the class share says.
        assert_eq!(ev.iter().filter(|&&r| f.label[r as usize] == 1).count(), 5);
        assert_eq!(split_rows(&f, 90, 7).1, ev);
        assert_ne!(split_rows(&f, 90, 8).1, ev);
        // Cutoffs too close for a clean time split fall back, and say why.
        let f = frame(&["2011-08-01 00:00:00", "2011-09-01 00:00:00"], 10);
        match split_rows(&f, 90, 0).2 {
            Split::Stratified { reason, .. } => {
                assert!(reason.contains("label window"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
