#!/usr/bin/env python3
"""berserkr's silver and gold refreshes on a Spark cluster with delta-spark, against the same lake,
taking turns with berserkr without double work (see README.md beside this file).

    berserkr_spark.py plan --lake LAKE [--cutoffs latest|monthly|YYYY-MM-DD ...]   (no Spark)
    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 berserkr_spark.py run --lake LAKE [...]

`plan` reads the tables' Delta logs (pyarrow's file systems: local paths, s3://...) and prints, as
JSON, what a refresh would do and under which application transaction it would commit: for silver,
the bronze files added since the version each silver table reflects (app id
`berserkr.refresh.bronze.online_retail`, txn version = bronze's version); for gold, the cutoffs
and whether gold and the scoring snapshot are up to date (app id
`berserkr.refresh.silver.transactions`, txn version = silver's version, and the feature
definition each cutoff was computed with). `run` does that work with Spark SQL running the files of
tables/ unchanged, and commits with delta-spark's idempotent-write options (txnAppId, txnVersion),
recording in `userMetadata` what berserkr records in its commit info (gold's cutoffs and their
definition, which berserkr reads back from either place).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import posixpath
import sys
import tomllib
from urllib.parse import unquote, urlparse

BRONZE, SILVER, GOLD, SCORING = ("bronze.online_retail", "silver.transactions",
                                 "gold.customer_item_features", "gold.scoring_features")
CUTOFF_FORMAT = "%Y-%m-%d %H:%M:%S"
GOLD_COMMIT_KEY = "berserkr.gold"
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def refresh_app_id(source: str) -> str:
    """berserkr's `lake::refresh_app_id`: the txn app id of tables built from `source`."""
    return f"berserkr.refresh.{source}"


class PlanError(Exception):
    """The refresh cannot be planned (berserkr would refuse it the same way)."""


# ---------------------------------------------------------------------------------------------
# The catalog: tables/*.toml and their SQL, as berserkr embeds them.

class Catalog:
    def __init__(self, repo: str = REPO):
        self.repo = repo
        self.tables = {}
        for layer in ("bronze", "silver", "gold"):
            for f in sorted(os.listdir(f"{repo}/tables/{layer}")):
                if f.endswith(".toml"):
                    spec = tomllib.load(open(f"{repo}/tables/{layer}/{f}", "rb"))
                    self.tables[f"{spec['layer']}.{spec['name']}"] = spec

    def sql(self, path: str) -> str:
        return open(f"{self.repo}/{path}", encoding="utf-8").read()

    def definition(self, path: str) -> str:
        """`Catalog::definition`: the first 16 hex digits of the SHA-256 of the transform's SQL."""
        return hashlib.sha256(self.sql(path).encode()).hexdigest()[:16]

    def label_window(self) -> int:
        return int(self.tables[GOLD].get("label_window_days", 90))


# ---------------------------------------------------------------------------------------------
# A Delta log reader: just what planning needs (the latest version, application transactions,
# live files with their partition values and statistics, commits by version).

