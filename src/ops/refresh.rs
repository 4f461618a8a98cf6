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

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringBuilder};
use deltalake::arrow::compute::kernels::boolean::{and, not};
use deltalake::arrow::compute::{cast, filter, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::{Expr, ident, lit};
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::FileSelection;
use deltalake::kernel::Add;
use deltalake::operations::write::writer::DeltaWriter;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::catalog::{ExpectationAction, ExpectationSpec, TableId, TableSpec};
use crate::error::{Error, Result};
use crate::lake::Lakehouse;
use crate::ops::dedupe::Seen;
use crate::ops::target::{Committed, Target, abort_all, close_all, discard, join_writing};

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
        let (files, source_rows) = added_files(source, source_id, from, to).await?;
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
        // One pass over the typed rows: each rule's verdict and each table's filter become
        // boolean columns, and every batch is routed to the tables' writers as it comes.
        let mut select: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("COALESCE(({}), FALSE) AS __ok_{i}", r.expr))
            .collect();
        for &i in idx {
            if outputs[i].quarantine_for.is_none() {
                let filter = outputs[i].spec.filter.as_deref().unwrap_or("TRUE");
                select.push(format!("COALESCE(({filter}), FALSE) AS __in_{i}"));
            }
        }
        let checked_sql = if select.is_empty() {
            "SELECT * FROM typed".to_string()
        } else {
            format!("SELECT *, {} FROM typed", select.join(", "))
        };
        let checked = ctx.sql(&checked_sql).await.map_err(df(source_id))?;
        let checked_schema = checked.schema().as_arrow().clone();
        let column = |name: &str| {
            checked_schema
                .index_of(name)
                .map_err(|source| Error::Arrow {
                    context: format!("typed rows of {source_id} (transform of {})", lead.id()),
                    source,
                })
        };
        let plan = RulePlan {
            names: rules.iter().map(|r| r.name.clone()).collect(),
            ok: (0..rules.len())
                .map(|i| column(&format!("__ok_{i}")))
                .collect::<Result<_>>()?,
            drop: (0..rules.len())
                .filter(|&i| rules[i].action == ExpectationAction::Drop)
                .collect(),
            fail: (0..rules.len())
                .filter(|&i| rules[i].action == ExpectationAction::Fail)
                .collect(),
            file: column("_source_file")?,
            line: column("_source_line")?,
        };
        let mut routes = Vec::new();
        for &i in idx {
            let o = &outputs[i];
            let table = o.spec.id();
            let schema = o.spec.arrow_schema();
            let kind = match o.quarantine_for {
                Some(_) => RouteKind::Quarantine {
                    cols: o
                        .spec
                        .columns
                        .iter()
                        .map(|c| match c.name.as_str() {
                            "rule" => Ok(None),
                            name => column(name).map(Some),
                        })
                        .collect::<Result<_>>()?,
                },
                None => RouteKind::Table {
                    flag: column(&format!("__in_{i}"))?,
                    cols: o
                        .spec
                        .columns
                        .iter()
                        .map(|c| column(&c.name))
                        .collect::<Result<_>>()?,
                    dedupe: match o.spec.dedupe {
                        false => None,
                        true => {
                            let seen = if o.target.state.log_data().iter().next().is_none() {
                                Arc::new(Seen::new(&schema))
                            } else {
                                let bound = match &o.spec.dedupe_bounded_by {
                                    Some(c) => Some(new_range(&ctx, c, o.spec, source_id).await?),
                                    None => None,
                                };
                                dedupe_seen(&o.target, &schema, bound).await?
                            };
                            // At most every new source row is kept: room for them all at once.
                            seen.expect(source_rows.unwrap_or(0));
                            Some(seen)
                        }
                    },
                },
            };
            routes.push(Route {
                kind,
                schema,
                table,
            });
        }
        let streams = checked
            .execute_stream_partitioned()
            .await
            .map_err(df(source_id))?;
        let (plan, routes) = (Arc::new(plan), Arc::new(routes));
        let mut tasks = Vec::new();
        for stream in streams {
            let writers: Vec<DeltaWriter> =
                idx.iter().map(|&i| outputs[i].target.writer()).collect();
            let (plan, routes, source_id) = (plan.clone(), routes.clone(), source_id.clone());
            tasks.push(tokio::spawn(async move {
                route_partition(stream, &plan, &routes, writers, &source_id).await
            }));
        }
        let (partitions, results) = join_writing(tasks, &format!("refresh of {source_id}")).await;
        let mut per_route: Vec<Vec<DeltaWriter>> = idx.iter().map(|_| Vec::new()).collect();
        for writers in partitions {
            for (r, w) in writers.into_iter().enumerate() {
                per_route[r].push(w);
            }
        }
        let mut stats = PartStats::new(rules.len(), idx.len());
        let mut error = None;
        match results {
            Ok(parts) => parts.into_iter().for_each(|p| stats.merge(p)),
            Err(e) => error = Some(e),
        }
        let mut counts = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            counts.insert(
                rule.name.clone(),
                ExpectationCount {
                    action: rule.action,
                    violations: stats.violations[i],
                },
            );
        }
        if error.is_none()
            && let Some(&i) = plan.fail.iter().find(|&&i| stats.violations[i] > 0)
        {
            error = Some(Error::ExpectationFailed {
                table: lead.id().to_string(),
                rule: rules[i].name.clone(),
                violations: stats.violations[i],
                first: stats.first_fail[i]
                    .as_ref()
                    .map(|(f, l)| format!("{f} line {l}"))
                    .unwrap_or_default(),
            });
        }
        if let Some(e) = error {
            for w in per_route {
                abort_all(w).await;
            }
            return Err(e);
        }
        // Every file is written before the first commit: a write that fails commits nothing.
        let mut adds: Vec<Vec<Add>> = Vec::new();
        let mut per_route = per_route.into_iter();
        while let Some(w) = per_route.next() {
            match close_all(w).await {
                Ok(a) => adds.push(a),
                Err(e) => {
                    for w in per_route {
                        abort_all(w).await;
                    }
                    for (r, a) in adds.iter().enumerate() {
                        discard(&outputs[idx[r]].target, a).await;
                    }
                    return Err(Error::delta(&routes[adds.len()].table, e));
                }
            }
        }
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
        let mut adds = adds.into_iter().enumerate();
        while let Some((r, a)) = adds.next() {
            let o = &mut outputs[idx[r]];
            let rows = stats.rows[r];
            // Another refresh that committed the same range meanwhile did this work already.
            let committed = o
                .target
                .commit_append(a, app_id, to as i64, "berserkr.refresh", meta(rows))
                .await;
            let (version, rows) = match committed {
                Ok(Committed::Version(v)) => (Some(v), rows),
                Ok(Committed::AlreadyThere) => (None, 0),
                Err(e) => {
                    for (r, a) in adds {
                        discard(&outputs[idx[r]].target, &a).await;
                    }
                    return Err(e);
                }
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

/// The rows a deduplicated table holds already, as row hashes (see [`Seen`]); with
/// `bound`, only those whose column is in the range (None: there are no new rows).
async fn dedupe_seen(
    target: &Target,
    schema: &SchemaRef,
    bound: Option<(String, Option<(ScalarValue, ScalarValue)>)>,
) -> Result<Arc<Seen>> {
    let id = &target.id;
    let seen = Arc::new(Seen::new(schema));
    let mut config = session_config();
    // Rows outside the range are dropped after reading only the bounding column.
    config.options_mut().execution.parquet.pushdown_filters = true;
    let ctx = SessionContext::new_with_config(config);
    let cols: Vec<Expr> = schema.fields().iter().map(|f| ident(f.name())).collect();
    let mut existing = ctx.read_table(target.provider().await?).map_err(df(id))?;
    match bound {
        Some((_, None)) => return Ok(seen),
        Some((c, Some((min, max)))) => {
            existing = existing
                .filter(ident(c).between(lit(min), lit(max)))
                .map_err(df(id))?;
        }
        None => {}
    }
    let streams = existing
        .select(cols)
        .map_err(df(id))?
        .execute_stream_partitioned()
        .await
        .map_err(df(id))?;
    let mut tasks = Vec::new();
    for mut stream in streams {
        let (seen, schema, id) = (seen.clone(), schema.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                let batch = batch
                    .map_err(df(&id))
                    .and_then(|b| conform_batch(b, &schema, &id));
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => return ((), Err(e)),
                };
                if let Err(e) = seen.insert(&batch, &id) {
                    return ((), Err(e));
                }
            }
            ((), Ok(()))
        }));
    }
    join_writing(tasks, &format!("reading {id} to deduplicate"))
        .await
        .1?;
    Ok(seen)
}

