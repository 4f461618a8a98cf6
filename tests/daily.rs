//! `lake run`, the daily job: idempotent, resumable after a failure in any step, and gold
//! rebuilding only the cutoffs new silver rows can reach (equal to a full rebuild).

mod common;

use std::path::{Path, PathBuf};

use berserkr::Lakehouse;
use berserkr::lake::At;
use berserkr::ops::gold::Cutoffs;
use berserkr::pipeline::{Step, StepStatus};
use common::*;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Float64Type};

/// The real drops shipped in the repo, in date order, whose day is in `from ..= to`.
fn drops(from: &str, to: &str) -> Vec<PathBuf> {
    real_drops()
        .into_iter()
        .filter(|p| {
            let day = &p.file_name().unwrap().to_str().unwrap()[..10];
            day >= from && day <= to
        })
        .collect()
}

fn strs(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.to_str().unwrap().to_string())
        .collect()
}

/// Every row of a gold version, sorted by (cutoff, customer, item), as one batch.
async fn gold_rows(lake: &Lakehouse, version: u64) -> RecordBatch {
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
    let id = id("gold.customer_item_features");
    let table = lake.table_at(&id, &At::Version(version)).await.unwrap();
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let df = ctx
        .sql("SELECT * FROM t ORDER BY cutoff, CustomerID, StockCode")
        .await
        .unwrap();
    let schema = df.schema().as_arrow().clone();
    let batches = df.collect().await.unwrap();
    deltalake::arrow::compute::concat_batches(&std::sync::Arc::new(schema), &batches).unwrap()
}

/// Asserts two gold snapshots hold the same rows: equal columns, doubles within 1e-9 (relative;
/// sums of the same rows in another order differ in the last bits).
fn assert_same_rows(a: &RecordBatch, b: &RecordBatch) {
    assert_eq!(a.num_rows(), b.num_rows(), "row counts differ");
    assert_eq!(a.schema(), b.schema());
    for (i, field) in a.schema().fields().iter().enumerate() {
        let (x, y) = (a.column(i), b.column(i));
        if field.data_type() == &DataType::Float64 {
            let (x, y) = (
                x.as_primitive::<Float64Type>(),
                y.as_primitive::<Float64Type>(),
            );
            for r in 0..x.len() {
                assert_eq!(x.is_null(r), y.is_null(r), "{} row {r}", field.name());
                let (p, q) = (x.value(r), y.value(r));
                let tol = 1e-9 * p.abs().max(q.abs()).max(1.0);
                assert!(
                    (p - q).abs() <= tol || (p.is_nan() && q.is_nan()),
                    "{} row {r}: {p} vs {q}",
                    field.name()
                );
            }
        } else {
            assert_eq!(x.as_ref(), y.as_ref(), "column {}", field.name());
        }
    }
}

fn status(report: &berserkr::pipeline::RunReport, step: Step) -> StepStatus {
    report.steps.iter().find(|s| s.step == step).unwrap().status
}

/// The detail of `step` in a run's report.
fn detail(report: &berserkr::pipeline::RunReport, step: Step) -> &serde_json::Value {
    &report.steps.iter().find(|s| s.step == step).unwrap().detail
}

