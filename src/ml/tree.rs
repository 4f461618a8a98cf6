//! Histogram-based binary trees: the learner behind every berserkr model.
//!
//! Features are binned once ([`Bins`]): up to 256 bins per feature whose edges are thresholds on
//! the raw values, so a split found on bins is exactly `x <= threshold` on the raw feature, which is
//! what the saved model, the scorer and the PMML export apply. A node's histogram holds, per
//! feature and bin, the sums of the rows' `(g, h, count)`; the child with fewer rows is built from
//! its rows and its sibling by subtraction from the parent. Splits maximise
//! `G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)`, which is the Gini impurity decrease when `g = w·y`,
//! `h = w`, `λ = 0` (classification trees), and the second-order gain of gradient boosting when
//! `g`, `h` are the log-loss gradient and hessian.
//!
//! Determinism: rows are visited in a fixed order, features are scanned in index order and ties
//! go to the lower feature and bin, so the same data and seed give the same tree bit for bit,
//! whatever the number of threads.

use std::ops::Range;

use rand::Rng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// At most this many bins per feature (bin codes are `u8`).
pub const MAX_BINS: usize = 256;

/// Per-feature bin edges learnt from the training rows.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `thresholds[f]`: ascending; value `x` falls in bin `#{t < x}`, so bin `<= b` ⇔ `x <= t_b`.
    pub thresholds: Vec<Vec<f64>>,
}

impl Bins {
    /// Learns edges from feature columns (`columns[f][row]`), looking at `rows` only: with at most
    /// 255 distinct values a feature gets a bin per value; otherwise edges sit at quantiles.
    pub fn fit(columns: &[Vec<f64>], rows: &[u32]) -> Self {
        let thresholds = columns
            .par_iter()
            .map(|col| {
                let mut v: Vec<f64> = rows.iter().map(|&r| col[r as usize]).collect();
                v.sort_unstable_by(f64::total_cmp);
                edges(&v)
            })
            .collect();
        Self { thresholds }
    }

    /// Bin codes, row-major (`codes[row * features + f]`): a row's bins share a cache line, so
    /// a histogram pass reads each row once and updates every feature's histogram from it.
    pub fn apply(&self, columns: &[Vec<f64>]) -> Binned {
        let n = columns.first().map_or(0, Vec::len);
        self.codes_of(columns, n, |i| i)
    }

    /// [`Bins::apply`] for `rows` only: row `i` of the result is row `rows[i]` of `columns`.
    pub fn apply_rows(&self, columns: &[Vec<f64>], rows: &[u32]) -> Binned {
        self.codes_of(columns, rows.len(), |i| rows[i] as usize)
    }

    fn codes_of(
        &self,
        columns: &[Vec<f64>],
        n: usize,
        row: impl Fn(usize) -> usize + Sync,
    ) -> Binned {
        let nfeat = columns.len();
        let mut codes = vec![0u8; n * nfeat];
        codes
            .par_chunks_mut(nfeat.max(1) * 4096)
            .enumerate()
            .for_each(|(chunk, out)| {
                let first = chunk * 4096;
                for (i, codes) in out.chunks_mut(nfeat.max(1)).enumerate() {
                    let r = row(first + i);
                    for (f, c) in codes.iter_mut().enumerate() {
                        *c = bin_of(&self.thresholds[f], columns[f][r]);
                    }
                }
            });
        // The same codes by feature, for partitioning a node's rows by its split's feature.
        let mut by_feature = vec![0u8; n * nfeat];
        by_feature
            .par_chunks_mut(n.max(1))
            .enumerate()
            .for_each(|(f, out)| {
                for (r, c) in out.iter_mut().enumerate() {
                    *c = codes[r * nfeat + f];
                }
            });
        Binned {
            nfeat,
            codes,
            by_feature,
            nbins: self.thresholds.iter().map(|t| t.len() + 1).collect(),
            thresholds: self.thresholds.clone(),
        }
    }
}

/// Binned rows and the bins' edges.
#[derive(Debug, Clone)]
pub struct Binned {
    /// Features per row.
    pub nfeat: usize,
    /// `codes[row * nfeat + f]`: the bin of feature `f` in `row`.
    pub codes: Vec<u8>,
    /// `by_feature[f * rows + row]`: the same codes, feature by feature.
    pub by_feature: Vec<u8>,
    /// Bins per feature.
    pub nbins: Vec<usize>,
    /// Edges per feature (see [`Bins`]).
    pub thresholds: Vec<Vec<f64>>,
}

