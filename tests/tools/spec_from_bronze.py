#!/usr/bin/env python3
"""Computes SPEC.md's silver and gold over the raw rows of a bronze Delta table, in DuckDB (the
Delta kernel reads the table; the SQL is ../shared/peers/pipe_duckdb.py's, with the real drops'
'YYYY-MM-DD HH:MM:SS' dates). Prints one JSON line: silver rows, gold rows, gold positives, cutoff.
Usage: spec_from_bronze.py BRONZE_TABLE"""
import json, os, sys
import importlib.resources as ir
import duckdb

table = os.path.abspath(sys.argv[1])
ext = str(ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension")
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
con.execute("SET TimeZone='UTC'")
con.execute(f"""CREATE TABLE s AS
  SELECT InvoiceNo, StockCode, Description, Quantity, strptime(InvoiceDate, '%Y-%m-%d %H:%M:%S') AS InvoiceDate,
         UnitPrice, CAST(CustomerID AS BIGINT) AS CustomerID, Country, Quantity * UnitPrice AS Revenue
  FROM (SELECT DISTINCT "InvoiceNo" AS InvoiceNo, "StockCode" AS StockCode, "Description" AS Description,
               CAST("Quantity" AS BIGINT) AS Quantity, "InvoiceDate" AS InvoiceDate,
               CAST("UnitPrice" AS DOUBLE) AS UnitPrice, CAST(NULLIF("CustomerID", '') AS DOUBLE) AS CustomerID,
               "Country" AS Country
        FROM delta_scan('file://{table}'))
  WHERE CustomerID IS NOT NULL AND NOT starts_with(InvoiceNo, 'C') AND Quantity > 0""")
silver = con.execute("SELECT count(*) FROM s").fetchone()[0]
gold = con.execute("""
  WITH c AS (SELECT max(InvoiceDate) - INTERVAL 90 DAY AS cutoff FROM s),
  f AS (SELECT s.* FROM s, c WHERE s.InvoiceDate < c.cutoff),
  pair AS (SELECT DISTINCT CustomerID, StockCode FROM f),
  lab AS (SELECT DISTINCT s.CustomerID, s.StockCode FROM s, c WHERE s.InvoiceDate >= c.cutoff)
  SELECT count(*), count(l.CustomerID), (SELECT strftime(cutoff, '%Y-%m-%d %H:%M:%S') FROM c)
  FROM pair p LEFT JOIN lab l ON l.CustomerID = p.CustomerID AND l.StockCode = p.StockCode""").fetchone()
print(json.dumps({"silver": silver, "gold": gold[0], "positives": gold[1], "cutoff": gold[2]}))
