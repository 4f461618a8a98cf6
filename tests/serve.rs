//! Scoring the present and serving it: the features-only snapshot as of the last silver
//! timestamp (no label, no row from its cutoff on), scores of that cutoff, models refusing
//! features of another definition, and `berserkr serve` answering as `score --customer` does.

mod common;

use std::io::{BufRead, BufReader, Read, Write};

use std::path::Path;

use berserkr::catalog::Catalog;
use berserkr::lake::At;
use berserkr::ml::{ModelKind, Params};
use berserkr::{Error, Lakehouse};
use common::{berserkr, lake, query, repo, run_python, write_drop};
use serde_json::Value;

const SCORING: &str = "gold.scoring_features";

/// 40,000 generated rows through bronze, silver and gold (monthly cutoffs), and a small model.
async fn scored_lake(dir: &Path) -> Lakehouse {
    let csv = dir.join("gen.csv");
    run_python(&[
        repo()
            .join("tests/tools/peers/gen_online_retail.py")
            .as_os_str(),
        "40000".as_ref(),
        csv.as_os_str(),
        "--seed".as_ref(),
        "5".as_ref(),
    ]);
    let drops = dir.join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    write_drop(&drops, "gen.csv.lzo", &std::fs::read(&csv).unwrap());
    let lake = lake(dir).await;
    lake.append([drops.to_str().unwrap()]).await.unwrap();
    lake.refresh_silver().await.unwrap();
    lake.refresh_gold()
        .with_cutoffs(berserkr::ops::gold::Cutoffs::Monthly)
        .await
        .unwrap();
    let mut params = Params::defaults(ModelKind::GradientBoosting);
    params.trees = 12;
    params.max_depth = 4;
    lake.train()
        .with_params(params)
        .with_out(dir.join("model"))
        .await
        .unwrap();
    lake
}

/// The first value of a one-row query, as text.
async fn one(lake: &Lakehouse, table: &str, sql: &str) -> String {
    let out = query(lake, table, sql).await;
    out.lines()
        .nth(3)
        .unwrap()
        .trim_matches(|c| c == '|' || c == ' ')
        .to_string()
}