impl Binned {
    /// The codes of feature `f`, by row.
    pub fn column(&self, f: usize) -> &[u8] {
        let n = self.codes.len() / self.nfeat.max(1);
        &self.by_feature[f * n..(f + 1) * n]
    }
}

fn bin_of(thresholds: &[f64], x: f64) -> u8 {
    thresholds.partition_point(|&t| t < x) as u8
}

/// Edges (midpoints between neighbouring distinct values) for one sorted feature column.
fn edges(sorted: &[f64]) -> Vec<f64> {
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for &x in sorted {
        match distinct.last_mut() {
            Some((v, n)) if *v == x => *n += 1,
            _ => distinct.push((x, 1)),
        }
    }
    let mid = |a: f64, b: f64| {
        let m = a + (b - a) / 2.0;
        if m < b { m } else { a }
    };
    if distinct.len() < MAX_BINS {
        return distinct.windows(2).map(|w| mid(w[0].0, w[1].0)).collect();
    }
    // Quantile edges: close a bin once it holds its share of the rows.
    let per_bin = sorted.len() as f64 / (MAX_BINS - 1) as f64;
    let mut out = Vec::with_capacity(MAX_BINS - 1);
    let mut seen = 0usize;
    for w in distinct.windows(2) {
        seen += w[0].1;
        if seen as f64 >= per_bin * (out.len() + 1) as f64 && out.len() < MAX_BINS - 2 {
            out.push(mid(w[0].0, w[1].0));
        }
    }
    out
}

/// One node of a fitted tree. Floats are read back exactly (see [`exact_f64`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// Rows with `x[feature] <= threshold` go to `left`, the others to `right`.
    Split {
        /// Feature index.
        feature: usize,
        /// Threshold on the raw value.
        #[serde(deserialize_with = "exact_f64")]
        threshold: f64,
        /// Index of the left child.
        left: usize,
        /// Index of the right child.
        right: usize,
        /// Gain of the split (impurity decrease, weighted by rows).
        #[serde(deserialize_with = "exact_f64")]
        gain: f64,
        /// Training rows (weighted) reaching the node.
        #[serde(deserialize_with = "exact_f64")]
        weight: f64,
    },
    /// A leaf and its value (a probability for classification trees, a raw score for boosting).
    Leaf {
        /// The prediction.
        #[serde(deserialize_with = "exact_f64")]
        value: f64,
        /// Training rows (weighted) reaching the leaf.
        #[serde(deserialize_with = "exact_f64")]
        weight: f64,
    },
}

/// Reads a JSON number exactly: serde_json's default float parser may miss the nearest `f64` by
/// an ulp, so a saved model would not predict exactly what it predicted before it was saved.
/// The number's text is parsed by the standard library, which rounds correctly.
pub fn exact_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
    raw.get().parse().map_err(serde::de::Error::custom)
}

/// A fitted binary tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The nodes, parents before children.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The leaf value for one row (`x[f]` = feature `f`).
    pub fn predict(&self, x: impl Fn(usize) -> f64) -> f64 {
        let mut i = 0;
        loop {
            match &self.nodes[i] {
                Node::Leaf { value, .. } => return *value,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                    ..
                } => {
                    i = if x(*feature) <= *threshold {
                        *left
                    } else {
                        *right
                    }
                }
            }
        }
    }

    /// Adds each split's gain to its feature's entry.
    pub fn add_importance(&self, into: &mut [f64]) {
        for n in &self.nodes {
            if let Node::Split { feature, gain, .. } = n {
                into[*feature] += gain;
            }
        }
    }

    /// Depth of the deepest leaf (a lone leaf has depth 0).
    pub fn depth(&self) -> usize {
        fn go(t: &Tree, i: usize) -> usize {
            match &t.nodes[i] {
                Node::Leaf { .. } => 0,
                Node::Split { left, right, .. } => 1 + go(t, *left).max(go(t, *right)),
            }
        }
        go(self, 0)
    }
}

