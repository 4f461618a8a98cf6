//! The same scenarios on a local folder (file://) and on S3 (moto's server on 127.0.0.1):
//! appends from object-store URLs, concurrent writers, optimize, vacuum, restore, checkpoints,
//! history and status; and that credentials never show.

mod common;

use std::path::Path;

use berserkr::Lakehouse;
use berserkr::ops::append::DropStatus;
use common::s3::{self, DROPS_BUCKET, KEY_ID, SECRET};
use common::*;

/// Where a test's lake lives.
enum Backend {
    Local,
    S3,
}

/// A test's lake, its drops folder, and (on S3) the settings to reach it.
struct Fixture {
    backend: Backend,
    dir: tempfile::TempDir,
    url: String,
    lake: Lakehouse,
}

impl Fixture {
    async fn new(backend: Backend, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (url, lake) = match backend {
            Backend::Local => {
                let url = url::Url::from_directory_path(dir.path().join("lake"))
                    .unwrap()
                    .to_string();
                (url.clone(), Lakehouse::open(&url).unwrap())
            }
            Backend::S3 => {
                let server = s3::server();
                let url = server.lake_url(name);
                let lake = Lakehouse::open(&url)
                    .unwrap()
                    .with_storage_options(server.options());
                (url, lake)
            }
        };
        lake.init().await.unwrap();
        std::fs::create_dir_all(dir.path().join("drops")).unwrap();
        Self {
            backend,
            dir,
            url,
            lake,
        }
    }

    fn drops(&self) -> std::path::PathBuf {
        self.dir.path().join("drops")
    }

    /// `berserkr` with this lake (and, on S3, the AWS_* variables reaching it).
    fn cli(&self) -> std::process::Command {
        let mut c = berserkr();
        c.arg("--lake").arg(&self.url).current_dir(self.dir.path());
        if let Backend::S3 = self.backend {
            c.envs(s3::server().env());
        }
        c
    }

    async fn count(&self, t: &str) -> u64 {
        let out = query(&self.lake, t, "SELECT count(*) AS n FROM t").await;
        first_row(&out)[0].parse().unwrap()
    }
}

/// Runs a command that must succeed (its standard error shown when it does not).
fn ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must succeed and print JSON.
fn ok_json(cmd: &mut std::process::Command) -> serde_json::Value {
    serde_json::from_slice(&ok(cmd).stdout).unwrap()
}

/// Drop `k`: `rows` purchase lines with invoice numbers unique to the drop.
fn drop_text(k: usize, rows: usize) -> String {
    let mut s = HEADER.to_string();
    for i in 0..rows {
        s.push_str(&format!(
            "{},{},ITEM {},{},2011-{:02}-{:02} 10:{:02}:00,{}.25,{}.0,United Kingdom\n",
            500000 + k * 1000 + i,
            20000 + (k * 7 + i) % 50,
            (k * 7 + i) % 50,
            1 + i % 5,
            1 + k % 12,
            1 + i % 28,
            i % 60,
            1 + i % 9,
            12000 + (k * 13 + i) % 40
        ));
    }
    s
}

fn write_drops(dir: &Path, n: usize, rows: usize) -> Vec<std::path::PathBuf> {
    (0..n)
        .map(|k| {
            write_drop(
                dir,
                &format!("d{k:03}.csv.lzo"),
                drop_text(k, rows).as_bytes(),
            )
        })
        .collect()
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                super::$name(super::Backend::Local).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name(super::Backend::S3).await
            }
        }
    )*};
}

on_both!(
    append_refresh_history_status,
    drops_from_object_store_urls,
    concurrent_writers_land_every_row_once,
    optimize_and_zorder_preserve_results,
    vacuum_refuses_short_retention_and_keeps_pins,
    restore_rolls_back_rows_and_markers,
    checkpoints_are_written_and_read_back,
    auto_compaction_after_appends,
);

