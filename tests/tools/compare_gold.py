#!/usr/bin/env python3
"""Compares berserkr's gold.customer_item_features at one cutoff (a Delta table) with the DuckDB
peer's gold parquet, order-independently, as ../shared/peers/compare_outputs.py does (floats rounded).
Prints one JSON line {"ours": [...], "peer": [...]}.  Usage: compare_gold.py DELTA_TABLE PEER_PARQUET CUTOFF"""
import json, os, sys
import importlib.resources as ir
import duckdb

table, peer, cutoff = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
ext = str(ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension")
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
con.execute("SET TimeZone='UTC'")
Q = """count(*), sum(label), sum(hash(CustomerID::BIGINT, StockCode, n_purchases::BIGINT, n_lines::BIGINT, total_qty::BIGINT,
       round(total_revenue, 4), first_purchase::TIMESTAMP, last_purchase::TIMESTAMP, round(recency_days, 6), round(tenure_days, 6),
       cust_n_invoices::BIGINT, cust_n_items::BIGINT, cust_total_qty::BIGINT, round(cust_total_revenue, 3), round(cust_recency_days, 6),
       item_n_customers::BIGINT, item_total_qty::BIGINT, label::INT))::HUGEINT % 1000000007, round(sum(total_revenue), 2)"""
ours = con.execute(f"SELECT {Q} FROM delta_scan('file://{table}') WHERE cutoff = ?", [cutoff]).fetchone()
theirs = con.execute(f"SELECT {Q} FROM read_parquet('{peer}')").fetchone()
print(json.dumps({"ours": [str(v) for v in ours], "peer": [str(v) for v in theirs]}))
