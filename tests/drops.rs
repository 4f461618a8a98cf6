//! Drops as they really come (`tests/fixtures/drops/`, real rows; see its README): the Online
//! Retail II export's renamed header with a byte order mark, Windows-1252 text, a header without
//! a column silver needs, and encodings declared on the command line or per source in the
//! configuration.

mod common;

use std::path::{Path, PathBuf};

use berserkr::Lakehouse;
use berserkr::ops::append::DropStatus;
use common::*;

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/drops").join(name)
}

/// A new lake in `dir/<name>`, initialised.
async fn new_lake(dir: &Path, name: &str) -> Lakehouse {
    let lake = Lakehouse::open(dir.join(name).to_str().unwrap()).unwrap();
    lake.init().await.unwrap();
    lake
}

/// Every silver row the fixture's rows become, in one order, as text.
const SILVER: &str = "SELECT InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, \
     CustomerID, Country, Revenue FROM t ORDER BY InvoiceNo, StockCode, Quantity, Description";

/// The `berserkr.drop` commit metadata of a table's latest commit.
async fn drop_lineage(lake: &Lakehouse, table: &str) -> serde_json::Value {
    let h = lake.history(table).with_limit(Some(1)).await.unwrap();
    h[0].berserkr["berserkr.drop"].clone()
}

