//! Evaluation metrics, computed the same way for a model and for the baselines.
//!
//! - ROC AUC: the probability that a random positive scores above a random negative, ties
//!   counting one half (the trapezoidal area under the ROC curve).
//! - PR AUC: average precision, `Σ (R_k − R_{k−1}) P_k` over distinct score thresholds (as
//!   scikit-learn's `average_precision_score`).
//! - Log loss: mean `−(y ln p + (1−y) ln(1−p))`, `p` clipped to `[1e-15, 1 − 1e-15]`; only for
//!   scores that are probabilities.
//! - precision@k / recall@k: per customer (and cutoff) with at least one positive, the customer's
//!   items ranked by score (ties by item code), `hits@k / k` and `hits@k / positives`, averaged
//!   over those customers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The ks reported for precision@k and recall@k.
pub const KS: [usize; 2] = [5, 10];

/// Metrics of one scorer on one evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// ROC AUC.
    pub roc_auc: f64,
    /// Average precision.
    pub pr_auc: f64,
    /// Log loss (None for scores that are not probabilities).
    pub log_loss: Option<f64>,
    /// `precision@k` for k in [`KS`].
    pub precision_at: BTreeMap<String, f64>,
    /// `recall@k` for k in [`KS`].
    pub recall_at: BTreeMap<String, f64>,
}

/// Rows grouped by who the ranking is for: `(group, item, score, label)`.
pub struct Ranked<'a> {
    /// Group (customer and cutoff) of each row.
    pub group: &'a [u64],
    /// Item code of each row (the tie-break).
    pub item: &'a [String],
}

impl Metrics {
    /// All metrics of `scores` against `labels`; `probabilities` says whether log loss applies.
    pub fn compute(
        scores: &[f64],
        labels: &[u8],
        ranked: &Ranked<'_>,
        probabilities: bool,
    ) -> Self {
        let at = at_ks(scores, labels, ranked, &KS);
        let precision_at = KS
            .iter()
            .zip(&at)
            .map(|(k, a)| (k.to_string(), a.0))
            .collect();
        let recall_at = KS
            .iter()
            .zip(&at)
            .map(|(k, a)| (k.to_string(), a.1))
            .collect();
        Self {
            roc_auc: roc_auc(scores, labels),
            pr_auc: average_precision(scores, labels),
            log_loss: probabilities.then(|| log_loss(scores, labels)),
            precision_at,
            recall_at,
        }
    }
}

impl Metrics {
    /// The headline figures as text, in the order of [`Metrics::HEADINGS`].
    pub fn cells(&self) -> Vec<String> {
        let at = |m: &BTreeMap<String, f64>, k: &str| {
            format!("{:.4}", m.get(k).copied().unwrap_or_default())
        };
        vec![
            format!("{:.4}", self.roc_auc),
            format!("{:.4}", self.pr_auc),
            self.log_loss.map_or("-".to_string(), |l| format!("{l:.4}")),
            at(&self.precision_at, "5"),
            at(&self.precision_at, "10"),
            at(&self.recall_at, "5"),
            at(&self.recall_at, "10"),
        ]
    }

    /// Names of [`Metrics::cells`].
    pub const HEADINGS: [&str; 7] = [
        "ROC AUC",
        "PR AUC",
        "log loss",
        "precision@5",
        "precision@10",
        "recall@5",
        "recall@10",
    ];
}

/// Indices sorted by score, highest first (ties in index order: stable).
fn by_score_desc(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// ROC AUC; 0.5 when only one class is present.
pub fn roc_auc(scores: &[f64], labels: &[u8]) -> f64 {
    roc_points(scores, labels)
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum::<f64>()
        .clamp(0.0, 1.0)
}

/// The ROC curve: `(false positive rate, true positive rate)` at every distinct threshold, from
/// `(0, 0)` to `(1, 1)`. With one class only, the diagonal.
pub fn roc_points(scores: &[f64], labels: &[u8]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return vec![(0.0, 0.0), (1.0, 1.0)];
    }
    let idx = by_score_desc(scores);
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (i, &r) in idx.iter().enumerate() {
        if labels[r] == 1 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = idx.get(i + 1).is_none_or(|&n| scores[n] != scores[r]);
        if last_of_tie {
            pts.push((fp / neg, tp / pos));
        }
    }
    pts
}

/// Average precision; 0 when there is no positive.
pub fn average_precision(scores: &[f64], labels: &[u8]) -> f64 {
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    if pos == 0.0 {
        return 0.0;
    }
    let idx = by_score_desc(scores);
    let (mut tp, mut seen, mut prev_recall, mut ap) = (0.0, 0.0, 0.0, 0.0);
    for (i, &r) in idx.iter().enumerate() {
        seen += 1.0;
        if labels[r] == 1 {
            tp += 1.0;
        }
        let last_of_tie = idx.get(i + 1).is_none_or(|&n| scores[n] != scores[r]);
        if last_of_tie {
            let recall = tp / pos;
            ap += (recall - prev_recall) * (tp / seen);
            prev_recall = recall;
        }
    }
    ap
}

