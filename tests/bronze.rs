//! `lake init` and `lake append`: migrations, exactly-once bronze, rejects, bad drops.

mod common;

use std::path::Path;

use berserkr::Lakehouse;
use berserkr::catalog::MigrationOp;
use berserkr::ops::append::DropStatus;
use common::*;

#[tokio::test]
async fn init_is_idempotent_and_recorded_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lakehouse::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let first = lake.init().await.unwrap();
    assert_eq!(first.applied.len(), lake.catalog().migrations().len());
    let second = lake.init().await.unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(first.tables, second.tables);
    // The last migration of each table is its application transaction in the table's own log.
    let table = lake.table(&id("bronze.online_retail")).await.unwrap();
    let v = table
        .snapshot()
        .unwrap()
        .transaction_version(table.log_store().as_ref(), "berserkr.migrations")
        .await
        .unwrap();
    let last = lake
        .catalog()
        .migrations()
        .iter()
        .filter(|m| m.table == id("bronze.online_retail"))
        .map(|m| m.seq)
        .max();
    assert_eq!(v, last);
}

#[tokio::test]
async fn migrations_produce_exactly_the_declared_tables() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    for spec in lake.catalog().tables() {
        let table = lake.table(&spec.id()).await.unwrap();
        let snap = table.snapshot().unwrap();
        let schema = snap.schema();
        let got: Vec<(String, String, bool)> = schema
            .fields()
            .map(|f| {
                (
                    f.name().to_string(),
                    f.data_type().to_string(),
                    f.is_nullable(),
                )
            })
            .collect();
        let want: Vec<(String, String, bool)> = spec
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.delta().to_string(), c.nullable))
            .collect();
        assert_eq!(got, want, "columns of {}", spec.id());
        // Declared aliases are in the columns' Delta metadata, and only they.
        for (f, c) in schema.fields().zip(&spec.columns) {
            let recorded = f.metadata().get(berserkr::catalog::ALIASES_KEY).map(|v| {
                serde_json::from_value::<Vec<String>>(serde_json::to_value(v).unwrap()).unwrap()
            });
            let declared = (!c.aliases.is_empty()).then(|| c.aliases.clone());
            assert_eq!(recorded, declared, "aliases of {}.{}", spec.id(), c.name);
        }
        assert_eq!(
            snap.metadata().partition_columns(),
            &spec.partition_by,
            "partitioning of {}",
            spec.id()
        );
        let config = snap.metadata().configuration();
        for (k, v) in &spec.properties {
            assert_eq!(config.get(k), Some(v), "property {k} of {}", spec.id());
        }
        let mut constraints: Vec<(String, String)> = config
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("delta.constraints.")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
        constraints.sort();
        let mut want: Vec<(String, String)> = spec
            .constraints
            .iter()
            .map(|c| (c.name.clone(), c.expr.clone()))
            .collect();
        want.sort();
        assert_eq!(constraints, want, "constraints of {}", spec.id());
    }
    // Every migration names a declared table, and only create_table creates.
    for m in lake.catalog().migrations() {
        assert!(
            lake.catalog().table(&m.table).is_ok(),
            "{} targets an undeclared table",
            m.name
        );
        if let MigrationOp::CreateTable { .. } = m.op {
            assert_eq!(
                lake.catalog()
                    .migrations()
                    .iter()
                    .filter(
                        |o| o.table == m.table && matches!(o.op, MigrationOp::CreateTable { .. })
                    )
                    .count(),
                1
            );
        }
    }
}