#[tokio::test]
async fn retail_ii_drop_fills_the_same_columns_and_types_into_the_same_silver() {
    let dir = tempfile::tempdir().unwrap();
    let classic = new_lake(dir.path(), "classic").await;
    let ii = new_lake(dir.path(), "ii").await;
    let r = classic
        .append([fixture("classic.csv.lzo").to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!((r.added, r.rows, r.rejects), (1, 200, 0));
    assert!(r.drops[0].aliased.is_empty());
    let r = ii
        .append([fixture("retail-ii.csv.lzo").to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!((r.added, r.rows, r.rejects), (1, 200, 0), "{:?}", r.drops);
    let aliased: Vec<(&str, &str)> = r.drops[0]
        .aliased
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        aliased,
        [
            ("CustomerID", "Customer ID"),
            ("InvoiceNo", "Invoice"),
            ("UnitPrice", "Price")
        ]
    );

    // Bronze: the renamed fields are in their columns (as written), nothing rescued.
    let b = query(
        &ii,
        "bronze.online_retail",
        "SELECT count(\"InvoiceNo\") AS inv, count(\"UnitPrice\") AS price, \
         count(*) FILTER (WHERE \"CustomerID\" <> '') AS cust, count(_rescued_data) AS rescued, \
         min(\"InvoiceDate\") AS first, max(\"CustomerID\") AS max_cust FROM t",
    )
    .await;
    assert!(
        b.contains("| 200 | 200   | 109  | 0       | 8/30/2011 08:00 | 17828    |"),
        "{b}"
    );
    // Lineage: the drop's commit says which header it had, which columns it filled through an
    // alias, the byte order mark and the encoding.
    let l = drop_lineage(&ii, "bronze.online_retail").await;
    assert_eq!(
        l["header"],
        serde_json::json!([
            "Invoice",
            "StockCode",
            "Description",
            "Quantity",
            "InvoiceDate",
            "Price",
            "Customer ID",
            "Country"
        ])
    );
    assert_eq!(l["aliased"]["UnitPrice"], "Price");
    assert_eq!(
        (l["bom"].as_bool(), l["encoding"].as_str()),
        (Some(true), Some("UTF-8"))
    );
    let l = drop_lineage(&classic, "bronze.online_retail").await;
    assert_eq!(l["aliased"], serde_json::json!({}));
    assert_eq!(l["bom"], false);

    // Silver: the same typed rows from both layouts (hours zero-padded or not, ids with or
    // without .0), in every table.
    for lake in [&classic, &ii] {
        let r = lake.refresh_silver().await.unwrap();
        let rows = |t: &str| r.tables.iter().find(|x| x.table == t).unwrap().rows;
        assert_eq!(rows("silver.transactions"), 96, "{:?}", r.tables);
        assert_eq!(rows("silver.cancellations"), 13, "{:?}", r.tables);
    }
    for t in ["silver.transactions", "silver.cancellations"] {
        let (a, b) = (
            query(&classic, t, SILVER).await,
            query(&ii, t, SILVER).await,
        );
        assert_eq!(a, b, "{t}");
    }
    let q = query(
        &ii,
        "silver.transactions",
        "SELECT InvoiceNo, InvoiceDate, CustomerID FROM t WHERE InvoiceNo = '564752' LIMIT 1",
    )
    .await;
    assert!(
        q.contains("| 564752    | 2011-08-30T10:07:00 | 16126      |"),
        "{q}"
    );
    let q = query(
        &ii,
        "silver.cancellations",
        "SELECT min(InvoiceDate) AS first FROM t WHERE CustomerID = 14911",
    )
    .await;
    assert!(q.contains("| 2011-08-30T08:00:00 |"), "{q}");
}

#[tokio::test]
async fn a_windows_1252_drop_lands_intact_when_declared_and_rejects_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let drop = fixture("windows-1252.csv.lzo");
    let drop = drop.to_str().unwrap();

    // Undeclared: read as UTF-8, the three lines with 0xA3, 0xC9 or 0xC8 are rejects, the bytes
    // kept, the reason given.
    let utf8 = new_lake(dir.path(), "utf8").await;
    let r = utf8.append([drop]).await.unwrap();
    assert_eq!((r.added, r.rows, r.rejects), (1, 197, 3));
    assert_eq!(r.drops[0].encoding.map(|e| e.name()), Some("UTF-8"));
    let rejects = query(
        &utf8,
        "bronze.online_retail_rejects",
        "SELECT _source_line, reason, encode(raw, 'hex') LIKE '%20a3%' OR encode(raw, 'hex') LIKE '%46c9%' AS raw_kept FROM t ORDER BY 1",
    )
    .await;
    let expected = "\
+--------------+----------------------------------------------------------------+----------+
| _source_line | reason                                                         | raw_kept |
+--------------+----------------------------------------------------------------+----------+
| 89           | invalid UTF-8 in field 3 (Description) at byte 28 of the field | true     |
| 90           | invalid UTF-8 in field 3 (Description) at byte 28 of the field | true     |
| 185          | invalid UTF-8 in field 3 (Description) at byte 26 of the field | true     |
+--------------+----------------------------------------------------------------+----------+";
    assert_eq!(rejects, expected);

    // Declared: every row lands, transcoded to UTF-8.
    let cp = new_lake(dir.path(), "cp1252").await;
    let r = cp
        .append([drop])
        .with_encoding(Some("latin1".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!((r.added, r.rows, r.rejects), (1, 200, 0));
    let rows = query(
        &cp,
        "bronze.online_retail",
        "SELECT _source_line, \"Description\" FROM t WHERE _source_line IN (89, 90, 185) ORDER BY 1",
    )
    .await;
    let expected = "\
+--------------+------------------------------------+
| _source_line | Description                        |
+--------------+------------------------------------+
| 89           | Dotcomgiftshop Gift Voucher £10.00 |
| 90           | Dotcomgiftshop Gift Voucher £30.00 |
| 185          | MISTLETOE HEART WREATH CAFÉ CRÈME  |
+--------------+------------------------------------+";
    assert_eq!(rows, expected);
    let l = drop_lineage(&cp, "bronze.online_retail").await;
    assert_eq!(l["encoding"], "windows-1252");
    assert_eq!(l["encoding_from"], "argument");
    // Through silver too.
    cp.refresh_silver().await.unwrap();
    let q = query(
        &cp,
        "silver.transactions",
        "SELECT Description, CustomerID FROM t WHERE StockCode = '23131'",
    )
    .await;
    assert!(
        q.contains("| MISTLETOE HEART WREATH CAFÉ CRÈME | 13870      |"),
        "{q}"
    );
}

#[test]
fn a_drop_without_a_column_silver_needs_is_refused_with_exit_1_and_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let run = |args: &[&str]| run_cli(&lake, args);
    assert_eq!(run(&["lake", "init"]).0, Some(0));
    let versions = || {
        let (code, out, err) = run(&["lake", "status", "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let tables = v.as_array().unwrap().clone();
        let at = |t: &str| {
            tables
                .iter()
                .find(|x| x["table"] == t)
                .map(|x| x["version"].clone())
                .unwrap()
        };
        (
            at("bronze.online_retail"),
            at("bronze.online_retail_rejects"),
        )
    };
    let before = versions();
    let bad = fixture("no-stockcode.csv.lzo");
    let (code, out, err) = run(&["lake", "append", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("no-stockcode.csv.lzo") && err.contains("lacks required column StockCode"),
        "{err}"
    );
    assert_eq!(versions(), before, "nothing committed");
    // With --keep-going the sound drop beside it lands; the status is still 1.
    let good = fixture("classic.csv.lzo");
    let (code, out, err) = run(&[
        "lake",
        "append",
        "--keep-going",
        "--json",
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["added"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["rows"], 200);
}

#[test]
fn the_config_declares_a_sources_encoding_and_the_command_line_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let drops = dir.path().join("vendor");
    std::fs::create_dir_all(&drops).unwrap();
    std::fs::copy(
        fixture("windows-1252.csv.lzo"),
        drops.join("2011-08-30.csv.lzo"),
    )
    .unwrap();
    let config = dir.path().join("berserkr.toml");
    // A local prefix, relative to the working directory, and a longer one that does not match.
    std::fs::write(
        &config,
        "[sources.\"vendor/\"]\nencoding = \"windows-1252\"\n\
         [sources.\"vendor/utf8/\"]\nencoding = \"utf-8\"\n",
    )
    .unwrap();
    let run = |lake: &str, extra: &[&str]| {
        let out = berserkr()
            .current_dir(dir.path())
            .args(["--lake", lake, "--config", "berserkr.toml", "lake"])
            .args(extra)
            .output()
            .unwrap();
        let code = out.status.code();
        (code, String::from_utf8_lossy(&out.stdout).to_string())
    };
    for lake in ["a", "b"] {
        assert_eq!(run(lake, &["init"]).0, Some(0));
    }
    let (code, out) = run("a", &["append", "--json", "vendor"]);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["rows"].as_u64(), v["rejects"].as_u64()),
        (Some(200), Some(0))
    );
    assert_eq!(v["drops"][0]["encoding"], "windows-1252");
    let (_, out) = run(
        "a",
        &[
            "history",
            "--table",
            "bronze.online_retail",
            "--limit",
            "1",
            "--json",
        ],
    );
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        h[0]["berserkr"]["berserkr.drop"]["encoding_from"],
        "config sources.\"vendor/\""
    );
    // --encoding wins: read as UTF-8, the three lines are rejects again.
    let (code, out) = run("b", &["append", "--json", "--encoding", "utf-8", "vendor"]);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["rows"].as_u64(), v["rejects"].as_u64()),
        (Some(197), Some(3))
    );
    // An encoding berserkr cannot read drops in is a usage error naming it.
    let (code, _) = run("b", &["append", "--encoding", "utf-16le", "vendor"]);
    assert_eq!(code, Some(2));
}

#[tokio::test]
async fn hostile_headers_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let lake = new_lake(dir.path(), "lake").await;
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    let v = version(&lake, "bronze.online_retail").await;
    // A UTF-16 drop (its byte order mark) is refused as a whole.
    let mut utf16 = vec![0xff, 0xfe];
    for u in HEADER.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    write_drop(&drops, "utf16.csv.lzo", &utf16);
    // A column named twice, once by name and once by alias.
    write_drop(
        &drops,
        "twice.csv.lzo",
        b"InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,Invoice\n1,A,1,2011-01-01 00:00:00,1.0,2\n",
    );
    let r = lake
        .append([drops.to_str().unwrap()])
        .with_keep_going(true)
        .await
        .unwrap();
    let errors: Vec<_> = r
        .drops
        .iter()
        .map(|d| (d.status, d.bad_input, d.error.clone().unwrap_or_default()))
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e.0 == DropStatus::Failed && e.1));
    assert!(
        errors[0]
            .2
            .contains("fields 1 (InvoiceNo) and 6 (Invoice) both fill column InvoiceNo"),
        "{errors:?}"
    );
    assert!(errors[1].2.contains("UTF-16 byte order mark"), "{errors:?}");
    assert_eq!(version(&lake, "bronze.online_retail").await, v);

    // JSON lines: aliases are keys too; a line with two keys for one column is a reject. A byte
    // order mark before the first object is skipped.
    let mut json = b"\xef\xbb\xbf".to_vec();
    json.extend_from_slice(
        b"{\"Invoice\":\"1\",\"Price\":2.5,\"Customer ID\":12345}\n\
          {\"Invoice\":\"2\",\"InvoiceNo\":\"3\"}\n",
    );
    let j = write_drop(&drops, "events.json.lzo", &json);
    let r = lake.append([j.to_str().unwrap()]).await.unwrap();
    assert_eq!((r.rows, r.rejects), (1, 1), "{:?}", r.drops);
    let rows = query(
        &lake,
        "bronze.online_retail",
        "SELECT \"InvoiceNo\", \"UnitPrice\", \"CustomerID\", _rescued_data FROM t",
    )
    .await;
    assert!(
        rows.contains("| 1         | 2.5       | 12345      |"),
        "{rows}"
    );
    let rejects = query(
        &lake,
        "bronze.online_retail_rejects",
        "SELECT reason FROM t",
    )
    .await;
    assert!(
        rejects.contains("keys Invoice and InvoiceNo both fill column InvoiceNo"),
        "{rejects}"
    );
}
