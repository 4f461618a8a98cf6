#!/usr/bin/env python3
"""Compares berserkr's silver.transactions (a Delta table) with the DuckDB peer's silver parquet,
row for row and order-independently, as ../shared/peers/compare_outputs.py does: row count, a sum of
per-row hashes (floats rounded to 6 places), total revenue, first and last invoice date.
Prints one JSON line {"ours": [...], "peer": [...]}.  Usage: compare_silver.py DELTA_TABLE PEER_PARQUET"""
import json, os, sys
import importlib.resources as ir
import duckdb

table, peer = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
ext = str(ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension")
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
con.execute("SET TimeZone='UTC'")
Q = """count(*), sum(hash(InvoiceNo, StockCode, Description, Quantity::BIGINT, InvoiceDate::TIMESTAMP,
       UnitPrice::DOUBLE, CustomerID::BIGINT, Country, round(Revenue, 6)))::HUGEINT % 1000000007,
       round(sum(Revenue), 2), min(InvoiceDate)::TIMESTAMP::VARCHAR, max(InvoiceDate)::TIMESTAMP::VARCHAR"""
ours = con.execute(f"SELECT {Q} FROM delta_scan('file://{table}')").fetchone()
theirs = con.execute(f"SELECT {Q} FROM read_parquet('{peer}')").fetchone()
print(json.dumps({"ours": [str(v) for v in ours], "peer": [str(v) for v in theirs]}))