/// The strings listed under `key` of a step's detail (gold's `cutoffs`, `unchanged`).
fn listed(detail: &serde_json::Value, key: &str) -> Vec<String> {
    detail[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_runs_rebuild_only_the_cutoffs_new_rows_reach_and_equal_a_full_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    lake.set_cutoffs("monthly,latest".parse::<Cutoffs>().unwrap())
        .await
        .unwrap();
    assert_eq!(
        lake.cutoffs().await.unwrap().unwrap().to_string(),
        "monthly,latest"
    );
    let history = drops("2010-12-01", "2011-06-30");
    let first = lake.run(strs(&history)).await.unwrap();
    assert!(first.ok && first.did_work, "{first:?}");
    for step in [Step::Append, Step::Silver, Step::Gold] {
        assert_eq!(status(&first, step), StepStatus::Done, "{step:?}");
    }
    assert_eq!(status(&first, Step::Train), StepStatus::Skipped);

    // The same run again: nothing to do, and it says so.
    let again = lake.run(strs(&history)).await.unwrap();
    assert!(again.ok && !again.did_work, "{again:?}");
    for step in [Step::Append, Step::Silver, Step::Gold] {
        assert_eq!(status(&again, step), StepStatus::UpToDate, "{step:?}");
    }

    // Days arrive one by one. Each new day moves the latest cutoff (built) and may add a monthly
    // one; the month starts whose label window closed before the day's first row are kept.
    for day in drops("2011-07-01", "2011-07-06") {
        let r = lake.run(strs(std::slice::from_ref(&day))).await.unwrap();
        assert!(r.ok && r.did_work, "{r:?}");
        let gold = detail(&r, Step::Gold);
        let (built, kept) = (listed(gold, "cutoffs"), listed(gold, "unchanged"));
        assert_eq!(built.len(), 1, "only the new latest cutoff: {gold}");
        assert!(!built[0].ends_with("00:00:00"), "{gold}");
        for month in ["2011-01-01", "2011-02-01", "2011-03-01", "2011-04-01"] {
            assert!(
                kept.contains(&format!("{month} 00:00:00")),
                "{month} kept: {gold}"
            );
        }
        assert!(
            !gold["scoring"]["version"].is_null(),
            "the present is rescored every day: {gold}"
        );
    }
    // A late row dated inside the label window of some kept cutoffs rebuilds those, and only
    // those (and the features of every later cutoff, which see it).
    let late_dir = dir.path().join("late");
    std::fs::create_dir_all(&late_dir).unwrap();
    let late = write_drop(
        &late_dir,
        "late.csv.lzo",
        format!(
            "{HEADER}999001,85123A,LATE ROW,3,2011-06-15 10:00:00,2.55,17850.0,United Kingdom\n"
        )
        .as_bytes(),
    );
    let r = lake.run([late.to_str().unwrap()]).await.unwrap();
    assert!(r.ok && r.did_work, "{r:?}");
    let gold = detail(&r, Step::Gold);
    let (built, kept) = (listed(gold, "cutoffs"), listed(gold, "unchanged"));
    // 2011-03-17 + 90 days = 2011-06-15: cutoffs from then on reach the row.
    assert!(built.contains(&"2011-04-01 00:00:00".to_string()), "{gold}");
    for month in ["2011-01-01", "2011-02-01", "2011-03-01"] {
        assert!(kept.contains(&format!("{month} 00:00:00")), "{gold}");
    }
    assert!(built.iter().all(|c| c.as_str() >= "2011-03-17"), "{gold}");

    let gold_id = id("gold.customer_item_features");
    let incremental = lake.table(&gold_id).await.unwrap().version().unwrap();
    let a = gold_rows(&lake, incremental).await;
    let cutoffs =
        deltalake::arrow::compute::cast(a.column_by_name("cutoff").unwrap(), &DataType::Utf8)
            .unwrap();
    let held: std::collections::BTreeSet<String> = (0..a.num_rows())
        .map(|r| cutoffs.as_string::<i32>().value(r).to_string())
        .collect();
    // Four month starts and each day's latest cutoff.
    assert!(held.len() >= 9, "{held:?}");
    let full = lake.refresh_gold().with_full(true).await.unwrap();
    assert!(full.unchanged.is_empty(), "{full:?}");
    assert_eq!(
        full.cutoffs
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        held,
        "a full rebuild rebuilds every cutoff held"
    );
    let rebuilt = full.version.expect("a full rebuild commits");
    let b = gold_rows(&lake, rebuilt).await;
    assert!(a.num_rows() > 10_000, "{}", a.num_rows());
    assert_same_rows(&a, &b);
}

/// Writes a commit file that is not JSON at the next version of `table`: every read of the
/// table fails until it is removed (a stand-in for a store that fails under one step).
fn break_table(lake_dir: &Path, table: &str, version: u64) -> PathBuf {
    let log = lake_dir.join(table.replace('.', "/")).join("_delta_log");
    let p = log.join(format!("{:020}.json", version + 1));
    std::fs::write(&p, b"{\"this is not a commit").unwrap();
    p
}

fn run_json(lake_dir: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = berserkr()
        .arg("--lake")
        .arg(lake_dir)
        .args(["lake", "run", "--json"])
        .args(args)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), json)
}