/// The smallest and largest value of `column` among the typed new rows bound for `spec`
/// (None: there are none).
async fn new_range(
    ctx: &SessionContext,
    column: &str,
    spec: &TableSpec,
    source_id: &TableId,
) -> Result<(String, Option<(ScalarValue, ScalarValue)>)> {
    let filter = spec.filter.as_deref().unwrap_or("TRUE");
    let r = collect_sql(
        ctx,
        &format!(
            "SELECT min({column}), max({column}) FROM typed WHERE COALESCE(({filter}), FALSE)"
        ),
        source_id,
    )
    .await?;
    let value = |i: usize| {
        r.iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| ScalarValue::try_from_array(b.column(i), 0).ok())
            .filter(|v| !v.is_null())
    };
    Ok((column.to_string(), value(0).zip(value(1))))
}

/// Where the expectations' verdicts are in a checked batch.
struct RulePlan {
    names: Vec<String>,
    /// Column of each rule's verdict.
    ok: Vec<usize>,
    /// Rules (indices) whose violations go to quarantine.
    drop: Vec<usize>,
    /// Rules whose violations stop the refresh.
    fail: Vec<usize>,
    file: usize,
    line: usize,
}

/// One table a refresh writes, and which checked rows go there.
struct Route {
    kind: RouteKind,
    schema: SchemaRef,
    table: TableId,
}

