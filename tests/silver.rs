//! `lake refresh silver`: incremental, idempotent, typed, deduplicated, with expectations.

mod common;

use std::path::Path;

use berserkr::catalog::Catalog;
use berserkr::ops::gold::Cutoffs;
use berserkr::{Error, Lakehouse};
use common::*;

async fn append(lake: &Lakehouse, dir: &Path, name: &str, rows: &str) {
    let drops = dir.join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    let p = write_drop(&drops, name, format!("{HEADER}{rows}").as_bytes());
    let r = lake.append([p.to_str().unwrap()]).await.unwrap();
    assert_eq!(r.failed, 0);
}

#[tokio::test]
async fn refresh_types_routes_dedupes_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    append(
        &lake,
        dir.path(),
        "d1.csv.lzo",
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n\
         536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n\
         536366,22633,\"WARMER, RED\",6,12/1/2010 8:28,1.85,17850.0,United Kingdom\n\
         C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n\
         536380,22961,JAM SET,3,2010-12-01 09:41:00,1.45,,United Kingdom\n\
         536381,22962,JAR,0,2010-12-01 09:41:00,1.45,12345.0,France\n\
         536382,22963,BAD DATE,1,yesterday,1.00,12345.0,France\n\
         536383,22964,BAD QTY,1.5,2010-12-01 09:41:00,1.00,12345.0,France\n\
         536384,22965,FREE,1,2010-12-01 09:41:00,-0.5,12345.0,France\n",
    )
    .await;
    let r = lake.refresh_silver().await.unwrap();
    let rows = |t: &str| r.tables.iter().find(|x| x.table == t).unwrap().rows;
    assert_eq!(rows("silver.transactions"), 3);
    assert_eq!(rows("silver.cancellations"), 1);
    assert_eq!(rows("silver.transactions_quarantine"), 2);
    let got = query(
        &lake,
        "silver.transactions",
        "SELECT InvoiceNo, InvoiceDate, Quantity, CustomerID, Revenue FROM t ORDER BY InvoiceNo",
    )
    .await;
    let expected = "\
+-----------+---------------------+----------+------------+--------------------+
| InvoiceNo | InvoiceDate         | Quantity | CustomerID | Revenue            |
+-----------+---------------------+----------+------------+--------------------+
| 536365    | 2010-12-01T08:26:00 | 6        | 17850      | 15.299999999999999 |
| 536366    | 2010-12-01T08:28:00 | 6        | 17850      | 11.100000000000001 |
| 536384    | 2010-12-01T09:41:00 | 1        | 12345      | -0.5               |
+-----------+---------------------+----------+------------+--------------------+";
    assert_eq!(got, expected);
    let q = query(
        &lake,
        "silver.transactions_quarantine",
        "SELECT rule, _source_line, raw_invoice_date, raw_quantity FROM t ORDER BY _source_line",
    )
    .await;
    assert!(
        q.contains("| invoice_date_parses | 8            | yesterday"),
        "{q}"
    );
    assert!(q.contains("| quantity_is_integer | 9 "), "{q}");
    // Warn counts land in the commit metadata.
    let table = lake.table(&id("silver.transactions")).await.unwrap();
    let history: Vec<_> = {
        use futures::StreamExt;
        table.history(Some(1)).collect::<Vec<_>>().await
    };
    let info = history[0].as_ref().unwrap();
    let meta = &info.info["berserkr.refresh"];
    assert_eq!(
        meta["expectations"]["unit_price_not_negative"]["violations"],
        1
    );
    assert_eq!(meta["expectations"]["invoice_date_parses"]["violations"], 1);

    // Nothing new: no new version anywhere.
    let before = version(&lake, "silver.transactions").await;
    let r2 = lake.refresh_silver().await.unwrap();
    assert!(r2.tables.iter().all(|t| t.version.is_none()));
    assert_eq!(version(&lake, "silver.transactions").await, before);

    // A new drop repeating a row of the first: the duplicate is not added again; a row of the
    // same invoice that differs in one field is not a duplicate.
    append(
        &lake,
        dir.path(),
        "d2.csv.lzo",
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n\
         536365,85123A,HEART,7,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n\
         536400,10001,NEW,2,12/2/2010 10:05,3.00,17850.0,United Kingdom\n",
    )
    .await;
    let r3 = lake.refresh_silver().await.unwrap();
    let t = r3
        .tables
        .iter()
        .find(|x| x.table == "silver.transactions")
        .unwrap();
    assert_eq!(t.rows, 2);
    let n = query(&lake, "silver.transactions", "SELECT count(*) AS n FROM t").await;
    assert!(n.contains("| 5 |"), "{n}");
}