#[tokio::test]
async fn csv_rows_land_as_written_with_lineage_and_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    let text = format!(
        "{HEADER}\
         536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\r\n\
         536366,22633,\"HAND WARMER, UNION JACK\",6,2010-12-01 08:28:00,1.85,,United Kingdom\n\
         C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n\
         \n\
         536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01 08:45:00,3.75,12583.0\n\
         536370,21883,\"STARS GIFT \"\"TAPE\"\"\",24,2010-12-01 08:45:00,0.65,12583.0,France\n\
         536371,22086,\"PAPER CHAIN KIT\"X,80,2010-12-01 09:00:00,2.55,13748.0,United Kingdom\n\
         536372,22632,HAND WARMER RED POLKA DOT,6,2010-12-01 09:01:00,1.85,17850.0,Côte d'Ivoire\n\
         536373,\x01,BAD BYTES,1,2010-12-01 09:02:00,1.00,17850.0,United Kingdom\n\
         536374,21258,\"MULTI\nLINE\",32,2010-12-01 09:09:00,10.95,15100.0,United Kingdom"
    );
    // Build the bytes by hand: the text above holds invalid UTF-8 on purpose.
    let bytes: Vec<u8> = text
        .into_bytes()
        .into_iter()
        .flat_map(|b| if b == 1 { vec![0xff, 0xfe] } else { vec![b] })
        .collect();
    write_drop(&drops, "day1.csv.lzo", &bytes);
    let report = lake.append([drops.to_str().unwrap()]).await.unwrap();
    assert_eq!(report.added, 1);
    assert_eq!(report.rows, 6);
    assert_eq!(report.rejects, 3);

    let rows = query(
        &lake,
        "bronze.online_retail",
        "SELECT _source_line, \"InvoiceNo\", \"StockCode\", \"Description\", \"Quantity\", \"UnitPrice\", \"CustomerID\", \"Country\", _rescued_data FROM t ORDER BY _source_line",
    )
    .await;
    let expected = "\
+--------------+-----------+-----------+------------------------------------+----------+-----------+------------+----------------+---------------+
| _source_line | InvoiceNo | StockCode | Description                        | Quantity | UnitPrice | CustomerID | Country        | _rescued_data |
+--------------+-----------+-----------+------------------------------------+----------+-----------+------------+----------------+---------------+
| 2            | 536365    | 85123A    | WHITE HANGING HEART T-LIGHT HOLDER | 6        | 2.55      | 17850.0    | United Kingdom |               |
| 3            | 536366    | 22633     | HAND WARMER, UNION JACK            | 6        | 1.85      |            | United Kingdom |               |
| 4            | C536379   | D         | Discount                           | -1       | 27.5      | 14527.0    | United Kingdom |               |
| 7            | 536370    | 21883     | STARS GIFT \"TAPE\"                  | 24       | 0.65      | 12583.0    | France         |               |
| 9            | 536372    | 22632     | HAND WARMER RED POLKA DOT          | 6        | 1.85      | 17850.0    | Côte d'Ivoire  |               |
| 11           | 536374    | 21258     | MULTI                              | 32       | 10.95     | 15100.0    | United Kingdom |               |
|              |           |           | LINE                               |          |           |            |                |               |
+--------------+-----------+-----------+------------------------------------+----------+-----------+------------+----------------+---------------+";
    assert_eq!(rows, expected);

    let rejects = query(
        &lake,
        "bronze.online_retail_rejects",
        "SELECT _source_line, reason, encode(raw, 'hex') LIKE '3533363337332cfffe2c%' AS raw_kept FROM t ORDER BY _source_line",
    )
    .await;
    let expected = "\
+--------------+-------------------------------------------------------------+----------+
| _source_line | reason                                                      | raw_kept |
+--------------+-------------------------------------------------------------+----------+
| 6            | wrong field count: 7 fields, the header has 8               | false    |
| 8            | broken quoting: text after a closing quote at byte 30       | false    |
| 10           | invalid UTF-8 in field 2 (StockCode) at byte 0 of the field | true     |
+--------------+-------------------------------------------------------------+----------+";
    assert_eq!(rejects, expected);

    // Lineage: file URL, drop hash and ingest time on every row.
    let lineage = query(
        &lake,
        "bronze.online_retail",
        "SELECT count(DISTINCT _source_file) AS files, count(DISTINCT _drop_sha256) AS hashes, min(length(_drop_sha256)) AS hash_len, count(_ingested_at) AS stamped FROM t WHERE _source_file LIKE 'file:///%/drops/day1.csv.lzo'",
    )
    .await;
    assert!(
        lineage.contains("| 1     | 1      | 64       | 6       |"),
        "{lineage}"
    );

    // The catalog's `dictionary = false` and `encoding` reach the Parquet writer: the line
    // numbers (all distinct) have no dictionary and are delta-encoded (DuckDB read them back
    // above), the fields keep their dictionaries.
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let files = parquet_files(&dir.path().join("lake/bronze/online_retail"));
    assert_eq!(files.len(), 1);
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    let column = |name: &str| {
        group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert!(column("_source_line").dictionary_page_offset().is_none());
    assert!(
        column("_source_line")
            .encodings()
            .any(|e| e == deltalake::parquet::basic::Encoding::DELTA_BINARY_PACKED),
        "{:?}",
        column("_source_line").encodings().collect::<Vec<_>>()
    );
    assert!(column("InvoiceNo").dictionary_page_offset().is_some());
    // Statistics only where the Delta log keeps them (delta.dataSkippingStatsColumns).
    assert!(column("_source_line").statistics().is_some());
    assert!(column("_ingested_at").statistics().is_some());
    assert!(column("InvoiceNo").statistics().is_none());
    assert!(column("_source_file").statistics().is_none());
}

