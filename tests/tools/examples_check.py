#!/usr/bin/env python3
"""Checks of examples/ that need neither `berserkr lake run` nor a scheduler nor delta-spark.

  examples_check.py cron REPO TMP          the cron wrapper against a fake `berserkr` that
                                           records its arguments and exits as told: retries on 2
                                           only, with backoff; exit 1 at once; a hung run stopped
                                           and retried; lock; training day
  examples_check.py airflow REPO TMP       (Airflow's venv) the DAG through Airflow's DagBag: no
                                           import errors, the task graph, retries and schedule as
                                           designed; its task callables against the fake binary
  examples_check.py spark-sql REPO LAKE CUTOFF   (PySpark, no Delta) the silver queries and gold
                                           projection examples/spark/berserkr_spark.py would run,
                                           over the lake's Parquet files, against berserkr's rows
Each prints one JSON line of what it checked; a failed check is an AssertionError."""
import json, os, re, subprocess, sys, time

FAKE = r"""#!/usr/bin/env bash
# A stand-in for berserkr: records its arguments (one call a line, tab-separated) and BERSERKR_LAKE
# then exits with the next code of $FAKE_DIR/codes (one a line; 0 when none is left).
printf '%s\t' "$@" >>"$FAKE_DIR/calls"; echo >>"$FAKE_DIR/calls"; echo "${BERSERKR_LAKE:-}" >>"$FAKE_DIR/lakes"
n=$(wc -l <"$FAKE_DIR/calls")
code=$(sed -n "${n}p" "$FAKE_DIR/codes" 2>/dev/null); code=${code:-0}
# "sleep:N": hang N seconds (a run that never ends), then exit 0.
case "$code" in sleep:*) echo "fake berserkr: call $n sleeps" >&2; sleep "${code#sleep:}"; code=0 ;; esac
echo "fake berserkr: call $n exits $code" >&2
printf '{"ok": %s, "did_work": true, "steps": [{"step": "append", "status": "%s", "seconds": 0.5, "detail": {}}], "error": %s}\n' \
  "$([ "$code" = 0 ] && echo true || echo false)" "$([ "$code" = 0 ] && echo done || echo failed)" \
  "$([ "$code" = 0 ] && echo null || echo "\"failed with $code\"")"
exit "$code"
"""


def fake_berserkr(tmp, codes):
    d = os.path.join(tmp, f"fake-{time.monotonic_ns()}")
    os.makedirs(d)
    open(f"{d}/berserkr", "w").write(FAKE)
    os.chmod(f"{d}/berserkr", 0o755)
    open(f"{d}/codes", "w").write("".join(f"{c}\n" for c in codes))
    return d


def calls(d):
    """The fake's calls, each its arguments."""
    if not os.path.exists(f"{d}/calls"):
        return []
    return [l.rstrip("\t").split("\t") for l in open(f"{d}/calls").read().splitlines()]


