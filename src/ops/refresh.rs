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

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringBuilder};
use deltalake::arrow::compute::kernels::boolean::{and, not};
use deltalake::arrow::compute::{cast, filter, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::{Expr, SessionContext, ident, lit};
use deltalake::delta_datafusion::FileSelection;
use deltalake::operations::write::writer::DeltaWriter;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::catalog::{ExpectationAction, ExpectationSpec, TableId, TableSpec};
use crate::error::{Error, Result};
use crate::lake::{Lakehouse, log, operation, refresh_app_id};
use crate::ops::dedupe::Seen;
use crate::ops::target::{Change, Committed, Staging, Target, Txn, join_writing};
use crate::session::{collect_sql, conform_batch, conform_columns, df, session};

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

/// What `lake refresh silver` did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RefreshReport {
    /// Every refreshed table.
    pub tables: Vec<TableRefresh>,
    /// Violations per expectation, per source.
    pub expectations: BTreeMap<String, BTreeMap<String, ExpectationCount>>,
}

/// Builder for `lake refresh silver` (see [`Lakehouse::refresh_silver`]).
pub struct RefreshSilverBuilder {
    lake: Lakehouse,
}

impl Lakehouse {
    /// Refreshes every silver table from its source: only the source versions a table has not
    /// seen are read.
    pub fn refresh_silver(&self) -> RefreshSilverBuilder {
        RefreshSilverBuilder { lake: self.clone() }
    }
}

impl RefreshSilverBuilder {
    async fn execute(self) -> Result<RefreshReport> {
        let lake = &self.lake;
        let mut groups: BTreeMap<TableId, Vec<&TableSpec>> = BTreeMap::new();
        for spec in lake.catalog().tables().filter(|t| t.layer == "silver") {
            if let Some(src) = &spec.source {
                groups.entry(src.parse()?).or_default().push(spec);
            }
        }
        let mut report = RefreshReport::default();
        for (source, specs) in groups {
            refresh_source(lake, &source, &specs, &mut report).await?;
        }
        Ok(report)
    }
}
operation!(RefreshSilverBuilder => RefreshReport);

/// A table written by a refresh: a declared silver table, or a quarantine table.
struct Output<'a> {
    spec: &'a TableSpec,
    target: Target,
    /// The source version it reflects (None: never refreshed).
    processed: Option<u64>,
    /// For a quarantine table, the table whose rules send rows here.
    quarantine_for: Option<&'a TableSpec>,
}

impl Output<'_> {
    /// The declaration whose transform, filter and rules decide this table's rows.
    fn rules_spec(&self) -> &TableSpec {
        self.quarantine_for.unwrap_or(self.spec)
    }
}

/// Refreshes the tables of `specs` (and their quarantine tables) from `source_id`. Tables at
/// the same source version are refreshed together (normally all of them).
async fn refresh_source(
    lake: &Lakehouse,
    source_id: &TableId,
    specs: &[&TableSpec],
    report: &mut RefreshReport,
) -> Result<()> {
    let source = lake.current_table(source_id).await?;
    let to = source.version().unwrap_or(0);
    let app_id = refresh_app_id(source_id);
    let mut outputs = open_outputs(lake, specs, &app_id).await?;
    let mut levels: Vec<Option<u64>> = outputs.iter().map(|o| o.processed).collect();
    levels.sort();
    levels.dedup();
    let mut counts_all = BTreeMap::new();
    for from in levels {
        let mut level: Vec<&mut Output<'_>> =
            outputs.iter_mut().filter(|o| o.processed == from).collect();
        if from == Some(to) {
            for o in level {
                report
                    .tables
                    .push(table_refresh(o, source_id, from, to, 0, None));
            }
            continue;
        }
        let range = Range {
            source: &source,
            source_id,
            app_id: &app_id,
            from,
            to,
        };
        counts_all.extend(refresh_level(lake, &range, &mut level, report).await?);
    }
    if !counts_all.is_empty() {
        report
            .expectations
            .insert(source_id.to_string(), counts_all);
    }
    Ok(())
}

/// The declared tables of `specs` and their quarantine tables, each with the source version it
/// reflects.
async fn open_outputs<'a>(
    lake: &'a Lakehouse,
    specs: &[&'a TableSpec],
    app_id: &str,
) -> Result<Vec<Output<'a>>> {
    let mut outputs = Vec::new();
    for &spec in specs {
        let mut tables = vec![(spec, None)];
        if let Some(q) = &spec.quarantine {
            tables.push((lake.catalog().table(&q.parse()?)?, Some(spec)));
        }
        for (spec, quarantine_for) in tables {
            let target = Target::open(lake, &spec.id()).await?;
            let processed = target.txn_version(app_id).await?.map(|v| v as u64);
            outputs.push(Output {
                spec,
                target,
                processed,
                quarantine_for,
            });
        }
    }
    Ok(outputs)
}

