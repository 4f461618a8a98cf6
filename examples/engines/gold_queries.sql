-- Gold as a user queries it: rows, customers, positives and revenue per cutoff, then the items a
-- customer bought most often before the latest cutoff. ${T} is the table's name in the engine.
SELECT cutoff, count(*) AS pairs, count(DISTINCT CustomerID) AS customers, sum(label) AS positives,
       round(sum(total_revenue), 2) AS revenue
FROM ${T} GROUP BY cutoff ORDER BY cutoff;

SELECT StockCode, n_purchases, total_qty, recency_days, label
FROM ${T}
WHERE CustomerID = 17850 AND cutoff = (SELECT max(cutoff) FROM ${T})
ORDER BY n_purchases DESC, StockCode LIMIT 10;