class DeltaLog:
    def __init__(self, table_url: str):
        import pyarrow.fs as pafs
        self.url = table_url.rstrip("/")
        if "://" not in self.url:
            self.url = "file://" + os.path.abspath(self.url)
        self.fs, self.root = pafs.FileSystem.from_uri(self.url.replace("s3a://", "s3://"))
        self.log = f"{self.root}/_delta_log"
        self._commits: dict[int, list[dict] | None] = {}
        self._load()

    def _read(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def commit(self, version: int) -> list[dict] | None:
        """The actions of one commit file, or None when it is gone (log retention)."""
        if version not in self._commits:
            raw = self._read(f"{self.log}/{version:020d}.json")
            self._commits[version] = None if raw is None else [
                json.loads(l) for l in raw.decode().splitlines() if l.strip()]
        return self._commits[version]

    def _load(self):
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq
        names = [posixpath.basename(i.path) for i in self.fs.get_file_info(pafs.FileSelector(self.log))]
        commits = sorted(int(n[:20]) for n in names if n.endswith(".json") and n[:20].isdigit())
        if not commits:
            raise PlanError(f"{self.url}: no Delta table (no commits in _delta_log)")
        self.version = commits[-1]
        self.txns: dict[str, int] = {}
        self.files: dict[str, dict] = {}
        start = 0
        last = self._read(f"{self.log}/_last_checkpoint")
        if last:
            cp = json.loads(last)
            v, parts = cp["version"], cp.get("parts")
            paths = ([f"{self.log}/{v:020d}.checkpoint.parquet"] if not parts else
                     [f"{self.log}/{v:020d}.checkpoint.{p:010d}.{parts:010d}.parquet" for p in range(1, parts + 1)])
            for p in paths:
                with self.fs.open_input_file(p) as f:
                    t = pq.read_table(f, columns=["txn", "add"]).to_pylist()
                for row in t:
                    self._apply({k: v for k, v in row.items() if v is not None})
            start = v + 1
        for v in range(start, self.version + 1):
            actions = self.commit(v)
            if actions is None:
                raise PlanError(f"{self.url}: commit {v} is missing after the checkpoint")
            for a in actions:
                self._apply(a)

    def _apply(self, action: dict):
        if "txn" in action:
            self.txns[action["txn"]["appId"]] = int(action["txn"]["version"])
        elif "add" in action:
            add = action["add"]
            pv = add.get("partitionValues") or {}
            if isinstance(pv, list):  # a checkpoint's map as (key, value) pairs
                pv = dict(pv)
            add["partitionValues"] = pv
            self.files[add["path"]] = add
        elif "remove" in action:
            self.files.pop(action["remove"]["path"], None)

    def txn_version(self, app_id: str) -> int | None:
        return self.txns.get(app_id)

    def file_url(self, path: str) -> str:
        return path if "://" in path else f"{self.url}/{unquote(path)}"

    def partition_values(self, column: str) -> set[str]:
        return {f["partitionValues"].get(column) for f in self.files.values()} - {None}

    def commit_info(self, version: int) -> dict | None:
        for a in self.commit(version) or []:
            if "commitInfo" in a:
                return a["commitInfo"]
        return None

    def definitions(self, column: str = "cutoff") -> dict[str, str | None]:
        """`lake::definitions`: for each partition, the definition the newest commit that wrote it
        recorded under berserkr.gold (in the commit info, or in its userMetadata JSON)."""
        out = {c: None for c in self.partition_values(column)}
        pending = len(out)
        for v in range(self.version, -1, -1):
            if pending == 0:
                break
            rec = gold_record(self.commit_info(v) or {})
            if not rec or not isinstance(rec.get("definition"), str):
                continue
            for c in rec.get("cutoffs") or []:
                if c in out and out[c] is None:
                    out[c] = rec["definition"]
                    pending -= 1
        return out

    def stats_bounds(self, column: str) -> tuple[str, str] | None:
        """min and max of `column` from the live files' statistics (None if a file has none)."""
        lo = hi = None
        for f in self.files.values():
            s = json.loads(f.get("stats") or "{}")
            if s.get("numRecords") == 0:
                continue
            a, b = (s.get("minValues") or {}).get(column), (s.get("maxValues") or {}).get(column)
            if a is None or b is None:
                return None
            lo = a if lo is None or a < lo else lo
            hi = b if hi is None or b > hi else hi
        return None if lo is None else (lo, hi)


def gold_record(info: dict) -> dict | None:
    if isinstance(info.get(GOLD_COMMIT_KEY), dict):
        return info[GOLD_COMMIT_KEY]
    try:
        user = json.loads(info.get("userMetadata") or "")
    except ValueError:
        return None
    rec = user.get(GOLD_COMMIT_KEY) if isinstance(user, dict) else None
    return rec if isinstance(rec, dict) else None


def table_url(lake: str, table: str) -> str:
    layer, name = table.split(".", 1)
    return f"{lake.rstrip('/')}/{layer}/{name}"


# ---------------------------------------------------------------------------------------------
# Planning (no Spark).

def plan_silver(lake: str, catalog: Catalog) -> dict:
    """Which bronze files each silver table has not seen, grouped like berserkr's refresh: tables
    at the same source version are refreshed together, with the union of their rules."""
    outputs = []
    for tid, spec in catalog.tables.items():
        if spec["layer"] == "silver" and spec.get("source") == BRONZE:
            outputs.append((tid, tid))
            if spec.get("quarantine"):
                outputs.append((spec["quarantine"], tid))
    source = DeltaLog(table_url(lake, BRONZE))
    app_id, to = refresh_app_id(BRONZE), source.version
    levels: dict = {}
    for table, rules_of in outputs:
        seen = DeltaLog(table_url(lake, table)).txn_version(app_id)
        levels.setdefault(seen, []).append({"table": table, "rules_of": rules_of,
                                            "quarantine": table != rules_of})
    out = []
    for frm in sorted(levels, key=lambda v: -1 if v is None else v):
        level = {"from_source_version": frm, "to_source_version": to, "outputs": levels[frm],
                 "up_to_date": frm == to, "files": []}
        if frm != to:
            start = 0 if frm is None else frm + 1
            for v in range(start, to + 1):
                actions = source.commit(v)
                if actions is None:
                    raise PlanError(f"{BRONZE} version {v} has no log entry any more (log retention)")
                if any(a.get("remove", {}).get("dataChange") for a in actions):
                    raise PlanError(f"{BRONZE} version {v} deletes rows (an incremental refresh needs an append-only source)")
                level["files"] += [source.file_url(a["add"]["path"]) for a in actions
                                   if "add" in a and a["add"].get("dataChange", True)]
        out.append(level)
    return {"source": BRONZE, "source_version": to, "app_id": app_id, "txn_version": to, "levels": out}


def monthly(first: dt.datetime, last_cutoff: dt.datetime) -> list[dt.datetime]:
    """gold.rs's `monthly`: the first day of every month after `first`'s, up to `last_cutoff`."""
    out, y, m = [], first.year, first.month
    while True:
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        d = dt.datetime(y, m, 1)
        if d > last_cutoff:
            return out
        out.append(d)


def parse_ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "").rstrip())


