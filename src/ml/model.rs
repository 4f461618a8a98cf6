//! Models: a decision tree, a random forest and gradient-boosted trees, all grown by
//! [`super::tree`] and saved as one JSON document.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::tree::{Binned, Bins, GrowParams, LeafValue, Stats, Tree, bootstrap, grow, tree_rng};

/// The learners `berserkr train --model` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One CART classification tree (Gini), leaves holding the positive rate.
    DecisionTree,
    /// Bagged CART trees with a random feature subset per split; the mean of their leaf rates.
    RandomForest,
    /// Gradient-boosted regression trees on the log loss; the logistic of their sum.
    GradientBoosting,
}

impl ModelKind {
    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::DecisionTree => "decision-tree",
            Self::RandomForest => "random-forest",
            Self::GradientBoosting => "gradient-boosting",
        }
    }
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "decision-tree" => Ok(Self::DecisionTree),
            "random-forest" => Ok(Self::RandomForest),
            "gradient-boosting" => Ok(Self::GradientBoosting),
            _ => Err(format!(
                "unknown model {s:?} (decision-tree, random-forest, gradient-boosting)"
            )),
        }
    }
}

/// [`Params::min_leaf`] chosen from the training rows: see [`Params::resolved`].
pub const AUTO_MIN_LEAF: usize = 0;

/// Hyper-parameters; every field is recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// The learner.
    pub model: ModelKind,
    /// Maximum depth of each tree.
    pub max_depth: usize,
    /// Trees (forest, boosting; 1 for a decision tree).
    pub trees: usize,
    /// Minimum rows in a leaf; [`AUTO_MIN_LEAF`] (boosting's default) resolves to one row in
    /// 2,000 of the training rows, at least 20, before the fit (the manifest records the value).
    pub min_leaf: usize,
    /// Features tried per split (forest: ⌈√features⌉ when `None`).
    pub max_features: Option<usize>,
    /// Shrinkage (boosting).
    pub learning_rate: f64,
    /// L2 regularisation of leaf values (boosting).
    pub lambda: f64,
    /// Seed of every random choice (split, bootstrap, features per split).
    pub seed: u64,
}

impl Params {
    /// The parameters with [`AUTO_MIN_LEAF`] resolved for `train_rows` rows: one in 2,000, at
    /// least 20. Boosting fits a customer's items from features most of which describe the
    /// customer or the item; leaves of a few dozen rows fit noise of single pairs, and larger
    /// leaves ranked better on both the real and the generated data (ARCHITECTURE.md).
    pub fn resolved(&self, train_rows: usize) -> Self {
        let mut p = self.clone();
        if p.min_leaf == AUTO_MIN_LEAF {
            p.min_leaf = (train_rows / 2000).max(20);
        }
        p
    }

    /// The defaults for a learner.
    pub fn defaults(model: ModelKind) -> Self {
        match model {
            ModelKind::DecisionTree => Self {
                model,
                max_depth: 8,
                trees: 1,
                min_leaf: 1,
                max_features: None,
                learning_rate: 1.0,
                lambda: 0.0,
                seed: 0,
            },
            ModelKind::RandomForest => Self {
                model,
                max_depth: 12,
                trees: 100,
                min_leaf: 20,
                max_features: None,
                learning_rate: 1.0,
                lambda: 0.0,
                seed: 0,
            },
            ModelKind::GradientBoosting => Self {
                model,
                max_depth: 6,
                trees: 200,
                min_leaf: AUTO_MIN_LEAF,
                max_features: None,
                learning_rate: 0.1,
                lambda: 1.0,
                seed: 0,
            },
        }
    }
}

/// A fitted model: what `model.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The learner.
    pub kind: ModelKind,
    /// Feature names, in the order trees index them.
    pub features: Vec<String>,
    /// Boosting: the initial log-odds; otherwise 0.
    #[serde(deserialize_with = "super::tree::exact_f64")]
    pub base_score: f64,
    /// The trees.
    pub trees: Vec<Tree>,
}