enum RouteKind {
    /// Rows failing a drop rule: the table's columns, each the checked column of that name, or
    /// (None) the name of the first rule the row fails.
    Quarantine { cols: Vec<Option<usize>> },
    /// Rows passing every drop rule that the table's filter (column `flag`) selects.
    Table {
        flag: usize,
        cols: Vec<usize>,
        dedupe: Option<Arc<Seen>>,
    },
}

/// What one partition of a refresh saw.
struct PartStats {
    violations: Vec<u64>,
    /// The first violating row of each fail rule (file, line).
    first_fail: Vec<Option<(String, i64)>>,
    /// Rows written per route.
    rows: Vec<u64>,
}

impl PartStats {
    fn new(rules: usize, routes: usize) -> Self {
        Self {
            violations: vec![0; rules],
            first_fail: vec![None; rules],
            rows: vec![0; routes],
        }
    }

    fn merge(&mut self, other: PartStats) {
        for (a, b) in self.violations.iter_mut().zip(other.violations) {
            *a += b;
        }
        for (a, b) in self.first_fail.iter_mut().zip(other.first_fail) {
            if let Some(b) = b
                && a.as_ref().is_none_or(|a| b < *a)
            {
                *a = Some(b);
            }
        }
        for (a, b) in self.rows.iter_mut().zip(other.rows) {
            *a += b;
        }
    }
}

/// Routes one partition of checked rows to `writers` (one per route). The writers come back
/// in every case, for the caller to close or abort.
async fn route_partition(
    mut stream: SendableRecordBatchStream,
    plan: &RulePlan,
    routes: &[Route],
    mut writers: Vec<DeltaWriter>,
    source_id: &TableId,
) -> (Vec<DeltaWriter>, Result<PartStats>) {
    let mut stats = PartStats::new(plan.ok.len(), routes.len());
    while let Some(batch) = stream.next().await {
        let result = match batch.map_err(df(source_id)) {
            Ok(batch) => route_batch(&batch, plan, routes, &mut writers, &mut stats).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            return (writers, Err(e));
        }
    }
    (writers, Ok(stats))
}

