//! Crash suite: `lake append`, `lake refresh silver`, `lake refresh gold`, `lake optimize`,
//! `lake restore` and `train` killed with SIGKILL at seeded random moments, on a file:// lake and
//! on moto's S3 server; 8 concurrent writers with one of them killed. After every kill: every
//! table opens, berserkr and DuckDB (an independent reader, of a copy of the bytes) read it at
//! the same version with the same rows, each table holds either what it held before the command
//! or what an unkilled run leaves (each drop wholly in or out of bronze); the rerun leaves
//! exactly what the unkilled run does; files the killed writer left are reported by
//! `lake status` as orphans, kept by a vacuum at the default retention and removed by one at 0.
//!
//! `BERSERKR_CRASH_TRIALS` (default 30) trials per command and store, delays drawn from
//! `BERSERKR_CRASH_SEED` (default: from the clock; printed, and named by every failure), so
//! a failing run is reproduced by setting it. `make crash TRIALS=N` runs long series.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berserkr::Lakehouse;
use common::s3;
use common::*;
use rand::{Rng, SeedableRng};

/// The real drops the trials append (about 10,000 rows in all).
const DROPS: [&str; 5] = [
    "2010-12-01",
    "2010-12-02",
    "2010-12-03",
    "2011-03-01",
    "2011-05-03",
];

fn drop_path(day: &str) -> PathBuf {
    repo().join(format!("examples/data/online-retail/drops/{day}.csv.lzo"))
}

