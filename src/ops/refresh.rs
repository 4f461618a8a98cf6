//! `lake refresh silver`: build the silver tables from the bronze rows they have not seen yet.
//!
//! Each silver table records in its own log (application transaction
//! `berserkr.refresh.<source>`) the last source version it reflects. A refresh reads only the
//! data files the source's commits added after that version, types them with the declared SQL
//! (`tables/silver/*.sql`), checks the declared expectations on every typed row (warn, drop into
//! the quarantine table, or fail and commit nothing), routes the rows to each table by its
//! filter, drops rows that are already there (dedupe), and commits each table once with the new
//! source version. A second refresh finds nothing new and writes nothing; a refresh that died
//! half-way finds each table at the version it reached and brings the rest up.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::FileSelection;
use serde::Serialize;
use serde_json::json;

use crate::catalog::{ExpectationAction, ExpectationSpec, TableId, TableSpec};
use crate::error::{Error, Result};
use crate::lake::Lakehouse;
use crate::ops::target::{Committed, Target};

/// What happened to one silver table.
#[derive(Debug, Clone, Serialize)]
pub struct TableRefresh {
    /// The table.
    pub table: String,
    /// Its source.
    pub source: String,
    /// Source version it reflected before (None: never refreshed).
    pub from_source_version: Option<u64>,
    /// Source version it reflects now.
    pub to_source_version: u64,
    /// Rows added.
    pub rows: u64,
    /// New table version, or None when it was already up to date.
    pub version: Option<u64>,
}

/// Violations of one expectation in one refresh.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectationCount {
    /// What the rule does.
    pub action: ExpectationAction,
    /// Rows that violated it.
    pub violations: u64,
}

/// What `lake refresh` did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RefreshReport {
    /// Every refreshed table.
    pub tables: Vec<TableRefresh>,
    /// Violations per expectation, per source.
    pub expectations: BTreeMap<String, BTreeMap<String, ExpectationCount>>,
}

/// App id of the transaction recording the source version a table reflects.
pub fn refresh_app_id(source: &TableId) -> String {
    format!("berserkr.refresh.{source}")
}

/// A table written by a refresh: a declared silver table, or a quarantine table.
struct Output<'a> {
    spec: &'a TableSpec,
    target: Target,
    processed: Option<u64>,
    quarantine_for: Option<&'a TableSpec>,
}

impl Lakehouse {
    /// Refreshes every silver table from its source.
    pub async fn refresh_silver(&self) -> Result<RefreshReport> {
        let mut groups: BTreeMap<TableId, Vec<&TableSpec>> = BTreeMap::new();
        for spec in self.catalog().tables().filter(|t| t.layer == "silver") {
            if let Some(src) = &spec.source {
                groups.entry(src.parse()?).or_default().push(spec);
            }
        }
        let mut report = RefreshReport::default();
        for (source, specs) in groups {
            self.refresh_from(&source, &specs, &mut report).await?;
        }
        Ok(report)
    }