/// How one tree grows.
#[derive(Debug, Clone)]
pub struct GrowParams {
    /// Maximum depth (root = 0).
    pub max_depth: usize,
    /// Minimum weighted rows in a leaf.
    pub min_leaf: f64,
    /// L2 regularisation on leaf values (0 for classification trees).
    pub lambda: f64,
    /// Features considered at each split (all when `None` or >= the number of features).
    pub max_features: Option<usize>,
    /// Minimum gain for a split.
    pub min_gain: f64,
}

/// What a leaf predicts from its sums.
#[derive(Debug, Clone, Copy)]
pub enum LeafValue {
    /// `G / H`: the (weighted) positive rate when `g = w·y`, `h = w`.
    Ratio,
    /// `−G / (H + λ) × learning rate`: a Newton step for boosting.
    Newton {
        /// Shrinkage.
        learning_rate: f64,
    },
}

/// A node's sums: gradients, hessians and the rows it counts (see [`Stats`]).
#[derive(Clone, Copy, Default, Debug)]
struct Cell {
    g: f64,
    h: f64,
    n: f64,
}

impl Cell {
    fn minus(&self, o: &Cell) -> Cell {
        Cell {
            g: self.g - o.g,
            h: self.h - o.h,
            n: self.n - o.n,
        }
    }
}

/// A histogram cell: the sums of `g` and `h` of the rows in one bin. 16 bytes, so a row's update
/// of a feature is one two-lane add; a bin's row count is not summed but taken from its share of
/// the node's hessian (exact when a row counts as `h`; otherwise an estimate, as LightGBM's).
#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
}

impl Bin {
    fn add(&mut self, g: f64, h: f64) {
        self.g += g;
        self.h += h;
    }

    fn minus(&self, o: &Bin) -> Bin {
        Bin {
            g: self.g - o.g,
            h: self.h - o.h,
        }
    }
}

/// A node's histogram: `MAX_BINS` cells per feature.
type Hist = Vec<[Bin; MAX_BINS]>;

/// Per-row statistics a tree is grown from: `(g, h)` as `f32` (8 bytes a row, as LightGBM keeps
/// gradients; sums are `f64`). A row counts as `h` rows (classification: `h` is the bootstrap
/// multiplicity) or as one row (boosting: `h` is a hessian).
pub struct Stats {
    /// `(g, h)` per row.
    pub gh: Vec<[f32; 2]>,
    /// Whether a row's weight in `min_leaf` is `h` (else 1).
    pub count_is_h: bool,
}

struct Pending {
    node: usize,
    depth: usize,
    hist: Hist,
    sums: Cell,
}