fn table_refresh(
    o: &Output<'_>,
    source_id: &TableId,
    from: Option<u64>,
    to: u64,
    rows: u64,
    version: Option<u64>,
) -> TableRefresh {
    TableRefresh {
        table: o.spec.id().to_string(),
        source: source_id.to_string(),
        from_source_version: from,
        to_source_version: to,
        rows,
        version,
    }
}

/// The source versions one refresh reads: those after `from`, up to `to`.
struct Range<'a> {
    source: &'a DeltaTable,
    source_id: &'a TableId,
    app_id: &'a str,
    from: Option<u64>,
    to: u64,
}

/// Refreshes `outputs` (all at `range.from`) with the source rows of `range`: one streaming
/// pass that checks, routes and writes; then one commit per table.
async fn refresh_level(
    lake: &Lakehouse,
    range: &Range<'_>,
    outputs: &mut [&mut Output<'_>],
    report: &mut RefreshReport,
) -> Result<BTreeMap<String, ExpectationCount>> {
    let (files, source_rows) =
        added_files(range.source, range.source_id, range.from, range.to).await?;
    let ctx = session();
    let checked = CheckedRows::plan(lake, &ctx, range, &files, outputs).await?;
    let routes = routes(&ctx, &checked, outputs, range.source_id, source_rows).await?;
    let mut staging = Staging::new(outputs.iter().map(|o| &o.target));
    let stats = match write_routes(
        checked.frame,
        &checked.rules,
        routes,
        outputs,
        &mut staging,
        range.source_id,
    )
    .await
    {
        Ok(stats) => stats,
        Err(e) => return staging.fail(e).await,
    };
    let counts = checked.rules.counts(&stats);
    if let Some(e) = checked.rules.failure(&stats, &checked.lead) {
        return staging.fail(e).await;
    }
    // Every file is written before the first commit: a write that fails commits nothing.
    staging.close().await?;
    let meta = |rows: u64| {
        json!({
            "source": range.source_id.to_string(),
            "from_source_version": range.from,
            "to_source_version": range.to,
            "source_files": files.len(),
            "rows": rows,
            "expectations": counts,
        })
    };
    let txn = Txn {
        app_id: range.app_id,
        version: range.to as i64,
        exactly_once: true,
    };
    for (r, o) in outputs.iter_mut().enumerate() {
        let rows = stats.rows[r];
        let adds = staging.take(r);
        // Another refresh that committed the same range meanwhile did this work already.
        let committed = o
            .target
            .commit(adds, Change::Append, txn, "berserkr.refresh", meta(rows))
            .await;
        let (version, rows) = match committed {
            Ok(Committed::Version(v)) => (Some(v), rows),
            Ok(Committed::AlreadyThere) => (None, 0),
            Err(e) => return staging.fail(e).await,
        };
        o.processed = Some(range.to);
        report.tables.push(table_refresh(
            o,
            range.source_id,
            range.from,
            range.to,
            rows,
            version,
        ));
    }
    Ok(counts)
}

/// The typed source rows of one refresh with a verdict column per expectation and a flag
/// column per table, as one query, and where those columns are.
struct CheckedRows {
    frame: DataFrame,
    rules: RulePlan,
    /// The declaration whose transform typed the rows.
    lead: TableId,
}

impl CheckedRows {
    /// Registers the new source rows (`bronze_new`: only the files the range's commits added)
    /// and their typed form (`typed`) in `ctx`, and plans the checked query.
    async fn plan(
        lake: &Lakehouse,
        ctx: &SessionContext,
        range: &Range<'_>,
        files: &[String],
        outputs: &[&mut Output<'_>],
    ) -> Result<Self> {
        let source_id = range.source_id;
        let provider = if files.is_empty() {
            let schema: SchemaRef = range
                .source
                .snapshot()
                .map_err(|e| Error::delta(source_id, e))?
                .snapshot()
                .arrow_schema();
            Arc::new(MemTable::try_new(schema, vec![vec![]]).map_err(df(source_id))?) as _
        } else {
            range
                .source
                .table_provider()
                .with_file_selection(FileSelection::from_file_paths(files.to_vec()))
                .await
                .map_err(df(source_id))?
        };
        ctx.register_table("bronze_new", provider)
            .map_err(df(source_id))?;
        let lead = outputs[0].rules_spec();
        let transform = lead.transform.as_deref().ok_or_else(|| Error::Catalog {
            file: format!("tables/{}.toml", lead.id().path()),
            message: "a silver table needs a transform".into(),
        })?;
        let typed = ctx
            .sql(lake.catalog().sql(transform)?)
            .await
            .map_err(df(source_id))?;
        ctx.register_table("typed", typed.into_view())
            .map_err(df(source_id))?;

        let mut rules: Vec<&ExpectationSpec> = Vec::new();
        for o in outputs.iter() {
            for e in &o.rules_spec().expectations {
                if !rules.iter().any(|r| r.name == e.name) {
                    rules.push(e);
                }
            }
        }
        // Each rule's verdict and each table's filter become boolean columns, so every batch
        // can be routed to the tables' writers as it comes.
        let mut select: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("COALESCE(({}), FALSE) AS __ok_{i}", r.expr))
            .collect();
        for (i, o) in outputs.iter().enumerate() {
            if o.quarantine_for.is_none() {
                let filter = o.spec.filter.as_deref().unwrap_or("TRUE");
                select.push(format!("COALESCE(({filter}), FALSE) AS __in_{i}"));
            }
        }
        let checked_sql = if select.is_empty() {
            "SELECT * FROM typed".to_string()
        } else {
            format!("SELECT *, {} FROM typed", select.join(", "))
        };
        let frame = ctx.sql(&checked_sql).await.map_err(df(source_id))?;
        let columns = Columns::of(&frame, source_id, &lead.id());
        let rules = RulePlan {
            names: rules.iter().map(|r| r.name.clone()).collect(),
            actions: rules.iter().map(|r| r.action).collect(),
            ok: (0..rules.len())
                .map(|i| columns.index(&format!("__ok_{i}")))
                .collect::<Result<_>>()?,
            drop: (0..rules.len())
                .filter(|&i| rules[i].action == ExpectationAction::Drop)
                .collect(),
            fail: (0..rules.len())
                .filter(|&i| rules[i].action == ExpectationAction::Fail)
                .collect(),
            file: columns.index("_source_file")?,
            line: columns.index("_source_line")?,
        };
        Ok(Self {
            frame,
            rules,
            lead: lead.id(),
        })
    }
}

/// Column positions in the checked rows, with errors naming the source and the transform.
struct Columns {
    schema: deltalake::arrow::datatypes::Schema,
    context: String,
}

impl Columns {
    fn of(frame: &DataFrame, source_id: &TableId, lead: &TableId) -> Self {
        Self {
            schema: frame.schema().as_arrow().clone(),
            context: format!("typed rows of {source_id} (transform of {lead})"),
        }
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.schema.index_of(name).map_err(|source| Error::Arrow {
            context: self.context.clone(),
            source,
        })
    }
}

/// Where each output's rows come from in the checked rows (and, for a deduplicated table, the
/// rows it holds already).
async fn routes(
    ctx: &SessionContext,
    checked: &CheckedRows,
    outputs: &[&mut Output<'_>],
    source_id: &TableId,
    source_rows: Option<u64>,
) -> Result<Vec<Route>> {
    let columns = Columns::of(&checked.frame, source_id, &checked.lead);
    let mut routes = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
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
                        name => columns.index(name).map(Some),
                    })
                    .collect::<Result<_>>()?,
            },
            None => RouteKind::Table {
                flag: columns.index(&format!("__in_{i}"))?,
                cols: o
                    .spec
                    .columns
                    .iter()
                    .map(|c| columns.index(&c.name))
                    .collect::<Result<_>>()?,
                dedupe: match o.spec.dedupe {
                    false => None,
                    true => Some(seen_rows(ctx, o, &schema, source_id, source_rows).await?),
                },
            },
        };
        routes.push(Route {
            kind,
            schema,
            table,
        });
    }
    Ok(routes)
}

