#!/usr/bin/env python3
"""Runs the SQL of tables/ in Spark SQL, unchanged, over the Parquet files of a berserkr lake
and compares what Spark computes with what berserkr wrote, row for row (floats rounded):
  silver: tables/silver/online_retail_typed.sql over bronze, then silver.transactions' filter,
          its drop expectations and exact-duplicate removal (as declared in transactions.toml);
  gold:   tables/gold/customer_item_features.sql (a temporary view, then the query) over silver.
The lake must hold one bronze, silver and gold version written without removes (every Parquet
file under a table is live), and one gold cutoff.
Prints one JSON line {"silver": [only_spark, only_berserkr, rows], "gold": [...]}.
Usage: spark_transforms.py REPO LAKE CUTOFF"""
import datetime, glob, json, sys, tomllib
from pyspark.sql import SparkSession

repo, lake, cutoff = sys.argv[1:4]
window = tomllib.load(open(f"{repo}/tables/gold/customer_item_features.toml", "rb"))["label_window_days"]
label_end = (datetime.datetime.fromisoformat(cutoff) + datetime.timedelta(days=window)).strftime("%Y-%m-%d %H:%M:%S")
spark = (SparkSession.builder.master("local[2]").appName("berserkr-portability")
         .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "4").config("spark.ui.showConsoleProgress", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")


def files(table):
    found = [f for f in glob.glob(f"{lake}/{table}/**/*.parquet", recursive=True) if "_delta_log" not in f]
    assert found, f"no Parquet files under {lake}/{table}"
    return found


def statements(path):
    """The file's statements, as spark-sql -f splits them (comments dropped first)."""
    text = "\n".join(l for l in open(f"{repo}/{path}").read().splitlines() if not l.strip().startswith("--"))
    text = text.replace("${cutoff}", cutoff).replace("${label_end}", label_end)
    return [s for s in text.split(";") if s.strip()]


def run(path):
    *views, query = statements(path)
    for v in views:
        spark.sql(v)
    return spark.sql(query)


def diff(spark_df, ours_df, columns, doubles):
    def norm(df):
        return df.selectExpr(*[f"round({c}, 6) AS {c}" if c in doubles else f"CAST({c} AS STRING) AS {c}" for c in columns])
    a, b = norm(spark_df), norm(ours_df)
    return [a.exceptAll(b).count(), b.exceptAll(a).count(), a.count()]


spec = tomllib.load(open(f"{repo}/tables/silver/transactions.toml", "rb"))
spark.read.parquet(*files("bronze/online_retail")).createOrReplaceTempView("bronze_new")
typed = run(spec["transform"])
typed.createOrReplaceTempView("typed")
fails = [e["expr"] for e in spec["expectations"] if e["action"] == "fail"]
drops = [e["expr"] for e in spec["expectations"] if e["action"] == "drop"]
assert spark.sql(f"SELECT count(*) FROM typed WHERE NOT ({' AND '.join(fails)})").collect()[0][0] == 0
kept = " AND ".join(f"({c})" for c in [spec["filter"], *drops])
silver_cols = [c["name"] for c in spec["columns"]]
spark_silver = spark.sql(f"SELECT {', '.join(silver_cols)} FROM typed WHERE {kept}").distinct()
ours_silver = spark.read.parquet(*files("silver/transactions"))
silver = diff(spark_silver, ours_silver, silver_cols, {"UnitPrice", "Revenue"})

ours_silver.createOrReplaceTempView("silver")
gold_spec = tomllib.load(open(f"{repo}/tables/gold/customer_item_features.toml", "rb"))
gold_cols = [c["name"] for c in gold_spec["columns"] if c["name"] != "cutoff"]
doubles = {c["name"] for c in gold_spec["columns"] if c["type"] == "double"}
gold = diff(run(gold_spec["transform"]), spark.read.parquet(*files("gold/customer_item_features")), gold_cols, doubles)
print(json.dumps({"silver": silver, "gold": gold}))
