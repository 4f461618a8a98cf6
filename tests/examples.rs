//! examples/: the cron wrapper and the Airflow DAG against a fake `berserkr` (they drive `lake
//! run` by its exit codes and `--json`, so they are checked without it), and the Spark example's
//! planning (which bronze files, cutoffs, application transaction and version it would commit
//! under, read from the Delta log in Python) against a lake berserkr built, with the SQL it would
//! run checked row for row against berserkr's tables by PySpark without Delta
//! (`tools/examples_check.py`, `examples/spark/berserkr_spark.py`).

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn tools() -> PathBuf {
    repo().join("tests/tools")
}

/// The cron wrapper retries exit 2 (with doubling delays) and nothing else, stops at once on
/// exit 1, holds its lock, logs with timestamps and keeps the JSON summary.
#[test]
fn cron_wrapper_retries_on_exit_2_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_python(&[
        tools().join("examples_check.py").as_os_str(),
        OsStr::new("cron"),
        repo().as_os_str(),
        dir.path().as_os_str(),
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["retried_then_ok"], 3, "{out}");
    assert_eq!(v["gave_up_after"], 3, "{out}");
}

/// The DAG loads in Airflow's DagBag (its own venv: `make airflow-venv`) with the designed task
/// graph, schedule and retries, and its callables turn exit 0 / 1 / 2 of a fake `berserkr` into
/// a summary, a failure without retry, and a retried failure.
#[test]
fn airflow_dag_loads_and_follows_the_exit_codes() {
    let python = std::env::var("BERSERKR_TEST_AIRFLOW_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/berserkr-airflow-venv/bin/python",
            std::env::var("HOME").unwrap()
        )
    });
    assert!(
        Path::new(&python).exists(),
        "{python} is missing: run `make airflow-venv` (or set BERSERKR_TEST_AIRFLOW_PYTHON)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .arg(tools().join("examples_check.py"))
        .args([
            "airflow".as_ref(),
            repo().as_os_str(),
            dir.path().as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(v["tasks"], 4, "{stdout}");
}

/// A lake in a temporary folder, driven through the CLI.
struct Lake {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Lake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lake");
        let lake = Self { _dir: dir, path };
        lake.ok(&["lake", "init"]);
        lake
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = berserkr()
            .arg("--lake")
            .arg(&self.path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berserkr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn append(&self, drops: &[PathBuf]) -> Value {
        let mut args = vec!["lake", "append", "--json"];
        args.extend(drops.iter().map(|p| p.to_str().unwrap()));
        self.json(&args)
    }

    fn version(&self, table: &str) -> u64 {
        self.json(&["lake", "status", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap()["version"]
            .as_u64()
            .unwrap()
    }

    /// `berserkr_spark.py plan ARGS` on this lake.
    fn plan(&self, args: &[&str]) -> Value {
        let mut all: Vec<&OsStr> = vec![
            OsStr::new("examples/spark/berserkr_spark.py"),
            OsStr::new("plan"),
            OsStr::new("--lake"),
            self.path.as_os_str(),
        ];
        all.extend(args.iter().map(OsStr::new));
        let script = repo().join(all[0]);
        all[0] = script.as_os_str();
        serde_json::from_str(&run_python(&all)).unwrap()
    }

    /// Appends a commit holding only a commit info whose `userMetadata` is `user` to `table`:
    /// what a delta-spark write with the `userMetadata` option records beside its files.
    fn commit_user_metadata(&self, table: &str, user: &Value) {
        let log = self.path.join(table.replace('.', "/")).join("_delta_log");
        let next = self.version(table) + 1;
        let info = json!({"commitInfo": {"timestamp": 1_700_000_000_000u64,
            "operation": "WRITE", "userMetadata": user.to_string(),
            "engineInfo": "Apache-Spark/3.5.3 Delta-Lake/3.3.0"}});
        std::fs::write(log.join(format!("{next:020}.json")), format!("{info}\n")).unwrap();
    }
}

/// Rows in these Parquet files (their footers).
fn parquet_rows(files: &[Value]) -> u64 {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    files
        .iter()
        .map(|f| {
            let path = f.as_str().unwrap().trim_start_matches("file://");
            let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
            r.metadata().file_metadata().num_rows() as u64
        })
        .sum()
}

/// The Spark example plans exactly what berserkr does and records: the bronze files a silver
/// refresh reads (app id and version included), gold's cutoffs, the feature definition digest and
/// when gold is up to date; delta-spark's skip of a txn version already recorded is planned
/// around; a gold record in `userMetadata` (what delta-spark can write) is read by berserkr and
/// by the planner alike. Then PySpark runs the example's SQL and gets berserkr's rows.
#[test]
fn spark_example_plans_what_berserkr_does() {
    let drops = real_drops();
    let lake = Lake::new();
    lake.append(&drops[..110]);
    // Rows two drop rules send to the quarantine (a quantity and a date that do not parse), one
    // a fail rule lets through, and a cancellation.
    let crafted = write_drop(
        lake._dir.path(),
        "crafted.csv.lzo",
        format!(
            "{HEADER}900001,X1,BAD QTY,x,2011-02-01 10:00:00,1.0,17850.0,UK\n\
             900002,X2,BAD DATE,3,not a date,1.0,17850.0,UK\n\
             C900003,X3,CANCELLED,-1,2011-02-01 10:00:00,1.0,17850.0,UK\n"
        )
        .as_bytes(),
    );
    lake.append(&[crafted]);
    let bronze = "bronze.online_retail";

    // Silver, never refreshed: every bronze file, one level from nothing.
    let p = &lake.plan(&["--only", "silver"])["silver"];
    assert_eq!(p["app_id"], "berserkr.refresh.bronze.online_retail");
    assert_eq!(p["txn_version"], lake.version(bronze));
    let levels = p["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 1, "{p}");
    assert!(levels[0]["from_source_version"].is_null());
    assert_eq!(levels[0]["outputs"].as_array().unwrap().len(), 3, "{p}");
    let silver = lake.json(&["lake", "refresh", "silver", "--json"]);
    for t in silver["silver"]["tables"].as_array().unwrap() {
        assert_eq!(t["to_source_version"], p["txn_version"], "{silver}");
    }
    let p = &lake.plan(&["--only", "silver"])["silver"];
    assert!(
        p["levels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["up_to_date"] == true && l["files"].as_array().unwrap().is_empty()),
        "{p}"
    );

    // Three more drops: the planned files hold exactly their rows.
    let appended = lake.append(&drops[110..113]);
    let p = &lake.plan(&["--only", "silver"])["silver"];
    let level = &p["levels"][0];
    assert_eq!(
        level["from_source_version"],
        silver["silver"]["tables"][0]["to_source_version"]
    );
    let files = level["files"].as_array().unwrap();
    assert_eq!(
        parquet_rows(files),
        appended["rows"].as_u64().unwrap(),
        "{appended}"
    );
    lake.ok(&["lake", "refresh", "silver"]);

    // Gold: the planner's cutoffs and definition are berserkr's; done means done.
    let gold = &lake.json(&["lake", "refresh", "gold", "--json"])["gold"];
    let p = &lake.plan(&["--only", "gold"])["gold"];
    assert_eq!(p["app_id"], "berserkr.refresh.silver.transactions");
    assert_eq!(p["source_version"], gold["source_version"]);
    assert_eq!(p["gold"]["cutoffs"], gold["cutoffs"], "{p}");
    assert_eq!(p["scoring"]["cutoff"], gold["scoring"]["cutoff"], "{p}");
    assert!(
        p["gold"]["up_to_date"] == true && p["scoring"]["up_to_date"] == true,
        "{p}"
    );
    // Monthly cutoffs: to do, and gold already records this silver version, so the write goes
    // without txn options (delta-spark would skip it as already committed).
    let p = &lake.plan(&["--only", "gold", "--cutoffs", "monthly"])["gold"];
    assert!(
        p["gold"]["up_to_date"] == false && p["gold"]["txn"].is_null(),
        "{p}"
    );
    let monthly =
        &lake.json(&["lake", "refresh", "gold", "--cutoffs", "monthly", "--json"])["gold"];
    assert_eq!(p["gold"]["cutoffs"], monthly["cutoffs"], "{p}");
    assert!(
        !monthly["cutoffs"].as_array().unwrap().is_empty(),
        "{monthly}"
    );
    let p = &lake.plan(&["--only", "gold", "--cutoffs", "monthly"])["gold"];
    assert!(p["gold"]["up_to_date"] == true, "{p}");

    // A Spark commit recording another definition for one cutoff in its userMetadata: both
    // berserkr and the planner see that cutoff as stale, berserkr recomputes it.
    let first = monthly["cutoffs"][0].clone();
    let record = json!({"berserkr.gold": {"cutoffs": [first], "definition": "0123456789abcdef"}});
    lake.commit_user_metadata("gold.customer_item_features", &record);
    let p = &lake.plan(&["--only", "gold", "--cutoffs", "monthly"])["gold"];
    assert!(p["gold"]["up_to_date"] == false, "{p}");
    let redone = &lake.json(&["lake", "refresh", "gold", "--cutoffs", "monthly", "--json"])["gold"];
    assert!(
        redone["version"].is_u64(),
        "berserkr ignored the userMetadata record: {redone}"
    );
    let p = &lake.plan(&["--only", "gold", "--cutoffs", "monthly"])["gold"];
    assert!(p["gold"]["up_to_date"] == true, "{p}");

    // New silver: gold is to be redone under the new silver version.
    lake.append(&drops[113..115]);
    lake.ok(&["lake", "refresh", "silver"]);
    let silver_version = lake.version("silver.transactions");
    let p = &lake.plan(&["--only", "gold"])["gold"];
    let txn =
        json!({"txnAppId": "berserkr.refresh.silver.transactions", "txnVersion": silver_version});
    assert_eq!(p["gold"]["txn"], txn, "{p}");
    assert_eq!(p["scoring"]["txn"], txn, "{p}");
    let gold = &lake.json(&["lake", "refresh", "gold", "--json"])["gold"];

    // The SQL the example runs, through PySpark without Delta, against berserkr's rows.
    let out = run_python(&[
        tools().join("examples_check.py").as_os_str(),
        OsStr::new("spark-sql"),
        repo().as_os_str(),
        lake.path.as_os_str(),
        OsStr::new(gold["cutoffs"][0].as_str().unwrap()),
    ]);
    let v: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    for (table, [only_spark, only_ours, rows]) in v
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, c)| (t, [0, 1, 2].map(|i| c[i].as_u64().unwrap())))
    {
        assert!(
            only_spark == 0 && only_ours == 0,
            "{table}: the Spark example's SQL disagrees with berserkr: {out}"
        );
        let min = if table.ends_with("quarantine") {
            2
        } else {
            100
        };
        assert!(rows >= min, "{table}: {out}");
    }
    assert_eq!(v.as_object().unwrap().len(), 4, "{out}");
}
