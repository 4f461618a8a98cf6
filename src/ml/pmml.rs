//! PMML 4.4 export, so JPMML / Openscoring-style services score berserkr models.
//!
//! - decision tree: a `TreeModel` whose leaves carry the class probabilities;
//! - random forest: a `MiningModel` averaging its trees' probabilities (`multipleModelMethod =
//!   "average"`);
//! - gradient boosting: a model chain, as JPMML writes XGBoost models: a regression `MiningModel`
//!   summing the trees, then a `RegressionModel` with `normalizationMethod = "logit"` adding the
//!   base log-odds (its intercept) and turning the sum into probabilities. JPMML reads the
//!   probability output from the chain's last model, so the `Output` sits there.
//!
//! Thresholds and probabilities are written with Rust's shortest round-trip formatting, so the
//! evaluator compares against the very `f64` the model holds.

use std::fmt::Write as _;

use super::model::{Model, ModelKind};
use super::tree::{Node, Tree};

/// Name of the output field holding the purchase probability.
pub const PROBABILITY_FIELD: &str = "probability(1)";

/// The model as a PMML document; `target` names the label field.
pub fn to_pmml(model: &Model, target: &str, description: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        s,
        "<PMML xmlns=\"http://www.dmg.org/PMML-4_4\" version=\"4.4\">"
    );
    let _ = writeln!(
        s,
        "  <Header description=\"{}\">\n    <Application name=\"berserkr\" version=\"{}\"/>\n  </Header>",
        esc(description),
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        s,
        "  <DataDictionary numberOfFields=\"{}\">",
        model.features.len() + 1
    );
    for f in &model.features {
        let _ = writeln!(
            s,
            "    <DataField name=\"{}\" optype=\"continuous\" dataType=\"double\"/>",
            esc(f)
        );
    }
    let _ = writeln!(
        s,
        "    <DataField name=\"{}\" optype=\"categorical\" dataType=\"integer\">\n      <Value value=\"0\"/>\n      <Value value=\"1\"/>\n    </DataField>\n  </DataDictionary>",
        esc(target)
    );
    match model.kind {
        ModelKind::DecisionTree => {
            tree_model(&mut s, model, &model.trees[0], target, 1, true);
        }
        ModelKind::RandomForest => {
            let _ = writeln!(s, " <MiningModel functionName=\"classification\">");
            mining_schema(&mut s, model, Some(target), 2);
            output(&mut s, 2);
            let _ = writeln!(s, "  <Segmentation multipleModelMethod=\"average\">");
            for (i, t) in model.trees.iter().enumerate() {
                let _ = writeln!(s, "   <Segment id=\"{}\">\n    <True/>", i + 1);
                tree_model(&mut s, model, t, target, 4, false);
                let _ = writeln!(s, "   </Segment>");
            }
            let _ = writeln!(s, "  </Segmentation>\n </MiningModel>");
        }
        ModelKind::GradientBoosting => boosted(&mut s, model, target),
    }
    s.push_str("</PMML>\n");
    s
}

