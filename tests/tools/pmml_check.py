#!/usr/bin/env python3
"""Scores rows with JPMML (the reference PMML evaluator, through jpmml_evaluator + JPype) and
compares its probabilities with the scores berserkr wrote to gold.purchase_scores.

Usage: pmml_check.py MODEL.pmml LAKE_DIR MODEL_ID CUTOFF [N=300] [FEATURES=gold/customer_item_features]
Reads both tables with DuckDB's delta extension (independent of delta-rs), takes the first N
(CustomerID, StockCode) pairs of the cutoff, and prints one JSON line: rows, max_abs_diff."""
import json, os, sys
import importlib.resources as ir
import duckdb
from jpmml_evaluator import make_evaluator

pmml, lake, model_id, cutoff = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 300
features = sys.argv[6] if len(sys.argv) > 6 else "gold/customer_item_features"
lake = os.path.abspath(lake)
ext = str(ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension")
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
con.execute(f"CREATE VIEW f AS SELECT * FROM delta_scan('file://{lake}/{features}')")
con.execute(f"CREATE VIEW s AS SELECT * FROM delta_scan('file://{lake}/gold/purchase_scores')")
cur = con.execute(
    "SELECT f.*, s.score FROM f JOIN s ON f.CustomerID = s.CustomerID AND f.StockCode = s.StockCode "
    "AND f.cutoff = s.cutoff WHERE s.model_id = ? AND f.cutoff = ? ORDER BY f.CustomerID, f.StockCode LIMIT ?",
    [model_id, cutoff, n])
cols = [d[0] for d in cur.description]
rows = [dict(zip(cols, r)) for r in cur.fetchall()]
ev = make_evaluator(pmml, backend="jpype").verify()
fields = [f.getName() for f in ev.getInputFields()]
diff = 0.0
for r in rows:
    res = ev.evaluate({k: float(r[k]) for k in fields})
    diff = max(diff, abs(float(res["probability(1)"]) - r["score"]))
print(json.dumps({"rows": len(rows), "max_abs_diff": diff}))
