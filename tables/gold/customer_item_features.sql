-- Point-in-time customer-item features of silver.transactions (registered as `silver`) at one
-- cutoff. ${cutoff} and ${label_end} are replaced by 'YYYY-MM-DD HH:MM:SS' before it runs.
-- Features read only rows strictly before the cutoff; the label reads only the label window.
--
-- Two statements, as Spark SQL runs them (spark-sql -f, or spark.sql one at a time): a
-- temporary view, then the query whose rows are the table. berserkr materializes each view in
-- memory before the query runs, so the per-pair aggregate is computed once and the customer and
-- item features are derived from it instead of from every row again.
-- unix_micros is Spark's; berserkr gives DataFusion the same.

-- One row per (customer, item) bought before the cutoff.
CREATE OR REPLACE TEMPORARY VIEW pair AS
WITH f AS (
  SELECT CustomerID, StockCode, InvoiceNo, Quantity, Revenue, InvoiceDate
  FROM silver WHERE InvoiceDate < TIMESTAMP '${cutoff}'
),
-- Distinct invoices per pair in two steps: a per-group distinct set over ~1.5M pairs costs
-- DataFusion gigabytes, a second GROUP BY costs nothing.
pair_invoice AS (
  SELECT CustomerID, StockCode, InvoiceNo,
         count(*) AS n, sum(Quantity) AS qty, sum(Revenue) AS revenue,
         min(InvoiceDate) AS first_at, max(InvoiceDate) AS last_at
  FROM f GROUP BY CustomerID, StockCode, InvoiceNo
)
SELECT CustomerID, StockCode,
       count(*) AS n_purchases, sum(n) AS n_lines,
       sum(qty) AS total_qty, sum(revenue) AS total_revenue,
       min(first_at) AS first_purchase, max(last_at) AS last_purchase
FROM pair_invoice GROUP BY CustomerID, StockCode;