#[tokio::test]
async fn columns_are_matched_by_name_and_unknown_ones_rescued() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    // Reordered columns, CustomerID missing, one column the table does not know.
    let text = "Country,InvoiceNo,Channel,StockCode,Description,Quantity,InvoiceDate,UnitPrice\n\
                France,536370,web,22728,ALARM CLOCK,24,2010-12-01 08:45:00,3.75\n";
    write_drop(&drops, "reordered.csv.lzo", text.as_bytes());
    let report = lake.append([drops.to_str().unwrap()]).await.unwrap();
    assert_eq!((report.added, report.rows, report.rejects), (1, 1, 0));
    let rows = query(
        &lake,
        "bronze.online_retail",
        "SELECT \"InvoiceNo\", \"Country\", \"CustomerID\" IS NULL AS no_customer, _rescued_data FROM t",
    )
    .await;
    assert!(
        rows.contains("| 536370    | France  | true        | {\"Channel\":\"web\"} |"),
        "{rows}"
    );
    // A header sharing no column with the table is a bad drop, not rows of nothing.
    write_drop(&drops, "alien.csv.lzo", b"a,b\n1,2\n");
    let v = version(&lake, "bronze.online_retail").await;
    let report = lake
        .append([drops.join("alien.csv.lzo").to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!(report.failed, 1);
    assert!(
        report.drops[0]
            .error
            .as_deref()
            .unwrap()
            .contains("shares no column")
    );
    assert_eq!(version(&lake, "bronze.online_retail").await, v);
}

#[tokio::test]
async fn json_lines_drops() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    let text = "{\"InvoiceNo\":\"536365\",\"StockCode\":\"85123A\",\"Quantity\":6,\"UnitPrice\":2.50,\"CustomerID\":null,\"Country\":\"United Kingdom\",\"device\":{\"os\":\"ios\"}}\n\
                not json\n\
                {\"InvoiceNo\":\"536366\",\"Description\":\"say \\\"hi\\\"\"}\n";
    write_drop(&drops, "events.json.lzo", text.as_bytes());
    let report = lake.append([drops.to_str().unwrap()]).await.unwrap();
    assert_eq!((report.rows, report.rejects), (2, 1));
    let rows = query(
        &lake,
        "bronze.online_retail",
        "SELECT _source_line, \"InvoiceNo\", \"Description\", \"Quantity\", \"UnitPrice\", \"CustomerID\", _rescued_data FROM t ORDER BY 1",
    )
    .await;
    let expected = "\
+--------------+-----------+-------------+----------+-----------+------------+-------------------------+
| _source_line | InvoiceNo | Description | Quantity | UnitPrice | CustomerID | _rescued_data           |
+--------------+-----------+-------------+----------+-----------+------------+-------------------------+
| 1            | 536365    |             | 6        | 2.50      |            | {\"device\":{\"os\":\"ios\"}} |
| 3            | 536366    | say \"hi\"    |          |           |            |                         |
+--------------+-----------+-------------+----------+-----------+------------+-------------------------+";
    assert_eq!(rows, expected);
    let rejects = query(
        &lake,
        "bronze.online_retail_rejects",
        "SELECT _source_line, reason FROM t",
    )
    .await;
    assert!(
        rejects.contains("| 2            | not a JSON object |"),
        "{rejects}"
    );
}

#[tokio::test]
async fn each_drop_lands_exactly_once_whatever_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    let a = format!("{HEADER}1,A,x,1,2010-12-01 08:00:00,1.0,1.0,UK\n");
    let b = format!("{HEADER}2,B,y,2,2010-12-02 08:00:00,2.0,2.0,UK\n");
    let pa = write_drop(&drops, "a.csv.lzo", a.as_bytes());
    write_drop(&drops, "b.csv.lzo", b.as_bytes());
    let r1 = lake.append([drops.to_str().unwrap()]).await.unwrap();
    assert_eq!((r1.added, r1.skipped), (2, 0));
    let v = version(&lake, "bronze.online_retail").await;
    assert_eq!(v, r1.version_after);
    // Again: nothing added, no new version.
    let r2 = lake.append([drops.to_str().unwrap()]).await.unwrap();
    assert_eq!((r2.added, r2.skipped), (0, 2));
    assert_eq!(version(&lake, "bronze.online_retail").await, v);
    // The same bytes under another name are the same drop.
    std::fs::copy(&pa, drops.join("a-renamed.csv.lzo")).unwrap();
    let r3 = lake
        .append([drops.join("*.lzo").to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!((r3.added, r3.skipped), (0, 3));
    assert_eq!(version(&lake, "bronze.online_retail").await, v);
    let n = query(&lake, "bronze.online_retail", "SELECT count(*) AS n FROM t").await;
    assert!(n.contains("| 2 |"), "{n}");
}

#[tokio::test]
async fn bad_drops_commit_nothing_and_keep_going_lands_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    let mut big = HEADER.to_string();
    for i in 0..20_000 {
        big.push_str(&format!(
            "{i},S{i},item {i},1,2010-12-01 08:00:00,1.0,12345.0,UK\n"
        ));
    }
    let good = write_drop(&drops, "1-good.csv.lzo", big.as_bytes());
    let z = std::fs::read(&good).unwrap();
    std::fs::write(drops.join("2-truncated.csv.lzo"), &z[..z.len() / 2]).unwrap();
    let mut corrupt = z.clone();
    let n = corrupt.len();
    corrupt[n - 50] ^= 0xff;
    corrupt[n - 60] ^= 0xff;
    std::fs::write(drops.join("3-corrupt.csv.lzo"), &corrupt).unwrap();
    std::fs::write(drops.join("4-not-lzop.csv.lzo"), b"InvoiceNo\n1\n").unwrap();
    let other = format!("{HEADER}9,Z,z,1,2010-12-01 08:00:00,1.0,1.0,UK\n");
    write_drop(&drops, "5-good.csv.lzo", other.as_bytes());

    let before = (
        version(&lake, "bronze.online_retail").await,
        version(&lake, "bronze.online_retail_rejects").await,
    );
    // Without --keep-going: the first good drop lands, the run stops at the truncated one.
    let r = lake.append([drops.to_str().unwrap()]).await.unwrap();
    let st: Vec<_> = r.drops.iter().map(|d| d.status).collect();
    assert_eq!(
        st,
        [
            DropStatus::Added,
            DropStatus::Failed,
            DropStatus::NotAttempted,
            DropStatus::NotAttempted,
            DropStatus::NotAttempted
        ]
    );
    assert!(r.drops[1].bad_input);
    let e = r.drops[1].error.as_deref().unwrap();
    assert!(
        e.contains("2-truncated.csv.lzo") && e.contains("truncated"),
        "{e}"
    );
    assert_eq!(version(&lake, "bronze.online_retail").await, before.0 + 1);

    // With keep-going: the bad ones fail, each named; the other good one lands; nothing partial.
    let r = lake
        .append([drops.to_str().unwrap()])
        .with_keep_going(true)
        .await
        .unwrap();
    let st: Vec<_> = r.drops.iter().map(|d| d.status).collect();
    assert_eq!(
        st,
        [
            DropStatus::Skipped,
            DropStatus::Failed,
            DropStatus::Failed,
            DropStatus::Failed,
            DropStatus::Added
        ]
    );
    assert!(
        r.drops[2]
            .error
            .as_deref()
            .unwrap()
            .contains("3-corrupt.csv.lzo")
    );
    assert!(r.drops[3].error.as_deref().unwrap().contains("bad magic"));
    assert_eq!(version(&lake, "bronze.online_retail").await, before.0 + 2);
    assert_eq!(
        version(&lake, "bronze.online_retail_rejects").await,
        before.1
    );
    let n = query(&lake, "bronze.online_retail", "SELECT count(*) AS n FROM t").await;
    assert!(n.contains("| 20001 |"), "{n}");
    // No orphaned data files from the failed drops either.
    let files = walk_parquet(&dir.path().join("lake/bronze/online_retail"));
    assert_eq!(files, 2, "one data file per landed drop");
}

fn walk_parquet(dir: &Path) -> usize {
    parquet_files(dir).len()
}

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if !p.ends_with("_delta_log") {
                files.extend(parquet_files(&p));
            }
        } else if p.extension().is_some_and(|x| x == "parquet") {
            files.push(p);
        }
    }
    files
}

