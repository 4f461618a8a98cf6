-- Types the new rows of bronze.online_retail (registered as `bronze_new`). Portable to Spark SQL:
-- TRY_CAST, COALESCE and Spark's try_to_timestamp (berserkr gives DataFusion the same, for the
-- pattern letters used here). Dates come in two forms:
--   'YYYY-MM-DD HH:MM:SS' (the real drops) and 'M/D/YYYY H:MM' (the UCI spreadsheet, the generator);
-- anything else, or a number that does not parse, becomes NULL for the expectations to catch.
SELECT
  InvoiceNo,
  StockCode,
  Description,
  TRY_CAST(Quantity AS BIGINT) AS Quantity,
  COALESCE(try_to_timestamp(InvoiceDate, 'yyyy-MM-dd HH:mm:ss'),
           try_to_timestamp(InvoiceDate, 'M/d/yyyy H:mm')) AS InvoiceDate,
  TRY_CAST(UnitPrice AS DOUBLE) AS UnitPrice,
  TRY_CAST(TRY_CAST(CustomerID AS DOUBLE) AS BIGINT) AS CustomerID,
  Country,
  TRY_CAST(Quantity AS BIGINT) * TRY_CAST(UnitPrice AS DOUBLE) AS Revenue,
  _source_file,
  _source_line,
  InvoiceNo AS raw_invoice_no,
  StockCode AS raw_stock_code,
  Description AS raw_description,
  Quantity AS raw_quantity,
  InvoiceDate AS raw_invoice_date,
  UnitPrice AS raw_unit_price,
  CustomerID AS raw_customer_id,
  Country AS raw_country
FROM bronze_new