/// Grows one tree on binned rows, depth by depth. `rows` lists the rows to use (ascending);
/// `stats` their `(g, h)` (with bootstrap multiplicity already folded in). Returns the tree and,
/// for every row, the leaf it ends in (`u32::MAX` for rows not in `rows`), so a booster updates
/// its predictions without walking the tree.
///
/// The rows are kept in one list grouped by node, each node's rows a contiguous segment in
/// ascending row order (LightGBM's data partition). Each depth costs one stable partition of
/// every split node's segment by the split feature's column of codes (a byte and an index a
/// row; rows of nodes that stopped splitting are not touched again), and one histogram pass over
/// the segments of the smaller children (the other child is the parent minus it).
pub fn grow(
    binned: &Binned,
    rows: &[u32],
    stats: &Stats,
    params: &GrowParams,
    leaf: LeafValue,
    rng: &mut ChaCha8Rng,
) -> (Tree, Vec<u32>) {
    let mut order: Vec<u32> = rows.to_vec();
    let mut scratch = vec![0u32; rows.len()];
    // Each node's rows: a range of `order` (a split node's range is its children's).
    let mut segment: Vec<Range<usize>> = std::iter::once(0..rows.len()).collect();
    let hist = level_hists(binned, stats, &[rows])
        .pop()
        .unwrap_or_default();
    let mut sums = hist
        .first()
        .into_iter()
        .flatten()
        .fold(Cell::default(), |mut a, c| {
            a.g += c.g;
            a.h += c.h;
            a
        });
    sums.n = if stats.count_is_h {
        sums.h
    } else {
        rows.len() as f64
    };
    let mut nodes = vec![Node::Leaf {
        value: 0.0,
        weight: sums.h,
    }];
    let mut level = vec![Pending {
        node: 0,
        depth: 0,
        hist,
        sums,
    }];
    while !level.is_empty() {
        let mut splits = decide_level(level, binned, params, leaf, rng, &mut nodes);
        if splits.is_empty() {
            break;
        }
        // The child whose histogram is built from its rows: the one the split expects to be
        // smaller; none when the children are at the maximum depth and so leaves whatever their
        // rows (a fifth of a depth-6 tree's histogram work).
        let small: Vec<Option<usize>> = splits
            .iter()
            .map(|s| {
                (s.parent.depth + 1 < params.max_depth).then_some(
                    if s.left_sums.n <= s.right_sums.n {
                        s.left
                    } else {
                        s.left + 1
                    },
                )
            })
            .collect();
        segment.resize(nodes.len(), 0..0);
        partition(binned, &splits, &mut order, &mut scratch, &mut segment);
        if !stats.count_is_h {
            // The children's rows, counted by the partition (the split only estimated them).
            for s in &mut splits {
                s.left_sums.n = segment[s.left].len() as f64;
                s.right_sums.n = segment[s.left + 1].len() as f64;
            }
        }
        let slots: Vec<&[u32]> = small
            .iter()
            .flatten()
            .map(|&c| &order[segment[c].clone()])
            .collect();
        level = next_level(splits, level_hists(binned, stats, &slots), &small);
    }
    let mut node_of = vec![u32::MAX; stats.gh.len()];
    for (i, node) in nodes.iter().enumerate() {
        if let Node::Leaf { .. } = node {
            for &r in &order[segment[i].clone()] {
                node_of[r as usize] = i as u32;
            }
        }
    }
    (Tree { nodes }, node_of)
}

/// A node split at this level: the pending node, its split (rows whose code of `feature` is at
/// or below `bin` go left), its left child (the right is next) and the children's sums.
struct Split {
    parent: Pending,
    feature: usize,
    bin: u8,
    left: usize,
    left_sums: Cell,
    right_sums: Cell,
}

/// Decides every node of a level, in order (the feature draws are part of the seed's stream):
/// a leaf, or a split whose two children are appended to `nodes`.
fn decide_level(
    level: Vec<Pending>,
    binned: &Binned,
    params: &GrowParams,
    leaf: LeafValue,
    rng: &mut ChaCha8Rng,
    nodes: &mut Vec<Node>,
) -> Vec<Split> {
    let mut splits = Vec::new();
    for p in level {
        let allowed = feature_subset(binned.nfeat, params.max_features, rng);
        let split = if p.depth < params.max_depth && p.sums.n >= 2.0 * params.min_leaf {
            best_split(&p.hist, &binned.nbins, &allowed, p.sums, params)
        } else {
            None
        };
        let Some((feature, bin, gain, left_sums)) = split else {
            nodes[p.node] = Node::Leaf {
                value: leaf_value(p.sums, params.lambda, leaf),
                weight: p.sums.h,
            };
            continue;
        };
        let right_sums = p.sums.minus(&left_sums);
        let l = nodes.len();
        nodes.push(Node::Leaf {
            value: 0.0,
            weight: left_sums.h,
        });
        nodes.push(Node::Leaf {
            value: 0.0,
            weight: right_sums.h,
        });
        nodes[p.node] = Node::Split {
            feature,
            threshold: binned.thresholds[feature][bin],
            left: l,
            right: l + 1,
            gain,
            weight: p.sums.h,
        };
        splits.push(Split {
            parent: p,
            feature,
            // A split is never after the last bin, so its bin is at most 254.
            bin: bin as u8,
            left: l,
            left_sums,
            right_sums,
        });
    }
    splits
}

/// Rows per partition task: a split node's segment is cut into runs of about this many rows, so
/// both cores share a level whatever its nodes' sizes.
const PARTITION_RUN: usize = 1 << 15;

