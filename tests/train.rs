//! Training on pinned snapshots, reproduction, scoring and PMML export, on generated data.

mod common;

use std::path::{Path, PathBuf};

use berserkr::lake::At;
use berserkr::ml::{ModelKind, Params, Split, TrainReport};
use berserkr::ops::gold::Cutoffs;
use berserkr::{Error, Lakehouse};
use common::{berserkr, lake, query, repo, run_python, version, write_drop};

/// A lake with 40,000 generated rows through bronze, silver and gold (monthly cutoffs).
async fn gold_lake(dir: &Path) -> Lakehouse {
    let csv = dir.join("gen.csv");
    run_python(&[
        repo()
            .join("tests/tools/peers/gen_online_retail.py")
            .as_os_str(),
        "40000".as_ref(),
        csv.as_os_str(),
        "--seed".as_ref(),
        "11".as_ref(),
    ]);
    let drops = dir.join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    write_drop(&drops, "gen.csv.lzo", &std::fs::read(&csv).unwrap());
    let lake = lake(dir).await;
    lake.append([drops.to_str().unwrap()]).await.unwrap();
    lake.refresh_silver().await.unwrap();
    lake.refresh_gold()
        .with_cutoffs(Cutoffs::Monthly)
        .await
        .unwrap();
    lake
}

/// Runs `berserkr --lake DIR/lake ARGS...` (paths and words alike).
fn cli<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> std::process::Output {
    berserkr()
        .arg("--lake")
        .arg(dir.join("lake"))
        .args(args)
        .output()
        .unwrap()
}

fn small(kind: ModelKind) -> Params {
    let mut p = Params::defaults(kind);
    p.trees = p.trees.min(12);
    p.max_depth = p.max_depth.min(5);
    p
}

/// A test's lake and a first model trained on gold's version `v` into `m1`.
struct Trained {
    dir: tempfile::TempDir,
    lake: Lakehouse,
    v: u64,
    first: TrainReport,
}

