#!/usr/bin/env python3
"""Reads a Delta table with DuckDB's delta extension (the Delta project's kernel, independent of
delta-rs) and prints one JSON line: row count and the given aggregate query's result.

Usage: duckdb_read.py TABLE_PATH [VERSION] [SQL over `t`]
The extension is LOADed from the wheel's file, with autoinstall off: no network."""
import json, os, sys
import importlib.resources as ir
import duckdb

path = os.path.abspath(sys.argv[1])
version = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "latest" else None
sql = sys.argv[3] if len(sys.argv) > 3 else "SELECT count(*) FROM t"
ext = str(ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension")
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
con.execute("SET TimeZone='UTC'")
scan = f"delta_scan('file://{path}'" + (f", version => {int(version)})" if version else ")")
con.execute(f"CREATE VIEW t AS SELECT * FROM {scan}")
rows = con.execute(sql).fetchall()
print(json.dumps({"result": [[str(v) for v in r] for r in rows]}))