#[tokio::test]
async fn a_fail_expectation_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    append(
        &lake,
        dir.path(),
        "d1.csv.lzo",
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n\
         536366,,NO ITEM,6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom\n",
    )
    .await;
    let before: Vec<u64> = futures::future::join_all(
        [
            "silver.transactions",
            "silver.cancellations",
            "silver.transactions_quarantine",
        ]
        .map(|t| version(&lake, t)),
    )
    .await;
    match lake.refresh_silver().await {
        Err(Error::ExpectationFailed {
            rule,
            violations,
            first,
            ..
        }) => {
            assert_eq!(rule, "invoice_and_item_present");
            assert_eq!(violations, 1);
            assert!(first.ends_with("d1.csv.lzo line 3"), "{first}");
        }
        other => panic!("expected a failed expectation, got {other:?}"),
    }
    let after: Vec<u64> = futures::future::join_all(
        [
            "silver.transactions",
            "silver.cancellations",
            "silver.transactions_quarantine",
        ]
        .map(|t| version(&lake, t)),
    )
    .await;
    assert_eq!(before, after);
    // No data file is left behind either.
    let parquet = walk(&dir.path().join("lake/silver"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect::<Vec<_>>();
    assert!(parquet.is_empty(), "{parquet:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_refresh_that_died_half_way_completes_on_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    append(
        &lake,
        dir.path(),
        "d1.csv.lzo",
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n\
         C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n",
    )
    .await;
    lake.refresh_silver().await.unwrap();
    append(
        &lake,
        dir.path(),
        "d2.csv.lzo",
        "536400,10001,NEW,2,2010-12-02 10:05:00,3.00,17850.0,United Kingdom\n\
         C536401,D,Discount,-2,2010-12-02 10:06:00,5.0,14527.0,United Kingdom\n",
    )
    .await;
    // A refresh that committed silver.cancellations and died before the other tables: the same
    // as refreshing with a catalog that only has that table.
    let partial = Catalog::from_files(
        Catalog::embedded_files().filter(|(p, _)| !p.starts_with("tables/silver/transactions")),
    )
    .unwrap();
    let lake_partial = lake.clone().with_catalog(partial);
    lake_partial.refresh_silver().await.unwrap();
    let r = lake.refresh_silver().await.unwrap();
    let get = |t: &str| r.tables.iter().find(|x| x.table == t).unwrap().clone();
    assert!(
        get("silver.cancellations").version.is_none(),
        "already up to date"
    );
    assert_eq!(get("silver.transactions").rows, 1);
    let n = query(&lake, "silver.cancellations", "SELECT count(*) AS n FROM t").await;
    assert!(n.contains("| 2 |"), "{n}");
    let n = query(&lake, "silver.transactions", "SELECT count(*) AS n FROM t").await;
    assert!(n.contains("| 2 |"), "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_equals_the_duckdb_peer_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let tools = repo().join("tests/tools");
    let csv = dir.path().join("gen.csv");
    // The generator writes 'M/D/YYYY H:MM' dates, float customer ids, duplicates, quoted commas.
    run_python(&[
        tools.join("peers/gen_online_retail.py").as_os_str(),
        "60000".as_ref(),
        csv.as_os_str(),
        "--seed".as_ref(),
        "7".as_ref(),
    ]);
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    // Two drops, so duplicates across drops are exercised: split the rows in half.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let header = lines.remove(0);
    let half = lines.len() / 2;
    for (name, part) in [("a.csv.lzo", &lines[..half]), ("b.csv.lzo", &lines[half..])] {
        let body = format!("{header}\n{}\n", part.join("\n"));
        write_drop(&drops, name, body.as_bytes());
    }
    let lake = lake(dir.path()).await;
    let r = lake.append([drops.to_str().unwrap()]).await.unwrap();
    assert_eq!((r.rows, r.rejects), (60_000, 0));
    let refreshed = lake.refresh_silver().await.unwrap();
    let q = refreshed
        .tables
        .iter()
        .find(|t| t.table == "silver.transactions_quarantine")
        .unwrap();
    assert_eq!(q.rows, 0, "the generator writes only valid rows");

    let peer = dir.path().join("peer");
    run_python(&[
        tools.join("peers/pipe_duckdb.py").as_os_str(),
        "all".as_ref(),
        csv.as_os_str(),
        peer.as_os_str(),
    ]);
    let out = run_python(&[
        tools.join("compare_silver.py").as_os_str(),
        dir.path().join("lake/silver/transactions").as_os_str(),
        peer.join("silver.parquet").as_os_str(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["ours"], v["peer"],
        "silver differs from the DuckDB peer: {out}"
    );
    assert!(v["ours"][0].as_str().unwrap().parse::<u64>().unwrap() > 30_000);

    // Gold at the SPEC's cutoff (last timestamp minus 90 days) equals the peer's gold.
    let gold = lake
        .refresh_gold()
        .with_cutoffs(Cutoffs::Latest)
        .await
        .unwrap();
    assert!(gold.rows > 10_000 && gold.positives > 0, "{gold:?}");
    let out = run_python(&[
        tools.join("compare_gold.py").as_os_str(),
        dir.path()
            .join("lake/gold/customer_item_features")
            .as_os_str(),
        peer.join("gold.parquet").as_os_str(),
        gold.cutoffs[0].as_ref(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["ours"], v["peer"],
        "gold differs from the DuckDB peer: {out}"
    );
    // The next-purchase features, recomputed by DuckDB from silver's rows.
    let out = run_python(&[
        tools.join("check_features.py").as_os_str(),
        dir.path().join("lake/silver/transactions").as_os_str(),
        dir.path()
            .join("lake/gold/customer_item_features")
            .as_os_str(),
        gold.cutoffs[0].as_ref(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ours"], v["peer"], "next-purchase features differ: {out}");
    assert!(
        v["nonzero"]["item_recent_customers"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert!(v["nonzero"]["repeat_pairs"].as_u64().unwrap() > 0, "{out}");

    // Portability: Spark SQL runs the same files of tables/ over the same Parquet files and
    // gets the same silver and gold, row for row.
    let out = run_python(&[
        tools.join("spark_transforms.py").as_os_str(),
        repo().as_os_str(),
        dir.path().join("lake").as_os_str(),
        gold.cutoffs[0].as_ref(),
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    for table in ["silver", "gold"] {
        let [only_spark, only_ours, rows] = [0, 1, 2].map(|i| v[table][i].as_u64().unwrap());
        assert!(
            only_spark == 0 && only_ours == 0 && rows > 10_000,
            "{table}: Spark SQL disagrees with berserkr: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_features_never_see_past_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    // History: two customers, three items, Dec 2010 to Jun 2011.
    let mut rows = String::new();
    for (i, (day, cust, item, qty)) in [
        ("2010-12-01", 1, "A", 2),
        ("2010-12-15", 1, "B", 1),
        ("2011-01-10", 2, "A", 5),
        ("2011-02-01", 1, "A", 1),
        ("2011-03-05", 2, "C", 3),
        ("2011-04-20", 1, "C", 2),
        ("2011-06-30", 2, "B", 1),
    ]
    .iter()
    .enumerate()
    {
        rows.push_str(&format!(
            "{},{item},ITEM {item},{qty},{day} 10:00:00,1.5,{cust}.0,UK\n",
            500 + i
        ));
    }
    append(&lake, dir.path(), "h.csv.lzo", &rows).await;
    lake.refresh_silver().await.unwrap();
    let cutoff = chrono::NaiveDate::from_ymd_opt(2011, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let g1 = lake
        .refresh_gold()
        .with_cutoffs(Cutoffs::At(vec![cutoff]))
        .await
        .unwrap();
    assert_eq!(
        g1.rows, 3,
        "pairs bought before the cutoff: (1,A) (1,B) (2,A)"
    );
    let features = "SELECT CustomerID, StockCode, n_purchases, n_lines, total_qty, total_revenue, \
                    first_purchase, last_purchase, recency_days, tenure_days, cust_n_invoices, \
                    cust_n_items, cust_total_qty, cust_total_revenue, cust_recency_days, \
                    item_n_customers, item_total_qty FROM t \
                    WHERE cutoff = '2011-03-01 00:00:00' ORDER BY CustomerID, StockCode";
    let labels = "SELECT CustomerID, StockCode, label FROM t \
                  WHERE cutoff = '2011-03-01 00:00:00' ORDER BY 1, 2";
    let f1 = query(&lake, "gold.customer_item_features", features).await;
    let l1 = query(&lake, "gold.customer_item_features", labels).await;
    assert!(
        f1.contains("| 1          | A         | 2           |"),
        "{f1}"
    );
    // (2,C) is bought after the cutoff: no feature row for it.
    assert!(!f1.contains("| 2          | C "), "{f1}");

    // Later rows arrive: a purchase of (1,B) in the label window, and one far past it.
    append(
        &lake,
        dir.path(),
        "later.csv.lzo",
        "600,B,ITEM B,4,2011-03-20 10:00:00,1.5,1.0,UK\n601,A,ITEM A,9,2011-07-01 10:00:00,1.5,2.0,UK\n",
    )
    .await;
    lake.refresh_silver().await.unwrap();
    let g2 = lake
        .refresh_gold()
        .with_cutoffs(Cutoffs::At(vec![cutoff]))
        .await
        .unwrap();
    assert!(g2.version > g1.version);
    let f2 = query(&lake, "gold.customer_item_features", features).await;
    let l2 = query(&lake, "gold.customer_item_features", labels).await;
    assert_eq!(
        f1, f2,
        "features of a cutoff must not change when later rows arrive"
    );
    assert_ne!(l1, l2, "the label of (1,B) changes");
    assert!(l2.contains("| 1          | B         | 1     |"), "{l2}");
    // Same silver, same cutoff: nothing to do.
    let g3 = lake
        .refresh_gold()
        .with_cutoffs(Cutoffs::At(vec![cutoff]))
        .await
        .unwrap();
    assert_eq!(g3.version, None);
    // A cutoff whose label window is not complete is refused.
    let late = chrono::NaiveDate::from_ymd_opt(2011, 6, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let err = lake
        .refresh_gold()
        .with_cutoffs(Cutoffs::At(vec![late]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("label window"), "{err}");
}