/// Splits the segment of every split node into its children's segments, stably (each child's
/// rows stay ascending). The runs of all segments are partitioned in parallel, each into its
/// own ranges of `order` (rows going left, at the run's start) and `scratch` (rows going right);
/// the runs of a segment are then joined in order: lefts, then rights.
fn partition(
    binned: &Binned,
    splits: &[Split],
    order: &mut [u32],
    scratch: &mut [u32],
    segment: &mut [Range<usize>],
) {
    // (run, feature, bin), by position in `order`.
    let mut runs: Vec<(Range<usize>, usize, u8)> = Vec::new();
    // A level's nodes are in the order of their segments (children follow their parents'
    // order, left before right), so the runs come out by position.
    assert!(
        splits
            .windows(2)
            .all(|w| segment[w[0].parent.node].end <= segment[w[1].parent.node].start)
    );
    for s in splits {
        let seg = segment[s.parent.node].clone();
        let mut at = seg.start;
        while at < seg.end {
            let end = (at + PARTITION_RUN).min(seg.end);
            runs.push((at..end, s.feature, s.bin));
            at = end;
        }
    }
    let mut tasks = Vec::with_capacity(runs.len());
    let (mut rest_o, mut rest_s, mut at) = (&mut *order, &mut *scratch, 0usize);
    for (run, feature, bin) in &runs {
        let (_, o) = std::mem::take(&mut rest_o).split_at_mut(run.start - at);
        let (o, more_o) = o.split_at_mut(run.len());
        let (_, t) = std::mem::take(&mut rest_s).split_at_mut(run.start - at);
        let (t, more_s) = t.split_at_mut(run.len());
        tasks.push((o, t, binned.column(*feature), *bin));
        (rest_o, rest_s, at) = (more_o, more_s, run.end);
    }
    let lefts: Vec<usize> = tasks
        .into_par_iter()
        .map(|(rows, right, column, bin)| stable_partition(rows, right, column, bin))
        .collect();
    // Join each segment's runs: their lefts moved down in order, then their rights.
    let mut k = 0;
    for s in splits {
        let seg = segment[s.parent.node].clone();
        let first = k;
        let mut write = seg.start;
        while k < runs.len() && runs[k].0.start < seg.end {
            let run = &runs[k].0;
            order.copy_within(run.start..run.start + lefts[k], write);
            write += lefts[k];
            k += 1;
        }
        let mid = write;
        for (i, (run, _, _)) in runs.iter().enumerate().take(k).skip(first) {
            let n = run.len() - lefts[i];
            order[write..write + n].copy_from_slice(&scratch[run.start..run.start + n]);
            write += n;
        }
        segment[s.left] = seg.start..mid;
        segment[s.left + 1] = mid..seg.end;
    }
}

/// Moves the rows whose code in `column` is at or below `bin` to the front of `rows` and the
/// others to the front of `right`, both in their order; returns how many went left. No branch
/// depends on the data: every row is written to both places, and only one of them advances.
fn stable_partition(rows: &mut [u32], right: &mut [u32], column: &[u8], bin: u8) -> usize {
    let (mut nl, mut nr) = (0, 0);
    for i in 0..rows.len() {
        let r = rows[i];
        let goes_right = column[r as usize] > bin;
        rows[nl] = r;
        right[nr] = r;
        nl += usize::from(!goes_right);
        nr += usize::from(goes_right);
    }
    nl
}

/// The next level's pending nodes: each split's smaller child (`small`) takes its histogram from
/// `built` (in split order), its sibling's is the parent's minus it.
fn next_level(splits: Vec<Split>, built: Vec<Hist>, small: &[Option<usize>]) -> Vec<Pending> {
    let mut built = built.into_iter();
    let mut next = Vec::with_capacity(2 * splits.len());
    for (s, small_node) in splits.into_iter().zip(small) {
        let (lh, rh) = match small_node {
            None => (Hist::new(), Hist::new()),
            Some(small_node) => {
                let sh = built.next().expect("one histogram per smaller child");
                let big = subtract(&s.parent.hist, &sh);
                if *small_node == s.left {
                    (sh, big)
                } else {
                    (big, sh)
                }
            }
        };
        next.push(Pending {
            node: s.left,
            depth: s.parent.depth + 1,
            hist: lh,
            sums: s.left_sums,
        });
        next.push(Pending {
            node: s.left + 1,
            depth: s.parent.depth + 1,
            hist: rh,
            sums: s.right_sums,
        });
    }
    next
}

