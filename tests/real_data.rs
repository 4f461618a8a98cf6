//! The real UCI Online Retail drops shipped in examples/data: every row lands once, and an
//! independent Delta reader (DuckDB's delta extension, on the Delta kernel) reads the table.

mod common;

use berserkr::Lakehouse;
use common::*;

fn duckdb(table: &std::path::Path, version: &str, sql: &str) -> Vec<Vec<String>> {
    let script = repo().join("tests/tools/duckdb_read.py");
    let out = run_python(&[
        script.as_os_str(),
        table.as_os_str(),
        version.as_ref(),
        sql.as_ref(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    serde_json::from_value(v["result"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_real_drops_land_once_and_duckdb_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lakehouse::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    lake.init().await.unwrap();
    let drops = repo().join("examples/data/online-retail/drops");
    let report = lake.append([drops.to_str().unwrap()]).await.unwrap();
    assert_eq!(report.added, 305);
    assert_eq!(report.failed, 0);
    assert_eq!(report.rows, 541_909);
    assert_eq!(report.rejects, 0);
    let again = lake.append([drops.to_str().unwrap()]).await.unwrap();
    assert_eq!((again.added, again.skipped), (0, 305));
    assert_eq!(again.version_after, report.version_after);

    let table = dir.path().join("lake/bronze/online_retail");
    // Figures from the data set's SOURCES.md, counted by DuckDB over our table.
    let r = duckdb(
        &table,
        "latest",
        "SELECT count(*), count(DISTINCT \"InvoiceNo\"), count(*) FILTER (WHERE \"CustomerID\" = ''), \
         count(*) FILTER (WHERE \"InvoiceNo\" LIKE 'C%'), count(*) FILTER (WHERE \"Quantity\" LIKE '-%'), \
         count(DISTINCT _source_file), count(*) FILTER (WHERE \"Description\" LIKE '%,%') FROM t",
    );
    assert_eq!(
        r,
        vec![
            vec!["541909", "25900", "135080", "9288", "10624", "305", "4796"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        ]
    );
    // Time travel through the kernel too: the version after the first 10 drops.
    let first_drop_version = report.drops[0].version.unwrap();
    let v = (first_drop_version + 9).to_string();
    let rows_10: u64 = report.drops[..10].iter().map(|d| d.rows).sum();
    let r = duckdb(&table, &v, "SELECT count(*) FROM t");
    assert_eq!(r[0][0], rows_10.to_string());

    // Silver from all of it: the SPEC's purchase count over the same raw rows, computed by DuckDB
    // on bronze, equals what DuckDB reads from our silver table.
    let r = lake.refresh_silver().await.unwrap();
    let rows = |t: &str| r.tables.iter().find(|x| x.table == t).unwrap().rows;
    assert_eq!(rows("silver.cancellations"), 9_288);
    assert_eq!(rows("silver.transactions_quarantine"), 0);
    let spec = duckdb(
        &table,
        "latest",
        "SELECT count(*) FROM (SELECT DISTINCT \"InvoiceNo\", \"StockCode\", \"Description\", \
         CAST(\"Quantity\" AS BIGINT), CAST(\"InvoiceDate\" AS TIMESTAMP), CAST(\"UnitPrice\" AS DOUBLE), \
         CAST(CAST(\"CustomerID\" AS DOUBLE) AS BIGINT), \"Country\" FROM t \
         WHERE \"CustomerID\" <> '' AND NOT starts_with(\"InvoiceNo\", 'C') AND CAST(\"Quantity\" AS BIGINT) > 0)",
    );
    let silver = duckdb(
        &dir.path().join("lake/silver/transactions"),
        "latest",
        "SELECT count(*) FROM t",
    );
    assert_eq!(spec, silver);
    assert_eq!(silver[0][0], "392732");
    assert_eq!(rows("silver.transactions"), 392_732);

    // Gold at the SPEC's cutoff: rows and positive labels equal the SPEC computed by DuckDB from
    // the raw bronze rows.
    let gold = lake
        .refresh_gold()
        .with_cutoffs(berserkr::ops::gold::Cutoffs::Latest)
        .await
        .unwrap();
    let script = repo().join("tests/tools/spec_from_bronze.py");
    let out = run_python(&[script.as_os_str(), table.as_os_str()]);
    let spec: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(spec["silver"], 392_732);
    assert_eq!(spec["cutoff"], gold.cutoffs[0].as_str());
    assert_eq!(spec["gold"], gold.rows);
    assert_eq!(spec["positives"], gold.positives);

    // The next-purchase features (migration 0017), recomputed by DuckDB from silver's rows, at
    // the labelled cutoff and at the scoring cutoff (the last silver timestamp: the only one with
    // a year of history, so the only one whose seasonality is not all zero).
    let check = repo().join("tests/tools/check_features.py");
    let silver_table = dir.path().join("lake/silver/transactions");
    let scoring = gold
        .scoring
        .as_ref()
        .expect("gold.scoring_features is declared");
    for (t, cutoff, season) in [
        ("customer_item_features", gold.cutoffs[0].as_str(), false),
        ("scoring_features", scoring.cutoff.as_str(), true),
    ] {
        let out = run_python(&[
            check.as_os_str(),
            silver_table.as_os_str(),
            dir.path().join("lake/gold").join(t).as_os_str(),
            cutoff.as_ref(),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ours"], v["peer"], "{t} at {cutoff}: {out}");
        assert!(
            v["nonzero"]["item_recent_customers"].as_u64().unwrap() > 100_000,
            "{out}"
        );
        assert!(
            v["nonzero"]["repeat_pairs"].as_u64().unwrap() > 10_000,
            "{out}"
        );
        assert_eq!(
            v["nonzero"]["item_season_customers"].as_u64().unwrap() > 0,
            season,
            "{out}"
        );
    }
}