impl Model {
    /// Fits a model on feature columns (`columns[f][row]`) and 0/1 labels, using `rows` only.
    pub fn fit(
        columns: &[Vec<f64>],
        names: &[String],
        labels: &[u8],
        rows: &[u32],
        params: &Params,
    ) -> Self {
        // Only the training rows are binned, in their order, and renumbered 0..: the learners
        // touch nothing else (no gradient, node or code of an evaluation row), and since the
        // order is kept every sum and so every tree is the same as over the original numbering.
        let binned = Bins::fit(columns, rows).apply_rows(columns, rows);
        let y: Vec<f64> = rows
            .iter()
            .map(|&r| f64::from(labels[r as usize]))
            .collect();
        let n = y.len();
        let local: Vec<u32> = (0..n as u32).collect();
        let rows = local.as_slice();
        let nfeat = columns.len();
        let grow_params = GrowParams {
            max_depth: params.max_depth,
            min_leaf: params.min_leaf.max(1) as f64,
            lambda: if params.model == ModelKind::GradientBoosting {
                params.lambda
            } else {
                0.0
            },
            max_features: match params.model {
                ModelKind::RandomForest => Some(
                    params
                        .max_features
                        .unwrap_or_else(|| (nfeat as f64).sqrt().ceil() as usize),
                ),
                _ => params.max_features,
            },
            min_gain: 1e-12,
        };
        let (base_score, trees) = match params.model {
            ModelKind::DecisionTree => {
                let stats = Stats {
                    gh: y.iter().map(|&y| [y as f32, 1.0]).collect(),
                    count_is_h: true,
                };
                let (t, _) = grow(
                    &binned,
                    rows,
                    &stats,
                    &grow_params,
                    LeafValue::Ratio,
                    &mut tree_rng(params.seed, 0),
                );
                (0.0, vec![t])
            }
            ModelKind::RandomForest => {
                let trees = (0..params.trees.max(1))
                    .into_par_iter()
                    .map(|i| {
                        let mut rng = tree_rng(params.seed, i as u64);
                        let counts = bootstrap(rows.len(), &mut rng);
                        let mut stats = Stats {
                            gh: vec![[0.0; 2]; n],
                            count_is_h: true,
                        };
                        let mut r = Vec::with_capacity(rows.len());
                        for (&row, &c) in rows.iter().zip(&counts) {
                            if c > 0 {
                                let w = c as f32;
                                stats.gh[row as usize] = [w * y[row as usize] as f32, w];
                                r.push(row);
                            }
                        }
                        grow(
                            &binned,
                            &r,
                            &stats,
                            &grow_params,
                            LeafValue::Ratio,
                            &mut rng,
                        )
                        .0
                    })
                    .collect();
                (0.0, trees)
            }
            ModelKind::GradientBoosting => boost(&binned, &y, rows, params, &grow_params),
        };
        Self {
            kind: params.model,
            features: names.to_vec(),
            base_score,
            trees,
        }
    }

    /// The probability of a purchase for one row (`x(f)` = feature `f`).
    pub fn predict(&self, x: impl Fn(usize) -> f64 + Copy) -> f64 {
        match self.kind {
            ModelKind::DecisionTree | ModelKind::RandomForest => {
                self.trees.iter().map(|t| t.predict(x)).sum::<f64>() / self.trees.len() as f64
            }
            ModelKind::GradientBoosting => {
                sigmoid(self.base_score + self.trees.iter().map(|t| t.predict(x)).sum::<f64>())
            }
        }
    }

    /// Probabilities for rows of column-major features, on all cores.
    pub fn predict_columns(&self, columns: &[Vec<f64>]) -> Vec<f64> {
        let n = columns.first().map_or(0, Vec::len);
        (0..n)
            .into_par_iter()
            .with_min_len(4096)
            .map(|r| self.predict(|f| columns[f][r]))
            .collect()
    }

