//! S3 faults: moto's server behind a fault-injecting proxy (`tools/fault_proxy.py`, on
//! 127.0.0.1) that answers 500/503, answers slowly, drops connections, loses the answer of a
//! request it did forward, or stops listening, in the middle of an append, a silver refresh and
//! a gold commit. Each run ends with a clear error and nothing committed, or succeeds after
//! object_store's retries; nothing is lost or doubled, and a rerun lands the work once.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use berserkr::Lakehouse;
use common::s3;
use common::*;

/// The proxy: one per test (tests run in parallel), stopped when the test's process exits.
struct Proxy {
    port: u16,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    _child: Child,
}

impl Proxy {
    fn start() -> Self {
        let upstream = s3::server().port;
        let mut child = Command::new(python())
            .arg(repo().join("tests/tools/fault_proxy.py"))
            .arg(upstream.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (make py-deps)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        Self {
            port: line.trim().parse().expect("the proxy prints its port"),
            io: Mutex::new((child.stdin.take().unwrap(), out)),
            _child: child,
        }
    }

    fn send(&self, cmd: serde_json::Value) -> serde_json::Value {
        let mut io = self.io.lock().unwrap();
        writeln!(io.0, "{cmd}").unwrap();
        io.0.flush().unwrap();
        let mut line = String::new();
        io.1.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn rules(&self, rules: serde_json::Value) {
        self.send(serde_json::json!({ "rules": rules }));
    }

    fn stats(&self) -> serde_json::Value {
        self.send(serde_json::json!({"stats": true}))
    }
}

/// A lake on moto: the library reaches it directly, the CLI through the proxy with tight
/// retry bounds (so a fault that outlasts them fails within seconds).
struct Fixture {
    dir: tempfile::TempDir,
    url: String,
    prefix: String,
    lake: Lakehouse,
    proxy: Proxy,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let server = s3::server();
        let url = server.lake_url(name);
        let lake = Lakehouse::open(&url)
            .unwrap()
            .with_storage_options(server.options());
        lake.init().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("berserkr.toml"),
            "[storage]\nmax_retries = 12\nretry_timeout = \"6s\"\n\
             \"backoff_config.init_backoff\" = \"50ms\"\n\"backoff_config.max_backoff\" = \"1s\"\n\
             timeout = \"3s\"\nconnect_timeout = \"1s\"\n",
        )
        .unwrap();
        let prefix = format!("/{}", url.trim_start_matches("s3://").trim_end_matches('/'));
        Self {
            dir,
            url,
            prefix,
            lake,
            proxy: Proxy::start(),
        }
    }

    fn cli(&self) -> Command {
        let mut c = berserkr();
        c.arg("--lake").arg(&self.url).current_dir(self.dir.path());
        for (k, v) in s3::server().env() {
            if k == "AWS_ENDPOINT" {
                c.env(k, format!("http://127.0.0.1:{}", self.proxy.port));
            } else {
                c.env(k, v);
            }
        }
        c
    }

    /// "METHOD /bucket/prefix/<path>", what the proxy's rules match.
    fn req(&self, method: &str, path: &str) -> String {
        format!("{method} {}{path}", self.prefix)
    }

    /// (version, rows as read from the files) of a table.
    async fn state(&self, t: &str) -> (u64, String) {
        let v = version(&self.lake, t).await;
        let rows = query(&self.lake, t, "SELECT count(*) AS n FROM t").await;
        (v, rows)
    }
}

fn drops(n: usize) -> Vec<PathBuf> {
    ["2010-12-01", "2010-12-02", "2010-12-03", "2011-03-01"][..n]
        .iter()
        .map(|d| repo().join(format!("examples/data/online-retail/drops/{d}.csv.lzo")))
        .collect()
}

