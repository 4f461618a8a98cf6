#!/usr/bin/env python3
"""Other engines reading a berserkr lake, for tests/engines.rs. Each subcommand prints one JSON
line.

  spark-manifest TABLE_DIR CUSTOMER
      PySpark without delta-spark, as its users read a Delta table: the lines of the table's
      symlink manifests (_symlink_format_manifest/), then exactly those Parquet files, partition
      values from the paths (partitionColumnTypeInference off, so `cutoff` stays a string).
      Prints the files Spark read (_metadata.file_path), gold's answers (per cutoff: rows,
      customers, positives, sum of n_purchases, revenue; CUSTOMER's top items at the latest
      cutoff), and the same answers from a plain directory read of the table.
  s3-manifest ENDPOINT TABLE_URL CUSTOMER
      The same through pyarrow on S3 (moto's server): manifests read with boto3, the files they
      list read with pyarrow's S3 filesystem (PySpark has no S3 filesystem without hadoop-aws,
      which needs Maven).
  snapshot TABLE_URL [ENDPOINT]
      The data files of the table's latest snapshot, from the deltalake package (delta-rs's
      Python binding).
  readers SPEC.json
      DuckDB's delta extension (Delta kernel) and polars read_delta read each table of SPEC at
      a version; each table's rows are normalized and digested, and so are berserkr's own rows
      (`berserkr query --format json` output). SPEC: [{"table", "path", "version", "duckdb_sql",
      "berserkr_json"}]. The DuckDB statements are those `berserkr lake register --engine
      duckdb` printed, run as they are (INSTALL/LOAD replaced by loading the wheel's extension:
      there is no network).
"""
import datetime
import decimal
import glob
import hashlib
import importlib.resources as ir
import json
import math
import os
import sys
import urllib.parse


def gold_answers(rows_by_cutoff, top):
    return {"per_cutoff": rows_by_cutoff, "top": top}


def norm_path(p, url_encoded=False):
    """A file URI or path as a plain absolute path (Spark's _metadata.file_path is a URL, file:/...
    with the name percent-encoded; a manifest line is a Hadoop path, file:///... as named)."""
    if url_encoded:
        p = urllib.parse.unquote(p)
    for prefix in ("file://", "file:"):
        if p.startswith(prefix):
            p = p[len(prefix):]
            break
    return "/" + p.lstrip("/")


def spark_manifest(table_dir, customer):
    from pyspark.sql import SparkSession, functions as F

    spark = (SparkSession.builder.master("local[2]").appName("berserkr-manifest-read")
             .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    manifests = sorted(glob.glob(f"{table_dir}/_symlink_format_manifest/**/manifest", recursive=True))
    listed = [line for m in manifests for line in open(m).read().splitlines() if line]
    assert listed, f"no manifest lines under {table_dir}"

    def answers(df):
        per = (df.groupBy("cutoff")
               .agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("CustomerID").alias("customers"),
                    F.sum("label").alias("positives"), F.sum("n_purchases").alias("purchases"),
                    F.round(F.sum("total_revenue"), 2).alias("revenue"))
               .orderBy("cutoff").collect())
        latest = df.agg(F.max("cutoff")).collect()[0][0]
        top = (df.where((F.col("CustomerID") == int(customer)) & (F.col("cutoff") == latest))
               .orderBy(F.desc("n_purchases"), "StockCode").limit(10)
               .select("StockCode", "n_purchases").collect())
        return gold_answers([[r["cutoff"], r["rows"], r["customers"], r["positives"], r["purchases"],
                              float(r["revenue"])] for r in per],
                            [[r["StockCode"], r["n_purchases"]] for r in top])

    through = spark.read.option("basePath", table_dir).parquet(*listed)
    read = sorted({norm_path(r[0], True) for r in through.select("_metadata.file_path").distinct().collect()})
    plain = spark.read.option("basePath", table_dir).parquet(table_dir)
    plain_files = sorted({norm_path(r[0], True) for r in plain.select("_metadata.file_path").distinct().collect()})
    print(json.dumps({
        "listed": sorted(norm_path(p) for p in listed),
        "read": read,
        "answers": answers(through),
        "plain_files": plain_files,
        "plain_answers": answers(plain),
    }))