def cron(repo, tmp):
    script = f"{repo}/examples/cron/berserkr-daily.sh"
    drops = os.path.join(tmp, "drops")
    os.makedirs(drops, exist_ok=True)
    for day in ("2011-12-09", "2011-12-11"):
        open(f"{drops}/{day}.csv.lzo", "wb").write(b"x")

    def run(codes, day="2011-12-09", **env):
        d = fake_berserkr(tmp, codes)
        e = {**os.environ, "BERSERKR": f"{d}/berserkr", "BERSERKR_LAKE": "s3://b/lake", "DROPS_URL": drops,
             "LOG_DIR": f"{d}/log", "RETRY_DELAY": "0", "ATTEMPTS": "4", "FAKE_DIR": d, **env}
        t = time.monotonic()
        p = subprocess.run(["bash", script, day], env=e, capture_output=True, text=True, timeout=120)
        return p, d, time.monotonic() - t

    out = {}
    # Exit 2 twice, then 0: three calls, exit 0, the summary kept, every log line stamped.
    p, d, _ = run([2, 2, 0])
    c, lakes = calls(d), open(f"{d}/lakes").read().split()
    assert p.returncode == 0 and len(c) == 3, (p, c)
    assert c[0] == ["lake", "run", f"{drops}/2011-12-09.csv.lzo", "--json"], c
    assert lakes == ["s3://b/lake"] * 3, lakes
    summary = json.load(open(f"{d}/log/summary-2011-12-09.json"))
    assert summary["ok"] is True, summary
    log = open(f"{d}/log/berserkr-daily.log").read().splitlines()
    assert log and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[2011-12-09\] .", l) for l in log), log
    assert sum("fake berserkr: call" in l for l in log) == 3 and sum("retrying" in l for l in log) == 2, log
    assert p.stdout == "" and p.stderr == "", (p.stdout, p.stderr)
    out["retried_then_ok"] = len(c)
    # Exit 1: not retried.
    p, d, _ = run([1, 0])
    assert p.returncode == 1 and len(calls(d)) == 1, p
    assert "not retried" in open(f"{d}/log/berserkr-daily.log").read()
    out["bad_input_calls"] = 1
    # Exit 2 every time: ATTEMPTS calls, exit 2, with doubling delays (1 + 2 s).
    p, d, secs = run([2] * 9, ATTEMPTS="3", RETRY_DELAY="1")
    assert p.returncode == 2 and len(calls(d)) == 3 and secs >= 3, (p, secs)
    out["gave_up_after"] = 3
    out["backoff_seconds"] = round(secs, 1)
    # Another exit (killed, not found): retried like 2.
    p, d, _ = run([137, 0])
    assert p.returncode == 0 and len(calls(d)) == 2, p
    # ... and not taken for the time limit (137 is also what timeout returns after its KILL).
    assert "stopped after" not in open(f"{d}/log/berserkr-daily.log").read()
    # A run that hangs is stopped after RUN_TIMEOUT and retried; the retry's summary is kept.
    p, d, secs = run(["sleep:60", 0], RUN_TIMEOUT="1")
    log = open(f"{d}/log/berserkr-daily.log").read()
    assert p.returncode == 0 and len(calls(d)) == 2 and secs < 30, (p, secs)
    assert "stopped after 1s (RUN_TIMEOUT; exit 124)" in log, log
    assert json.load(open(f"{d}/log/summary-2011-12-09.json"))["ok"] is True
    out["hung_run_stopped_then_ok"] = len(calls(d))
    # A Sunday retrains and scores into MODELS_DIR/<day>.
    p, d, _ = run([0], day="2011-12-11", MODELS_DIR=f"{tmp}/models")
    assert p.returncode == 0 and calls(d)[0] == [
        "lake", "run", f"{drops}/2011-12-11.csv.lzo", "--json", "--train", "--out", f"{tmp}/models/2011-12-11", "--score"], calls(d)
    # A drop that has not arrived: exit 2, berserkr not run. A bad day: exit 1.
    p, d, _ = run([0], day="2011-12-10")
    assert p.returncode == 2 and calls(d) == [], p
    p, d, _ = run([0], day="2011-13-45")
    assert p.returncode == 1 and calls(d) == [], p
    # The lock held by another run: exit 2 after LOCK_WAIT, berserkr not run.
    import fcntl
    lock = f"{tmp}/held.lock"
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        p, d, _ = run([0], LOCK_FILE=lock, LOCK_WAIT="1")
    assert p.returncode == 2 and calls(d) == [], p
    p, d, _ = run([0], LOCK_FILE=lock)
    assert p.returncode == 0, p
    out["lock"] = "held: exit 2; free: ran"
    # The crontab: its job line has 5 time fields and runs the wrapper.
    jobs = [l for l in open(f"{repo}/examples/cron/crontab").read().splitlines()
            if l.strip() and not l.startswith("#") and "=" not in l.split()[0]]
    assert len(jobs) == 1 and jobs[0].split()[5].endswith("examples/cron/berserkr-daily.sh"), jobs
    fields = jobs[0].split()[:5]
    assert 0 <= int(fields[0]) < 60 and 0 <= int(fields[1]) < 24 and fields[2:] == ["*", "*", "*"], fields
    print(json.dumps(out))


