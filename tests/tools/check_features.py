#!/usr/bin/env python3
"""Recomputes the next-purchase features of gold.customer_item_features (migration 0017) at one
cutoff directly from silver's rows with DuckDB, formulated independently of
tables/gold/customer_item_features.sql (from the rows, not from the per-pair view), and compares
them with berserkr's gold, order-independently (floats rounded).
Prints one JSON line {"ours": [...], "peer": [...], "nonzero": {...}}.
Usage: check_features.py SILVER_TABLE GOLD_TABLE CUTOFF"""
import json, os, sys
import importlib.resources as ir
import duckdb

silver, gold, cutoff = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
ext = str(ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension")
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
con.execute("SET TimeZone='UTC'")
C = f"TIMESTAMP '{cutoff}'"
D = "86400.0"
peer = f"""
WITH s AS (SELECT CustomerID, StockCode, InvoiceNo, InvoiceDate::TIMESTAMP AS t
           FROM delta_scan('file://{silver}')),
f AS (SELECT * FROM s WHERE t < {C}),
cust AS (SELECT CustomerID, count(DISTINCT InvoiceNo) AS n, min(t) AS first, max(t) AS last FROM f GROUP BY ALL),
pair AS (SELECT CustomerID, StockCode, count(DISTINCT InvoiceNo) AS n, min(t) AS first, max(t) AS last FROM f GROUP BY ALL),
item AS (SELECT StockCode, count(DISTINCT CustomerID) AS customers, count(DISTINCT InvoiceNo) AS invoices, min(t) AS first,
                count(DISTINCT CustomerID) FILTER (WHERE t >= {C} - INTERVAL 30 DAY) AS recent
         FROM f GROUP BY ALL),
season AS (SELECT StockCode, count(DISTINCT CustomerID) AS season FROM s
           WHERE t >= {C} - INTERVAL 365 DAY AND t < {C} - INTERVAL 335 DAY GROUP BY ALL)
SELECT p.CustomerID, p.StockCode,
       CASE WHEN c.n > 1 THEN (epoch(c.last) - epoch(c.first)) / {D} / (c.n - 1)
            ELSE (epoch({C}) - epoch(c.first)) / {D} END AS cust_interval_days,
       CASE WHEN p.n > 1 THEN (epoch(p.last) - epoch(p.first)) / {D} / (p.n - 1)
            ELSE (epoch({C}) - epoch(p.first)) / {D} END AS pair_interval_days,
       (epoch({C}) - epoch(c.last)) / {D} AS cust_recency, (epoch({C}) - epoch(p.last)) / {D} AS recency,
       p.n::DOUBLE / c.n AS pair_share, i.invoices AS item_n_invoices, i.recent AS item_recent_customers,
       i.recent * greatest((epoch({C}) - epoch(i.first)) / {D}, 30.0) / (30.0 * i.customers) AS item_trend,
       coalesce(se.season, 0) AS item_season_customers
FROM pair p JOIN cust c USING (CustomerID) JOIN item i USING (StockCode) LEFT JOIN season se USING (StockCode)"""
H = """count(*), sum(hash(CustomerID::BIGINT, StockCode, round(cust_interval_days, 5), round(cust_overdue, 5),
       round(pair_interval_days, 5), round(pair_overdue, 5), round(pair_share, 6), item_n_invoices::BIGINT,
       item_recent_customers::BIGINT, round(item_trend, 5), item_season_customers::BIGINT))::HUGEINT % 1000000007"""
theirs = con.execute(f"""SELECT {H} FROM (SELECT *, cust_recency / greatest(cust_interval_days, 1.0) AS cust_overdue,
                         recency / greatest(pair_interval_days, 1.0) AS pair_overdue FROM ({peer}))""").fetchone()
ours = con.execute(f"SELECT {H} FROM delta_scan('file://{gold}') WHERE cutoff = ?", [cutoff]).fetchone()
nonzero = con.execute(f"""SELECT count(*) FILTER (WHERE item_recent_customers > 0), count(*) FILTER (WHERE item_season_customers > 0),
                          count(*) FILTER (WHERE pair_interval_days <> recency_days) FROM delta_scan('file://{gold}') WHERE cutoff = ?""",
                      [cutoff]).fetchone()
print(json.dumps({"ours": [str(v) for v in ours], "peer": [str(v) for v in theirs],
                  "nonzero": {"item_recent_customers": nonzero[0], "item_season_customers": nonzero[1],
                              "repeat_pairs": nonzero[2]}}))