def plan_gold(lake: str, catalog: Catalog, cutoffs: list[str], bounds=None) -> dict:
    """gold.rs's decisions: the cutoffs, which are stale (other definition), whether gold and the
    scoring snapshot already reflect this silver version, and under which txn to commit.
    `bounds`: silver's (min, max) InvoiceDate; default from the log's statistics."""
    silver = DeltaLog(table_url(lake, SILVER))
    window = dt.timedelta(days=catalog.label_window())
    if bounds is None:
        b = silver.stats_bounds("InvoiceDate")
        if b is None:
            raise PlanError(f"{SILVER} has no statistics for InvoiceDate: pass the bounds (run computes them)")
        bounds = tuple(parse_ts(x) for x in b)
    first, last = bounds
    if cutoffs == ["latest"]:
        cuts = [last - window]
    elif cutoffs == ["monthly"]:
        cuts = monthly(first, last - window)
        if not cuts:
            raise PlanError(f"no monthly cutoff fits: {SILVER} spans {first} .. {last}")
    else:
        cuts = [dt.datetime.fromisoformat(c) for c in cutoffs]
    cuts = sorted(set(cuts))
    for c in cuts:
        if c + window > last:
            raise PlanError(f"cutoff {c} leaves its label window past the last silver row ({last})")
    transform = catalog.tables[GOLD]["transform"]
    definition = catalog.definition(transform)
    app_id, version = refresh_app_id(SILVER), silver.version
    gold = DeltaLog(table_url(lake, GOLD))
    held = gold.definitions()
    names = [c.strftime(CUTOFF_FORMAT) for c in cuts]
    stale = sorted(c for c, d in held.items() if d != definition and c not in names)
    names = sorted(names + stale)
    gold_txn = gold.txn_version(app_id)
    gold_done = gold_txn == version and all(held.get(n) == definition for n in names)
    scoring = DeltaLog(table_url(lake, SCORING))
    scoring_txn = scoring.txn_version(app_id)
    scoring_done = scoring_txn == version and all(d == definition for d in scoring.definitions().values())

    def txn(current):
        # delta-spark skips a write whose txnVersion is not above the recorded one; berserkr
        # commits gold again under the same version (exactly_once = false). The txn already
        # says this silver version, so the write goes without txn options and the log still
        # records it.
        return {"txnAppId": app_id, "txnVersion": version} if current is None or current < version else None
    return {
        "source": SILVER, "source_version": version, "app_id": app_id, "definition": definition,
        "silver_bounds": [first.strftime(CUTOFF_FORMAT), last.strftime(CUTOFF_FORMAT)],
        "gold": {"cutoffs": names, "stale_definitions": stale, "up_to_date": gold_done,
                 "txn": None if gold_done else txn(gold_txn),
                 "replace_where": "cutoff IN (" + ", ".join(f"'{n}'" for n in names) + ")"},
        "scoring": {"cutoff": last.strftime(CUTOFF_FORMAT), "up_to_date": scoring_done,
                    "txn": None if scoring_done else txn(scoring_txn)},
        "label_window_days": window.days,
    }