    async fn refresh_from(
        &self,
        source_id: &TableId,
        specs: &[&TableSpec],
        report: &mut RefreshReport,
    ) -> Result<()> {
        let source = self.current_table(source_id).await?;
        let to = source.version().unwrap_or(0);
        let app_id = refresh_app_id(source_id);
        let mut outputs: Vec<Output<'_>> = Vec::new();
        for spec in specs {
            let target = Target::open(self, &spec.id()).await?;
            let processed = target.txn_version(&app_id).await?.map(|v| v as u64);
            outputs.push(Output {
                spec,
                target,
                processed,
                quarantine_for: None,
            });
            if let Some(q) = &spec.quarantine {
                let qid: TableId = q.parse()?;
                let qspec = self.catalog().table(&qid)?;
                let target = Target::open(self, &qid).await?;
                let processed = target.txn_version(&app_id).await?.map(|v| v as u64);
                outputs.push(Output {
                    spec: qspec,
                    target,
                    processed,
                    quarantine_for: Some(spec),
                });
            }
        }
        // Tables at the same source version are refreshed together (normally all of them).
        let mut levels: Vec<Option<u64>> = outputs.iter().map(|o| o.processed).collect();
        levels.sort();
        levels.dedup();
        let mut counts_all = BTreeMap::new();
        for from in levels {
            let idx: Vec<usize> = (0..outputs.len())
                .filter(|&i| outputs[i].processed == from)
                .collect();
            if from == Some(to) {
                for &i in &idx {
                    report.tables.push(TableRefresh {
                        table: outputs[i].spec.id().to_string(),
                        source: source_id.to_string(),
                        from_source_version: from,
                        to_source_version: to,
                        rows: 0,
                        version: None,
                    });
                }
                continue;
            }
            let counts = self
                .refresh_level(
                    &source,
                    source_id,
                    from,
                    to,
                    &app_id,
                    &mut outputs,
                    &idx,
                    report,
                )
                .await?;
            counts_all.extend(counts);
        }
        if !counts_all.is_empty() {
            report
                .expectations
                .insert(source_id.to_string(), counts_all);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn refresh_level(
        &self,
        source: &deltalake::DeltaTable,
        source_id: &TableId,
        from: Option<u64>,
        to: u64,
        app_id: &str,
        outputs: &mut [Output<'_>],
        idx: &[usize],
        report: &mut RefreshReport,
    ) -> Result<BTreeMap<String, ExpectationCount>> {
        let files = added_files(source, source_id, from, to).await?;
        let ctx = session();
        // The source's new rows: only the files its commits after `from` added.
        let provider = if files.is_empty() {
            let schema: SchemaRef = source
                .snapshot()
                .map_err(|e| Error::delta(source_id, e))?
                .snapshot()
                .arrow_schema();
            Arc::new(MemTable::try_new(schema, vec![vec![]]).map_err(df(source_id))?) as _
        } else {
            source
                .table_provider()
                .with_file_selection(FileSelection::from_file_paths(files.clone()))
                .await
                .map_err(df(source_id))?
        };
        ctx.register_table("bronze_new", provider)
            .map_err(df(source_id))?;

        let lead = outputs[idx[0]]
            .quarantine_for
            .unwrap_or(outputs[idx[0]].spec);
        let transform = lead.transform.as_deref().ok_or_else(|| Error::Catalog {
            file: format!("tables/{}.toml", lead.id().path()),
            message: "a silver table needs a transform".into(),
        })?;
        let sql = self.catalog().sql(transform)?;
        let typed = ctx.sql(sql).await.map_err(df(source_id))?;
        ctx.register_table("typed", typed.into_view())
            .map_err(df(source_id))?;

        let mut rules: Vec<&ExpectationSpec> = Vec::new();
        for o in outputs.iter() {
            let spec = o.quarantine_for.unwrap_or(o.spec);
            for e in &spec.expectations {
                if !rules.iter().any(|r| r.name == e.name) {
                    rules.push(e);
                }
            }
        }
        let oks: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("COALESCE(({}), FALSE) AS __ok_{i}", r.expr))
            .collect();
        let checked_sql = if oks.is_empty() {
            "SELECT * FROM typed".to_string()
        } else {
            format!("SELECT *, {} FROM typed", oks.join(", "))
        };
        let checked = ctx
            .sql(&checked_sql)
            .await
            .map_err(df(source_id))?
            .collect()
            .await
            .map_err(df(source_id))?;
        let schema = match checked.first() {
            Some(b) => b.schema(),
            None => Arc::new(
                ctx.sql(&checked_sql)
                    .await
                    .map_err(df(source_id))?
                    .schema()
                    .as_arrow()
                    .clone(),
            ),
        };
        ctx.deregister_table("typed").map_err(df(source_id))?;
        ctx.register_table(
            "checked",
            Arc::new(MemTable::try_new(schema, vec![checked]).map_err(df(source_id))?),
        )
        .map_err(df(source_id))?;

        // Count violations per rule.
        let mut counts = BTreeMap::new();
        if !rules.is_empty() {
            let sums: Vec<String> = (0..rules.len())
                .map(|i| format!("SUM(CASE WHEN __ok_{i} THEN 0 ELSE 1 END)"))
                .collect();
            let r = collect_sql(
                &ctx,
                &format!("SELECT {} FROM checked", sums.join(", ")),
                source_id,
            )
            .await?;
            for (i, rule) in rules.iter().enumerate() {
                let n = scalar_u64(&r, i);
                counts.insert(
                    rule.name.clone(),
                    ExpectationCount {
                        action: rule.action,
                        violations: n,
                    },
                );
                if rule.action == ExpectationAction::Fail && n > 0 {
                    let ex = collect_sql(
                        &ctx,
                        &format!("SELECT _source_file, _source_line FROM checked WHERE NOT __ok_{i} ORDER BY _source_file, _source_line LIMIT 1"),
                        source_id,
                    )
                    .await?;
                    return Err(Error::ExpectationFailed {
                        table: lead.id().to_string(),
                        rule: rule.name.clone(),
                        violations: n,
                        first: first_location(&ex),
                    });
                }
            }
        }
        let drop_oks: Vec<String> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.action == ExpectationAction::Drop)
            .map(|(i, _)| format!("__ok_{i}"))
            .collect();
        let all_ok = if drop_oks.is_empty() {
            "TRUE".to_string()
        } else {
            drop_oks.join(" AND ")
        };
        let meta = |rows: u64| {
            json!({
                "source": source_id.to_string(),
                "from_source_version": from,
                "to_source_version": to,
                "source_files": files.len(),
                "rows": rows,
                "expectations": counts,
            })
        };

        for &i in idx {
            let o = &mut outputs[i];
            let sql = match o.quarantine_for {
                Some(_) => {
                    let rule = rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.action == ExpectationAction::Drop)
                        .map(|(i, r)| {
                            format!("WHEN NOT __ok_{i} THEN '{}'", r.name.replace('\'', "''"))
                        })
                        .collect::<Vec<_>>();
                    if rule.is_empty() {
                        None
                    } else {
                        let cols = select_list(o.spec, &["rule"]);
                        Some(format!(
                            "SELECT CASE {} END AS rule, {cols} FROM checked WHERE NOT ({all_ok})",
                            rule.join(" ")
                        ))
                    }
                }
                None => {
                    let cols = select_list(o.spec, &[]);
                    let filter = o.spec.filter.as_deref().unwrap_or("TRUE");
                    let new = format!("SELECT {cols} FROM checked WHERE ({all_ok}) AND ({filter})");
                    if o.spec.dedupe {
                        let existing = self.table(&o.spec.id()).await?;
                        ctx.register_table(
                            "existing",
                            existing.table_provider().await.map_err(df(&o.spec.id()))?,
                        )
                        .map_err(df(&o.spec.id()))?;
                        let on = o
                            .spec
                            .columns
                            .iter()
                            .map(|c| format!("(n.{0} IS NOT DISTINCT FROM e.{0})", c.name))
                            .collect::<Vec<_>>()
                            .join(" AND ");
                        Some(format!(
                            "SELECT n.* FROM (SELECT DISTINCT * FROM ({new})) n LEFT ANTI JOIN existing e ON {on}"
                        ))
                    } else {
                        Some(new)
                    }
                }
            };
            let batches = match &sql {
                Some(sql) => collect_sql(&ctx, sql, &o.spec.id()).await?,
                None => Vec::new(),
            };
            ctx.deregister_table("existing").map_err(df(&o.spec.id()))?;
            let schema = o.spec.arrow_schema();
            let batches = conform(batches, &schema, &o.spec.id())?;
            let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            // Another refresh that committed the same range meanwhile did this work already.
            let (version, rows) = match o
                .target
                .append_batches(batches, app_id, to as i64, "berserkr.refresh", meta(rows))
                .await?
            {
                Committed::Version(v) => (Some(v), rows),
                Committed::AlreadyThere => (None, 0),
            };
            o.processed = Some(to);
            report.tables.push(TableRefresh {
                table: o.spec.id().to_string(),
                source: source_id.to_string(),
                from_source_version: from,
                to_source_version: to,
                rows,
                version,
            });
        }
        Ok(counts)
    }
}