/// Mean log loss of probabilities.
pub fn log_loss(p: &[f64], labels: &[u8]) -> f64 {
    if p.is_empty() {
        return 0.0;
    }
    let eps = 1e-15;
    p.iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(eps, 1.0 - eps);
            if y == 1 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / p.len() as f64
}

/// Mean `(precision@k, recall@k)` over groups with at least one positive.
pub fn at_k(scores: &[f64], labels: &[u8], ranked: &Ranked<'_>, k: usize) -> (f64, f64) {
    at_ks(scores, labels, ranked, &[k])[0]
}

/// [`at_k`] for several ks, ranking each group once.
pub fn at_ks(scores: &[f64], labels: &[u8], ranked: &Ranked<'_>, ks: &[usize]) -> Vec<(f64, f64)> {
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, &g) in ranked.group.iter().enumerate() {
        groups.entry(g).or_default().push(i);
    }
    let mut sums = vec![(0.0, 0.0); ks.len()];
    let mut n = 0usize;
    for rows in groups.values_mut() {
        let positives = rows.iter().filter(|&&r| labels[r] == 1).count();
        if positives == 0 {
            continue;
        }
        rows.sort_by(|&a, &b| {
            scores[b]
                .total_cmp(&scores[a])
                .then_with(|| ranked.item[a].cmp(&ranked.item[b]))
        });
        for (s, &k) in sums.iter_mut().zip(ks) {
            let hits = rows.iter().take(k).filter(|&&r| labels[r] == 1).count();
            s.0 += hits as f64 / k as f64;
            s.1 += hits as f64 / positives as f64;
        }
        n += 1;
    }
    sums.into_iter()
        .map(|(p, r)| {
            if n == 0 {
                (0.0, 0.0)
            } else {
                (p / n as f64, r / n as f64)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn auc_by_hand() {
        // Positives 0.8, 0.4; negatives 0.6, 0.2: pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2) = 3/4.
        close(roc_auc(&[0.8, 0.6, 0.4, 0.2], &[1, 0, 1, 0]), 0.75);
        close(roc_auc(&[0.9, 0.1], &[1, 0]), 1.0);
        close(roc_auc(&[0.1, 0.9], &[1, 0]), 0.0);
        // A tie between a positive and a negative counts one half.
        close(roc_auc(&[0.5, 0.5], &[1, 0]), 0.5);
        close(roc_auc(&[0.5, 0.5, 0.1], &[1, 0, 0]), 0.75);
        close(roc_auc(&[0.3, 0.2], &[1, 1]), 0.5);
    }

    #[test]
    fn average_precision_by_hand() {
        // Ranked: 1 0 1 0 -> precision at the positives 1/1 and 2/3: AP = (1 + 2/3) / 2.
        close(
            average_precision(&[0.8, 0.6, 0.4, 0.2], &[1, 0, 1, 0]),
            (1.0 + 2.0 / 3.0) / 2.0,
        );
        // A tie of one positive and one negative at the top: one threshold, precision 1/2.
        close(average_precision(&[0.5, 0.5], &[1, 0]), 0.5);
        close(average_precision(&[0.5, 0.4], &[0, 0]), 0.0);
    }

    #[test]
    fn log_loss_by_hand() {
        close(
            log_loss(&[0.5, 0.9], &[1, 0]),
            (-(0.5f64).ln() - (0.1f64).ln()) / 2.0,
        );
        assert!(log_loss(&[0.0], &[1]).is_finite());
    }

    #[test]
    fn precision_and_recall_at_k_by_hand() {
        // Customer 1: items a..f scored 6..1, positives b and f. Top 5 = a b c d e: 1 hit.
        // Customer 2: one item, positive: top 5 holds it. Customer 3: no positive, not counted.
        let group = [1, 1, 1, 1, 1, 1, 2, 3];
        let item: Vec<String> = ["a", "b", "c", "d", "e", "f", "a", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.9];
        let labels = [0, 1, 0, 0, 0, 1, 1, 0];
        let r = Ranked {
            group: &group,
            item: &item,
        };
        let (p5, r5) = at_k(&scores, &labels, &r, 5);
        close(p5, (1.0 / 5.0 + 1.0 / 5.0) / 2.0);
        close(r5, (1.0 / 2.0 + 1.0) / 2.0);
        let (p10, r10) = at_k(&scores, &labels, &r, 10);
        close(p10, (2.0 / 10.0 + 1.0 / 10.0) / 2.0);
        close(r10, 1.0);
        // Ties are broken by item code: equal scores rank a before b.
        let (p1, _) = at_k(
            &[1.0, 1.0],
            &[0, 1],
            &Ranked {
                group: &[1, 1],
                item: &item[..2],
            },
            1,
        );
        close(p1, 0.0);
    }
}