# ---------------------------------------------------------------------------------------------
# The SQL Spark runs: the files of tables/, unchanged but for ${cutoff} / ${label_end}.

def statements(sql: str, cutoff: str | None = None, label_end: str | None = None) -> list[str]:
    """The file's statements, as spark-sql -f splits them (comment lines dropped first)."""
    text = "\n".join(l for l in sql.splitlines() if not l.strip().startswith("--"))
    if cutoff is not None:
        text = text.replace("${cutoff}", cutoff).replace("${label_end}", label_end)
    return [s.strip() for s in text.split(";") if s.strip()]


SPARK_TYPES = {"string": "STRING", "long": "BIGINT", "integer": "INT", "short": "SMALLINT",
               "byte": "TINYINT", "double": "DOUBLE", "float": "FLOAT", "boolean": "BOOLEAN",
               "date": "DATE", "timestamp": "TIMESTAMP", "timestamp_ntz": "TIMESTAMP_NTZ",
               "binary": "BINARY"}


def projection(spec: dict, skip=()) -> list[str]:
    """The declared columns, in order, cast to their declared types."""
    return [f"CAST(`{c['name']}` AS {SPARK_TYPES.get(c['type'], c['type'])}) AS `{c['name']}`"
            for c in spec["columns"] if c["name"] not in skip]


def silver_queries(catalog: Catalog, outputs: list[dict]) -> dict:
    """For one level of the silver plan: the typing SQL (over `bronze_new`), the fail rules, and
    each output's query over `typed` (its filter and every drop rule of the level; the quarantine
    with the first drop rule a row fails)."""
    rules = []
    for o in outputs:
        for e in catalog.tables[o["rules_of"]].get("expectations", []):
            if e["name"] not in [r["name"] for r in rules]:
                rules.append(e)
    drops = [r for r in rules if r["action"] == "drop"]
    ok = [f"COALESCE(({r['expr']}), FALSE)" for r in drops]
    all_ok = " AND ".join(ok) or "TRUE"
    lead = catalog.tables[outputs[0]["rules_of"]]
    out = {"transform": statements(catalog.sql(lead["transform"]))[-1], "rules": rules,
           "counts": "SELECT " + ", ".join(f"count_if(NOT COALESCE(({r['expr']}), FALSE)) AS `{r['name']}`"
                                           for r in rules) + " FROM typed" if rules else None,
           "queries": {}}
    for o in outputs:
        spec = catalog.tables[o["table"]]
        if o["quarantine"]:
            rule = "CASE " + " ".join(f"WHEN NOT {k} THEN '{r['name']}'" for k, r in zip(ok, drops)) + " END"
            cols = [f"CAST({rule} AS STRING) AS `rule`" if c["name"] == "rule" else f"CAST(`{c['name']}` AS {SPARK_TYPES[c['type']]}) AS `{c['name']}`"
                    for c in spec["columns"]]
            out["queries"][o["table"]] = f"SELECT {', '.join(cols)} FROM typed WHERE NOT ({all_ok})"
        else:
            where = f"COALESCE(({spec.get('filter', 'TRUE')}), FALSE) AND {all_ok}"
            out["queries"][o["table"]] = f"SELECT {', '.join(projection(spec))} FROM typed WHERE {where}"
    return out