/// The histograms of `slots`, each from its rows (ascending). Features are split among the
/// threads; each cell is summed in row order, so the sums do not depend on the number of
/// threads.
fn level_hists(binned: &Binned, stats: &Stats, slots: &[&[u32]]) -> Vec<Hist> {
    let nfeat = binned.nfeat;
    let groups = rayon::current_num_threads().clamp(1, nfeat.max(1));
    let ranges: Vec<Range<usize>> = (0..groups)
        .map(|g| g * nfeat / groups..(g + 1) * nfeat / groups)
        .collect();
    let parts: Vec<Vec<Hist>> = ranges
        .par_iter()
        .map(|fr| {
            slots
                .iter()
                .map(|rows| {
                    let mut h: Hist = vec![[Bin::default(); MAX_BINS]; fr.len()];
                    for &r in *rows {
                        let r = r as usize;
                        let [g, hh] = stats.gh[r];
                        let (g, hh) = (f64::from(g), f64::from(hh));
                        let codes = &binned.codes[r * nfeat + fr.start..r * nfeat + fr.end];
                        for (cells, &c) in h.iter_mut().zip(codes) {
                            cells[c as usize].add(g, hh);
                        }
                    }
                    h
                })
                .collect()
        })
        .collect();
    let mut out: Vec<Hist> = vec![Vec::with_capacity(nfeat); slots.len()];
    for part in parts {
        for (o, h) in out.iter_mut().zip(part) {
            o.extend(h);
        }
    }
    out
}

fn feature_subset(nfeat: usize, max_features: Option<usize>, rng: &mut ChaCha8Rng) -> Vec<usize> {
    match max_features {
        Some(k) if k < nfeat => {
            let mut v = sample(rng, nfeat, k).into_vec();
            v.sort_unstable();
            v
        }
        _ => (0..nfeat).collect(),
    }
}

fn leaf_value(s: Cell, lambda: f64, leaf: LeafValue) -> f64 {
    match leaf {
        LeafValue::Ratio => {
            if s.h > 0.0 {
                s.g / s.h
            } else {
                0.0
            }
        }
        LeafValue::Newton { learning_rate } => -s.g / (s.h + lambda) * learning_rate,
    }
}

fn subtract(parent: &Hist, child: &Hist) -> Hist {
    parent
        .iter()
        .zip(child)
        .map(|(p, c)| std::array::from_fn(|b| p[b].minus(&c[b])))
        .collect()
}

/// The best `(feature, bin, gain, left sums)` among `allowed` features, if any split gains. A
/// side's rows are the node's rows times the side's share of the node's hessian: exact when a row
/// counts as `h` (the node's rows are its hessian, the ratio is 1), else an estimate, as
/// LightGBM's (the split's children are counted exactly when rows are routed).
fn best_split(
    hist: &Hist,
    nbins: &[usize],
    allowed: &[usize],
    sums: Cell,
    params: &GrowParams,
) -> Option<(usize, usize, f64, Cell)> {
    let score = |g: f64, h: f64| {
        let d = h + params.lambda;
        if d > 0.0 { g * g / d } else { 0.0 }
    };
    let parent = score(sums.g, sums.h);
    let rows_per_h = if sums.h > 0.0 { sums.n / sums.h } else { 1.0 };
    let mut best: Option<(usize, usize, f64, Bin)> = None;
    for &f in allowed {
        let cells = &hist[f][..nbins[f]];
        let mut left = Bin::default();
        for (b, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            left.add(c.g, c.h);
            let right = Bin {
                g: sums.g,
                h: sums.h,
            }
            .minus(&left);
            let left_n = left.h * rows_per_h;
            if left_n < params.min_leaf || sums.n - left_n < params.min_leaf {
                continue;
            }
            if left.h <= 0.0 || right.h <= 0.0 {
                continue;
            }
            let gain = score(left.g, left.h) + score(right.g, right.h) - parent;
            if gain > params.min_gain && best.as_ref().is_none_or(|b| gain > b.2) {
                best = Some((f, b, gain, left));
            }
        }
    }
    best.map(|(f, b, gain, left)| {
        let n = left.h * rows_per_h;
        (
            f,
            b,
            gain,
            Cell {
                g: left.g,
                h: left.h,
                n,
            },
        )
    })
}