def s3_manifest(endpoint, table_url, customer):
    import boto3
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    import pyarrow as pa

    u = urllib.parse.urlparse(table_url)
    bucket, prefix = u.netloc, u.path.strip("/") + "/_symlink_format_manifest/"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", []) if o["Key"].endswith("/manifest")]
    listed = []
    for k in sorted(keys):
        listed += [l for l in s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode().splitlines() if l]
    fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                           access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    tables = []
    for uri in listed:
        assert uri.startswith("s3://"), uri
        t = pq.read_table(uri[len("s3://"):], filesystem=fs)
        # The partition value from the path, as a manifest reader (Hive, Athena) takes it.
        part = [seg for seg in uri.split("/") if seg.startswith("cutoff=")][0]
        cutoff = urllib.parse.unquote(part[len("cutoff="):])
        tables.append(t.append_column("cutoff", pa.array([cutoff] * t.num_rows, pa.string())))
    t = pa.concat_tables(tables)
    rows = t.to_pylist()
    per = {}
    for r in rows:
        p = per.setdefault(r["cutoff"], [0, set(), 0, 0, 0.0])
        p[0] += 1
        p[1].add(r["CustomerID"])
        p[2] += r["label"]
        p[3] += r["n_purchases"]
        p[4] += r["total_revenue"]
    latest = max(per)
    top = sorted(((r["StockCode"], r["n_purchases"]) for r in rows
                  if r["CustomerID"] == int(customer) and r["cutoff"] == latest),
                 key=lambda x: (-x[1], x[0]))[:10]
    print(json.dumps({
        "listed": sorted(listed),
        "answers": gold_answers([[c, v[0], len(v[1]), v[2], v[3], round(v[4], 2)] for c, v in sorted(per.items())],
                                [list(x) for x in top]),
    }))


def snapshot(table_url, endpoint=None):
    from deltalake import DeltaTable

    options = None
    if endpoint:
        options = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
                   "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
                   "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    dt = DeltaTable(table_url, storage_options=options)
    uris = list(dt.file_uris())
    print(json.dumps({"version": dt.version(), "files": sorted(uris)}))


def canon(v):
    """One value as text every reader agrees on."""
    if v is None:
        return "\u2205"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.isoformat(sep="T", timespec="microseconds")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return str(v)


def digest(columns, rows):
    """Rows (dicts or tuples in `columns` order) as a sorted, hashed multiset."""
    lines = sorted("\x1f".join(canon(r[c] if isinstance(r, dict) else r[i]) for i, c in enumerate(columns))
                   for r in rows)
    return {"rows": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def berserkr_rows(path, columns, types):
    """berserkr's JSON lines, with timestamps parsed back (arrow-json writes them as text)."""
    out = []
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        row = {}
        for c in columns:
            v = r.get(c)
            if v is not None and types[c] in ("timestamp", "timestamp_ntz"):
                v = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            elif v is not None and types[c] == "double":
                v = float(v)
            row[c] = v
        out.append(row)
    return out


def readers(spec_path):
    import duckdb
    import polars as pl

    ext = str(ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension")
    report = {}
    for s in json.load(open(spec_path)):
        con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
        con.execute(f"LOAD '{ext}'")
        con.execute("SET TimeZone='UTC'")
        view = None
        for stmt in s["duckdb_sql"]:
            if stmt.startswith("--") or stmt.startswith("INSTALL"):
                continue
            con.execute(stmt)
            if stmt.startswith("CREATE OR REPLACE VIEW"):
                view = stmt.split()[4]
        cur = con.execute(f"SELECT * FROM {view}")
        columns = [d[0] for d in cur.description]
        duck = digest(columns, cur.fetchall())
        df = pl.read_delta(s["path"], version=s["version"])
        polars = digest(columns, df.select(columns).rows())
        types = s["types"]
        ours = digest(columns, berserkr_rows(s["berserkr_json"], columns, types))
        report[f'{s["table"]}@{s["version"]}'] = {"berserkr": ours, "duckdb": duck, "polars": polars}
    print(json.dumps(report))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"spark-manifest": spark_manifest, "s3-manifest": s3_manifest, "snapshot": snapshot,
     "readers": readers}[cmd](*args)