# ---------------------------------------------------------------------------------------------
# Running on Spark with delta-spark.

def spark_session():
    from pyspark.sql import SparkSession
    return (SparkSession.builder.appName("berserkr-refresh")
            .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
            .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
            .getOrCreate())


def spark_path(url: str) -> str:
    return url.replace("s3://", "s3a://")


def run_silver(spark, lake: str, catalog: Catalog, plan: dict) -> list[dict]:
    done = []
    for level in plan["levels"]:
        if level["up_to_date"]:
            continue
        q = silver_queries(catalog, level["outputs"])
        bronze_cols = [c["name"] for c in catalog.tables[BRONZE]["columns"]]
        if level["files"]:
            spark.read.parquet(*[spark_path(f) for f in level["files"]]).createOrReplaceTempView("bronze_new")
        else:
            spark.read.format("delta").load(spark_path(table_url(lake, BRONZE))).limit(0) \
                .createOrReplaceTempView("bronze_new")
        spark.sql(q["transform"]).createOrReplaceTempView("typed")
        counts = spark.sql(q["counts"]).collect()[0].asDict() if q["counts"] else {}
        for r in q["rules"]:
            if r["action"] == "fail" and counts[r["name"]]:
                raise PlanError(f"expectation {r['name']} failed on {counts[r['name']]} rows: nothing committed")
        meta_base = {"source": BRONZE, "from_source_version": level["from_source_version"],
                     "to_source_version": level["to_source_version"], "source_files": len(level["files"]),
                     "expectations": {r["name"]: {"action": r["action"], "violations": counts[r["name"]]}
                                      for r in q["rules"]}}
        for o in level["outputs"]:
            spec, path = catalog.tables[o["table"]], spark_path(table_url(lake, o["table"]))
            rows = spark.sql(q["queries"][o["table"]])
            if spec.get("dedupe"):
                rows = dedupe(spark, rows, path, spec)
            rows = rows.cache()
            n = rows.count()
            (rows.write.format("delta").mode("append")
             .option("txnAppId", plan["app_id"]).option("txnVersion", plan["txn_version"])
             .option("userMetadata", json.dumps({"berserkr.refresh": {**meta_base, "rows": n}}))
             .save(path))
            rows.unpersist()
            done.append({"table": o["table"], "rows": n})
    return done


def dedupe(spark, rows, path: str, spec: dict):
    """silver's dedupe: rows equal on every column kept once, and none already in the table
    (looked for only in the new rows' range of `dedupe_bounded_by`)."""
    rows = rows.dropDuplicates()
    existing = spark.read.format("delta").load(path)
    bound = spec.get("dedupe_bounded_by")
    if bound:
        lo, hi = rows.selectExpr(f"min(`{bound}`)", f"max(`{bound}`)").collect()[0]
        if lo is None:
            return rows
        existing = existing.where(existing[bound].between(lo, hi))
    cond = [rows[c].eqNullSafe(existing[c]) for c in rows.columns]
    return rows.join(existing, cond, "left_anti")