/// The row hashes a deduplicated output holds already, with room for every new source row.
async fn seen_rows(
    ctx: &SessionContext,
    o: &Output<'_>,
    schema: &SchemaRef,
    source_id: &TableId,
    source_rows: Option<u64>,
) -> Result<Arc<Seen>> {
    let seen = if o.target.state.log_data().iter().next().is_none() {
        Arc::new(Seen::new(schema))
    } else {
        let bound = match &o.spec.dedupe_bounded_by {
            Some(c) => Some(new_range(ctx, c, o.spec, source_id).await?),
            None => None,
        };
        dedupe_seen(&o.target, schema, bound).await?
    };
    // At most every new source row is kept: room for them all at once.
    seen.expect(source_rows.unwrap_or(0));
    Ok(seen)
}

/// Streams the checked rows, one task per partition, each routing its batches to its own
/// writers of every output; the writers end up in `staging` whatever happens.
async fn write_routes(
    frame: DataFrame,
    rules: &RulePlan,
    routes: Vec<Route>,
    outputs: &[&mut Output<'_>],
    staging: &mut Staging,
    source_id: &TableId,
) -> Result<PartStats> {
    let streams = frame
        .execute_stream_partitioned()
        .await
        .map_err(df(source_id))?;
    let (plan, routes) = (Arc::new(rules.clone()), Arc::new(routes));
    let mut tasks = Vec::new();
    for stream in streams {
        let writers: Vec<DeltaWriter> = outputs.iter().map(|o| o.target.writer()).collect();
        let (plan, routes, source_id) = (plan.clone(), routes.clone(), source_id.clone());
        tasks.push(tokio::spawn(async move {
            route_partition(stream, &plan, &routes, writers, &source_id).await
        }));
    }
    let (partitions, results) = join_writing(tasks, &format!("refresh of {source_id}")).await;
    for writers in partitions {
        for (r, w) in writers.into_iter().enumerate() {
            staging.hold(r, [w]);
        }
    }
    let mut stats = PartStats::new(rules.ok.len(), outputs.len());
    for p in results? {
        stats.merge(p);
    }
    Ok(stats)
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
    let mut config = crate::session::config();
    // Rows outside the range are dropped after reading only the bounding column.
    config.options_mut().execution.parquet.pushdown_filters = true;
    let ctx = crate::session::with_config(config);
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
#[derive(Clone)]
struct RulePlan {
    names: Vec<String>,
    actions: Vec<ExpectationAction>,
    /// Column of each rule's verdict.
    ok: Vec<usize>,
    /// Rules (indices) whose violations go to quarantine.
    drop: Vec<usize>,
    /// Rules whose violations stop the refresh.
    fail: Vec<usize>,
    file: usize,
    line: usize,
}

impl RulePlan {
    /// Violations per rule.
    fn counts(&self, stats: &PartStats) -> BTreeMap<String, ExpectationCount> {
        self.names
            .iter()
            .zip(&self.actions)
            .zip(&stats.violations)
            .map(|((name, &action), &violations)| {
                (name.clone(), ExpectationCount { action, violations })
            })
            .collect()
    }

    /// The error of the first `fail` rule some row violated, if any.
    fn failure(&self, stats: &PartStats, table: &TableId) -> Option<Error> {
        let &i = self.fail.iter().find(|&&i| stats.violations[i] > 0)?;
        Some(Error::ExpectationFailed {
            table: table.to_string(),
            rule: self.names[i].clone(),
            violations: stats.violations[i],
            first: stats.first_fail[i]
                .as_ref()
                .map(|(f, l)| format!("{f} line {l}"))
                .unwrap_or_default(),
        })
    }
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
    let ok: Vec<&BooleanArray> = plan
        .ok
        .iter()
        .map(|&c| batch.column(c).as_boolean())
        .collect();
    count_verdicts(batch, plan, &ok, stats)?;
    // Rows passing every drop rule.
    let mut all_ok: Option<BooleanArray> = None;
    for &i in &plan.drop {
        all_ok = Some(match all_ok {
            None => ok[i].clone(),
            Some(a) => and(&a, ok[i]).map_err(|source| Error::Arrow {
                context: "expectation verdicts of the typed rows".into(),
                source,
            })?,
        });
    }
    for (r, route) in routes.iter().enumerate() {
        let out = match &route.kind {
            RouteKind::Quarantine { cols } => match &all_ok {
                Some(all_ok) => quarantine_rows(batch, plan, &ok, all_ok, cols, route)?,
                None => continue,
            },
            RouteKind::Table { flag, cols, dedupe } => table_rows(
                batch,
                all_ok.as_ref(),
                *flag,
                cols,
                dedupe.as_deref(),
                route,
            )?,
        };
        let Some(out) = out.filter(|o| o.num_rows() > 0) else {
            continue;
        };
        stats.rows[r] += out.num_rows() as u64;
        writers[r]
            .write(&out)
            .await
            .map_err(|e| Error::delta(&route.table, e))?;
    }
    Ok(())
}

/// Counts each rule's violations in `batch` and remembers the first row (file, line) that
/// violates each `fail` rule.
fn count_verdicts(
    batch: &RecordBatch,
    plan: &RulePlan,
    ok: &[&BooleanArray],
    stats: &mut PartStats,
) -> Result<()> {
    let n = batch.num_rows();
    for (i, ok) in ok.iter().enumerate() {
        stats.violations[i] += (n - ok.true_count()) as u64;
    }
    let lineage = |source| Error::Arrow {
        context: "lineage of the typed rows".into(),
        source,
    };
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
    Ok(())
}

fn arrow_error(table: &TableId) -> impl Fn(deltalake::arrow::error::ArrowError) -> Error + '_ {
    move |source| Error::Arrow {
        context: format!("rows for {table}"),
        source,
    }
}

/// The rows failing a drop rule, as the quarantine table's columns, each with the name of the
/// first rule it fails (None: none fails).
fn quarantine_rows(
    batch: &RecordBatch,
    plan: &RulePlan,
    ok: &[&BooleanArray],
    all_ok: &BooleanArray,
    cols: &[Option<usize>],
    route: &Route,
) -> Result<Option<RecordBatch>> {
    let bad = not(all_ok).map_err(arrow_error(&route.table))?;
    if bad.true_count() == 0 {
        return Ok(None);
    }
    let mut rule = StringBuilder::new();
    for row in (0..batch.num_rows()).filter(|&row| bad.value(row)) {
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
        .map_err(arrow_error(&route.table))?;
    conform_columns(columns, &route.schema, &route.table).map(Some)
}

/// The rows a table keeps: its filter's, passing every drop rule, not already in the table.
fn table_rows(
    batch: &RecordBatch,
    all_ok: Option<&BooleanArray>,
    flag: usize,
    cols: &[usize],
    dedupe: Option<&Seen>,
    route: &Route,
) -> Result<Option<RecordBatch>> {
    let err = arrow_error(&route.table);
    let flag = batch.column(flag).as_boolean();
    let keep = match all_ok {
        Some(a) => and(a, flag).map_err(&err)?,
        None => flag.clone(),
    };
    if keep.true_count() == 0 {
        return Ok(None);
    }
    let projected = batch.project(cols).map_err(&err)?;
    let rows = filter_record_batch(&projected, &keep).map_err(&err)?;
    let rows = conform_batch(rows, &route.schema, &route.table)?;
    Ok(Some(match dedupe {
        Some(seen) => {
            let new = seen.insert(&rows, &route.table)?;
            filter_record_batch(&rows, &new).map_err(&err)?
        }
        None => rows,
    }))
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
    source: &DeltaTable,
    id: &TableId,
    from: Option<u64>,
    to: u64,
) -> Result<(Vec<String>, Option<u64>)> {
    let start = from.map_or(0, |v| v + 1);
    let mut files = Vec::new();
    let mut rows = Some(0u64);
    for (v, commit) in log::read_commits(&source.log_store(), id, start, to).await? {
        let commit = commit.ok_or_else(|| Error::IncrementalUnavailable {
            table: id.to_string(),
            version: v,
            reason: "has no log entry any more (log retention)".into(),
        })?;
        if commit.removes().any(|r| r.data_change) {
            return Err(Error::IncrementalUnavailable {
                table: id.to_string(),
                version: v,
                reason: "deletes rows (an incremental refresh needs an append-only source)".into(),
            });
        }
        for add in commit.adds().filter(|a| a.data_change) {
            files.push(add.path.clone());
            let n = add
                .stats
                .as_deref()
                .and_then(|s| serde_json::from_str::<RowCount>(s).ok());
            rows = rows.zip(n).map(|(a, b)| a + b.num_records);
        }
    }
    Ok((files, rows))
}

#[cfg(test)]
mod tests {
    use deltalake::kernel::Add;

    use super::*;
    use crate::ops::target::Target;

    async fn commit_append(target: &mut Target, adds: Vec<Add>, app: &str) {
        let txn = Txn {
            app_id: app,
            version: 1,
            exactly_once: true,
        };
        target
            .commit(adds, Change::Append, txn, "test", serde_json::json!({}))
            .await
            .unwrap();
    }

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
            commit_append(&mut target, adds, &format!("t{v}")).await;
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
