//! Gold in other engines, as their users open it: PySpark through the symlink manifests (no
//! delta-spark), pyarrow through the manifests on S3, DuckDB's delta extension and polars
//! through the Delta log at the latest and at an older version; `lake check` on the protocol
//! every engine reads; `berserkr query` and `lake register`.
//!
//! The lake is the real data shipped in the repo, built in two steps so the gold partitions are
//! replaced (the files of the first step stay on disk, no longer in the snapshot), then gold is
//! compacted (more such files): an engine reading a directory instead of the snapshot gives other
//! answers, which the tests check too, so they prove the stale files are left out.

mod common;

use std::path::{Path, PathBuf};

use common::s3;
use common::*;
use serde_json::Value;

const GOLD: &str = "gold.customer_item_features";
/// A customer of the real data with purchases before every cutoff used here.
const CUSTOMER: &str = "17850";

/// The first `n` real drops (by date), then the next `m`.
fn real_drops(n: usize, m: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let all = common::real_drops();
    (all[..n].to_vec(), all[n..n + m].to_vec())
}

/// A lake at `url` (with `env` reaching it), the CLI run in `dir`.
struct Lake {
    url: String,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Lake {
    fn cli(&self) -> std::process::Command {
        let mut c = berserkr();
        c.arg("--lake")
            .arg(&self.url)
            .current_dir(&self.dir)
            .envs(self.env.iter().cloned());
        c
    }

    /// Runs `berserkr ARGS`, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "berserkr {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// `berserkr query SQL --format json`, one value per row.
    fn query(&self, sql: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["query", sql, "--format", "json"];
        args.extend_from_slice(extra);
        self.ok(&args)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every table's latest version.
    fn versions(&self) -> Vec<(String, u64)> {
        self.json(&["lake", "status", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["table"].as_str().unwrap().to_string(),
                    t["version"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// Builds the two-step lake: the first 100 real drops with gold at one cutoff, then 20 more
/// drops with gold rebuilt at that cutoff and a second one (the first cutoff's files replaced),
/// then gold compacted. Returns each table's version after the first step.
fn build(lake: &Lake, drops_dir: &Path) -> Vec<(String, u64)> {
    let (first, second) = real_drops(100, 20);
    let copy = |files: &[PathBuf], sub: &str| -> String {
        let d = drops_dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        for f in files {
            std::fs::copy(f, d.join(f.file_name().unwrap())).unwrap();
        }
        d.to_string_lossy().into_owned()
    };
    lake.ok(&["lake", "init"]);
    lake.ok(&["lake", "append", &copy(&first, "a")]);
    lake.ok(&["lake", "refresh", "all", "--cutoff", "2011-01-01"]);
    let before = lake.versions();
    lake.ok(&["lake", "append", &copy(&second, "b")]);
    lake.ok(&[
        "lake",
        "refresh",
        "all",
        "--cutoff",
        "2011-01-01",
        "--cutoff",
        "2011-01-15",
    ]);
    lake.ok(&[
        "lake",
        "optimize",
        "--table",
        GOLD,
        "--target-size",
        "64MiB",
    ]);
    before
}

/// Gold's answers from berserkr itself: per cutoff (rows, customers, positives, purchases,
/// revenue), and the customer's top items at the latest cutoff.
fn berserkr_answers(lake: &Lake) -> (Vec<Value>, Vec<Value>) {
    let per = lake.query(
        &format!(
            "SELECT cutoff, count(*) AS rows, count(DISTINCT CustomerID) AS customers, \
             sum(label) AS positives, sum(n_purchases) AS purchases, \
             round(sum(total_revenue), 2) AS revenue FROM {GOLD} GROUP BY cutoff ORDER BY cutoff"
        ),
        &[],
    );
    let top = lake.query(
        &format!(
            "SELECT StockCode, n_purchases FROM {GOLD} WHERE CustomerID = {CUSTOMER} \
             AND cutoff = (SELECT max(cutoff) FROM {GOLD}) \
             ORDER BY n_purchases DESC, StockCode LIMIT 10"
        ),
        &[],
    );
    let per = per
        .iter()
        .map(|r| {
            serde_json::json!([
                r["cutoff"],
                r["rows"],
                r["customers"],
                r["positives"],
                r["purchases"],
                r["revenue"]
            ])
        })
        .collect();
    let top = top
        .iter()
        .map(|r| serde_json::json!([r["StockCode"], r["n_purchases"]]))
        .collect();
    (per, top)
}

/// Equal answers: the same rows, revenue within a cent (engines sum doubles in other orders).
fn assert_same_answers(engine: &str, theirs: &Value, ours: &(Vec<Value>, Vec<Value>)) {
    let per = theirs["per_cutoff"].as_array().unwrap();
    assert_eq!(
        per.len(),
        ours.0.len(),
        "{engine}: cutoffs {per:?} vs {:?}",
        ours.0
    );
    for (a, b) in per.iter().zip(&ours.0) {
        for i in 0..5 {
            assert_eq!(a[i], b[i], "{engine}: {a} vs ours {b}");
        }
        let (x, y) = (a[5].as_f64().unwrap(), b[5].as_f64().unwrap());
        assert!((x - y).abs() <= 0.011, "{engine}: revenue {x} vs ours {y}");
    }
    assert_eq!(
        theirs["top"].as_array().unwrap(),
        &ours.1,
        "{engine}: top items of {CUSTOMER}"
    );
    assert!(
        !ours.1.is_empty(),
        "the customer has items at the latest cutoff"
    );
}

fn file_set(v: &Value) -> Vec<String> {
    let mut f: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let s = x.as_str().unwrap();
            s.strip_prefix("file://").unwrap_or(s).to_string()
        })
        .collect();
    f.sort();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_reads_gold_through_the_manifests_and_only_the_snapshots_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        url: dir.path().join("lake").to_string_lossy().into_owned(),
        dir: dir.path().to_path_buf(),
        env: Vec::new(),
    };
    build(&lake, &dir.path().join("drops"));
    let check = lake.json(&["lake", "check", "--json"]);
    let gold_dir = dir.path().join("lake/gold/customer_item_features");
    let out = run_python(&[
        repo().join("tests/tools/engines.py").as_os_str(),
        "spark-manifest".as_ref(),
        gold_dir.as_os_str(),
        CUSTOMER.as_ref(),
    ]);
    let spark: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    let snapshot: Value = serde_json::from_str(&run_python(&[
        repo().join("tests/tools/engines.py").as_os_str(),
        "snapshot".as_ref(),
        gold_dir.as_os_str(),
    ]))
    .unwrap();
    // The manifests list the snapshot's files, and those are the files Spark read.
    let files = file_set(&snapshot["files"]);
    assert!(files.len() >= 2, "{files:?}");
    assert_eq!(file_set(&spark["listed"]), files);
    assert_eq!(file_set(&spark["read"]), files, "Spark read other files");
    // Spark's answers are berserkr's.
    let ours = berserkr_answers(&lake);
    assert_same_answers("PySpark through the manifests", &spark["answers"], &ours);
    // A directory read takes the replaced and compacted files too, and answers otherwise: the
    // manifests are what keeps them out.
    assert!(
        file_set(&spark["plain_files"]).len() > files.len(),
        "the lake has stale files"
    );
    assert_ne!(
        spark["plain_answers"]["per_cutoff"],
        spark["answers"]["per_cutoff"]
    );
    // Every table passes the check, gold with its manifests.
    for t in check["tables"].as_array().unwrap() {
        assert!(t["problems"].as_array().unwrap().is_empty(), "{t}");
    }
    let gold = &check["tables"].as_array().unwrap()[..]
        .iter()
        .find(|t| t["table"] == GOLD)
        .unwrap()
        .clone();
    assert_eq!(gold["manifests"], true);
    assert_eq!(gold["reader_features"], serde_json::json!(["timestampNtz"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_and_polars_read_every_table_now_and_at_an_older_version() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        url: dir.path().join("lake").to_string_lossy().into_owned(),
        dir: dir.path().to_path_buf(),
        env: Vec::new(),
    };
    let before = build(&lake, &dir.path().join("drops"));
    let latest = lake.versions();
    let mut spec = Vec::new();
    for ((table, old), (_, new)) in before.iter().zip(&latest) {
        let versions: std::collections::BTreeSet<u64> = [*old, *new].into();
        for version in versions {
            let registered = lake.json(&[
                "lake",
                "register",
                "--engine",
                "duckdb",
                "--table",
                table,
                "--version",
                &version.to_string(),
                "--json",
            ]);
            let rows = dir.path().join(format!("{table}@{version}.json"));
            lake.ok(&[
                "query",
                &format!("SELECT * FROM {table}"),
                "--version",
                &format!("{table}={version}"),
                "--format",
                "json",
                "--out",
                rows.to_str().unwrap(),
            ]);
            let id: berserkr::TableId = table.parse().unwrap();
            let types: serde_json::Map<String, Value> = berserkr::Catalog::embedded()
                .unwrap()
                .table(&id)
                .unwrap()
                .columns
                .iter()
                .map(|c| {
                    let t = serde_json::to_value(c.ty.delta()).unwrap();
                    (c.name.clone(), t)
                })
                .collect();
            spec.push(serde_json::json!({
                "table": table,
                "version": version,
                "path": dir.path().join("lake").join(id.path()),
                "duckdb_sql": registered[0]["statements"],
                "berserkr_json": rows,
                "types": types,
            }));
        }
    }
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = run_python(&[
        repo().join("tests/tools/engines.py").as_os_str(),
        "readers".as_ref(),
        spec_file.as_os_str(),
    ]);
    let report: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(report.as_object().unwrap().len(), spec.len());
    for (key, r) in report.as_object().unwrap() {
        assert_eq!(r["duckdb"], r["berserkr"], "{key}: DuckDB reads otherwise");
        assert_eq!(r["polars"], r["berserkr"], "{key}: polars reads otherwise");
    }
    // Not vacuous: the tables hold rows, and older versions hold fewer.
    let rows = |k: &str| report[k]["berserkr"]["rows"].as_u64().unwrap();
    let (_, bronze_old) = &before[0];
    let (_, bronze_new) = &latest[0];
    assert!(
        rows(&format!("bronze.online_retail@{bronze_new}"))
            > rows(&format!("bronze.online_retail@{bronze_old}"))
    );
    let silver = latest
        .iter()
        .find(|(t, _)| t == "silver.transactions")
        .unwrap()
        .1;
    assert!(rows(&format!("silver.transactions@{silver}")) > 50_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_on_s3_list_the_snapshot_and_readers_of_them_agree() {
    let server = s3::server();
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        url: server.lake_url("engines"),
        dir: dir.path().to_path_buf(),
        env: server.env(),
    };
    build(&lake, &dir.path().join("drops"));
    let table_url = format!("{}gold/customer_item_features", lake.url);
    let tool = |args: &[&str]| -> Value {
        let mut cmd = std::process::Command::new(python());
        cmd.arg(repo().join("tests/tools/engines.py"))
            .args(args)
            .envs(server.env());
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap()
    };
    let endpoint = server.endpoint();
    let snapshot = tool(&["snapshot", &table_url, &endpoint]);
    let through = tool(&["s3-manifest", &endpoint, &table_url, CUSTOMER]);
    assert_eq!(file_set(&through["listed"]), file_set(&snapshot["files"]));
    assert!(
        file_set(&through["listed"])
            .iter()
            .all(|f| f.starts_with("s3://"))
    );
    assert_same_answers(
        "pyarrow through the S3 manifests",
        &through["answers"],
        &berserkr_answers(&lake),
    );
    let check = lake.json(&["lake", "check", "--json"]);
    for t in check["tables"].as_array().unwrap() {
        assert!(t["problems"].as_array().unwrap().is_empty(), "{t}");
    }
}

/// A table outside the promise fails `lake check` (exit 1), naming the table and the feature;
/// a stale manifest too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_naming_the_table_and_what_readers_lack() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        url: dir.path().join("lake").to_string_lossy().into_owned(),
        dir: dir.path().to_path_buf(),
        env: Vec::new(),
    };
    lake.ok(&["lake", "init"]);
    assert!(
        lake.json(&["lake", "check", "--json"])["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["problems"].as_array().unwrap().is_empty())
    );
    // Another writer turns deletion vectors on for silver.
    let table = deltalake::open_table(
        url::Url::from_directory_path(dir.path().join("lake/silver/transactions")).unwrap(),
    )
    .await
    .unwrap();
    table
        .set_tbl_properties()
        .with_properties(
            [(
                "delta.enableDeletionVectors".to_string(),
                "true".to_string(),
            )]
            .into(),
        )
        .await
        .unwrap();
    // And a manifest of gold goes stale: a partition that does not exist.
    let stale = dir.path().join(
        "lake/gold/customer_item_features/_symlink_format_manifest/cutoff=2011-01-01 00%3A00%3A00",
    );
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("manifest"), "file:///nowhere/part-0.parquet\n").unwrap();
    let out = lake.cli().args(["lake", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("silver.transactions") && text.contains("FAILS"),
        "{text}"
    );
    let report: Value = serde_json::from_slice(
        &lake
            .cli()
            .args(["lake", "check", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let problems = |t: &str| -> Vec<String> {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["table"] == t)
            .unwrap()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["feature"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        problems("silver.transactions")
            .iter()
            .any(|p| p.contains("deletionVectors") || p.contains("delta.enableDeletionVectors")),
        "{report}"
    );
    assert!(
        problems(GOLD)
            .iter()
            .any(|p| p.starts_with("manifest cutoff=2011-01-01")),
        "{report}"
    );
    // `lake manifest` repairs the manifests.
    lake.ok(&["lake", "manifest"]);
    let after: Value = lake
        .cli()
        .args(["lake", "check", "--json", "--table", GOLD])
        .output()
        .map(|o| serde_json::from_slice(&o.stdout).unwrap())
        .unwrap();
    assert!(
        after["tables"][0]["problems"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{after}"
    );
}

/// `berserkr query`: by layered name, time travel per table, read-only, --explain shows the
/// files a partition filter skips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_reads_tables_by_name_and_version_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        url: dir.path().join("lake").to_string_lossy().into_owned(),
        dir: dir.path().to_path_buf(),
        env: Vec::new(),
    };
    let before = build(&lake, &dir.path().join("drops"));
    let gold_old = before.iter().find(|(t, _)| t == GOLD).unwrap().1;
    let cutoffs = |extra: &[&str]| -> Vec<String> {
        lake.query(
            &format!("SELECT DISTINCT cutoff FROM {GOLD} ORDER BY cutoff"),
            extra,
        )
        .iter()
        .map(|r| r["cutoff"].as_str().unwrap().to_string())
        .collect()
    };
    assert_eq!(cutoffs(&[]), ["2011-01-01 00:00:00", "2011-01-15 00:00:00"]);
    let old = format!("{GOLD}={gold_old}");
    assert_eq!(cutoffs(&["--version", &old]), ["2011-01-01 00:00:00"]);
    // A join across layers, CSV by default off a terminal.
    let csv = lake.ok(&[
        "query",
        "SELECT count(*) AS n FROM silver.transactions s JOIN gold.customer_item_features g \
         ON s.CustomerID = g.CustomerID AND s.StockCode = g.StockCode WHERE g.cutoff = '2011-01-01 00:00:00' \
         AND s.InvoiceDate < TIMESTAMP '2011-01-01 00:00:00'",
    ]);
    let n: u64 = csv.lines().nth(1).unwrap().parse().unwrap();
    assert!(n > 10_000, "{csv}");
    // Writes are refused, nothing changes.
    let versions = lake.versions();
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO gold.customer_item_features SELECT * FROM gold.customer_item_features",
        "COPY (SELECT 1) TO '/tmp/berserkr-should-not-exist.csv'",
        "SET datafusion.execution.batch_size = 1",
        "DROP TABLE gold.customer_item_features",
    ] {
        let out = lake.cli().args(["query", sql]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{sql}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("read-only") || err.contains("SQL"),
            "{sql}: {err}"
        );
    }
    assert_eq!(lake.versions(), versions);
    assert!(!Path::new("/tmp/berserkr-should-not-exist.csv").exists());
    // Unknown tables and versions are named.
    let out = lake
        .cli()
        .args(["query", "SELECT * FROM gold.nope"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown table gold.nope"));
    let out = lake
        .cli()
        .args([
            "query",
            &format!("SELECT 1 FROM {GOLD}"),
            "--version",
            &format!("{GOLD}=999"),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no version 999"));
    // --explain: the partition filter prunes the other cutoff's files.
    let explain = lake.ok(&[
        "query",
        "--explain",
        &format!("SELECT sum(n_purchases) FROM {GOLD} WHERE cutoff = '2011-01-15 00:00:00'"),
    ]);
    let line = explain.lines().find(|l| l.starts_with(GOLD)).unwrap();
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    // "gold...: version V, S of T files scanned"
    let (scanned, total) = (nums[nums.len() - 2], nums[nums.len() - 1]);
    assert!(scanned >= 1 && scanned < total, "{explain}");
    // Parquet output is a Parquet file.
    let out = dir.path().join("gold.parquet");
    lake.ok(&[
        "query",
        &format!("SELECT * FROM {GOLD}"),
        "--format",
        "parquet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(&std::fs::read(&out).unwrap()[..4], b"PAR1");
}

/// `lake register` prints each engine's statements; the Hive/Athena DDL maps every column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_prints_each_engines_statements() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        url: "s3://bucket/retail".into(),
        dir: dir.path().to_path_buf(),
        env: Vec::new(),
    };
    // Statements need the tables' metadata: a local lake, registered under an S3 URL.
    let local = Lake {
        url: dir.path().join("lake").to_string_lossy().into_owned(),
        ..lake
    };
    local.ok(&["lake", "init"]);
    let reg = |engine: &str, extra: &[&str]| -> String {
        let mut args = vec![
            "lake",
            "register",
            "--engine",
            engine,
            "--lake-url",
            "s3://bucket/retail",
        ];
        args.extend_from_slice(extra);
        local.ok(&args)
    };
    let spark = reg("spark", &["--table", GOLD]);
    assert!(spark.contains(
        "CREATE TABLE IF NOT EXISTS gold.customer_item_features USING DELTA LOCATION 's3a://bucket/retail/gold/customer_item_features';"
    ), "{spark}");
    let spark_v = reg("spark", &["--table", GOLD, "--version", "1"]);
    assert!(spark_v.contains("VERSION AS OF 1"), "{spark_v}");
    let trino = reg("trino", &[]);
    assert!(trino.contains(
        "CALL delta.system.register_table(schema_name => 'gold', table_name => 'customer_item_features', table_location => 's3://bucket/retail/gold/customer_item_features');"
    ), "{trino}");
    assert_eq!(
        trino.matches("register_table").count(),
        berserkr::Catalog::embedded().unwrap().tables().count(),
        "every table: {trino}"
    );
    let athena = reg("athena", &["--table", GOLD]);
    assert!(
        athena.contains("PARTITIONED BY (`cutoff` string)"),
        "{athena}"
    );
    assert!(athena.contains("`first_purchase` timestamp"), "{athena}");
    assert!(athena.contains("`CustomerID` bigint"), "{athena}");
    assert!(athena.contains("SymlinkTextInputFormat"), "{athena}");
    assert!(
        athena.contains(
            "LOCATION 's3://bucket/retail/gold/customer_item_features/_symlink_format_manifest/';"
        ),
        "{athena}"
    );
    assert!(athena.contains("MSCK REPAIR TABLE gold.customer_item_features;"));
    // Manifests hold the latest snapshot only: no time travel for Hive and Athena.
    let out = local
        .cli()
        .args([
            "lake",
            "register",
            "--engine",
            "hive",
            "--table",
            GOLD,
            "--version",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let hive_bronze = reg("hive", &["--table", "bronze.online_retail"]);
    assert!(
        hive_bronze.contains("does not keep its manifests current"),
        "{hive_bronze}"
    );
}