def run_gold(spark, lake: str, catalog: Catalog, plan: dict) -> dict:
    silver_path = spark_path(table_url(lake, SILVER))
    spark.read.format("delta").option("versionAsOf", plan["source_version"]).load(silver_path) \
        .createOrReplaceTempView("silver")
    spec, transform = catalog.tables[GOLD], catalog.tables[GOLD]["transform"]
    window = dt.timedelta(days=plan["label_window_days"])
    done = {}

    def rows_at(cutoff: str, label_end: str, target_spec: dict):
        *views, query = statements(catalog.sql(transform), cutoff, label_end)
        for v in views:
            spark.sql(v)
        skip = {"label"} if not any(c["name"] == "label" for c in target_spec["columns"]) else set()
        return spark.sql(query).selectExpr(*projection(target_spec, skip))

    def write(df, path, mode_opts: dict, txn, meta):
        w = df.write.format("delta").mode("overwrite").option("userMetadata", json.dumps({GOLD_COMMIT_KEY: meta}))
        for k, v in mode_opts.items():
            w = w.option(k, v)
        if txn:
            w = w.option("txnAppId", txn["txnAppId"]).option("txnVersion", txn["txnVersion"])
        w.save(path)

    g = plan["gold"]
    if not g["up_to_date"]:
        parts = [rows_at(c, (dt.datetime.strptime(c, CUTOFF_FORMAT) + window).strftime(CUTOFF_FORMAT), spec)
                 .cache() for c in g["cutoffs"]]
        df = parts[0]
        for p in parts[1:]:
            df = df.unionByName(p)
        n = df.count()
        positives = df.selectExpr("coalesce(sum(label), 0)").collect()[0][0]
        meta = {"source": SILVER, "source_version": plan["source_version"], "cutoffs": g["cutoffs"],
                "definition": plan["definition"], "label_window_days": window.days,
                "rows": n, "positives": positives}
        write(df, spark_path(table_url(lake, GOLD)), {"replaceWhere": g["replace_where"]}, g["txn"], meta)
        done["gold"] = {"cutoffs": g["cutoffs"], "rows": n, "positives": positives}
    s = plan["scoring"]
    if not s["up_to_date"]:
        sspec = catalog.tables[SCORING]
        df = rows_at(s["cutoff"], s["cutoff"], sspec).cache()
        n = df.count()
        meta = {"source": SILVER, "source_version": plan["source_version"], "cutoffs": [s["cutoff"]],
                "definition": plan["definition"], "rows": n}
        write(df, spark_path(table_url(lake, SCORING)), {}, s["txn"], meta)
        done["scoring"] = {"cutoff": s["cutoff"], "rows": n}
    return done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["plan", "run", "sql"])
    p.add_argument("--lake", required=True, help="the lake: a folder or s3://bucket/prefix")
    p.add_argument("--cutoffs", nargs="+", default=["latest"], help="latest, monthly, or cutoffs")
    p.add_argument("--repo", default=REPO, help="the berserkr checkout whose tables/ to run")
    p.add_argument("--only", choices=["silver", "gold"], help="one layer")
    a = p.parse_args(argv)
    catalog = Catalog(a.repo)
    try:
        if a.command == "plan":
            out = {}
            if a.only != "gold":
                out["silver"] = plan_silver(a.lake, catalog)
            if a.only != "silver":
                out["gold"] = plan_gold(a.lake, catalog, a.cutoffs)
            print(json.dumps(out, indent=1))
            return 0
        if a.command == "sql":
            plan = plan_silver(a.lake, catalog)
            levels = [l for l in plan["levels"] if not l["up_to_date"]] or plan["levels"]
            q = silver_queries(catalog, levels[0]["outputs"])
            print(json.dumps({"silver": q}, indent=1))
            return 0
        spark = spark_session()
        report = {}
        if a.only != "gold":
            report["silver"] = run_silver(spark, a.lake, catalog, plan_silver(a.lake, catalog))
        if a.only != "silver":
            silver = spark.read.format("delta").load(spark_path(table_url(a.lake, SILVER)))
            lo, hi = silver.selectExpr("min(InvoiceDate)", "max(InvoiceDate)").collect()[0]
            if lo is None:
                raise PlanError(f"{SILVER} is empty: refresh silver after appending drops")
            report["gold"] = run_gold(spark, a.lake, catalog, plan_gold(a.lake, catalog, a.cutoffs, (lo, hi)))
        print(json.dumps(report))
        return 0
    except PlanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
