#!/usr/bin/env python3
"""Reads many Delta tables with DuckDB's delta extension (the Delta project's kernel, independent
of delta-rs) in one process, and compares each one's row count with berserkr's.

Usage: duckdb_check.py CHECKS.json   where CHECKS.json is a list of
  {"path": local table folder, "version": N, "rows": berserkr's count, "what": label}
Prints one JSON line: {"checked": n, "mismatches": [...]}; a table DuckDB cannot read at that
version is a mismatch naming the error. The extension is LOADed from the wheel's file, with
autoinstall off: no network."""
import json, os, sys
import importlib.resources as ir
import duckdb

checks = json.load(open(sys.argv[1]))
ext = str(ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension")
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
mismatches = []
for c in checks:
    path = os.path.abspath(c["path"])
    try:
        n = con.execute(
            f"SELECT count(*) FROM delta_scan('file://{path}', version => {int(c['version'])})"
        ).fetchone()[0]
        if n != c["rows"]:
            mismatches.append({"what": c["what"], "version": c["version"], "berserkr": c["rows"], "duckdb": n})
    except Exception as e:  # an unreadable table is what this looks for
        mismatches.append({"what": c["what"], "version": c["version"], "error": str(e)[:500]})
print(json.dumps({"checked": len(checks), "mismatches": mismatches}))
