//! linfa's learners on berserkr's gold rows, for `make bench`: linfa-trees' `DecisionTree`
//! (depth 8, as scikit-learn's peer and berserkr's `decision-tree`) and linfa-logistic's
//! `LogisticRegression` (features standardised on the training rows, at most 100 L-BFGS
//! iterations), fitted on `train.csv` and scoring `eval.csv` (both written by
//! `examples/bench/peer_models.py export`: feature columns, then `label`).
//!
//! Usage: `berserkr-linfa-peer TRAIN.csv EVAL.csv SCORES.csv`. Writes one score per evaluation row
//! and column (`linfa_tree`, `linfa_logistic`) to SCORES.csv and prints one JSON line with the fit
//! times. A linfa tree's leaves hold a class, not a rate: the score of a leaf is the positive rate
//! of the training rows that reach it (what scikit-learn's `predict_proba` returns).

use std::collections::HashMap;
use std::error::Error;
use std::time::Instant;

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, Array2, ArrayView1, Axis};

type Res<T> = Result<T, Box<dyn Error>>;

/// Feature rows and 0/1 labels of a CSV whose last column is `label`.
fn read(path: &str) -> Res<(Array2<f64>, Array1<usize>)> {
    let mut r = csv::Reader::from_path(path).map_err(|e| format!("{path}: {e}"))?;
    let ncol = r.headers()?.len();
    if ncol < 2 {
        return Err(format!("{path}: needs feature columns and a label").into());
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("{path}: {e}"))?;
        for i in 0..ncol - 1 {
            x.push(rec[i].parse::<f64>().map_err(|e| format!("{path}: {e}"))?);
        }
        y.push(rec[ncol - 1].parse::<usize>().map_err(|e| format!("{path}: {e}"))?);
    }
    let rows = y.len();
    Ok((Array2::from_shape_vec((rows, ncol - 1), x)?, Array1::from(y)))
}

/// The leaf a row reaches (linfa's rule: `x < split` goes left).
fn leaf<'a>(x: ArrayView1<f64>, mut node: &'a TreeNode<f64, usize>) -> &'a TreeNode<f64, usize> {
    while !node.is_leaf() {
        let (f, split, _) = node.split();
        let [left, right] = [node.children()[0], node.children()[1]];
        let next = if x[f] < split { left } else { right };
        node = next.as_deref().expect("an inner node has two children");
    }
    node
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, train, eval, out] = args.as_slice() else {
        return Err("usage: berserkr-linfa-peer TRAIN.csv EVAL.csv SCORES.csv".into());
    };
    let (xtr, ytr) = read(train)?;
    let (xev, _) = read(eval)?;

    let t = Instant::now();
    let tree = DecisionTree::params()
        .max_depth(Some(8))
        .fit(&Dataset::new(xtr.clone(), ytr.clone()))?;
    let tree_fit = t.elapsed().as_secs_f64();
    let mut rates: HashMap<*const TreeNode<f64, usize>, (f64, f64)> = HashMap::new();
    for (x, &y) in xtr.axis_iter(Axis(0)).zip(&ytr) {
        let e = rates.entry(leaf(x, tree.root_node())).or_default();
        e.0 += y as f64;
        e.1 += 1.0;
    }
    let tree_scores: Vec<f64> = xev
        .axis_iter(Axis(0))
        .map(|x| {
            rates
                .get(&(leaf(x, tree.root_node()) as *const _))
                .map_or(0.0, |(p, n)| p / n)
        })
        .collect();

    let mean = xtr.mean_axis(Axis(0)).ok_or("no training rows")?;
    let std = xtr.std_axis(Axis(0), 0.0).mapv(|s| if s > 0.0 { s } else { 1.0 });
    let (str_, sev) = ((&xtr - &mean) / &std, (&xev - &mean) / &std);
    let t = Instant::now();
    let logistic = LogisticRegression::default()
        .max_iterations(100)
        .fit(&Dataset::new(str_, ytr.clone()))?;
    let logistic_fit = t.elapsed().as_secs_f64();
    // linfa-logistic's probabilities are those of its "positive" class, which is the more
    // frequent one (here 0, no purchase): turned into the probability of a purchase.
    let p = logistic.predict_probabilities(&sev);
    let logistic_scores = if logistic.labels().pos.class == 1 {
        p
    } else {
        p.mapv(|x| 1.0 - x)
    };

    let mut w = csv::Writer::from_path(out)?;
    w.write_record(["linfa_tree", "linfa_logistic"])?;
    for (a, b) in tree_scores.iter().zip(logistic_scores.iter()) {
        w.write_record([a.to_string(), b.to_string()])?;
    }
    w.flush()?;
    println!(
        "{{\"rows_train\": {}, \"rows_eval\": {}, \"linfa_tree\": {{\"fit_s\": {tree_fit:.2}, \"leaves\": {}, \"depth\": {}}}, \"linfa_logistic\": {{\"fit_s\": {logistic_fit:.2}}}}}",
        ytr.len(),
        xev.nrows(),
        tree.num_leaves(),
        tree.max_depth()
    );
    Ok(())
}
