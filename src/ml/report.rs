//! The training report: SVG plots (ROC curves, precision@k by k, feature importance) and an HTML
//! page that shows them beside the metrics table.
//!
//! The SVG is written here rather than by a plotting crate: three fixed chart shapes, byte-stable
//! output (the same model gives the same files), and no font or raster dependencies.

use std::fmt::Write as _;

use super::metrics::Metrics;
use super::{Files, Manifest, Split};

const W: f64 = 640.0;
const H: f64 = 420.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;
const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#7f7f7f"];

/// The curves of the model and of the two baselines (popularity, recency), in that order.
pub struct Curves {
    /// ROC points.
    pub roc: [Vec<(f64, f64)>; 3],
    /// Precision@k by k.
    pub precision_at_k: [Vec<(f64, f64)>; 3],
}

/// The report files of a trained model: `roc.svg`, `precision_at_k.svg`, `importance.svg` and
/// `report.html`, which shows them beside the metrics.
pub(crate) fn model_report(m: &Manifest, curves: &Curves) -> Files {
    let e = &m.evaluation;
    let [roc_model, roc_pop, roc_rec] = &curves.roc;
    let roc_svg = line_chart(
        "ROC curve (evaluation rows)",
        "false positive rate",
        "true positive rate",
        (0.0, 1.0),
        (0.0, 1.0),
        &[
            Series {
                name: &format!("model {:.3}", e.model.roc_auc),
                points: roc_model.clone(),
            },
            Series {
                name: &format!("popularity {:.3}", e.popularity.roc_auc),
                points: roc_pop.clone(),
            },
            Series {
                name: &format!("recency {:.3}", e.recency.roc_auc),
                points: roc_rec.clone(),
            },
        ],
        true,
    );
    let ymax = curves
        .precision_at_k
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(0.05);
    let [pm, pp, pr] = curves.precision_at_k.clone();
    let pk_svg = line_chart(
        "Precision@k per customer (evaluation rows)",
        "k",
        "precision@k",
        (0.0, 20.0),
        (0.0, (ymax * 10.0).ceil() / 10.0),
        &[
            Series {
                name: "model",
                points: pm,
            },
            Series {
                name: "popularity",
                points: pp,
            },
            Series {
                name: "recency",
                points: pr,
            },
        ],
        false,
    );
    let imp_svg = bar_chart(
        "Feature importance (share of split gain)",
        "share of total gain",
        &m.importance
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>(),
    );
    vec![
        ("roc.svg".into(), roc_svg.into_bytes()),
        ("precision_at_k.svg".into(), pk_svg.into_bytes()),
        ("importance.svg".into(), imp_svg.into_bytes()),
        ("report.html".into(), report_html(m).into_bytes()),
    ]
}

fn report_html(m: &Manifest) -> String {
    let e = &m.evaluation;
    let row = |name: &str, x: &Metrics| {
        format!(
            "<tr><td>{name}</td><td>{}</td></tr>",
            x.cells().join("</td><td>")
        )
    };
    let split = match &m.split {
        Split::Time {
            train_cutoffs,
            eval_cutoff,
            skipped_cutoffs,
        } => format!(
            "time-based: trained on cutoffs {}; evaluated on {eval_cutoff}{}",
            train_cutoffs.join(", "),
            if skipped_cutoffs.is_empty() {
                String::new()
            } else {
                format!(
                    " (left out, label window overlapping the evaluation: {})",
                    skipped_cutoffs.join(", ")
                )
            }
        ),
        Split::Stratified {
            test_fraction,
            seed,
            reason,
        } => format!(
            "stratified random split, {:.0}% held out, seed {seed} ({reason})",
            test_fraction * 100.0
        ),
    };
    let verdict = if e.beats_popularity {
        "The model beats the popularity baseline on ROC AUC."
    } else {
        "The model does NOT beat the popularity baseline on ROC AUC."
    };
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>berserkr model {id}</title>\n\
<style>body{{font-family:sans-serif;max-width:1320px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head><body>\n\
<h1>Model {id}: {kind}</h1>\n\
<p>Trained on <code>{table}</code> version {version} of <code>{lake}</code> ({rows} rows, cutoffs {cutoffs}); \
label: {label}.</p>\n<p>Split: {split}. {train} training rows, {eval} evaluation rows, positive rate {rate:.3}.</p>\n\
<p><b>{verdict}</b></p>\n\
<table><tr><th>scorer</th><th>{heads}</th></tr>\n{r1}\n{r2}\n{r3}\n</table>\n\
<p><img src=\"roc.svg\" alt=\"ROC curve\"> <img src=\"precision_at_k.svg\" alt=\"precision at k\"></p>\n\
<p><img src=\"importance.svg\" alt=\"feature importance\"></p>\n\
<p>Parameters: <code>{params}</code>. berserkr {ver} ({rev}); fit {fit:.2} s.</p>\n</body></html>\n",
        id = m.model_id,
        kind = m.params.model.name(),
        table = m.snapshot.table,
        version = m.snapshot.version,
        lake = m.snapshot.lake,
        rows = m.rows,
        cutoffs = m.cutoffs.join(", "),
        label = m.label.definition,
        train = e.train_rows,
        eval = e.eval_rows,
        rate = e.eval_positive_rate,
        heads = Metrics::HEADINGS.join("</th><th>"),
        r1 = row("model", &e.model),
        r2 = row("popularity", &e.popularity),
        r3 = row("recency", &e.recency),
        params = serde_json::to_string(&m.params).unwrap_or_default(),
        ver = m.berserkr_version,
        rev = m.source_revision,
        fit = m.fit_seconds,
    )
}

/// One named series of points.
pub struct Series<'a> {
    /// Legend label.
    pub name: &'a str,
    /// `(x, y)` points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn header(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        W / 2.0,
        esc(title)
    )
}