async fn route_batch(
    batch: &RecordBatch,
    plan: &RulePlan,
    routes: &[Route],
    writers: &mut [DeltaWriter],
    stats: &mut PartStats,
) -> Result<()> {
    let arrow = |context: &TableId| {
        let context = format!("rows for {context}");
        move |source| Error::Arrow {
            context: context.clone(),
            source,
        }
    };
    let lineage = |source| Error::Arrow {
        context: "lineage of the typed rows".into(),
        source,
    };
    let verdicts = |source| Error::Arrow {
        context: "expectation verdicts of the typed rows".into(),
        source,
    };
    let n = batch.num_rows();
    let ok: Vec<&BooleanArray> = plan
        .ok
        .iter()
        .map(|&c| batch.column(c).as_boolean())
        .collect();
    for (i, ok) in ok.iter().enumerate() {
        stats.violations[i] += (n - ok.true_count()) as u64;
    }
    for &i in &plan.fail {
        if ok[i].true_count() == n {
            continue;
        }
        let files = cast(batch.column(plan.file), &DataType::Utf8).map_err(lineage)?;
        let lines = cast(batch.column(plan.line), &DataType::Int64).map_err(lineage)?;
        let (files, lines) = (files.as_string::<i32>(), lines.as_primitive::<Int64Type>());
        for row in (0..n).filter(|&r| !ok[i].value(r) || ok[i].is_null(r)) {
            let at = (files.value(row).to_string(), lines.value(row));
            if stats.first_fail[i].as_ref().is_none_or(|f| at < *f) {
                stats.first_fail[i] = Some(at);
            }
        }
    }
    // Rows passing every drop rule.
    let mut all_ok: Option<BooleanArray> = None;
    for &i in &plan.drop {
        all_ok = Some(match all_ok {
            None => ok[i].clone(),
            Some(a) => and(&a, ok[i]).map_err(verdicts)?,
        });
    }
    for (r, route) in routes.iter().enumerate() {
        let out = match &route.kind {
            RouteKind::Quarantine { cols } => {
                let Some(all_ok) = &all_ok else { continue };
                let bad = not(all_ok).map_err(arrow(&route.table))?;
                if bad.true_count() == 0 {
                    continue;
                }
                let mut rule = StringBuilder::new();
                for row in (0..n).filter(|&row| bad.value(row)) {
                    let first = plan
                        .drop
                        .iter()
                        .find(|&&i| !ok[i].value(row) || ok[i].is_null(row));
                    rule.append_option(first.map(|&i| plan.names[i].as_str()));
                }
                let rule: ArrayRef = Arc::new(rule.finish());
                let columns = cols
                    .iter()
                    .map(|c| match c {
                        None => Ok(rule.clone()),
                        Some(c) => filter(batch.column(*c), &bad),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(arrow(&route.table))?;
                conform_columns(columns, &route.schema, &route.table)?
            }
            RouteKind::Table { flag, cols, dedupe } => {
                let flag = batch.column(*flag).as_boolean();
                let keep = match &all_ok {
                    Some(a) => and(a, flag).map_err(arrow(&route.table))?,
                    None => flag.clone(),
                };
                if keep.true_count() == 0 {
                    continue;
                }
                let projected = batch.project(cols).map_err(arrow(&route.table))?;
                let rows = filter_record_batch(&projected, &keep).map_err(arrow(&route.table))?;
                let rows = conform_batch(rows, &route.schema, &route.table)?;
                match dedupe {
                    Some(seen) => {
                        let new = seen.insert(&rows, &route.table)?;
                        filter_record_batch(&rows, &new).map_err(arrow(&route.table))?
                    }
                    None => rows,
                }
            }
        };
        if out.num_rows() == 0 {
            continue;
        }
        stats.rows[r] += out.num_rows() as u64;
        writers[r]
            .write(&out)
            .await
            .map_err(|e| Error::delta(&route.table, e))?;
    }
    Ok(())
}

/// A DataFusion session whose SQL keeps identifiers' case, like Spark (`InvoiceNo`, not
/// `invoiceno`), and knows the Spark functions DataFusion lacks, so the same SQL runs on both.
pub(crate) fn session() -> SessionContext {
    let ctx = SessionContext::new_with_config(session_config());
    crate::ops::spark::register(&ctx);
    ctx
}

/// The configuration of [`session`]: one partition per core, identifiers' case kept, joins as
/// written.
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    config.options_mut().sql_parser.enable_ident_normalization = false;
    // Our SQL names the build side of each join (the left input): statistics-driven swapping
    // guessed wrong on gold, holding its 1.5M pairs in a hash table instead of streaming them.
    config.options_mut().optimizer.join_reordering = false;
    config
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

/// Casts a batch to the table's Arrow schema (SQL yields nullable fields, and may yield other
/// timestamp units or string layouts; the table wants its own, and `try_new` checks nullability).
pub(crate) fn conform_batch(
    batch: RecordBatch,
    schema: &SchemaRef,
    table: &TableId,
) -> Result<RecordBatch> {
    conform_columns(batch.columns().to_vec(), schema, table)
}

fn conform_columns(
    columns: Vec<ArrayRef>,
    schema: &SchemaRef,
    table: &TableId,
) -> Result<RecordBatch> {
    let cols = schema
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|cols| RecordBatch::try_new(schema.clone(), cols));
    cols.map_err(|source| Error::Arrow {
        context: format!("rows for {table}"),
        source,
    })
}

/// The row count of a file's statistics in the log (its minimum and maximum values skipped).
#[derive(serde::Deserialize)]
struct RowCount {
    #[serde(rename = "numRecords")]
    num_records: u64,
}

/// Data files the source's commits after `from` (up to `to`) added, and the rows they hold (None
/// when an added file's statistics do not say).
async fn added_files(
    source: &deltalake::DeltaTable,
    id: &TableId,
    from: Option<u64>,
    to: u64,
) -> Result<(Vec<String>, Option<u64>)> {
    let log_store = source.log_store();
    let start = from.map_or(0, |v| v + 1);
    let mut files = Vec::new();
    let mut rows = Some(0u64);
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
                    let n = add
                        .get("stats")
                        .and_then(|s| s.as_str())
                        .and_then(|s| serde_json::from_str::<RowCount>(s).ok());
                    rows = rows.zip(n).map(|(a, b)| a + b.num_records);
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
    Ok((files, rows))
}

#[cfg(test)]
mod tests {
    use deltalake::kernel::Add;

    use super::*;
    use crate::ops::target::Target;

    /// The new files' row counts come from their statistics in the log; one file without
    /// statistics makes the count unknown, not short.
    #[tokio::test]
    async fn added_files_count_the_rows_their_statistics_give() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lakehouse::open(dir.path().to_str().unwrap()).unwrap();
        lake.init().await.unwrap();
        let id: TableId = "bronze.online_retail_rejects".parse().unwrap();
        let add = |name: &str, rows: Option<u64>| Add {
            path: name.to_string(),
            size: 1,
            data_change: true,
            stats: rows.map(|n| format!(r#"{{"numRecords":{n},"minValues":{{"a":"x"}}}}"#)),
            ..Default::default()
        };
        let mut target = Target::open(&lake, &id).await.unwrap();
        let before = target.version();
        for (v, adds) in [
            vec![add("a.parquet", Some(3)), add("b.parquet", Some(4))],
            vec![add("c.parquet", Some(5))],
            vec![add("d.parquet", None)],
        ]
        .into_iter()
        .enumerate()
        {
            let app = format!("t{v}");
            target
                .commit_append(adds, &app, 1, "test", serde_json::json!({}))
                .await
                .unwrap();
        }
        let table = lake.table(&id).await.unwrap();
        let files = |from, to| added_files(&table, &id, from, to);
        let (paths, rows) = files(Some(before), before + 2).await.unwrap();
        assert_eq!(paths, ["a.parquet", "b.parquet", "c.parquet"]);
        assert_eq!(rows, Some(12));
        assert_eq!(
            files(Some(before + 1), before + 2).await.unwrap().1,
            Some(5)
        );
        assert_eq!(files(Some(before), before + 3).await.unwrap().1, None);
    }
}