async fn append_refresh_history_status(backend: Backend) {
    let f = Fixture::new(backend, "basic").await;
    write_drops(&f.drops(), 3, 20);
    let r = f.lake.append([f.drops().to_str().unwrap()]).await.unwrap();
    assert_eq!((r.added, r.rows), (3, 60));
    let r = f.lake.append([f.drops().to_str().unwrap()]).await.unwrap();
    assert_eq!((r.added, r.skipped), (0, 3));
    let silver = f.lake.refresh_silver().await.unwrap();
    assert!(silver.tables.iter().any(|t| t.rows == 60), "{silver:?}");
    assert_eq!(f.count("silver.transactions").await, 60);

    let status = f.lake.status().await.unwrap();
    let bronze = status
        .iter()
        .find(|t| t.table == "bronze.online_retail")
        .unwrap();
    assert_eq!(bronze.version, Some(r.version_after));
    assert_eq!(bronze.files.rows, Some(60));
    assert_eq!(bronze.files.files, 3);
    assert_eq!(bronze.files.small_files, 3);
    assert!(bronze.url.starts_with(&f.url), "{}", bronze.url);

    let history = f.lake.history("bronze.online_retail").await.unwrap();
    assert_eq!(history.len() as u64, r.version_after + 1);
    assert_eq!(history[0].version, r.version_after);
    assert_eq!(history[0].operation, "WRITE");
    assert!(history[0].berserkr.contains_key("berserkr.drop"));
    assert_eq!(history.last().unwrap().operation, "CREATE TABLE");
    let limited = f
        .lake
        .history("bronze.online_retail")
        .with_limit(Some(2))
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);

    // The CLI shows the same.
    let out = ok(f.cli().args(["lake", "status"]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bronze.online_retail"), "{text}");
    let v = ok_json(f.cli().args([
        "lake",
        "history",
        "--table",
        "silver.transactions",
        "--json",
    ]));
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["operation"] == "WRITE")
    );
}

