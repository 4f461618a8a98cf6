use deltalake::datafusion::prelude::*;
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut config = SessionConfig::new().with_target_partitions(2);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    if let Ok(sets) = std::env::var("DFSET") { for kv in sets.split(',').filter(|s| !s.is_empty()) { let (k, v) = kv.split_once('=').unwrap(); config = config.set_str(k, v); } }
    let ctx = SessionContext::new_with_config(config);
    ctx.register_parquet("silver_files", &args[1], ParquetReadOptions::default()).await.unwrap();
    let df = ctx.sql("SELECT CustomerID, StockCode, InvoiceNo, Quantity, Revenue, InvoiceDate FROM silver_files").await.unwrap();
    let schema = df.schema().as_arrow().clone();
    let parts = df.collect_partitioned().await.unwrap();
    ctx.register_table("silver", std::sync::Arc::new(deltalake::datafusion::datasource::MemTable::try_new(std::sync::Arc::new(schema), parts).unwrap())).unwrap();
    let sql = std::fs::read_to_string(&args[2]).unwrap();
    for _ in 0..3 {
    let t = std::time::Instant::now();
    let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    eprintln!("{} rows {:?}", out.iter().map(|b| b.num_rows()).sum::<usize>(), t.elapsed());
    }
    if std::env::var("NOEXPLAIN").is_ok() { return; }
    let out = ctx.sql(&format!("EXPLAIN ANALYZE {sql}")).await.unwrap().collect().await.unwrap();
    println!("{}", deltalake::arrow::util::pretty::pretty_format_batches(&out).unwrap());
}