fn esc(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

fn mining_schema(s: &mut String, model: &Model, target: Option<&str>, ind: usize) {
    let _ = writeln!(s, "{}<MiningSchema>", pad(ind));
    if let Some(t) = target {
        let _ = writeln!(
            s,
            "{}<MiningField name=\"{}\" usageType=\"target\"/>",
            pad(ind + 1),
            esc(t)
        );
    }
    for f in &model.features {
        let _ = writeln!(s, "{}<MiningField name=\"{}\"/>", pad(ind + 1), esc(f));
    }
    let _ = writeln!(s, "{}</MiningSchema>", pad(ind));
}

fn output(s: &mut String, ind: usize) {
    let _ = writeln!(
        s,
        "{}<Output>\n{}<OutputField name=\"{PROBABILITY_FIELD}\" optype=\"continuous\" dataType=\"double\" feature=\"probability\" value=\"1\"/>\n{}</Output>",
        pad(ind),
        pad(ind + 1),
        pad(ind)
    );
}

/// A classification TreeModel (leaf probabilities), with the `Output` when `top`.
fn tree_model(s: &mut String, model: &Model, tree: &Tree, target: &str, ind: usize, top: bool) {
    let _ = writeln!(
        s,
        "{}<TreeModel functionName=\"classification\" splitCharacteristic=\"binarySplit\" missingValueStrategy=\"none\" noTrueChildStrategy=\"returnNullPrediction\">",
        pad(ind)
    );
    mining_schema(s, model, Some(target), ind + 1);
    if top {
        output(s, ind + 1);
    }
    node(s, model, tree, 0, None, ind + 1, Leaf::Probability);
    let _ = writeln!(s, "{}</TreeModel>", pad(ind));
}

#[derive(Clone, Copy)]
enum Leaf {
    Probability,
    Score,
}

/// One node and its subtree; `pred` is the predicate leading to it (`None` for the root).
fn node(
    s: &mut String,
    model: &Model,
    tree: &Tree,
    i: usize,
    pred: Option<(usize, bool, f64)>,
    ind: usize,
    leaf: Leaf,
) {
    let p = pad(ind);
    let predicate = match pred {
        None => "<True/>".to_string(),
        Some((f, left, t)) => format!(
            "<SimplePredicate field=\"{}\" operator=\"{}\" value=\"{t}\"/>",
            esc(&model.features[f]),
            if left { "lessOrEqual" } else { "greaterThan" }
        ),
    };
    match &tree.nodes[i] {
        Node::Leaf { value, weight } => match leaf {
            Leaf::Probability => {
                let _ = writeln!(
                    s,
                    "{p}<Node id=\"{i}\" score=\"{}\" recordCount=\"{weight}\">\n{p} {predicate}\n{p} <ScoreDistribution value=\"0\" recordCount=\"{}\" probability=\"{}\"/>\n{p} <ScoreDistribution value=\"1\" recordCount=\"{}\" probability=\"{value}\"/>\n{p}</Node>",
                    u8::from(*value >= 0.5),
                    weight * (1.0 - value),
                    1.0 - value,
                    weight * value,
                );
            }
            Leaf::Score => {
                let _ = writeln!(
                    s,
                    "{p}<Node id=\"{i}\" score=\"{value}\" recordCount=\"{weight}\">\n{p} {predicate}\n{p}</Node>"
                );
            }
        },
        Node::Split {
            feature,
            threshold,
            left,
            right,
            weight,
            ..
        } => {
            let _ = writeln!(
                s,
                "{p}<Node id=\"{i}\" recordCount=\"{weight}\">\n{p} {predicate}"
            );
            node(
                s,
                model,
                tree,
                *left,
                Some((*feature, true, *threshold)),
                ind + 1,
                leaf,
            );
            node(
                s,
                model,
                tree,
                *right,
                Some((*feature, false, *threshold)),
                ind + 1,
                leaf,
            );
            let _ = writeln!(s, "{p}</Node>");
        }
    }
}

fn boosted(s: &mut String, model: &Model, target: &str) {
    let _ = writeln!(s, " <MiningModel functionName=\"classification\">");
    mining_schema(s, model, Some(target), 2);
    let _ = writeln!(
        s,
        "  <Segmentation multipleModelMethod=\"modelChain\">\n   <Segment id=\"1\">\n    <True/>\n    <MiningModel functionName=\"regression\">"
    );
    mining_schema(s, model, None, 5);
    let _ = writeln!(
        s,
        "     <Output>\n      <OutputField name=\"log_odds\" optype=\"continuous\" dataType=\"double\" feature=\"predictedValue\" isFinalResult=\"false\"/>\n     </Output>\n     <Segmentation multipleModelMethod=\"sum\">"
    );
    for (i, t) in model.trees.iter().enumerate() {
        let _ = writeln!(
            s,
            "      <Segment id=\"{}\">\n       <True/>\n       <TreeModel functionName=\"regression\" splitCharacteristic=\"binarySplit\" missingValueStrategy=\"none\" noTrueChildStrategy=\"returnNullPrediction\">",
            i + 1
        );
        mining_schema(s, model, None, 8);
        node(s, model, t, 0, None, 8, Leaf::Score);
        let _ = writeln!(s, "       </TreeModel>\n      </Segment>");
    }
    let _ = writeln!(
        s,
        "     </Segmentation>\n    </MiningModel>\n   </Segment>\n   <Segment id=\"2\">\n    <True/>\n    <RegressionModel functionName=\"classification\" normalizationMethod=\"logit\">\n     <MiningSchema>\n      <MiningField name=\"{}\" usageType=\"target\"/>\n      <MiningField name=\"log_odds\"/>\n     </MiningSchema>\n     <Output>\n      <OutputField name=\"{PROBABILITY_FIELD}\" optype=\"continuous\" dataType=\"double\" feature=\"probability\" value=\"1\"/>\n     </Output>\n     <RegressionTable intercept=\"{}\" targetCategory=\"1\">\n      <NumericPredictor name=\"log_odds\" coefficient=\"1\"/>\n     </RegressionTable>\n     <RegressionTable intercept=\"0\" targetCategory=\"0\"/>\n    </RegressionModel>\n   </Segment>\n  </Segmentation>\n </MiningModel>",
        esc(target),
        model.base_score
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_becomes_nested_nodes_with_its_thresholds() {
        let model = Model {
            kind: ModelKind::DecisionTree,
            features: vec!["a<b".into()],
            base_score: 0.0,
            trees: vec![Tree {
                nodes: vec![
                    Node::Split {
                        feature: 0,
                        threshold: 0.1,
                        left: 1,
                        right: 2,
                        gain: 1.0,
                        weight: 4.0,
                    },
                    Node::Leaf {
                        value: 0.25,
                        weight: 4.0,
                    },
                    Node::Leaf {
                        value: 1.0,
                        weight: 2.0,
                    },
                ],
            }],
        };
        let x = to_pmml(&model, "label", "test");
        assert!(x.contains(
            "<SimplePredicate field=\"a&lt;b\" operator=\"lessOrEqual\" value=\"0.1\"/>"
        ));
        assert!(x.contains("operator=\"greaterThan\" value=\"0.1\""));
        assert!(
            x.contains("<ScoreDistribution value=\"1\" recordCount=\"1\" probability=\"0.25\"/>")
        );
        assert_eq!(x.matches("<Node ").count(), 3);
        assert_eq!(x.matches("</Node>").count(), 3);
    }
}