/// A seeded generator for tree `i` of a model trained with `seed`: independent streams per tree,
/// so trees can be grown in parallel and still be the same every time.
pub fn tree_rng(seed: u64, i: u64) -> ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i);
    rng
}

/// Bootstrap multiplicities: `n` draws with replacement among `n` rows.
pub fn bootstrap(n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut counts = vec![0u32; n];
    for _ in 0..n {
        counts[rng.random_range(0..n)] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grow_simple(x: Vec<Vec<f64>>, y: &[f64], depth: usize) -> Tree {
        let n = y.len();
        let rows: Vec<u32> = (0..n as u32).collect();
        let binned = Bins::fit(&x, &rows).apply(&x);
        let stats = Stats {
            gh: y.iter().map(|&y| [y as f32, 1.0]).collect(),
            count_is_h: true,
        };
        let params = GrowParams {
            max_depth: depth,
            min_leaf: 1.0,
            lambda: 0.0,
            max_features: None,
            min_gain: 1e-12,
        };
        grow(
            &binned,
            &rows,
            &stats,
            &params,
            LeafValue::Ratio,
            &mut tree_rng(0, 0),
        )
        .0
    }

    #[test]
    fn edges_split_between_distinct_values() {
        assert_eq!(edges(&[1.0, 1.0, 2.0, 4.0]), vec![1.5, 3.0]);
        assert!(edges(&[5.0, 5.0]).is_empty());
        let many: Vec<f64> = (0..10_000).map(f64::from).collect();
        let e = edges(&many);
        assert!(e.len() < MAX_BINS && e.len() > 200, "{}", e.len());
        assert!(e.windows(2).all(|w| w[0] < w[1]));
        // bin <= b exactly when x <= threshold b
        for (b, t) in e.iter().enumerate() {
            assert!(bin_of(&e, *t) as usize <= b);
            assert!(bin_of(&e, t + 0.5) as usize > b);
        }
    }

    #[test]
    fn a_separable_feature_is_found_and_leaves_hold_rates() {
        // Feature 1 separates the label at 10; feature 0 is noise.
        let x0 = vec![3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let x1 = vec![1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0];
        let y = vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let t = grow_simple(vec![x0, x1], &y, 3);
        match &t.nodes[0] {
            Node::Split {
                feature, threshold, ..
            } => {
                assert_eq!(*feature, 1);
                assert_eq!(*threshold, 7.5);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.depth(), 1);
        assert_eq!(t.predict(|f| [0.0, 7.0][f]), 0.0);
        assert_eq!(t.predict(|f| [0.0, 8.0][f]), 1.0);
    }

    #[test]
    fn gini_gain_matches_hand_computation() {
        // x: 1 2 3 4, y: 0 0 1 0. Best split x <= 2.5: parent G=1,H=4 -> 1/4; left 0/2 -> 0;
        // right 1/2 -> 1/2; gain = 0.25 (= weighted Gini decrease / 2).
        let t = grow_simple(vec![vec![1.0, 2.0, 3.0, 4.0]], &[0.0, 0.0, 1.0, 0.0], 1);
        match &t.nodes[0] {
            Node::Split {
                threshold, gain, ..
            } => {
                assert_eq!(*threshold, 2.5);
                assert!((gain - 0.25).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.predict(|_| 3.0), 0.5);
    }

    #[test]
    fn depth_zero_is_the_base_rate() {
        let t = grow_simple(vec![vec![1.0, 2.0, 3.0, 4.0]], &[0.0, 1.0, 1.0, 1.0], 0);
        assert_eq!(
            t.nodes,
            vec![Node::Leaf {
                value: 0.75,
                weight: 4.0
            }]
        );
    }

    #[test]
    fn same_seed_same_draws() {
        assert_eq!(
            bootstrap(100, &mut tree_rng(7, 3)),
            bootstrap(100, &mut tree_rng(7, 3))
        );
        assert_ne!(
            bootstrap(100, &mut tree_rng(7, 3)),
            bootstrap(100, &mut tree_rng(7, 4))
        );
        assert_eq!(bootstrap(100, &mut tree_rng(1, 1)).iter().sum::<u32>(), 100);
    }
}
