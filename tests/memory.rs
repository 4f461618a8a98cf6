//! Gold within a memory limit: with a limit below what the real data's refresh keeps in memory,
//! silver is read from its files and a view goes to a spill file, and gold holds the same rows; with a limit too small for what cannot spill, the
//! refresh fails with an error naming the limit and leaves the tables as they were.

mod common;

use std::path::Path;

use berserkr::Lakehouse;
use common::*;
use deltalake::arrow::array::AsArray;
use deltalake::arrow::datatypes::Int64Type;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Rows of `t` in one lake and not in the other (every column compared; floats to 1e-9 of
/// their size, as sums over other orders of the same rows may differ in the last bit), and the
/// rows of each.
async fn differences(a: &Lakehouse, b: &Lakehouse, t: &str) -> (i64, i64, i64) {
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    let table = a.table(&id(t)).await.unwrap();
    let columns: Vec<(String, bool)> = table
        .snapshot()
        .unwrap()
        .schema()
        .fields()
        .map(|f| {
            let float = matches!(
                f.data_type(),
                deltalake::kernel::DataType::Primitive(deltalake::kernel::PrimitiveType::Double)
            );
            (f.name().to_string(), float)
        })
        .collect();
    ctx.register_table(
        TableReference::bare("a"),
        table.table_provider().await.unwrap(),
    )
    .unwrap();
    let other = b.table(&id(t)).await.unwrap();
    ctx.register_table(
        TableReference::bare("b"),
        other.table_provider().await.unwrap(),
    )
    .unwrap();
    let same: Vec<String> = columns
        .iter()
        .map(|(c, float)| match float {
            true => format!(
                "((a.{c} IS NULL AND b.{c} IS NULL) OR abs(a.{c} - b.{c}) <= 1e-9 * greatest(abs(a.{c}), 1.0))"
            ),
            false => format!("(a.{c} IS NOT DISTINCT FROM b.{c})"),
        })
        .collect();
    let sql = format!(
        "SELECT (SELECT count(*) FROM a) AS na, (SELECT count(*) FROM b) AS nb, count(*) AS differ FROM a FULL JOIN b \
         ON a.cutoff = b.cutoff AND a.CustomerID = b.CustomerID AND a.StockCode = b.StockCode \
         WHERE a.CustomerID IS NULL OR b.CustomerID IS NULL OR NOT ({})",
        same.join(" AND ")
    );
    let rows = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let v = |i: usize| rows[0].column(i).as_primitive::<Int64Type>().value(0);
    (v(0), v(1), v(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_under_a_small_memory_limit_spills_and_holds_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::lake(dir.path()).await;
    let drops = repo().join("examples/data/online-retail/drops");
    lake.append([drops.to_str().unwrap()]).await.unwrap();
    lake.refresh_silver().await.unwrap();
    copy_dir(&dir.path().join("lake"), &dir.path().join("small"));
    copy_dir(&dir.path().join("lake"), &dir.path().join("tiny"));

    let roomy = lake.refresh_gold().await.unwrap();
    assert!(roomy.not_in_memory.is_empty(), "{:?}", roomy.not_in_memory);

    // 64 MiB: a quarter (16 MiB) for what gold keeps, less than the real data's silver columns
    // (25 MB) and the present's pair view (19 MB; the latest cutoff's, 12 MB, fits).
    let small = Lakehouse::open(dir.path().join("small").to_str().unwrap())
        .unwrap()
        .with_memory_limit(64 << 20);
    let report = small.refresh_gold().await.unwrap();
    assert_eq!(report.not_in_memory, ["silver", "pair"]);
    assert_eq!(
        (report.rows, report.positives),
        (roomy.rows, roomy.positives)
    );
    for t in ["gold.customer_item_features", "gold.scoring_features"] {
        let (a, b, differ) = differences(&lake, &small, t).await;
        assert!(a > 100_000, "{t}: {a} rows");
        assert_eq!((a, b, differ), (a, a, 0), "{t}");
    }

    // 256 KiB: not even the small tables a join builds fit. A clear error; nothing committed.
    let tiny = Lakehouse::open(dir.path().join("tiny").to_str().unwrap())
        .unwrap()
        .with_memory_limit(256 << 10);
    let before = version(&tiny, "gold.customer_item_features").await;
    let e = tiny.refresh_gold().await.unwrap_err();
    let chain = {
        let mut s = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(c) = source {
            s.push_str(&format!(": {c}"));
            source = c.source();
        }
        s
    };
    assert!(chain.contains("--memory-limit"), "{chain}");
    assert!(chain.contains("gold.customer_item_features"), "{chain}");
    assert_eq!(version(&tiny, "gold.customer_item_features").await, before);
    assert_eq!(version(&tiny, "gold.scoring_features").await, before);
}