def airflow(repo, tmp):
    os.environ.setdefault("AIRFLOW_HOME", os.path.join(tmp, "airflow-home"))
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException
    from datetime import timedelta
    bag = DagBag(dag_folder=f"{repo}/examples/airflow")
    assert bag.import_errors == {}, bag.import_errors
    assert list(bag.dags) == ["berserkr_daily"], list(bag.dags)
    dag = bag.dags["berserkr_daily"]
    edges = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert edges == {"wait_for_drop": ["lake_run"], "lake_run": ["is_training_day"],
                     "is_training_day": ["retrain"], "retrain": []}, edges
    assert dag.catchup is True and dag.max_active_runs == 1, (dag.catchup, dag.max_active_runs)
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable" and dag.timetable.summary == "0 0 * * *"
    for tid in ("lake_run", "retrain"):
        t = dag.get_task(tid)
        assert t.retries == 4 and t.retry_exponential_backoff and t.retry_delay == timedelta(minutes=5), tid
        assert list(t.op_args) == ["{{ data_interval_start | ds }}"], t.op_args
    sensor = dag.get_task("wait_for_drop")
    assert sensor.mode == "reschedule" and sensor.retries == 0, sensor.mode
    assert type(dag.get_task("is_training_day")).__name__.startswith("_ShortCircuit")

    # The callables against the fake binary, settings as Airflow Variables in their env form.
    drops = os.path.join(tmp, "af-drops")
    os.makedirs(drops, exist_ok=True)
    open(f"{drops}/2011-12-09.csv.lzo", "wb").write(b"x")

    def fake(codes):
        d = fake_berserkr(tmp, codes)
        os.environ.update({"FAKE_DIR": d, "AIRFLOW_VAR_BERSERKR_BIN": f"{d}/berserkr",
                           "AIRFLOW_VAR_BERSERKR_LAKE": f"{tmp}/lake", "AIRFLOW_VAR_BERSERKR_DROPS_URL": drops})
        return d
    fn = {t.task_id: t.python_callable for t in dag.tasks}
    fake([])
    assert fn["wait_for_drop"]("2011-12-09") is True and fn["wait_for_drop"]("2011-12-10") is False
    d = fake([0])
    summary = fn["lake_run"]("2011-12-09")
    assert summary["ok"] is True and summary["steps"][0]["step"] == "append", summary
    assert calls(d) == [["--lake", f"{tmp}/lake", "lake", "run", f"{drops}/2011-12-09.csv.lzo", "--json"]], calls(d)
    d = fake([1])
    try:
        fn["lake_run"]("2011-12-09")
        raise AssertionError("exit 1 must fail the task")
    except AirflowFailException as e:
        assert "exit 1" in str(e) and "failed with 1" in str(e), e
    d = fake([2])
    try:
        fn["lake_run"]("2011-12-09")
        raise AssertionError("exit 2 must fail the task")
    except AirflowFailException:
        raise AssertionError("exit 2 must be retried, not AirflowFailException")
    except RuntimeError as e:
        assert "exited 2" in str(e), e
    assert fn["is_training_day"]("2011-12-11") is True and fn["is_training_day"]("2011-12-09") is False
    d = fake([0])
    fn["retrain"]("2011-12-11")
    assert calls(d) == [["--lake", f"{tmp}/lake", "lake", "run", "--train", "--out",
                            f"{tmp}/models/2011-12-11", "--score", "--json"]], calls(d)
    del os.environ["AIRFLOW_VAR_BERSERKR_LAKE"]
    try:
        fn["lake_run"]("2011-12-09")
        raise AssertionError("a missing lake setting must fail the task")
    except AirflowFailException as e:
        assert "berserkr_lake" in str(e)
    print(json.dumps({"dag": dag.dag_id, "tasks": len(dag.tasks), "callables": "exit 0 summary, 1 no retry, 2 retry"}))


def spark_sql(repo, lake, cutoff):
    import datetime, glob
    sys.path.insert(0, f"{repo}/examples/spark")
    import berserkr_spark as bs
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2]").appName("berserkr-spark-example")
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.timestampType", "TIMESTAMP_NTZ")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    catalog = bs.Catalog(repo)

    def live(table):
        log = bs.DeltaLog(bs.table_url(lake, table))
        return [log.file_url(p).removeprefix("file://") for p in log.files]

    def diff(ours_files, theirs, spec, skip=()):
        cols = [c["name"] for c in spec["columns"] if c["name"] not in skip]
        doubles = {c["name"] for c in spec["columns"] if c["type"] == "double"}

        def norm(df):
            return df.selectExpr(*[f"round(`{c}`, 6) AS `{c}`" if c in doubles else f"CAST(`{c}` AS STRING) AS `{c}`" for c in cols])
        ours = spark.read.parquet(*ours_files) if ours_files else spark.createDataFrame([], theirs.schema)
        a, b = norm(theirs), norm(ours)
        return [a.exceptAll(b).count(), b.exceptAll(a).count(), a.count()]

    # Silver as the example would compute it from every bronze file (one level, from nothing).
    plan = bs.plan_silver(lake, catalog)
    assert len(plan["levels"]) == 1, plan
    q = bs.silver_queries(catalog, plan["levels"][0]["outputs"])
    spark.read.parquet(*live(bs.BRONZE)).createOrReplaceTempView("bronze_new")
    spark.sql(q["transform"]).createOrReplaceTempView("typed")
    out = {}
    for o in plan["levels"][0]["outputs"]:
        spec = catalog.tables[o["table"]]
        rows = spark.sql(q["queries"][o["table"]])
        if spec.get("dedupe"):
            rows = rows.dropDuplicates()
        out[o["table"]] = diff(live(o["table"]), rows, spec)
    # Gold at one cutoff: the transform's statements and the declared projection.
    spark.read.parquet(*live(bs.SILVER)).createOrReplaceTempView("silver")
    gold = catalog.tables[bs.GOLD]
    end = (datetime.datetime.fromisoformat(cutoff) + datetime.timedelta(days=catalog.label_window())).strftime(bs.CUTOFF_FORMAT)
    *views, query = bs.statements(catalog.sql(gold["transform"]), cutoff, end)
    for v in views:
        spark.sql(v)
    rows = spark.sql(query).selectExpr(*bs.projection(gold))
    glog = bs.DeltaLog(bs.table_url(lake, bs.GOLD))
    files = [glog.file_url(p).removeprefix("file://") for p, f in glog.files.items() if f["partitionValues"]["cutoff"] == cutoff]
    out[bs.GOLD] = diff(files, rows, gold, skip={"cutoff"})
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"cron": cron, "airflow": airflow, "spark-sql": spark_sql}[cmd](*args)