fn statuses(json: &serde_json::Value) -> Vec<(String, String)> {
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_fails_at_any_step_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let lake_dir = dir.path().join("lake");
    let model = dir.path().join("model");
    let days = drops("2010-12-01", "2011-06-30");
    // The first run lands history up to the end of April (the latest cutoff needs rows before
    // it and a whole label window after it); each later round brings a few days.
    let first = days
        .iter()
        .filter(|d| d.to_str().unwrap().contains("/2011-05"))
        .count();
    let first = days.len()
        - first
        - days
            .iter()
            .filter(|d| d.to_str().unwrap().contains("/2011-06"))
            .count();
    let mut landed = 0;
    let tables = [
        ("append", "bronze.online_retail"),
        ("silver", "silver.transactions"),
        ("gold", "gold.customer_item_features"),
        ("score", "gold.purchase_scores"),
    ];
    // Each round brings a new day and breaks the table one step writes: the run stops there
    // (exit 2), the steps before it committed, the steps after it not run; with the table
    // mended, the rerun continues at that step and does the rest.
    for (round, (failing, table)) in tables.iter().enumerate() {
        let take = if round == 0 { first } else { 3 };
        let batch = &days[landed..days.len().min(landed + take)];
        landed += batch.len();
        let mut args: Vec<String> = strs(batch);
        args.extend(
            [
                "--train",
                "--model",
                "decision-tree",
                "--score",
                "--out",
                model.to_str().unwrap(),
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Scores exist only after a first good run.
        if *failing == "append" {
            let broken = break_table(&lake_dir, table, version(&lake, table).await);
            let (code, json) = run_json(&lake_dir, &args);
            assert_eq!(code, 2, "{json}");
            assert_eq!(json["error"]["step"], "append", "{json}");
            assert_eq!(json["ok"], false);
            let s = statuses(&json);
            assert_eq!(s[0], ("append".into(), "failed".into()), "{json}");
            assert!(s[1..].iter().all(|(_, st)| st == "skipped"), "{json}");
            std::fs::remove_file(broken).unwrap();
            let (code, json) = run_json(&lake_dir, &args);
            assert_eq!(code, 0, "{json}");
            assert!(statuses(&json).iter().all(|(_, st)| st == "done"), "{json}");
            continue;
        }
        let before = version(&lake, table).await;
        let broken = break_table(&lake_dir, table, before);
        let (code, json) = run_json(&lake_dir, &args);
        assert_eq!(code, 2, "{json}");
        assert_eq!(json["error"]["step"], *failing, "{json}");
        let s = statuses(&json);
        let at = s.iter().position(|(n, _)| n == failing).unwrap();
        assert!(s[..at].iter().all(|(_, st)| st == "done"), "{json}");
        assert_eq!(s[at].1, "failed", "{json}");
        assert!(s[at + 1..].iter().all(|(_, st)| st == "skipped"), "{json}");
        std::fs::remove_file(broken).unwrap();
        assert_eq!(
            version(&lake, table).await,
            before,
            "nothing half-committed"
        );
        let (code, json) = run_json(&lake_dir, &args);
        assert_eq!(code, 0, "{json}");
        let s = statuses(&json);
        assert!(s[..at].iter().all(|(_, st)| st == "up_to_date"), "{json}");
        assert!(s[at..].iter().all(|(_, st)| st == "done"), "{json}");
        // And once more: nothing left to do.
        let (code, json) = run_json(&lake_dir, &args);
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["did_work"], false, "{json}");
        assert!(
            statuses(&json).iter().all(|(_, st)| st == "up_to_date"),
            "{json}"
        );
    }

    // Train fails where its model directory cannot be written (a file in its place).
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let next = &days[landed..days.len().min(landed + 5)];
    let mut args = strs(next);
    args.extend(["--train", "--out", blocked.to_str().unwrap()].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, json) = run_json(&lake_dir, &args);
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["error"]["step"], "train", "{json}");
    std::fs::remove_file(&blocked).unwrap();
    let (code, json) = run_json(&lake_dir, &args);
    assert_eq!(code, 0, "{json}");
    let s = statuses(&json);
    assert_eq!(s[3], ("train".into(), "done".into()), "{json}");
    assert!(s[..3].iter().all(|(_, st)| st == "up_to_date"), "{json}");

    // A corrupt drop is bad input: exit 1, nothing after append runs without --keep-going.
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad = bad_dir.join("2011-05-02.csv.lzo");
    let mut bytes = std::fs::read(&days[0]).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    std::fs::write(&bad, bytes).unwrap();
    let (code, json) = run_json(&lake_dir, &[bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["error"]["bad_input"], true, "{json}");
    assert_eq!(statuses(&json)[1].1, "skipped", "{json}");
}