/// A line chart with axes from `(x0, y0)` to `(x1, y1)`.
#[allow(clippy::too_many_arguments)]
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    series: &[Series<'_>],
    diagonal: bool,
) -> String {
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0).max(f64::MIN_POSITIVE) * pw;
    let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0).max(f64::MIN_POSITIVE) * ph;
    let mut s = header(title);
    axes(&mut s, x_label, y_label, (x0, x1), (y0, y1), &sx, &sy);
    if diagonal {
        let _ = writeln!(
            s,
            "<line x1=\"{:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"#bbbbbb\" stroke-dasharray=\"4 4\"/>",
            sx(x0),
            sy(y0),
            sx(x1),
            sy(y1)
        );
    }
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.2},{:.2}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        let ly = TOP + 16.0 + 20.0 * i as f64;
        let lx = W - RIGHT + 14.0;
        let _ = writeln!(
            s,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"3\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn axes(
    s: &mut String,
    x_label: &str,
    y_label: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    sx: &dyn Fn(f64) -> f64,
    sy: &dyn Fn(f64) -> f64,
) {
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333333\"/>",
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    for i in 0..=5 {
        let t = i as f64 / 5.0;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        let _ = writeln!(
            s,
            "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>\
             <line x1=\"{LEFT}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"#eeeeee\"/>",
            sx(x),
            H - BOTTOM + 18.0,
            tick(x),
            LEFT - 6.0,
            sy(y) + 4.0,
            tick(y),
            sy(y),
            W - RIGHT,
            sy(y)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{:.2}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.2})\">{}</text>",
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 14.0,
        esc(x_label),
        TOP + (H - TOP - BOTTOM) / 2.0,
        TOP + (H - TOP - BOTTOM) / 2.0,
        esc(y_label)
    );
}

fn tick(v: f64) -> String {
    if v.abs() >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A horizontal bar chart of `(label, value)` pairs, largest first.
pub fn bar_chart(title: &str, x_label: &str, bars: &[(String, f64)]) -> String {
    let mut bars = bars.to_vec();
    bars.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let max = bars
        .iter()
        .map(|b| b.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let left = 150.0;
    let pw = W - left - 60.0;
    let row = ((H - TOP - BOTTOM) / bars.len().max(1) as f64).min(28.0);
    let mut s = header(title);
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = TOP + 8.0 + row * i as f64;
        let _ = writeln!(
            s,
            "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{}\"/>\
             <text x=\"{:.2}\" y=\"{:.2}\">{:.3}</text>",
            left - 6.0,
            y + row * 0.6,
            esc(name),
            v / max * pw,
            row * 0.75,
            COLORS[1],
            left + v / max * pw + 4.0,
            y + row * 0.6,
            v
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>",
        left + pw / 2.0,
        H - 14.0,
        esc(x_label)
    );
    s.push_str("</svg>\n");
    s
}

/// At most `n` points of a curve, evenly spread over its length, ends kept.
pub fn thin(points: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n || n < 2 {
        return points.to_vec();
    }
    (0..n)
        .map(|i| points[i * (points.len() - 1) / (n - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_wellformed_svg_and_escape_text() {
        let s = line_chart(
            "ROC <test>",
            "x",
            "y",
            (0.0, 1.0),
            (0.0, 1.0),
            &[Series {
                name: "a & b",
                points: vec![(0.0, 0.0), (0.5, 0.8), (1.0, 1.0)],
            }],
            true,
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("ROC &lt;test&gt;") && s.contains("a &amp; b"));
        assert!(s.contains("points=\"64.00,364.00 267.00,104.80 470.00,40.00\""));
        let b = bar_chart("imp", "gain", &[("x".into(), 0.25), ("y".into(), 0.75)]);
        assert!(
            b.find(">y<").unwrap() < b.find(">x<").unwrap(),
            "largest first"
        );
        assert_eq!(thin(&[(0.0, 0.0); 10], 3).len(), 3);
    }
}
