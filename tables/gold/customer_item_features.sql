-- Point-in-time customer-item features of silver.transactions (registered as `silver`) at one
-- cutoff. ${cutoff} and ${label_end} are replaced by 'YYYY-MM-DD HH:MM:SS' before the query runs.
-- Features read only rows strictly before the cutoff; the label reads only the label window.
-- Spark SQL runs this unchanged (unix_micros is Spark's; berserkr gives DataFusion the same).
WITH f AS (
  SELECT * FROM silver WHERE InvoiceDate < TIMESTAMP '${cutoff}'
),
-- Distinct invoices per pair in two steps: a per-group distinct set over ~1.5M pairs costs
-- DataFusion gigabytes, a second GROUP BY costs nothing.
pair_invoice AS (
  SELECT CustomerID, StockCode, InvoiceNo,
         count(*) AS n, sum(Quantity) AS qty, sum(Revenue) AS revenue,
         min(InvoiceDate) AS first_at, max(InvoiceDate) AS last_at
  FROM f GROUP BY CustomerID, StockCode, InvoiceNo
),
pair AS (
  SELECT CustomerID, StockCode,
         count(*) AS n_purchases, sum(n) AS n_lines,
         sum(qty) AS total_qty, sum(revenue) AS total_revenue,
         min(first_at) AS first_purchase, max(last_at) AS last_purchase
  FROM pair_invoice GROUP BY CustomerID, StockCode
),
-- One DISTINCT per aggregate: DataFusion turns a single count(DISTINCT) into two GROUP BYs,
-- two of them in one aggregate cost a per-customer set each.
cust AS (
  SELECT CustomerID,
         count(DISTINCT StockCode) AS cust_n_items,
         sum(Quantity) AS cust_total_qty, sum(Revenue) AS cust_total_revenue,
         max(InvoiceDate) AS cust_last
  FROM f GROUP BY CustomerID
),
cust_invoices AS (
  SELECT CustomerID, count(*) AS cust_n_invoices
  FROM (SELECT CustomerID, InvoiceNo FROM f GROUP BY CustomerID, InvoiceNo) ci
  GROUP BY CustomerID
),
item AS (
  SELECT StockCode, count(DISTINCT CustomerID) AS item_n_customers, sum(Quantity) AS item_total_qty
  FROM f GROUP BY StockCode
),
lab AS (
  SELECT DISTINCT CustomerID, StockCode FROM silver
  WHERE InvoiceDate >= TIMESTAMP '${cutoff}' AND InvoiceDate <= TIMESTAMP '${label_end}'
)
SELECT
  '${cutoff}' AS cutoff,
  p.CustomerID, p.StockCode, p.n_purchases, p.n_lines, p.total_qty, p.total_revenue,
  p.first_purchase, p.last_purchase,
  (unix_micros(TIMESTAMP '${cutoff}') - unix_micros(p.last_purchase)) / 86400e6 AS recency_days,
  (unix_micros(TIMESTAMP '${cutoff}') - unix_micros(p.first_purchase)) / 86400e6 AS tenure_days,
  ci.cust_n_invoices, cu.cust_n_items, cu.cust_total_qty, cu.cust_total_revenue,
  (unix_micros(TIMESTAMP '${cutoff}') - unix_micros(cu.cust_last)) / 86400e6 AS cust_recency_days,
  it.item_n_customers, it.item_total_qty,
  CASE WHEN l.CustomerID IS NULL THEN 0 ELSE 1 END AS label
FROM pair p
JOIN cust cu ON cu.CustomerID = p.CustomerID
JOIN cust_invoices ci ON ci.CustomerID = p.CustomerID
JOIN item it ON it.StockCode = p.StockCode
LEFT JOIN lab l ON l.CustomerID = p.CustomerID AND l.StockCode = p.StockCode