-- A customer's distinct items are its pairs; an item's distinct customers are its pairs.
WITH cust AS (
  SELECT CustomerID,
         count(*) AS cust_n_items,
         sum(total_qty) AS cust_total_qty, sum(total_revenue) AS cust_total_revenue,
         min(first_purchase) AS cust_first, max(last_purchase) AS cust_last
  FROM pair GROUP BY CustomerID
),
cust_invoices AS (
  SELECT CustomerID, count(*) AS cust_n_invoices
  FROM (SELECT CustomerID, InvoiceNo FROM silver
        WHERE InvoiceDate < TIMESTAMP '${cutoff}'
        GROUP BY CustomerID, InvoiceNo) ci
  GROUP BY CustomerID
),
-- The customer's usual interval between invoices: the span from first to last invoice over the
-- intervals in it; with one invoice, the days since it (the interval is at least that long).
customer AS (
  SELECT cu.CustomerID, cu.cust_n_items, cu.cust_total_qty, cu.cust_total_revenue, cu.cust_last,
         ci.cust_n_invoices,
         CASE WHEN ci.cust_n_invoices > 1
              THEN (unix_micros(cu.cust_last) - unix_micros(cu.cust_first)) / 86400e6
                   / (ci.cust_n_invoices - 1)
              ELSE (unix_micros(TIMESTAMP '${cutoff}') - unix_micros(cu.cust_first)) / 86400e6
         END AS cust_interval_days
  FROM cust cu JOIN cust_invoices ci ON ci.CustomerID = cu.CustomerID
),
-- An item's customers in the 30 days before the cutoff (those whose last purchase of it is
-- that recent) and since it first sold, for its trend.
item_all AS (
  SELECT StockCode, count(*) AS item_n_customers, sum(total_qty) AS item_total_qty,
         sum(n_purchases) AS item_n_invoices,
         sum(CASE WHEN unix_micros(last_purchase)
                       >= unix_micros(TIMESTAMP '${cutoff}') - 30 * 86400000000
                  THEN 1 ELSE 0 END) AS item_recent_customers,
         (unix_micros(TIMESTAMP '${cutoff}') - unix_micros(min(first_purchase))) / 86400e6
           AS item_age_days
  FROM pair GROUP BY StockCode
),
-- Seasonality: the item's distinct customers in the 30 days that began one year (365 days)
-- before the cutoff.
season AS (
  SELECT StockCode, count(*) AS item_season_customers
  FROM (SELECT StockCode, CustomerID FROM silver
        WHERE unix_micros(InvoiceDate) >= unix_micros(TIMESTAMP '${cutoff}') - 365 * 86400000000
          AND unix_micros(InvoiceDate) < unix_micros(TIMESTAMP '${cutoff}') - 335 * 86400000000
        GROUP BY StockCode, CustomerID) sc
  GROUP BY StockCode
),
item AS (
  SELECT ia.StockCode, ia.item_n_customers, ia.item_total_qty, ia.item_n_invoices,
         ia.item_recent_customers,
         ia.item_recent_customers * greatest(ia.item_age_days, 30.0) / (30.0 * ia.item_n_customers)
           AS item_trend,
         coalesce(se.item_season_customers, 0) AS item_season_customers
  FROM item_all ia LEFT JOIN season se ON se.StockCode = ia.StockCode
),
lab AS (
  SELECT DISTINCT CustomerID, StockCode FROM silver
  WHERE InvoiceDate >= TIMESTAMP '${cutoff}' AND InvoiceDate <= TIMESTAMP '${label_end}'
),
-- The small side of each join comes first: DataFusion builds its hash table from the left input
-- and streams the right one through it, so the 1.5M pairs are never held in a join's table and
-- their rows flow to the writers as they are joined (Spark plans its own).
pc AS (
  SELECT p.CustomerID, p.StockCode, p.n_purchases, p.n_lines, p.total_qty, p.total_revenue,
         p.first_purchase, p.last_purchase,
         (unix_micros(TIMESTAMP '${cutoff}') - unix_micros(p.last_purchase)) / 86400e6
           AS recency_days,
         (unix_micros(TIMESTAMP '${cutoff}') - unix_micros(p.first_purchase)) / 86400e6
           AS tenure_days,
         cu.cust_n_invoices, cu.cust_n_items, cu.cust_total_qty, cu.cust_total_revenue,
         (unix_micros(TIMESTAMP '${cutoff}') - unix_micros(cu.cust_last)) / 86400e6
           AS cust_recency_days,
         cu.cust_interval_days
  FROM customer cu JOIN pair p ON p.CustomerID = cu.CustomerID
),
pci AS (
  SELECT p.*, it.item_n_customers, it.item_total_qty, it.item_n_invoices,
         it.item_recent_customers, it.item_trend,
         it.item_season_customers,
         -- The customer's interval between purchases of the item; with one purchase, the
         -- days since it.
         CASE WHEN p.n_purchases > 1
              THEN (unix_micros(p.last_purchase) - unix_micros(p.first_purchase)) / 86400e6
                   / (p.n_purchases - 1)
              ELSE p.tenure_days
         END AS pair_interval_days
  FROM item it JOIN pc p ON p.StockCode = it.StockCode
)
SELECT
  '${cutoff}' AS cutoff,
  p.CustomerID, p.StockCode, p.n_purchases, p.n_lines, p.total_qty, p.total_revenue,
  p.first_purchase, p.last_purchase, p.recency_days, p.tenure_days,
  p.cust_n_invoices, p.cust_n_items, p.cust_total_qty, p.cust_total_revenue,
  p.cust_recency_days,
  p.item_n_customers, p.item_total_qty,
  p.cust_interval_days,
  -- How overdue the next invoice (of the customer; of the item by the customer) is: the days
  -- since the last one over the usual interval (at least a day).
  p.cust_recency_days / greatest(p.cust_interval_days, 1.0) AS cust_overdue,
  p.pair_interval_days,
  p.recency_days / greatest(p.pair_interval_days, 1.0) AS pair_overdue,
  -- The share of the customer's invoices that held the item.
  CAST(p.n_purchases AS DOUBLE) / p.cust_n_invoices AS pair_share,
  -- The item's invoices (by customers): its popularity by purchases, not by buyers.
  p.item_n_invoices, p.item_recent_customers, p.item_trend, p.item_season_customers,
  CASE WHEN l.CustomerID IS NULL THEN 0 ELSE 1 END AS label
FROM lab l
RIGHT JOIN pci p ON l.CustomerID = p.CustomerID AND l.StockCode = p.StockCode