fn trials() -> usize {
    std::env::var("BERSERKR_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

fn seed() -> u64 {
    std::env::var("BERSERKR_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_007
        })
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Store {
    Local,
    S3,
}

/// A lake of one trial: its URL, the library's handle, and a folder for models and copies.
struct Lake {
    store: Store,
    url: String,
    lake: Lakehouse,
}

impl Lake {
    fn new(store: Store, dir: &Path, name: &str) -> Self {
        let url = match store {
            Store::Local => {
                std::fs::create_dir_all(dir.join(name)).unwrap();
                url::Url::from_directory_path(dir.join(name))
                    .unwrap()
                    .to_string()
            }
            Store::S3 => s3::server().lake_url(name),
        };
        let mut lake = Lakehouse::open(&url).unwrap();
        if store == Store::S3 {
            lake = lake.with_storage_options(s3::server().options());
        }
        Self { store, url, lake }
    }

    fn cli(&self, cwd: &Path) -> Command {
        let mut c = berserkr();
        c.arg("--lake").arg(&self.url).current_dir(cwd);
        if self.store == Store::S3 {
            c.envs(s3::server().env());
        }
        c
    }

    /// A copy of this lake's objects at a new lake.
    async fn clone_to(&self, dir: &Path, name: &str) -> Lake {
        use deltalake::logstore::object_store::ObjectStoreExt;
        use futures::TryStreamExt;
        let to = Lake::new(self.store, dir, name);
        let opts = self.lake.storage_options();
        let (store, from) =
            berserkr::store::store_for(&url::Url::parse(&self.url).unwrap(), opts).unwrap();
        let (_, dest) =
            berserkr::store::store_for(&url::Url::parse(&to.url).unwrap(), opts).unwrap();
        let metas: Vec<_> = store.list(Some(&from)).try_collect().await.unwrap();
        let from_s = from.to_string();
        futures::stream::iter(metas)
            .map(|m| {
                let store = store.clone();
                let rel = m.location.to_string()[from_s.len()..]
                    .trim_start_matches('/')
                    .to_string();
                let target =
                    deltalake::logstore::object_store::path::Path::parse(format!("{dest}/{rel}"))
                        .unwrap();
                async move { store.copy(&m.location, &target).await.unwrap() }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        to
    }

    /// The lake's bytes in a local folder (for DuckDB, which reads local files here).
    async fn mirror(&self, to: &Path, cmd: Cmd) {
        use deltalake::logstore::object_store::ObjectStoreExt;
        use futures::TryStreamExt;
        let (store, from) = berserkr::store::store_for(
            &url::Url::parse(&self.url).unwrap(),
            self.lake.storage_options(),
        )
        .unwrap();
        let metas: Vec<_> = store.list(Some(&from)).try_collect().await.unwrap();
        let from_s = from.to_string();
        for m in metas {
            let rel = m.location.to_string()[from_s.len()..]
                .trim_start_matches('/')
                .to_string();
            let mut parts = rel.splitn(3, '/');
            let (layer, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !cmd.writes(&format!("{layer}.{name}")) {
                continue;
            }
            // Kept percent-encoded: the log names files so, and readers look for that name.
            let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            let p = to.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
}

use futures::StreamExt;

/// What one table holds: its version and a fingerprint of its rows, computed by reading every
/// data file (a missing file is an error, not a count from statistics).
#[derive(Debug, Clone, PartialEq)]
struct TableState {
    version: u64,
    rows: u64,
    /// Bronze: rows per source file (each drop wholly in or out); other tables: the rows'
    /// sum of the lengths of their first data column as text.
    content: BTreeMap<String, u64>,
}

async fn table_state(lake: &Lakehouse, t: &str) -> Result<TableState, String> {
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
    let table = lake.table(&id(t)).await.map_err(|e| format!("{t}: {e}"))?;
    let version = table.version().unwrap_or(0);
    let spec = lake.catalog().table(&id(t)).unwrap();
    let col = spec
        .columns
        .iter()
        .find(|c| !spec.partition_by.contains(&c.name))
        .unwrap()
        .name
        .clone();
    let sql = if t == "bronze.online_retail" {
        "SELECT _source_file AS k, count(*) AS n FROM t GROUP BY 1".to_string()
    } else {
        format!(
            "SELECT 'len' AS k, CAST(coalesce(sum(length(CAST(\"{col}\" AS VARCHAR))), 0) AS BIGINT) AS n FROM t \
             UNION ALL SELECT 'rows' AS k, count(*) AS n FROM t"
        )
    };
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    ctx.register_table(
        "t",
        table.table_provider().await.map_err(|e| e.to_string())?,
    )
    .unwrap();
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| format!("{t}: {e}"))?
        .collect()
        .await
        .map_err(|e| format!("{t}: {e}"))?;
    let mut content = BTreeMap::new();
    for b in batches {
        use deltalake::arrow::array::AsArray;
        use deltalake::arrow::compute::cast;
        use deltalake::arrow::datatypes::{DataType, Int64Type};
        let keys = cast(b.column(0), &DataType::Utf8).unwrap();
        let keys = keys.as_string::<i32>();
        let ns = cast(b.column(1), &DataType::Int64).unwrap();
        let ns = ns.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let k = keys.value(i);
            let k = k.rsplit('/').next().unwrap_or(k).to_string();
            content.insert(k, ns.value(i) as u64);
        }
    }
    let rows = if t == "bronze.online_retail" {
        content.values().sum()
    } else {
        content.remove("rows").unwrap_or(0)
    };
    Ok(TableState {
        version,
        rows,
        content,
    })
}

/// Every declared table's state: read in full for the tables `cmd` writes, only the version
/// (the table opens) for the others, which must not move.
async fn lake_state(lake: &Lakehouse, cmd: Cmd) -> Result<BTreeMap<String, TableState>, String> {
    let mut out = BTreeMap::new();
    for spec in lake.catalog().tables() {
        let t = spec.id().to_string();
        let state = if cmd.writes(&t) {
            table_state(lake, &t).await?
        } else {
            let table = lake.table(&id(&t)).await.map_err(|e| format!("{t}: {e}"))?;
            TableState {
                version: table.version().unwrap_or(0),
                rows: 0,
                content: BTreeMap::new(),
            }
        };
        out.insert(t, state);
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmd {
    Append,
    RefreshSilver,
    RefreshGold,
    Optimize,
    Restore,
    Train,
}

impl Cmd {
    /// Whether the command writes table `t` (the trials read those in full).
    fn writes(self, t: &str) -> bool {
        match self {
            Cmd::Append => t.starts_with("bronze."),
            Cmd::RefreshSilver => t.starts_with("silver."),
            Cmd::RefreshGold => t.starts_with("gold."),
            Cmd::Optimize => true,
            Cmd::Restore => t == "bronze.online_retail",
            Cmd::Train => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cmd::Append => "lake append",
            Cmd::RefreshSilver => "lake refresh silver",
            Cmd::RefreshGold => "lake refresh gold",
            Cmd::Optimize => "lake optimize",
            Cmd::Restore => "lake restore",
            Cmd::Train => "train",
        }
    }

    fn args(self, restore_to: u64, out: &Path) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Cmd::Append => {
                let mut a = s(&["lake", "append"]);
                a.extend(
                    DROPS
                        .iter()
                        .map(|d| drop_path(d).to_str().unwrap().to_string()),
                );
                a
            }
            Cmd::RefreshSilver => s(&["lake", "refresh", "silver"]),
            Cmd::RefreshGold => s(&["lake", "refresh", "gold"]),
            Cmd::Optimize => s(&["lake", "optimize"]),
            Cmd::Restore => {
                let v = restore_to.to_string();
                s(&[
                    "lake",
                    "restore",
                    "--table",
                    "bronze.online_retail",
                    "--version",
                    &v,
                ])
            }
            Cmd::Train => {
                let mut a = s(&["train", "--model", "decision-tree", "--out"]);
                a.push(out.to_str().unwrap().to_string());
                a
            }
        }
    }
}

fn run_ok(mut c: Command) -> std::process::Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        c.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The lakes each command starts from: [initialised, 5 drops appended, silver refreshed, gold
/// refreshed].
async fn templates(store: Store, dir: &Path) -> Vec<Lake> {
    let t0 = Lake::new(store, dir, "t0");
    t0.lake.init().await.unwrap();
    let t1 = t0.clone_to(dir, "t1").await;
    run_ok({
        let mut c = t1.cli(dir);
        c.args(Cmd::Append.args(0, dir));
        c
    });
    let t2 = t1.clone_to(dir, "t2").await;
    run_ok({
        let mut c = t2.cli(dir);
        c.args(["lake", "refresh", "silver"]);
        c
    });
    let t3 = t2.clone_to(dir, "t3").await;
    run_ok({
        let mut c = t3.cli(dir);
        c.args(["lake", "refresh", "gold"]);
        c
    });
    vec![t0, t1, t2, t3]
}

/// One DuckDB read to check: a local copy of a table, its version, the rows berserkr read.
#[derive(serde::Serialize)]
struct DuckCheck {
    path: String,
    version: u64,
    rows: u64,
    what: String,
}

/// Runs all queued DuckDB reads in one Python process.
fn duck_checks(dir: &Path, checks: &[DuckCheck]) {
    if checks.is_empty() {
        return;
    }
    let list = dir.join("duck-checks.json");
    std::fs::write(&list, serde_json::to_vec(checks).unwrap()).unwrap();
    let out = run_python(&[
        repo().join("tests/tools/duckdb_check.py").as_os_str(),
        list.as_os_str(),
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let bad = v["mismatches"].as_array().unwrap();
    assert!(bad.is_empty(), "DuckDB disagrees with berserkr: {bad:#?}");
    assert_eq!(v["checked"].as_u64().unwrap(), checks.len() as u64);
}

/// Figures of one command's series.
#[derive(Debug, Default)]
struct Series {
    trials: usize,
    killed: usize,
    before_commit: usize,
    after_commit: usize,
    in_between: usize,
    with_orphans: usize,
    orphan_files: u64,
}

/// Trials run at once per series (`BERSERKR_CRASH_JOBS`, default 3): each in its own lake,
/// thread and runtime. The kill delays are drawn before, in trial order, so a seed replays the
/// same delays whatever the scheduling.
fn jobs() -> usize {
    std::env::var("BERSERKR_CRASH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// What an unkilled run does, which every trial of a series is held to.
struct Reference<'a> {
    cmd: Cmd,
    pre: &'a Lake,
    dir: &'a Path,
    ctx: String,
    restore_to: u64,
    before: BTreeMap<String, TableState>,
    after: BTreeMap<String, TableState>,
    model: Option<Vec<u8>>,
}

async fn series(store: Store, cmd: Cmd, pre: &Lake, dir: &Path, seed: u64) -> Series {
    let ctx = format!("{} on {store:?} (BERSERKR_CRASH_SEED={seed})", cmd.name());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (cmd as u64 * 0x9e37_79b9));
    let before = lake_state(&pre.lake, cmd).await.unwrap();
    let restore_to = before["bronze.online_retail"].version - 2;
    // The reference: an unkilled run, timed.
    let reference = pre.clone_to(dir, &format!("{cmd:?}-ref")).await;
    let ref_out = dir.join(format!("{cmd:?}-ref-model"));
    let started = Instant::now();
    run_ok({
        let mut c = reference.cli(dir);
        c.args(cmd.args(restore_to, &ref_out));
        c
    });
    let took = started.elapsed();
    let after = lake_state(&reference.lake, cmd).await.unwrap();
    let r = Reference {
        cmd,
        pre,
        dir,
        ctx,
        restore_to,
        before,
        after,
        model: std::fs::read(ref_out.join("model.json")).ok(),
    };
    // Kill anywhere from the start to a little past an unkilled run's duration: a seeded
    // fraction of it, the duration being that of the latest unkilled run (the reference, then
    // each trial's rerun, which runs beside the other trials and is slowed as much as they are).
    let jobs = jobs();
    let delays: Vec<f64> = (0..trials()).map(|_| rng.random_range(0.0..1.1)).collect();
    let run_us = std::sync::atomic::AtomicU64::new(took.as_micros() as u64);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= delays.len() {
                            break;
                        }
                        let run = run_us.load(std::sync::atomic::Ordering::SeqCst);
                        let delay = Duration::from_micros((run as f64 * delays[i]) as u64);
                        let out = rt.block_on(trial(&r, i, delay, &run_us));
                        results.lock().unwrap().push(out);
                    }
                });
            }
        })
    });
    let mut s = Series::default();
    let mut duck = Vec::new();
    for (t, checks) in results.into_inner().unwrap() {
        s.trials += t.trials;
        s.killed += t.killed;
        s.before_commit += t.before_commit;
        s.after_commit += t.after_commit;
        s.in_between += t.in_between;
        s.with_orphans += t.with_orphans;
        s.orphan_files += t.orphan_files;
        duck.extend(checks);
    }
    duck_checks(dir, &duck);
    eprintln!(
        "crash: {} on {store:?}: {} trials, {jobs} at a time, in {:.1?} (an unkilled run {took:.1?}): {} killed ({} before the commit, {} after, {} in between), {} left {} orphan files; DuckDB agreed on {} table reads",
        cmd.name(),
        s.trials,
        started.elapsed(),
        s.killed,
        s.before_commit,
        s.after_commit,
        s.in_between,
        s.with_orphans,
        s.orphan_files,
        duck.len()
    );
    s
}