    /// Total gain per feature, normalised to sum to 1.
    pub fn importance(&self) -> Vec<f64> {
        let mut v = vec![0.0; self.features.len()];
        for t in &self.trees {
            t.add_importance(&mut v);
        }
        let s: f64 = v.iter().sum();
        if s > 0.0 {
            v.iter_mut().for_each(|x| *x /= s);
        }
        v
    }
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn boost(
    binned: &Binned,
    y: &[f64],
    rows: &[u32],
    params: &Params,
    grow_params: &GrowParams,
) -> (f64, Vec<Tree>) {
    let n = y.len();
    let pos: f64 = rows.iter().map(|&r| y[r as usize]).sum();
    let rate = (pos / rows.len().max(1) as f64).clamp(1e-6, 1.0 - 1e-6);
    let base = (rate / (1.0 - rate)).ln();
    let mut f = vec![base; n];
    let mut stats = Stats {
        gh: vec![[0.0; 2]; n],
        count_is_h: false,
    };
    // Gradients and hessians of the log loss at the current scores.
    let grad = |st: &mut [f32; 2], f: f64, y: f64| {
        let p = sigmoid(f);
        *st = [(p - y) as f32, (p * (1.0 - p)).max(1e-16) as f32];
    };
    stats
        .gh
        .par_iter_mut()
        .zip(&f)
        .zip(y)
        .with_min_len(8192)
        .for_each(|((st, &f), &y)| grad(st, f, y));
    let mut trees = Vec::with_capacity(params.trees);
    for i in 0..params.trees.max(1) {
        let (tree, leaf_of) = grow(
            binned,
            rows,
            &stats,
            grow_params,
            LeafValue::Newton {
                learning_rate: params.learning_rate,
            },
            &mut tree_rng(params.seed, i as u64),
        );
        // Each row's score moves by its leaf's value, and its gradients follow, in one pass on
        // every core (rows outside the training set keep theirs, and are never read).
        let values: Vec<f64> = tree
            .nodes
            .iter()
            .map(|n| match n {
                super::tree::Node::Leaf { value, .. } => *value,
                super::tree::Node::Split { .. } => 0.0,
            })
            .collect();
        stats
            .gh
            .par_iter_mut()
            .zip(&mut f)
            .zip(y)
            .zip(&leaf_of)
            .with_min_len(8192)
            .for_each(|(((st, f), &y), &leaf)| {
                if let Some(v) = values.get(leaf as usize) {
                    *f += v;
                    grad(st, *f, y);
                }
            });
        trees.push(tree);
    }
    (base, trees)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two informative features, one noise; label = x0 + x1 > 1 with 10% flipped.
    fn toy(n: usize) -> (Vec<Vec<f64>>, Vec<u8>) {
        use rand::Rng;
        let mut rng = tree_rng(42, 0);
        let mut cols = vec![Vec::new(), Vec::new(), Vec::new()];
        let mut y = Vec::new();
        for _ in 0..n {
            let a: f64 = rng.random();
            let b: f64 = rng.random();
            cols[0].push(a);
            cols[1].push(b);
            cols[2].push(rng.random());
            let flip = rng.random::<f64>() < 0.1;
            y.push(u8::from((a + b > 1.0) != flip));
        }
        (cols, y)
    }

    fn accuracy(m: &Model, cols: &[Vec<f64>], y: &[u8]) -> f64 {
        let p = m.predict_columns(cols);
        p.iter()
            .zip(y)
            .filter(|(p, y)| (**p > 0.5) == (**y == 1))
            .count() as f64
            / y.len() as f64
    }

    #[test]
    fn every_learner_learns_and_is_deterministic() {
        let (cols, y) = toy(4000);
        let names: Vec<String> = ["a", "b", "noise"].iter().map(|s| s.to_string()).collect();
        let rows: Vec<u32> = (0..4000).collect();
        for kind in [
            ModelKind::DecisionTree,
            ModelKind::RandomForest,
            ModelKind::GradientBoosting,
        ] {
            let mut p = Params::defaults(kind);
            p.trees = p.trees.min(30);
            let m = Model::fit(&cols, &names, &y, &rows, &p);
            let acc = accuracy(&m, &cols, &y);
            assert!(acc > 0.85, "{kind:?}: accuracy {acc}");
            let again = Model::fit(&cols, &names, &y, &rows, &p);
            assert_eq!(
                serde_json::to_vec(&m).unwrap(),
                serde_json::to_vec(&again).unwrap()
            );
            let imp = m.importance();
            assert!(imp[2] < imp[0] && imp[2] < imp[1], "{kind:?}: {imp:?}");
            let p: Vec<f64> = m.predict_columns(&cols);
            assert!(p.iter().all(|p| (0.0..=1.0).contains(p)));
        }
    }

    #[test]
    fn a_model_survives_json() {
        let (cols, y) = toy(500);
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let rows: Vec<u32> = (0..500).collect();
        let m = Model::fit(
            &cols,
            &names,
            &y,
            &rows,
            &Params::defaults(ModelKind::GradientBoosting),
        );
        let back: Model = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(back.predict_columns(&cols), m.predict_columns(&cols));
    }
}