impl Trained {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lake = gold_lake(dir.path()).await;
        let v = version(&lake, "gold.customer_item_features").await;
        let first = lake
            .train()
            .with_at(At::Version(v))
            .with_out(dir.path().join("m1"))
            .await
            .unwrap();
        Self {
            dir,
            lake,
            v,
            first,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_records_its_snapshot_split_and_metrics() {
    let t = Trained::new().await;
    let m = &t.first.manifest;
    assert_eq!(m.snapshot.version, t.v);
    assert_eq!(m.features.len(), berserkr::ml::data::FEATURES.len());
    assert!(m.cutoffs.len() >= 6, "{:?}", m.cutoffs);
    // Several cutoffs: time-based split, evaluated on the latest, no overlapping label window.
    match &m.split {
        Split::Time {
            train_cutoffs,
            eval_cutoff,
            skipped_cutoffs,
        } => {
            assert_eq!(eval_cutoff, m.cutoffs.last().unwrap());
            assert!(!train_cutoffs.is_empty() && !skipped_cutoffs.is_empty());
            assert!(train_cutoffs.iter().all(|c| c < eval_cutoff));
        }
        other => panic!("{other:?}"),
    }
    let e = &m.evaluation;
    assert!(e.model.roc_auc > 0.6 && e.model.roc_auc <= 1.0, "{e:?}");
    assert!(e.model.log_loss.unwrap() > 0.0 && e.popularity.log_loss.is_none());
    for f in [
        "model.json",
        "manifest.json",
        "report.html",
        "roc.svg",
        "precision_at_k.svg",
        "importance.svg",
    ] {
        assert!(t.path("m1").join(f).is_file(), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_version_gives_the_same_bytes_after_the_table_moves_on() {
    let t = Trained::new().await;
    let model1 = std::fs::read(t.path("m1/model.json")).unwrap();
    // Move the table on: another cutoff (a new version), then train on the old version again.
    t.lake
        .refresh_gold()
        .with_cutoffs(Cutoffs::Latest)
        .await
        .unwrap();
    assert!(version(&t.lake, "gold.customer_item_features").await > t.v);
    let again = t
        .lake
        .train()
        .with_at(At::Version(t.v))
        .with_out(t.path("m2"))
        .await
        .unwrap();
    assert_eq!(again.manifest.snapshot, t.first.manifest.snapshot);
    assert_eq!(std::fs::read(t.path("m2/model.json")).unwrap(), model1);
    assert_eq!(again.manifest.evaluation, t.first.manifest.evaluation);
    let latest = t.lake.train().with_out(t.path("m3")).await.unwrap();
    assert!(latest.manifest.snapshot.version > t.v);
    assert_ne!(
        latest.manifest.snapshot.files_sha256,
        t.first.manifest.snapshot.files_sha256
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_trains_on_the_last_version_committed_by_then() {
    let t = Trained::new().await;
    let now = t
        .lake
        .train()
        .with_at(At::Time(chrono::Utc::now()))
        .with_out(t.path("m7"))
        .await
        .unwrap();
    assert_eq!(now.manifest.snapshot, t.first.manifest.snapshot);
    let before = t
        .lake
        .train()
        .with_at(At::Time(chrono::DateTime::from_timestamp(0, 0).unwrap()))
        .with_out(t.path("m8"))
        .await;
    assert!(
        matches!(before, Err(Error::InvalidArgument(_))),
        "nothing was committed in 1970: {:?}",
        before.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reproduce_rebuilds_the_same_model_or_says_what_differs() {
    let t = Trained::new().await;
    let d = t.dir.path();
    let out = cli(
        d,
        &[
            "train".as_ref(),
            "--reproduce".as_ref(),
            d.join("m1/manifest.json").as_os_str(),
            "--out".as_ref(),
            d.join("m4").as_os_str(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reproduced"), "{stdout}");
    assert_eq!(
        std::fs::read(d.join("m4/model.json")).unwrap(),
        std::fs::read(d.join("m1/model.json")).unwrap()
    );
    // A manifest whose model does not match what its snapshot gives is reported, exit 1.
    let text = std::fs::read_to_string(d.join("m1/manifest.json")).unwrap();
    let tampered = text.replace(&t.first.manifest.model_sha256, &"0".repeat(64));
    std::fs::write(d.join("tampered.json"), tampered).unwrap();
    let r = t
        .lake
        .reproduce(d.join("tampered.json"))
        .with_out(d.join("m5"))
        .await
        .unwrap();
    assert_eq!(r.differences.len(), 1, "{:?}", r.differences);
    assert!(r.differences[0].starts_with("model differs"));
    let out = cli(
        d,
        &[
            "train".as_ref(),
            "--reproduce".as_ref(),
            d.join("tampered.json").as_os_str(),
            "--out".as_ref(),
            d.join("m5").as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_pins_its_snapshot_for_table_care() {
    let t = Trained::new().await;
    let pins = t.lake.pins().await.unwrap();
    assert!(
        pins.iter()
            .any(|p| p.model_id == t.first.manifest.model_id && p.version == t.v)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_does_not_exist_is_named() {
    let t = Trained::new().await;
    let e = t
        .lake
        .train()
        .with_at(At::Version(999))
        .with_out(t.path("m6"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::VersionNotFound { version: 999, .. }),
        "{e}"
    );
    let out = cli(t.dir.path(), &["train", "--version", "999", "--out", "m6"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Scorers of two models, twice each, at once: every model's scores land once, none lost,
/// none doubled (commits through Target, retried against each other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scorers_each_land_their_scores_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = gold_lake(dir.path()).await;
    let mut models = Vec::new();
    for (i, kind) in [ModelKind::DecisionTree, ModelKind::GradientBoosting]
        .into_iter()
        .enumerate()
    {
        let out = dir.path().join(format!("c{i}"));
        let r = lake
            .train()
            .with_params(small(kind))
            .with_out(&out)
            .await
            .unwrap();
        models.push((out, r.manifest.model_id));
    }
    let runs = models
        .iter()
        .chain(&models)
        .map(|(out, _)| {
            let lake = lake.clone();
            let out = out.clone();
            tokio::spawn(async move { lake.score(&out).await })
        })
        .collect::<Vec<_>>();
    let mut landed = std::collections::BTreeMap::new();
    for r in runs {
        let r = r.await.unwrap().unwrap();
        *landed.entry(r.model_id.clone()).or_insert(0) += usize::from(r.version.is_some());
    }
    for (out, id) in &models {
        assert_eq!(landed[id], 1, "{id} scored once: {landed:?}");
        let expected = lake.score(out).await.unwrap();
        assert_eq!(expected.version, None, "already there");
        let n = query(
            &lake,
            "gold.purchase_scores",
            &format!("SELECT count(*) AS n FROM t WHERE model_id = '{id}'"),
        )
        .await;
        assert!(
            n.contains(&format!("| {} |", expected.rows)),
            "{id}: {n} vs {} rows",
            expected.rows
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_learner_trains_scores_and_exports_pmml_that_jpmml_agrees_with() {
    let dir = tempfile::tempdir().unwrap();
    let lake = gold_lake(dir.path()).await;
    for kind in [
        ModelKind::DecisionTree,
        ModelKind::RandomForest,
        ModelKind::GradientBoosting,
    ] {
        let out = dir.path().join(kind.name());
        let r = lake
            .train()
            .with_params(small(kind))
            .with_out(&out)
            .await
            .unwrap();
        assert!(r.manifest.evaluation.model.roc_auc > 0.6, "{kind:?}");

        // Batch scores of the present: one row per pair of the scoring snapshot (features as of
        // the last silver timestamp, after every training cutoff), ranked per customer.
        let s = lake.score(&out).await.unwrap();
        assert!(s.version.is_some() && s.rows > 1000, "{s:?}");
        assert_eq!(s.source_table, "gold.scoring_features");
        assert!(&s.cutoff > r.manifest.cutoffs.last().unwrap(), "{s:?}");
        let again = lake.score(&out).await.unwrap();
        assert_eq!(
            again.version, None,
            "same model, same source version: no-op"
        );
        let counts = query(
            &lake,
            "gold.purchase_scores",
            &format!(
                "SELECT count(*) AS n, count(DISTINCT CustomerID) AS c, sum(CASE WHEN rank = 1 THEN 1 ELSE 0 END) AS firsts, \
                 min(score) >= 0 AND max(score) <= 1 AS probs FROM t WHERE model_id = '{}'",
                s.model_id
            ),
        )
        .await;
        let expect = format!("|{}|{}|{}|true|", s.rows, s.customers, s.customers);
        assert!(
            counts.replace(' ', "").contains(&expect),
            "{counts}\n{expect}"
        );
        let top = lake.score(&out).top_for_customer(0, 3).await;
        assert!(top.unwrap().is_empty(), "no customer 0");

        // PMML: JPMML's evaluator gives the same probabilities on the scored rows.
        let pmml = dir.path().join(format!("{}.pmml", kind.name()));
        let st = berserkr()
            .args(["model", "export", "--model"])
            .arg(&out)
            .arg("--out")
            .arg(&pmml)
            .status()
            .unwrap();
        assert!(st.success());
        let sample = query(
            &lake,
            &s.source_table,
            &format!(
                "SELECT * FROM t WHERE cutoff = '{}' ORDER BY CustomerID, StockCode LIMIT 300",
                s.cutoff
            ),
        )
        .await;
        assert!(sample.lines().count() > 300);
        let res = run_python(&[
            repo().join("tests/tools/pmml_check.py").as_os_str(),
            pmml.as_os_str(),
            dir.path().join("lake").as_os_str(),
            s.model_id.as_ref(),
            s.cutoff.as_ref(),
            "300".as_ref(),
            s.source_table.replace('.', "/").as_ref(),
        ]);
        let v: serde_json::Value = serde_json::from_str(&res).unwrap();
        assert_eq!(v["rows"].as_u64(), Some(300), "{res}");
        assert!(
            v["max_abs_diff"].as_f64().unwrap() < 1e-9,
            "{kind:?}: JPMML disagrees: {res}"
        );
    }
    // One customer's top items, from the CLI.
    let cust = query(
        &lake,
        "gold.purchase_scores",
        "SELECT CustomerID FROM t ORDER BY CustomerID LIMIT 1",
    )
    .await;
    let cust: String = cust
        .lines()
        .nth(3)
        .unwrap()
        .trim_matches(|c| c == '|' || c == ' ')
        .to_string();
    let out = cli(
        dir.path(),
        &[
            "score".as_ref(),
            "--model".as_ref(),
            dir.path().join("decision-tree").as_os_str(),
            "--customer".as_ref(),
            cust.as_ref(),
            "--top".as_ref(),
            "3".as_ref(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("rank  StockCode"), "{stdout}");
    assert!(
        stdout.lines().count() >= 2 && stdout.lines().count() <= 4,
        "{stdout}"
    );
}