/// A DataFusion session whose SQL keeps identifiers' case, like Spark (`InvoiceNo`, not
/// `invoiceno`), so the same SQL runs on both.
pub(crate) fn session() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    config.options_mut().sql_parser.enable_ident_normalization = false;
    SessionContext::new_with_config(config)
}

pub(crate) fn df(
    table: &TableId,
) -> impl Fn(deltalake::datafusion::error::DataFusionError) -> Error + '_ {
    move |e| Error::Query {
        table: table.to_string(),
        source: Box::new(e),
    }
}

pub(crate) async fn collect_sql(
    ctx: &SessionContext,
    sql: &str,
    table: &TableId,
) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql)
        .await
        .map_err(df(table))?
        .collect()
        .await
        .map_err(df(table))
}

fn scalar_u64(batches: &[RecordBatch], col: usize) -> u64 {
    use deltalake::arrow::array::{Array, Int64Array};
    batches
        .iter()
        .filter_map(|b| {
            let c = cast(b.column(col), &deltalake::arrow::datatypes::DataType::Int64).ok()?;
            let a = c.as_any().downcast_ref::<Int64Array>()?.clone();
            (!a.is_empty() && a.is_valid(0)).then(|| a.value(0) as u64)
        })
        .sum()
}

fn first_location(batches: &[RecordBatch]) -> String {
    use deltalake::arrow::util::display::array_value_to_string;
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| {
            format!(
                "{} line {}",
                array_value_to_string(b.column(0), 0).unwrap_or_default(),
                array_value_to_string(b.column(1), 0).unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

/// `c1, c2, …` for the table's columns, except `skip`.
fn select_list(spec: &TableSpec, skip: &[&str]) -> String {
    spec.columns
        .iter()
        .filter(|c| !skip.contains(&c.name.as_str()))
        .map(|c| c.name.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Casts each batch to the table's Arrow schema (SQL yields nanosecond timestamps and nullable
/// fields; the table wants microseconds and its own nullability, which `try_new` checks).
pub(crate) fn conform(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    table: &TableId,
) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            let cols = schema
                .fields()
                .iter()
                .zip(b.columns())
                .map(|(f, c)| cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|cols| RecordBatch::try_new(schema.clone(), cols));
            cols.map_err(|source| Error::Arrow {
                context: format!("rows for {table}"),
                source,
            })
        })
        .collect()
}

/// Data files the source's commits after `from` (up to `to`) added.
async fn added_files(
    source: &deltalake::DeltaTable,
    id: &TableId,
    from: Option<u64>,
    to: u64,
) -> Result<Vec<String>> {
    let log_store = source.log_store();
    let start = from.map_or(0, |v| v + 1);
    let mut files = Vec::new();
    for v in start..=to {
        let bytes = log_store
            .read_commit_entry(v)
            .await
            .map_err(|e| Error::delta(id, e))?
            .ok_or_else(|| Error::IncrementalUnavailable {
                table: id.to_string(),
                version: v,
                reason: "has no log entry any more (log retention)".into(),
            })?;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| Error::IncrementalUnavailable {
                    table: id.to_string(),
                    version: v,
                    reason: format!("has an unreadable log entry ({e})"),
                })?;
            let data_change =
                |a: &serde_json::Value| a.get("dataChange").and_then(|d| d.as_bool()) == Some(true);
            if let Some(add) = action.get("add").filter(|a| data_change(a)) {
                if let Some(p) = add.get("path").and_then(|p| p.as_str()) {
                    files.push(p.to_string());
                }
            } else if action.get("remove").is_some_and(data_change) {
                return Err(Error::IncrementalUnavailable {
                    table: id.to_string(),
                    version: v,
                    reason: "deletes rows (an incremental refresh needs an append-only source)"
                        .into(),
                });
            }
        }
    }
    Ok(files)
}