async fn drops_from_object_store_urls(backend: Backend) {
    let f = Fixture::new(backend, "urls").await;
    let texts: Vec<(String, String)> = ["2011-11-30", "2011-12-01", "2011-12-02"]
        .iter()
        .enumerate()
        .map(|(k, d)| (format!("{d}.csv.lzo"), drop_text(k, 10)))
        .collect();
    let pattern = match f.backend {
        Backend::Local => {
            for (name, text) in &texts {
                write_drop(&f.drops(), name, text.as_bytes());
            }
            format!(
                "{}2011-12-*.csv.lzo",
                url::Url::from_directory_path(f.drops()).unwrap()
            )
        }
        Backend::S3 => {
            let server = s3::server();
            let prefix = format!("s3://{DROPS_BUCKET}/{}", uuid::Uuid::new_v4().simple());
            for (name, text) in &texts {
                server
                    .put(
                        &format!("{prefix}/{name}"),
                        lzop_compress(&[], text.as_bytes()),
                    )
                    .await;
            }
            // A larger drop that streams in several chunks.
            server
                .put(
                    &format!("{prefix}/2011-12-03.csv.lzo"),
                    lzop_compress(&[], drop_text(9, 40_000).as_bytes()),
                )
                .await;
            format!("{prefix}/2011-12-*.csv.lzo")
        }
    };
    let r = f.lake.append([pattern.as_str()]).await.unwrap();
    let expected_rows = match f.backend {
        Backend::Local => 20,
        Backend::S3 => 40_020,
    };
    assert_eq!(r.rows, expected_rows, "{r:?}");
    assert!(
        r.drops.iter().all(|d| d.file.contains("/2011-12-0")),
        "{r:?}"
    );
    let lines = query(
        &f.lake,
        "bronze.online_retail",
        "SELECT count(DISTINCT _source_file) AS files, max(_source_line) AS last FROM t",
    )
    .await;
    let want = match f.backend {
        Backend::Local => "| 2     | 11   |",
        Backend::S3 => "| 3     | 40001 |",
    };
    assert!(lines.contains(want), "{lines}");
    // Again through the CLI: every drop is already there.
    let v = ok_json(f.cli().args(["lake", "append", "--json", &pattern]));
    assert_eq!(v["added"], 0);
    // A key that is not there is an error naming it, and nothing is written.
    let missing = pattern.replace("2011-12-*", "2099-01-01");
    let before = version(&f.lake, "bronze.online_retail").await;
    let out = f.cli().args(["lake", "append", &missing]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2099-01-01"), "{err}");
    assert_eq!(version(&f.lake, "bronze.online_retail").await, before);
}

async fn concurrent_writers_land_every_row_once(backend: Backend) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 10;
    const ROWS: usize = 25;
    let f = Fixture::new(backend, "concurrent").await;
    let drops = write_drops(&f.drops(), 60, ROWS);
    // Writer w takes drops 7w .. 7w+9: neighbours share three drops (the same drop appended
    // twice at once), and writer 0 also takes drop 0 a second time under another name.
    let twin = f.drops().join("twin-of-d000.csv.lzo");
    std::fs::copy(&drops[0], &twin).unwrap();
    let mut children = Vec::new();
    for w in 0..WRITERS {
        let mut args: Vec<String> = (0..PER_WRITER)
            .map(|i| drops[7 * w + i].to_str().unwrap().to_string())
            .collect();
        if w == WRITERS - 1 {
            args[PER_WRITER - 1] = twin.to_str().unwrap().to_string();
        }
        children.push(
            f.cli()
                .args(["lake", "append", "--json"])
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let mut added = std::collections::BTreeSet::new();
    let mut attempts = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a writer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for d in v["drops"].as_array().unwrap() {
            attempts += 1;
            if d["status"] == "added" {
                assert!(
                    added.insert(d["sha256"].as_str().unwrap().to_string()),
                    "{d}"
                );
            }
        }
    }
    assert_eq!(attempts, WRITERS * PER_WRITER);
    let distinct = 7 * (WRITERS - 1) + PER_WRITER - 1; // drops 0..=57 but 58 replaced by the twin
    assert_eq!(
        added.len(),
        distinct,
        "every distinct drop added by exactly one writer"
    );
    // Every row exactly once.
    let dupes = query(
        &f.lake,
        "bronze.online_retail",
        "SELECT count(*) AS n, count(DISTINCT concat(_drop_sha256, ':', CAST(_source_line AS VARCHAR))) AS lines, count(DISTINCT \"InvoiceNo\") AS invoices FROM t",
    )
    .await;
    let n = (distinct * ROWS).to_string();
    assert_eq!(first_row(&dupes), [n.as_str(); 3], "{dupes}");
    // One commit per drop (after the migrations), none lost.
    let history = f.lake.history("bronze.online_retail").await.unwrap();
    assert_eq!(
        history.iter().filter(|e| e.operation == "WRITE").count(),
        distinct
    );
}

async fn optimize_and_zorder_preserve_results(backend: Backend) {
    let f = Fixture::new(backend, "optimize").await;
    write_drops(&f.drops(), 12, 30);
    f.lake.append([f.drops().to_str().unwrap()]).await.unwrap();
    f.lake.refresh_silver().await.unwrap();
    let all_bronze = "SELECT * EXCEPT (_ingested_at) FROM t ORDER BY _drop_sha256, _source_line";
    let all_silver = "SELECT * FROM t ORDER BY \"InvoiceNo\", \"StockCode\", \"InvoiceDate\", \"Quantity\", \"UnitPrice\"";
    let bronze_before = query(&f.lake, "bronze.online_retail", all_bronze).await;
    let one_customer =
        "SELECT \"InvoiceNo\", \"Revenue\" FROM t WHERE \"CustomerID\" = 12007 ORDER BY 1";

    let report = f
        .lake
        .optimize()
        .with_table(Some("bronze.online_retail".into()))
        .await
        .unwrap();
    let t = &report.tables[0];
    assert_eq!((t.before.files, t.after.files), (12, 1), "{t:?}");
    assert_eq!(t.before.rows, t.after.rows);
    assert_eq!(t.after.small_files, 0);
    assert!(t.version.is_some());
    assert_eq!(
        query(&f.lake, "bronze.online_retail", all_bronze).await,
        bronze_before
    );
    // Nothing left to do the second time: no new version.
    let again = f
        .lake
        .optimize()
        .with_table(Some("bronze.online_retail".into()))
        .await
        .unwrap();
    assert_eq!(again.tables[0].version, None);
    // Incremental silver reads on across the compaction (its files are not new rows).
    let late = write_drop(&f.drops(), "late.csv.lzo", drop_text(40, 30).as_bytes());
    f.lake.append([late.to_str().unwrap()]).await.unwrap();
    f.lake.refresh_silver().await.unwrap();
    assert_eq!(f.count("silver.transactions").await, 13 * 30);
    let silver_before = query(&f.lake, "silver.transactions", all_silver).await;
    let customer_before = query(&f.lake, "silver.transactions", one_customer).await;

    // Z-order silver by customer through the CLI, with a small target so several files remain.
    let v = ok_json(f.cli().args([
        "lake",
        "optimize",
        "--table",
        "silver.transactions",
        "--zorder",
        "CustomerID,StockCode",
        "--json",
    ]));
    assert_eq!(v["tables"][0]["zorder"][0], "CustomerID");
    assert_eq!(
        query(&f.lake, "silver.transactions", all_silver).await,
        silver_before
    );
    assert_eq!(
        query(&f.lake, "silver.transactions", one_customer).await,
        customer_before
    );
    // Unknown columns are refused before anything is written.
    let out = f
        .cli()
        .args([
            "lake",
            "optimize",
            "--table",
            "silver.transactions",
            "--zorder",
            "Nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nope"));
}

async fn vacuum_refuses_short_retention_and_keeps_pins(backend: Backend) {
    let f = Fixture::new(backend, "vacuum").await;
    write_drops(&f.drops(), 4, 10);
    f.lake.append([f.drops().to_str().unwrap()]).await.unwrap();
    let pinned = version(&f.lake, "bronze.online_retail").await;
    // A model trained on bronze at `pinned` (pins are what `berserkr train` writes).
    let pin =
        serde_json::json!({"model_id": "m1", "table": "bronze.online_retail", "version": pinned});
    let pin_url = format!("{}{}/m1.json", f.url, berserkr::lake::pins::PINS_PREFIX);
    match f.backend {
        Backend::Local => {
            let p = url::Url::parse(&pin_url).unwrap().to_file_path().unwrap();
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, pin.to_string()).unwrap();
        }
        Backend::S3 => {
            s3::server()
                .put(&pin_url, pin.to_string().into_bytes())
                .await
        }
    }
    assert_eq!(f.lake.pins().await.unwrap().len(), 1);
    // Compaction tombstones the four files.
    f.lake
        .optimize()
        .with_table(Some("bronze.online_retail".into()))
        .await
        .unwrap();

    // Under seven days: refused, by the library and the CLI (exit 2), nothing deleted.
    let e = f.lake.vacuum().with_retain_hours(1).await.unwrap_err();
    assert!(matches!(e, berserkr::Error::VacuumRefused { .. }), "{e}");
    let out = f
        .cli()
        .args(["lake", "vacuum", "--retain", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    // The default retention keeps everything (the files were removed seconds ago).
    let r = f.lake.vacuum().await.unwrap();
    assert!(r.tables.iter().all(|t| t.files.is_empty()), "{r:?}");

    // Forced to zero: a dry run lists, deletes nothing.
    let dry = f
        .lake
        .vacuum()
        .with_table(Some("bronze.online_retail".into()))
        .with_retain_hours(0)
        .with_force(true)
        .with_dry_run(true)
        .await
        .unwrap();
    assert!(
        dry.tables[0].files.is_empty(),
        "pinned files listed: {dry:?}"
    );
    assert_eq!(query_at(&f.lake, pinned).await, Ok(40));
    // Forced to zero with the pin: nothing of the pinned version goes.
    let r = f
        .lake
        .vacuum()
        .with_table(Some("bronze.online_retail".into()))
        .with_retain_hours(0)
        .with_force(true)
        .await
        .unwrap();
    assert!(r.tables[0].files.is_empty(), "{r:?}");
    assert_eq!(r.tables[0].pinned_versions, vec![pinned]);
    assert_eq!(
        query_at(&f.lake, pinned).await,
        Ok(40),
        "the pinned snapshot still reads"
    );
    // Without the pin, the four pre-compaction files go, through the CLI.
    let pin_path = |lake: &str| format!("{lake}{}/m1.json", berserkr::lake::pins::PINS_PREFIX);
    let (store, path) = berserkr::store::store_for(
        &url::Url::parse(&pin_path(&f.url)).unwrap(),
        f.lake.storage_options(),
    )
    .unwrap();
    deltalake::logstore::object_store::ObjectStoreExt::delete(&store, &path)
        .await
        .unwrap();
    let v = ok_json(f.cli().args([
        "lake",
        "vacuum",
        "--table",
        "bronze.online_retail",
        "--retain",
        "0",
        "--force",
        "--json",
    ]));
    assert_eq!(v["tables"][0]["files"].as_array().unwrap().len(), 4, "{v}");
    assert!(
        query_at(&f.lake, pinned).await.is_err(),
        "old files are gone"
    );
    // The current version reads everything.
    assert_eq!(f.count("bronze.online_retail").await, 40);
}

/// The cells of the first row of a pretty-printed table.
fn first_row(table: &str) -> Vec<&str> {
    table
        .lines()
        .nth(3)
        .unwrap_or_default()
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Rows of bronze at `v`, reading every file of that snapshot (an error when a file is gone).
async fn query_at(lake: &Lakehouse, v: u64) -> Result<u64, String> {
    use deltalake::datafusion::prelude::SessionContext;
    let t = lake
        .table_at(&id("bronze.online_retail"), &berserkr::lake::At::Version(v))
        .await
        .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("t", t.table_provider().await.unwrap())
        .unwrap();
    // Read a column so every file is opened (a bare count could come from statistics).
    let batches = ctx
        .sql("SELECT sum(length(\"InvoiceNo\")) / 6 AS n FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let col = batches[0].column(0);
    let s = deltalake::arrow::util::display::array_value_to_string(col, 0).unwrap();
    Ok(s.parse().unwrap())
}

async fn restore_rolls_back_rows_and_markers(backend: Backend) {
    let f = Fixture::new(backend, "restore").await;
    let drops = write_drops(&f.drops(), 3, 10);
    f.lake
        .append([drops[0].to_str().unwrap(), drops[1].to_str().unwrap()])
        .await
        .unwrap();
    let before_third = version(&f.lake, "bronze.online_retail").await;
    f.lake.refresh_silver().await.unwrap();
    let silver_two = version(&f.lake, "silver.transactions").await;
    f.lake.append([drops[2].to_str().unwrap()]).await.unwrap();
    f.lake.refresh_silver().await.unwrap();
    assert_eq!(f.count("silver.transactions").await, 30);

    // Silver back to two drops; the next refresh reads the third again.
    let r = f
        .lake
        .restore("silver.transactions", silver_two)
        .await
        .unwrap();
    assert_eq!(r.files_removed, 1);
    assert_eq!(r.transactions.len(), 1, "{r:?}");
    assert_eq!(f.count("silver.transactions").await, 20);
    f.lake.refresh_silver().await.unwrap();
    assert_eq!(f.count("silver.transactions").await, 30);

    // Bronze back to before the third drop, through the CLI: the drop can be appended again.
    let out = ok(f.cli().args([
        "lake",
        "restore",
        "--table",
        "bronze.online_retail",
        "--version",
        &before_third.to_string(),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("silver.transactions"),
        "downstream named: {text}"
    );
    assert_eq!(f.count("bronze.online_retail").await, 20);
    let again = f.lake.append([drops[2].to_str().unwrap()]).await.unwrap();
    assert_eq!(again.drops[0].status, DropStatus::Added);
    let skipped = f.lake.append([drops[0].to_str().unwrap()]).await.unwrap();
    assert_eq!(skipped.drops[0].status, DropStatus::Skipped);
    assert_eq!(f.count("bronze.online_retail").await, 30);
    // Restoring to the latest version (or later) is refused.
    let latest = version(&f.lake, "bronze.online_retail").await;
    assert!(
        f.lake
            .restore("bronze.online_retail", latest)
            .await
            .is_err()
    );
    let history = f
        .lake
        .history("bronze.online_retail")
        .with_limit(Some(3))
        .await
        .unwrap();
    assert_eq!(history[1].operation, "RESTORE");
}

async fn checkpoints_are_written_and_read_back(backend: Backend) {
    let f = Fixture::new(backend, "checkpoint").await;
    // A short interval, as a user would set it.
    let t = f.lake.table(&id("bronze.online_retail")).await.unwrap();
    t.set_tbl_properties()
        .with_properties([("delta.checkpointInterval".to_string(), "5".to_string())].into())
        .await
        .unwrap();
    let drops = write_drops(&f.drops(), 8, 5);
    for d in &drops {
        f.lake.append([d.to_str().unwrap()]).await.unwrap();
    }
    let latest = version(&f.lake, "bronze.online_retail").await;
    let status = f.lake.status().await.unwrap();
    let bronze = status
        .iter()
        .find(|t| t.table == "bronze.online_retail")
        .unwrap();
    assert_eq!(bronze.checkpoint_interval, 5);
    let cp = bronze.last_checkpoint.expect("a checkpoint");
    assert!(
        cp > 5 && cp <= latest && latest - cp < 5,
        "checkpoint {cp} of {latest}"
    );
    // Read back from the checkpoint alone: delete the commits it covers.
    let url = url::Url::parse(&format!("{}bronze/online_retail/_delta_log/", f.url)).unwrap();
    let opts = match f.backend {
        Backend::Local => berserkr::store::StorageOptions::default(),
        Backend::S3 => s3::server().options(),
    };
    let (store, prefix) = berserkr::store::store_for(&url, &opts).unwrap();
    {
        use deltalake::logstore::object_store::ObjectStoreExt;
        for v in 0..=cp {
            let p = prefix.clone().join(format!("{v:020}.json"));
            store.delete(&p).await.unwrap();
        }
    }
    let fresh = Lakehouse::open(&f.url)
        .unwrap()
        .with_storage_options(opts.clone());
    assert_eq!(version(&fresh, "bronze.online_retail").await, latest);
    assert_eq!(f.count("bronze.online_retail").await, 40);
    // The drop markers came back from the checkpoint too: nothing is appended twice.
    let r = fresh.append([f.drops().to_str().unwrap()]).await.unwrap();
    assert_eq!((r.added, r.skipped), (0, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_show_in_output_errors_logs_or_the_lake() {
    let f = Fixture::new(Backend::S3, "secrets").await;
    write_drops(&f.drops(), 2, 10);
    let drops = f.drops();
    let mut outputs = Vec::new();
    let runs: Vec<Vec<&str>> = vec![
        vec!["lake", "init"],
        vec!["lake", "append", drops.to_str().unwrap()],
        vec!["lake", "append", "--json", drops.to_str().unwrap()],
        vec!["lake", "refresh", "silver", "--json"],
        vec!["lake", "status", "--json"],
        vec!["lake", "history", "--json"],
        vec!["lake", "optimize"],
        vec!["lake", "vacuum", "--dry-run"],
        vec!["lake", "vacuum", "--retain", "1"],
        vec!["lake", "append", "s3://no-such-bucket-here/x.csv.lzo"],
    ];
    for args in &runs {
        let out = f
            .cli()
            .args(args)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        outputs.push((args.join(" "), out));
    }
    // A lake in a bucket that does not exist, and a wrong endpoint.
    let out = f
        .cli()
        .args(["--lake", "s3://no-such-bucket-here/lake", "lake", "status"])
        .output()
        .unwrap();
    outputs.push(("missing bucket".into(), out));
    let out = f
        .cli()
        .env("AWS_ENDPOINT", "http://127.0.0.1:9")
        .args(["lake", "status"])
        .output()
        .unwrap();
    outputs.push(("wrong endpoint".into(), out));
    // The same settings from a berserkr.toml (no AWS_* variables), and a broken one.
    let server = s3::server();
    let config = f.dir.path().join("berserkr.toml");
    std::fs::write(
        &config,
        format!(
            "lake = \"{}\"\n[storage]\naws_endpoint = \"{}\"\naws_allow_http = true\naws_region = \"us-east-1\"\naws_access_key_id = \"{KEY_ID}\"\naws_secret_access_key = \"{SECRET}\"\n",
            f.url,
            server.endpoint()
        ),
    )
    .unwrap();
    let out = ok(berserkr()
        .current_dir(f.dir.path())
        .args(["lake", "status", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|t| t["files"]["rows"] == 20),
        "{v}"
    );
    outputs.push(("config".into(), out));
    let broken = f.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!("[storage]\naws_secret_access_key = \"{SECRET}\" trailing\n"),
    )
    .unwrap();
    let out = berserkr()
        .arg("--config")
        .arg(&broken)
        .args(["lake", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.toml"));
    outputs.push(("broken config".into(), out));

    let mut saw_error = 0;
    for (what, out) in &outputs {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            saw_error += 1;
        }
        assert!(!text.contains(SECRET), "{what}: secret in output: {text}");
        assert!(!text.contains(KEY_ID), "{what}: key id in output: {text}");
    }
    assert!(saw_error >= 4, "the failing runs failed");
    // Nor in anything written to the bucket: commits (metadata included), checkpoints, data.
    let objects = server.objects(&f.url).await;
    assert!(objects.iter().any(|(k, _)| k.ends_with(".json")));
    for (key, bytes) in objects {
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(SECRET), "secret in {key}");
        assert!(!hay.contains(KEY_ID), "key id in {key}");
    }
}

async fn auto_compaction_after_appends(backend: Backend) {
    let f = Fixture::new(backend, "autocompact").await;
    let t = f.lake.table(&id("bronze.online_retail")).await.unwrap();
    t.set_tbl_properties()
        .with_properties(
            [(
                berserkr::ops::care::AUTO_COMPACT_PROPERTY.to_string(),
                "3".to_string(),
            )]
            .into(),
        )
        .with_raise_if_not_exists(false)
        .await
        .unwrap();
    let drops = write_drops(&f.drops(), 4, 10);
    let mut compactions = Vec::new();
    for d in &drops {
        let r = f.lake.append([d.to_str().unwrap()]).await.unwrap();
        assert_eq!(r.compact_error, None);
        compactions.push(r.compacted.len());
    }
    // Two small files are not enough; the third append compacts three into one; the fourth
    // leaves two (the compacted one is small too, but one more is not yet three).
    assert_eq!(compactions, [0, 0, 1, 0]);
    let status = f.lake.status().await.unwrap();
    let bronze = status
        .iter()
        .find(|t| t.table == "bronze.online_retail")
        .unwrap();
    assert_eq!((bronze.files.files, bronze.files.rows), (2, Some(40)));
    assert_eq!(f.count("bronze.online_retail").await, 40);
    let history = f
        .lake
        .history("bronze.online_retail")
        .with_limit(Some(2))
        .await
        .unwrap();
    assert_eq!(history[1].operation, "OPTIMIZE");
    assert!(history[1].berserkr.contains_key("berserkr.optimize"));
}