/// A drop of two purchases by customer `customer` on `day` (after the generated data).
fn later_drop(dir: &Path, name: &str, day: &str, customer: u32) -> std::path::PathBuf {
    let text = format!(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
         990001,ZZ1,LATE ITEM,2,{day} 09:00:00,1.5,{customer}.0,UK\n\
         990002,ZZ2,LATE ITEM 2,1,{day} 10:00:00,2.5,{customer}.0,UK\n"
    );
    write_drop(dir, name, text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scoring_snapshot_has_no_label_and_no_row_from_its_cutoff_on() {
    let dir = tempfile::tempdir().unwrap();
    let lake = scored_lake(dir.path()).await;
    let last = one(
        &lake,
        "silver.transactions",
        "SELECT CAST(max(InvoiceDate) AS VARCHAR) FROM t",
    )
    .await;
    let cutoff = one(&lake, SCORING, "SELECT max(cutoff) FROM t").await;
    assert_eq!(
        cutoff,
        last.replace('T', " "),
        "the cutoff is the last silver timestamp"
    );
    assert_eq!(
        one(&lake, SCORING, "SELECT count(DISTINCT cutoff) FROM t").await,
        "1"
    );
    // No label column at all, so nothing can train on it.
    let table = lake.table(&SCORING.parse().unwrap()).await.unwrap();
    let schema = table.snapshot().unwrap().schema();
    assert!(schema.fields().all(|f| f.name() != "label"));
    let e = lake
        .train()
        .with_table(SCORING)
        .with_out(dir.path().join("nope"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    // Point in time: every feature from rows strictly before the cutoff, and every pair that
    // had such rows is there.
    let late = one(
        &lake,
        SCORING,
        &format!("SELECT count(*) FROM t WHERE last_purchase >= TIMESTAMP '{cutoff}'"),
    )
    .await;
    assert_eq!(late, "0");
    let pairs = one(&lake, SCORING, "SELECT count(*) FROM t").await;
    let expected = one(
        &lake,
        "silver.transactions",
        &format!(
            "SELECT count(*) FROM (SELECT DISTINCT CustomerID, StockCode FROM t \
             WHERE InvoiceDate < TIMESTAMP '{cutoff}' AND CustomerID IS NOT NULL)"
        ),
    )
    .await;
    assert_eq!(pairs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_describe_the_present_and_follow_each_drop() {
    let dir = tempfile::tempdir().unwrap();
    let lake = scored_lake(dir.path()).await;
    let model = dir.path().join("model");
    let s = lake.score(&model).await.unwrap();
    let cutoff = one(&lake, SCORING, "SELECT max(cutoff) FROM t").await;
    assert_eq!(s.cutoff, cutoff);
    assert_eq!(s.source_table, SCORING);
    assert_eq!(s.train_table, "gold.customer_item_features");
    let recorded = one(
        &lake,
        "gold.purchase_scores",
        "SELECT concat(cutoff, '|', source_table, '|', CAST(source_version AS VARCHAR), '|', \
         train_table, '|', CAST(train_version AS VARCHAR)) FROM t LIMIT 1",
    )
    .await;
    assert_eq!(
        recorded,
        format!(
            "{}|{}|{}|{}|{}",
            s.cutoff, s.source_table, s.source_version, s.train_table, s.train_version
        )
    );
    // An older cutoff of the training table on request.
    let older = lake
        .score(&model)
        .with_cutoff(Some("2011-01-01 00:00:00".into()))
        .top_for_customer(0, 1)
        .await;
    assert!(older.is_ok());
    // A new drop: refresh, score: the scores move to its last timestamp.
    let drops = dir.path().join("late");
    std::fs::create_dir_all(&drops).unwrap();
    later_drop(&drops, "late.csv.lzo", "2012-01-05", 99001);
    lake.append([drops.to_str().unwrap()]).await.unwrap();
    lake.refresh_silver().await.unwrap();
    let g = lake.refresh_gold().await.unwrap();
    assert_eq!(g.scoring.unwrap().cutoff, "2012-01-05 10:00:00");
    let s2 = lake.score(&model).await.unwrap();
    assert_eq!(s2.cutoff, "2012-01-05 10:00:00");
    assert!(s2.version > s.version);
    // The new customer's 09:00 purchase is before the cutoff: scored; nothing after it.
    let top = lake.score(&model).top_for_customer(99001, 5).await.unwrap();
    assert_eq!(top.len(), 1, "{top:?}");
    assert_eq!(top[0].stock_code, "ZZ1");
}

/// The same lake seen by a build whose gold SQL computes `n_purchases` another way.
fn with_changed_definition(lake: &Lakehouse) -> Lakehouse {
    let files: Vec<(String, String)> = Catalog::embedded_files()
        .map(|(p, t)| {
            let t = if p == "tables/gold/customer_item_features.sql" {
                t.replace("count(*) AS n_purchases", "count(*) + 1 AS n_purchases")
            } else {
                t.to_string()
            };
            (p.to_string(), t)
        })
        .collect();
    let changed = lake.clone().with_catalog(
        Catalog::from_files(files.iter().map(|(p, t)| (p.as_str(), t.as_str()))).unwrap(),
    );
    assert_ne!(
        changed
            .catalog()
            .definition("tables/gold/customer_item_features.sql")
            .unwrap(),
        lake.catalog()
            .definition("tables/gold/customer_item_features.sql")
            .unwrap(),
        "the replacement changed the SQL"
    );
    changed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_refuses_features_of_another_definition() {
    let dir = tempfile::tempdir().unwrap();
    let lake = scored_lake(dir.path()).await;
    let model = dir.path().join("model");
    lake.score(&model).await.unwrap();
    // Another build changes gold's SQL; its next refresh computes features another way.
    let changed = with_changed_definition(&lake);
    let drops = dir.path().join("late");
    std::fs::create_dir_all(&drops).unwrap();
    later_drop(&drops, "late.csv.lzo", "2012-01-05", 99001);
    changed.append([drops.to_str().unwrap()]).await.unwrap();
    changed.refresh_silver().await.unwrap();
    changed.refresh_gold().await.unwrap();
    let e = lake.score(&model).await.unwrap_err();
    match &e {
        Error::InvalidModel { reason, .. } => assert!(reason.contains("definition"), "{e}"),
        other => panic!("{other:?}"),
    }
    // The CLI says so, exit 2.
    let out = berserkr()
        .arg("--lake")
        .arg(dir.path().join("lake"))
        .args(["score", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("definition"));
    // A refresh of the changed definition recomputed every cutoff (old months too), so gold does
    // not mix definitions: a model trained on the new features scores them.
    let again = changed.refresh_gold().await.unwrap();
    assert_eq!(again.version, None, "second refresh is a no-op: {again:?}");
    let newer = changed
        .train()
        .with_at(At::Latest)
        .with_out(dir.path().join("model2"))
        .await
        .unwrap();
    assert_eq!(
        newer.manifest.feature_definition.as_deref(),
        Some(
            changed
                .catalog()
                .definition("tables/gold/customer_item_features.sql")
                .unwrap()
                .as_str()
        )
    );
    changed.score(dir.path().join("model2")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_recomputes_every_cutoff_from_the_same_silver() {
    let dir = tempfile::tempdir().unwrap();
    let lake = scored_lake(dir.path()).await;
    let before = lake
        .refresh_gold()
        .with_cutoffs(berserkr::ops::gold::Cutoffs::Monthly)
        .await
        .unwrap();
    assert_eq!(before.version, None, "up to date: {before:?}");
    let changed = with_changed_definition(&lake);
    // Silver has not moved; the definition has: a refresh of the latest cutoff recomputes every
    // cutoff gold holds, and the scoring snapshot.
    let g = changed.refresh_gold().await.unwrap();
    assert!(g.version.is_some(), "{g:?}");
    assert!(
        before.cutoffs.iter().all(|c| g.cutoffs.contains(c)),
        "{g:?}"
    );
    assert!(g.scoring.as_ref().unwrap().version.is_some(), "{g:?}");
    let defs = berserkr::lake::definitions(
        &changed
            .table_at(&"gold.customer_item_features".parse().unwrap(), &At::Latest)
            .await
            .unwrap(),
        &"gold.customer_item_features".parse().unwrap(),
    )
    .await
    .unwrap();
    let current = changed
        .catalog()
        .definition("tables/gold/customer_item_features.sql")
        .unwrap();
    assert!(
        defs.values()
            .all(|d| d.as_deref() == Some(current.as_str())),
        "{defs:?}"
    );
    // The original build sees another definition in gold: it recomputes too (no silent mix).
    let back = lake.refresh_gold().await.unwrap();
    assert!(back.version.is_some(), "{back:?}");
}

/// One HTTP/1.1 request; the status and the JSON body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A server refusing a long body may stop reading it: the rest of the write can fail.
    let _ = s.write_all(request.as_bytes());
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_as_score_customer_does() {
    let dir = tempfile::tempdir().unwrap();
    let lake = scored_lake(dir.path()).await;
    let model = dir.path().join("model");
    let scored = lake.score(&model).await.unwrap();
    let cli = || {
        let mut c = berserkr();
        c.arg("--lake").arg(dir.path().join("lake"));
        c
    };
    let mut child = cli()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--reload-secs",
            "1",
            "--model",
        ])
        .arg(&model)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _served = Served(child);
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");

    let (status, health) = http(&addr, "GET", "/health", "");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["model_id"], scored.model_id);
    assert_eq!(health["cutoff"], scored.cutoff);
    // A customer with several items: the served top equals `score --customer`.
    let customer = one(
        &lake,
        "gold.purchase_scores",
        "SELECT CustomerID FROM t GROUP BY CustomerID HAVING count(*) >= 5 ORDER BY CustomerID LIMIT 1",
    )
    .await;
    let (status, top) = http(&addr, "GET", &format!("/customers/{customer}/top?k=5"), "");
    assert_eq!(status, 200, "{top}");
    let out = cli()
        .args([
            "score",
            "--json",
            "--top",
            "5",
            "--customer",
            &customer,
            "--model",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(top["items"], expected, "served vs score --customer");
    assert_eq!(top["items"].as_array().unwrap().len(), 5);
    // POST /score: the model's probabilities for feature rows, as scored.
    let rows = query(
        &lake,
        SCORING,
        &format!("SELECT * FROM t WHERE CustomerID = {customer} ORDER BY StockCode"),
    )
    .await;
    assert!(rows.lines().count() > 5);
    let features: Vec<String> = berserkr::ml::read_manifest(&model).await.unwrap().features;
    let sql = format!(
        "SELECT StockCode, {} FROM t WHERE CustomerID = {customer} ORDER BY StockCode",
        features
            .iter()
            .map(|f| format!("CAST({f} AS DOUBLE) AS {f}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let table = lake.table(&SCORING.parse().unwrap()).await.unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new_with_config({
        let mut c = deltalake::datafusion::prelude::SessionConfig::new();
        c.options_mut().sql_parser.enable_ident_normalization = false;
        c
    });
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let mut payload = Vec::new();
    let mut items = Vec::new();
    for b in &batches {
        use deltalake::arrow::array::AsArray;
        for r in 0..b.num_rows() {
            let codes = deltalake::arrow::compute::cast(
                b.column(0),
                &deltalake::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            items.push(codes.as_string::<i32>().value(r).to_string());
            let mut row = serde_json::Map::new();
            for (i, f) in features.iter().enumerate() {
                let v = b
                    .column(i + 1)
                    .as_primitive::<deltalake::arrow::datatypes::Float64Type>()
                    .value(r);
                row.insert(f.clone(), serde_json::json!(v));
            }
            payload.push(Value::Object(row));
        }
    }
    let (status, scores) = http(
        &addr,
        "POST",
        "/score",
        &serde_json::json!({ "rows": payload }).to_string(),
    );
    assert_eq!(status, 200, "{scores}");
    let by_item: std::collections::HashMap<String, f64> = items
        .iter()
        .cloned()
        .zip(
            scores["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap()),
        )
        .collect();
    for item in expected.as_array().unwrap() {
        let code = item["stock_code"].as_str().unwrap();
        assert!(
            (by_item[code] - item["score"].as_f64().unwrap()).abs() < 1e-12,
            "{code}: POST /score {} vs score {}",
            by_item[code],
            item["score"]
        );
    }
    // Malformed requests get 4xx with a reason; the server keeps serving.
    for (method, path, body, code) in [
        ("GET", "/customers/abc/top", "", 400),
        (
            "GET",
            &format!("/customers/{customer}/top?k=0") as &str,
            "",
            400,
        ),
        (
            "GET",
            &format!("/customers/{customer}/top?k=x") as &str,
            "",
            400,
        ),
        ("GET", "/customers/999999999/top", "", 404),
        ("GET", "/nope", "", 404),
        ("DELETE", "/health", "", 405),
        ("POST", "/score", "{not json", 400),
        ("POST", "/score", "{\"rows\": [{\"n_purchases\": 1}]}", 400),
        ("POST", "/score", "{\"rows\": 3}", 400),
        ("POST", "/score", &"x".repeat((1 << 20) + 100) as &str, 413),
    ] {
        let (status, body) = http(&addr, method, path, body);
        assert_eq!(status, code, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
    assert_eq!(http(&addr, "GET", "/health", "").0, 200);
    // Newer scores land (an older cutoff, scored on request): the server reloads them.
    let older = lake
        .score(&model)
        .with_cutoff(Some("2011-01-01 00:00:00".into()))
        .await
        .unwrap();
    let mut reloaded = false;
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let (_, h) = http(&addr, "GET", "/health", "");
        if h["cutoff"] == older.cutoff {
            reloaded = true;
            break;
        }
    }
    assert!(
        reloaded,
        "the server did not pick up version {:?}",
        older.version
    );
}