/// One trial: the command killed after `delay` in a copy of the series' lake, then every check.
async fn trial(
    r: &Reference<'_>,
    trial: usize,
    delay: Duration,
    run_us: &std::sync::atomic::AtomicU64,
) -> (Series, Vec<DuckCheck>) {
    let (cmd, dir, before, after) = (r.cmd, r.dir, &r.before, &r.after);
    let ctx = format!("{}, trial {trial}", r.ctx);
    let lake = r.pre.clone_to(dir, &format!("{cmd:?}-{trial}")).await;
    let out = dir.join(format!("{cmd:?}-{trial}-model"));
    let mut s = Series::default();
    let mut duck = Vec::new();
    let mut child = lake
        .cli(dir)
        .args(cmd.args(r.restore_to, &out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    let status = child.wait().unwrap();
    s.trials += 1;
    s.killed += killed as usize;
    assert!(
        killed || status.success(),
        "{ctx}: an unkilled run failed: {status}"
    );

    // Every table opens and holds what it held before or what the unkilled run left; the
    // tables the command does not write stay at their version.
    let now = lake_state(&lake.lake, cmd)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: a table does not read after the kill: {e}"));
    let mut all_before = true;
    let mut all_after = true;
    for (t, st) in &now {
        let (b, a) = (&before[t], &after[t]);
        if !cmd.writes(t) {
            assert_eq!(
                st.version, b.version,
                "{ctx}: {t} moved, {cmd:?} does not write it"
            );
            continue;
        }
        let same = |x: &TableState| x.rows == st.rows && x.content == st.content;
        all_before &= b.version == st.version;
        all_after &= a.version == st.version;
        if t == "bronze.online_retail" && cmd == Cmd::Append {
            for (file, n) in &st.content {
                assert!(
                    a.content.get(file) == Some(n),
                    "{ctx}: drop {file} is partly in bronze: {n} rows of {:?}",
                    a.content.get(file)
                );
            }
        } else {
            assert!(
                same(b) || same(a),
                "{ctx}: {t} holds neither its rows before ({b:?}) nor after ({a:?}): {st:?}"
            );
        }
    }
    match (all_before, all_after) {
        (true, false) => s.before_commit += 1,
        (false, true) => s.after_commit += 1,
        (true, true) => s.before_commit += 1, // train commits to no table
        (false, false) => s.in_between += 1,
    }
    // DuckDB reads a copy of the same bytes at the same versions (the tables written).
    let copy = dir.join(format!("duck-{cmd:?}-{trial}"));
    lake.mirror(&copy, cmd).await;
    for (t, st) in now.iter().filter(|(t, _)| cmd.writes(t)) {
        let (layer, name) = t.split_once('.').unwrap();
        duck.push(DuckCheck {
            path: copy.join(layer).join(name).to_str().unwrap().to_string(),
            version: st.version,
            rows: st.rows,
            what: format!("{ctx}: {t}"),
        });
    }
    // What the killed writer left: reported, kept by vacuum at the default retention.
    let orphans: u64 = lake
        .lake
        .status()
        .await
        .unwrap()
        .iter()
        .map(|t| t.orphans.as_ref().map_or(0, |o| o.files))
        .sum();
    if orphans > 0 {
        s.with_orphans += 1;
        s.orphan_files += orphans;
        let kept = lake.lake.vacuum().await.unwrap();
        assert!(
            kept.tables.iter().all(|t| t.files.is_empty()),
            "{ctx}: vacuum at the default retention deleted {kept:?}"
        );
    }

    // The rerun completes the work exactly once. Its duration calibrates the next kills when
    // it had the whole work to do (the kill landed before any commit).
    let started = Instant::now();
    run_ok({
        let mut c = lake.cli(dir);
        c.args(cmd.args(r.restore_to, &out));
        c
    });
    if all_before {
        run_us.store(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
    let done = lake_state(&lake.lake, cmd)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: a table does not read after the rerun: {e}"));
    for (t, st) in &done {
        let a = &after[t];
        assert!(
            a.rows == st.rows && a.content == st.content,
            "{ctx}: after the rerun {t} holds {st:?}, an unkilled run {a:?}"
        );
    }
    if let Some(m) = &r.model {
        assert_eq!(
            &std::fs::read(out.join("model.json")).unwrap(),
            m,
            "{ctx}: the rerun trained another model"
        );
    }
    if orphans > 0 {
        // Forced to a retention of 0, vacuum deletes them; nothing reads differently.
        lake.lake
            .vacuum()
            .with_retain_hours(0)
            .with_force(true)
            .await
            .unwrap();
        let left: u64 = lake
            .lake
            .status()
            .await
            .unwrap()
            .iter()
            .map(|t| t.orphans.as_ref().map_or(0, |o| o.files))
            .sum();
        assert_eq!(left, 0, "{ctx}: orphans left after vacuum --retain 0");
        let still = lake_state(&lake.lake, cmd).await.unwrap();
        for (t, st) in &still {
            assert_eq!(st.rows, after[t].rows, "{ctx}: {t} after vacuum");
            assert_eq!(st.content, after[t].content, "{ctx}: {t} after vacuum");
        }
    }
    (s, duck)
}

async fn crash_suite(store: Store) {
    let seed = seed();
    eprintln!(
        "crash suite on {store:?}: BERSERKR_CRASH_SEED={seed}, {} trials per command",
        trials()
    );
    let dir = tempfile::tempdir().unwrap();
    let t = templates(store, dir.path()).await;
    let plan = [
        (Cmd::Append, 0),
        (Cmd::RefreshSilver, 1),
        (Cmd::RefreshGold, 2),
        (Cmd::Optimize, 3),
        (Cmd::Restore, 3),
        (Cmd::Train, 3),
    ];
    let mut killed = 0;
    let mut after_commit = 0;
    for (cmd, pre) in plan {
        let s = series(store, cmd, &t[pre], dir.path(), seed).await;
        killed += s.killed;
        after_commit += s.after_commit + s.in_between;
    }
    // The delays do land on both sides of the commits.
    assert!(
        trials() < 10 || (killed > 0 && after_commit > 0),
        "seed {seed}: no kill landed ({killed} killed, {after_commit} after a commit)"
    );
}

/// 8 writers append 2 drops each to one lake at once while one of them is killed at a seeded
/// moment: every other writer's drops land once; the killed writer's rerun lands its own once.
async fn racing_writers_with_a_kill(store: Store) {
    const WRITERS: usize = 8;
    let seed = seed();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let drops: Vec<PathBuf> = real_drops()
        .into_iter()
        .step_by(19)
        .take(2 * WRITERS)
        .collect();
    let reference = Lake::new(store, dir, "race-ref");
    reference.lake.init().await.unwrap();
    let t0 = reference.clone_to(dir, "race-t0").await;
    let started = Instant::now();
    run_ok({
        let mut c = reference.cli(dir);
        c.args(["lake", "append"]).args(&drops);
        c
    });
    let took = started.elapsed();
    let want = table_state(&reference.lake, "bronze.online_retail")
        .await
        .unwrap();
    let rounds = (trials() / 10).max(1);
    for round in 0..rounds {
        let ctx = format!("8 writers on {store:?}, round {round} (BERSERKR_CRASH_SEED={seed})");
        let lake = t0.clone_to(dir, &format!("race-{round}")).await;
        let victim = rng.random_range(0..WRITERS);
        let mut children: Vec<_> = (0..WRITERS)
            .map(|w| {
                lake.cli(dir)
                    .args(["lake", "append"])
                    .args(&drops[2 * w..2 * w + 2])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_micros(
            rng.random_range(0..(took.as_micros() as u64 * 2).max(1)),
        ));
        let _ = children[victim].kill();
        for (w, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            if w != victim {
                assert!(
                    out.status.success(),
                    "{ctx}: writer {w} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let now = table_state(&lake.lake, "bronze.online_retail")
            .await
            .unwrap_or_else(|e| panic!("{ctx}: bronze does not read: {e}"));
        for (w, pair) in drops.chunks(2).enumerate() {
            for d in pair {
                let name = d.file_name().unwrap().to_str().unwrap();
                let n = now.content.get(name);
                if w == victim {
                    assert!(
                        n.is_none() || n == want.content.get(name),
                        "{ctx}: {name} partly in: {n:?}"
                    );
                } else {
                    assert_eq!(n, want.content.get(name), "{ctx}: writer {w}'s {name}");
                }
            }
        }
        run_ok({
            let mut c = lake.cli(dir);
            c.args(["lake", "append"])
                .args(&drops[2 * victim..2 * victim + 2]);
            c
        });
        let done = table_state(&lake.lake, "bronze.online_retail")
            .await
            .unwrap();
        assert_eq!(done.content, want.content, "{ctx}: after the rerun");
    }
    eprintln!("crash: 8 writers with a kill on {store:?}: {rounds} rounds, every drop once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_with_a_kill_local() {
    racing_writers_with_a_kill(Store::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_with_a_kill_s3() {
    racing_writers_with_a_kill(Store::S3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_on_a_local_lake() {
    crash_suite(Store::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_on_s3() {
    crash_suite(Store::S3).await
}