#[test]
fn cli_append_reports_json_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    write_drop(
        &drops,
        "a.csv.lzo",
        format!("{HEADER}1,A,x,1,2010-12-01 08:00:00,1.0,1.0,UK\n").as_bytes(),
    );
    std::fs::write(drops.join("b.csv.lzo"), b"garbage").unwrap();
    let run = |args: &[&str]| run_cli(&lake, args);
    let (code, _, err) = run(&["lake", "append", drops.to_str().unwrap()]);
    assert_eq!(code, Some(2), "append before init is an error: {err}");
    assert!(err.contains("lake init"), "{err}");
    // Quiet by default: creating the tables logs nothing (the Delta kernel's errors for tables
    // that do not exist yet are not the user's).
    let (code, _, err) = run(&["lake", "init"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err, "", "lake init wrote to standard error");
    let (code, out, err) = run(&[
        "lake",
        "append",
        "--keep-going",
        "--json",
        drops.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["added"], 1);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["rows"], 1);
    let (code, out, _) = run(&[
        "lake",
        "append",
        "--json",
        drops.join("a.csv.lzo").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["added"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(v["version_before"], v["version_after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_drops_keep_line_numbers_across_chunks_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let drops = dir.path().join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    // ~9 MB: several parse chunks and many lzop blocks; every 7th row spans three lines.
    let mut text = HEADER.to_string();
    let mut line = 2u64;
    let (mut sum_lines, mut rows, mut multi) = (0u64, 0u64, 0u64);
    for i in 0..120_000u64 {
        sum_lines += line;
        rows += 1;
        if i % 7 == 0 {
            text.push_str(&format!("{i},S{i},\"LINE ONE\nLINE, \"\"TWO\"\"\nTHREE\",{i},2010-12-01 08:00:00,1.5,12345.0,UK\n"));
            line += 3;
            multi += 1;
        } else {
            text.push_str(&format!("{i},S{i},PLAIN ITEM NUMBER {i},{i},2010-12-01 08:00:00,1.5,12345.0,United Kingdom\n"));
            line += 1;
        }
    }
    write_drop(&drops, "big.csv.lzo", text.as_bytes());
    // Three Parquet writers, as a large drop gets: rows spread over three files, one commit.
    let r = lake
        .append([drops.to_str().unwrap()])
        .with_writers(Some(3))
        .await
        .unwrap();
    assert_eq!(r.version_after, r.version_before + 1);
    assert_eq!(
        walk_parquet(&dir.path().join("lake/bronze/online_retail")),
        3
    );
    assert_eq!((r.rows, r.rejects), (rows, 0));
    let q = query(
        &lake,
        "bronze.online_retail",
        "SELECT sum(_source_line) AS s, count(*) FILTER (WHERE \"Description\" = 'LINE ONE\nLINE, \"TWO\"\nTHREE') AS m, \
         count(*) FILTER (WHERE CAST(\"Quantity\" AS BIGINT) = CAST(\"InvoiceNo\" AS BIGINT)) AS aligned FROM t",
    )
    .await;
    let want = format!("| {sum_lines} | {multi} | {rows} |");
    assert!(
        q.lines().any(|l| l.split_whitespace().collect::<String>()
            == want.split_whitespace().collect::<String>()),
        "{q}\nwant {want}"
    );
}