fn run(mut c: Command) -> std::process::Output {
    let out = c.output().unwrap();
    eprintln!(
        "{:?} -> {}: {}",
        c.get_args().collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn append(f: &Fixture, drops: &[PathBuf]) -> std::process::Output {
    let mut c = f.cli();
    c.args(["lake", "append"]).args(drops);
    run(c)
}

/// Rows of each drop in bronze, by source file.
async fn per_drop(lake: &Lakehouse) -> String {
    query(
        lake,
        "bronze.online_retail",
        "SELECT _source_file, count(*) AS n FROM t GROUP BY 1 ORDER BY 1",
    )
    .await
}

/// The same drops appended without faults, on a lake of their own: what must be there.
async fn expected(ds: &[PathBuf]) -> String {
    let f = Fixture::new("faults-expected").await;
    f.lake
        .append(ds.iter().map(|d| d.to_str().unwrap()))
        .await
        .unwrap();
    per_drop(&f.lake)
        .await
        .lines()
        .map(|l| l.split('/').next_back().unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn per_drop_names(lake: &Lakehouse) -> String {
    per_drop(lake)
        .await
        .lines()
        .map(|l| l.split('/').next_back().unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Transient 503s (SlowDown) and 500s on data and commit writes, a slow store and dropped
/// connections: the append succeeds after retries, every drop once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_during_an_append_are_retried() {
    let f = Fixture::new("faults-transient").await;
    let ds = drops(3);
    let want = expected(&ds).await;
    f.proxy.rules(serde_json::json!([
        {"match": f.req("PUT", "/bronze/online_retail/part-"), "action": "status", "code": 503, "count": 2},
        {"match": f.req("PUT", "/bronze/online_retail/_delta_log/"), "action": "status", "code": 500, "count": 1},
        {"match": f.req("GET", ""), "skip": 5, "action": "delay", "seconds": 1.0, "count": 2},
        {"match": f.req("GET", ""), "skip": 10, "action": "drop", "count": 2},
        {"match": f.req("GET", "/bronze/online_retail/_delta_log/"), "skip": 3, "action": "delay", "seconds": 4.0, "count": 1},
    ]));
    let out = append(&f, &ds);
    let stats = f.proxy.stats();
    f.proxy.rules(serde_json::json!([]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(per_drop_names(&f.lake).await, want);
    eprintln!("faults injected: {stats}");
    for k in ["status", "delay", "drop"] {
        assert!(
            stats[k].as_u64().unwrap_or(0) > 0,
            "no {k} fault landed: {stats}"
        );
    }
}

/// The answer to the commit is lost after the store wrote it (a 500, or the connection
/// dropped): the writer finds its own commit and keeps its files. Before the fix it deleted
/// them: bronze listed files that no longer existed and no longer read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_keeps_its_files() {
    for action in ["after_status", "after_drop"] {
        let f = Fixture::new("faults-lost-answer").await;
        let ds = drops(2);
        let want = expected(&ds).await;
        f.proxy.rules(serde_json::json!([
            {"match": f.req("PUT", "/bronze/online_retail/_delta_log/"), "action": action, "code": 500, "count": 1},
        ]));
        let out = append(&f, &ds);
        let stats = f.proxy.stats();
        f.proxy.rules(serde_json::json!([]));
        assert_eq!(stats[action], 1, "{stats}");
        assert!(out.status.success(), "{action}: {}", stderr(&out));
        assert_eq!(per_drop_names(&f.lake).await, want, "{action}");
        let out = append(&f, &ds);
        assert!(out.status.success());
        assert_eq!(per_drop_names(&f.lake).await, want, "{action}: rerun");
        assert_eq!(
            f.lake.status().await.unwrap()[0]
                .orphans
                .as_ref()
                .unwrap()
                .files,
            0
        );
    }
}

/// A store that keeps failing, or stops for longer than the retries last, in the middle of an
/// append, a silver refresh and the gold commit: a clear error (exit 2, naming what failed),
/// nothing committed, and the rerun after it comes back lands everything once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_stopped_store_fails_cleanly_and_the_rerun_lands_once() {
    let f = Fixture::new("faults-hard").await;
    let ds = drops(4);
    let want = expected(&ds).await;

    // Append: every commit to bronze answered 500 for 15 s (longer than the retries).
    let before = f.state("bronze.online_retail").await;
    f.proxy.rules(serde_json::json!([
        {"match": f.req("PUT", "/bronze/online_retail/_delta_log/"), "action": "status", "code": 500, "ttl": 15},
    ]));
    let out = append(&f, &ds[..1]);
    f.proxy.rules(serde_json::json!([]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("500"), "{}", stderr(&out));
    assert_eq!(
        f.state("bronze.online_retail").await,
        before,
        "nothing committed"
    );
    let out = append(&f, &ds);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(per_drop_names(&f.lake).await, want);

    // Silver, on a second lake with the same drops and no faults: what the refresh gives.
    let g = Fixture::new("faults-silver-ref").await;
    g.lake
        .append(ds.iter().map(|d| d.to_str().unwrap()))
        .await
        .unwrap();
    g.lake.refresh_silver().await.unwrap();

    // Silver: the store stops for 20 s in the middle of the refresh. Each silver table keeps
    // its rows or takes all of the new ones (one commit per table).
    let tables = [
        "silver.transactions",
        "silver.cancellations",
        "silver.transactions_quarantine",
    ];
    let mut before = Vec::new();
    for t in tables {
        before.push(f.state(t).await);
    }
    f.proxy.rules(serde_json::json!([
        {"match": "", "skip": 20, "action": "stop", "seconds": 20, "count": 1},
    ]));
    let started = std::time::Instant::now();
    let mut c = f.cli();
    c.args(["lake", "refresh", "silver"]);
    let out = run(c);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(took.as_secs() < 20, "the error took {took:?}");
    for (t, b) in tables.iter().zip(&before) {
        let now = f.state(t).await;
        assert!(
            &now == b || now.1 == g.state(t).await.1,
            "{t} half-committed: {now:?}, before {b:?}"
        );
    }
    // Back after 20 s: the rerun lands it, as on the lake that saw no such fault.
    std::thread::sleep(std::time::Duration::from_secs(21).saturating_sub(took));
    let mut c = f.cli();
    c.args(["lake", "refresh", "silver"]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    for t in tables {
        assert_eq!(f.state(t).await.1, g.state(t).await.1, "{t}");
    }

    // Gold: its commit answered 503 twice (retried), then 500 until the retries run out.
    let gold = "gold.customer_item_features";
    let v0 = version(&f.lake, gold).await;
    f.proxy.rules(serde_json::json!([
        {"match": f.req("PUT", "/gold/customer_item_features/_delta_log/"), "action": "status", "code": 500, "ttl": 15},
    ]));
    let mut c = f.cli();
    c.args(["lake", "refresh", "gold"]);
    let out = run(c);
    f.proxy.rules(serde_json::json!([]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("gold"), "{}", stderr(&out));
    assert_eq!(version(&f.lake, gold).await, v0, "nothing committed");
    f.proxy.rules(serde_json::json!([
        {"match": f.req("PUT", "/gold/customer_item_features/_delta_log/"), "action": "status", "code": 503, "count": 2},
    ]));
    let mut c = f.cli();
    c.args(["lake", "refresh", "gold"]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(version(&f.lake, gold).await, v0 + 1, "one commit");
    assert!(f.proxy.stats()["status"].as_u64().unwrap() >= 2);
}

/// The commit's PUT gets no answer within the timeout (the proxy holds it 4 s against 3 s) and
/// lands later. object_store does not retry a conditional PUT that timed out, the writer finds
/// nothing in the log yet: it must keep its files (it deleted them before, and the late commit
/// then named files that no longer existed). The error says the commit may still land; once
/// it has, bronze reads every drop once, and the rerun adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_times_out_and_lands_later_keeps_its_files() {
    let f = Fixture::new("faults-late-commit").await;
    let ds = drops(2);
    let want = expected(&ds).await;
    let first = expected(&ds[..1]).await;
    f.proxy.rules(serde_json::json!([
        {"match": f.req("PUT", "/bronze/online_retail/_delta_log/"), "action": "delay", "seconds": 4.0, "count": 1},
    ]));
    let started = std::time::Instant::now();
    let out = append(&f, &ds);
    let stats = f.proxy.stats();
    assert_eq!(stats["delay"], 1, "{stats}");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("may still land") && stderr(&out).contains("kept"),
        "{}",
        stderr(&out)
    );
    // The held request reaches the store 4 s after it was sent.
    std::thread::sleep(std::time::Duration::from_secs(6).saturating_sub(started.elapsed()));
    f.proxy.rules(serde_json::json!([]));
    // The first drop's commit landed late, with its files (bronze reads); the second drop was
    // not attempted after the error.
    assert_eq!(
        per_drop_names(&f.lake).await,
        first,
        "the late commit's files"
    );
    let out = append(&f, &ds);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(per_drop_names(&f.lake).await, want, "rerun");
    let status = f.lake.status().await.unwrap();
    assert_eq!(status[0].orphans.as_ref().unwrap().files, 0, "orphans");
}

/// The store stops (connections refused) for 2.5 s in the middle of an append, with
/// berserkr's default retry bounds: the retries outlast it (ten waits of at least 300 ms) and
/// the append succeeds, every drop once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_stop_is_ridden_out_with_the_default_retries() {
    let f = Fixture::new("faults-short-stop").await;
    std::fs::write(f.dir.path().join("berserkr.toml"), "[storage]\n").unwrap();
    let ds = drops(2);
    let want = expected(&ds).await;
    f.proxy.rules(serde_json::json!([
        {"match": "", "skip": 8, "action": "stop", "seconds": 2.5, "count": 1},
    ]));
    let out = append(&f, &ds);
    let stats = f.proxy.stats();
    f.proxy.rules(serde_json::json!([]));
    assert_eq!(stats["stop"], 1, "{stats}");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(per_drop_names(&f.lake).await, want);
}
