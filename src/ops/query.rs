//! `berserkr query`: read-only SQL over the lake's tables, without another engine.
//!
//! The SQL is DataFusion's, in berserkr's session (identifiers keep their case; Spark's
//! `try_to_timestamp` and `unix_micros` are there). Tables are named by layer
//! (`gold.customer_item_features`); only the tables the statement reads are opened, each at its
//! latest version, at a version of its own ([`QueryBuilder::with_version`]) or at the last
//! version committed by a time ([`QueryBuilder::with_as_of`]). The scan reads the snapshot
//! through its Delta log: partitions are pruned by the partition values in the log and files
//! skipped by their statistics there, which [`Lakehouse::explain`] shows. A statement that
//! would write (DDL, DML, `COPY`, `SET`) is refused before anything runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::datasource::physical_plan::FileScanConfig;
use deltalake::datafusion::datasource::source::DataSourceExec;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::physical_plan::{ExecutionPlan, displayable};
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::catalog::TableId;
use crate::error::{Error, Result};
use crate::lake::{At, Lakehouse, operation};
use crate::session::session;

/// A lake table a query read, and at which version.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableRead {
    /// The table.
    pub table: String,
    /// The version read.
    pub version: u64,
    /// Data files in that snapshot.
    pub files: usize,
}

/// A running query: the tables it reads and its rows, streamed.
pub struct QueryOutput {
    /// The tables read.
    pub tables: Vec<TableRead>,
    /// The rows' schema.
    pub schema: SchemaRef,
    /// The rows, as they are computed.
    pub rows: SendableRecordBatchStream,
}

/// How a query would run: its physical plan and, per table, how many files it scans.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The tables read.
    pub tables: Vec<TableRead>,
    /// Files scanned per table, after partition pruning and skipping by statistics.
    pub scanned: BTreeMap<String, usize>,
    /// The physical plan, indented.
    pub plan: String,
}

/// Builder for `berserkr query` (see [`Lakehouse::query`]).
#[derive(Debug, Clone)]
pub struct QueryBuilder {
    lake: Lakehouse,
    sql: String,
    versions: BTreeMap<String, u64>,
    as_of: Option<DateTime<Utc>>,
}

impl Lakehouse {
    /// Runs read-only SQL over the lake's tables (named `layer.name`).
    pub fn query(&self, sql: impl Into<String>) -> QueryBuilder {
        QueryBuilder {
            lake: self.clone(),
            sql: sql.into(),
            versions: BTreeMap::new(),
            as_of: None,
        }
    }

    /// How `sql` would run: the plan, and the files it would scan per table.
    pub fn explain(&self, sql: impl Into<String>) -> ExplainBuilder {
        ExplainBuilder {
            query: self.query(sql),
        }
    }
}

impl QueryBuilder {
    /// Reads `table` at `version` (time travel for that table only).
    pub fn with_version(mut self, table: impl Into<String>, version: u64) -> Self {
        self.versions.insert(table.into(), version);
        self
    }

    /// Reads every table not given a version at the last version committed at or before `time`.
    pub fn with_as_of(mut self, time: Option<DateTime<Utc>>) -> Self {
        self.as_of = time;
        self
    }

    /// Parses, registers what the statement reads, plans and checks it is read-only.
    async fn plan(&self) -> Result<(SessionContext, LogicalPlan, Vec<TableRead>)> {
        let ctx = session();
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state
            .sql_to_statement(&self.sql, &dialect)
            .map_err(|e| Error::InvalidArgument(format!("SQL: {e}")))?;
        let references = state
            .resolve_table_references(&statement)
            .map_err(|e| Error::InvalidArgument(format!("SQL: {e}")))?;
        let mut tables = Vec::new();
        for reference in references {
            let Some(id) = self.lake_table(&reference)? else {
                continue; // not a lake table: DataFusion says whether it knows it
            };
            if tables.iter().any(|t: &TableRead| t.table == id.to_string()) {
                continue;
            }
            tables.push(self.register(&ctx, &id).await?);
        }
        if let Some(t) = self
            .versions
            .keys()
            .find(|t| !tables.iter().any(|r| &&r.table == t))
        {
            return Err(Error::InvalidArgument(format!(
                "a version is given for {t}, which the query does not read"
            )));
        }
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| Error::InvalidArgument(format!("SQL: {e}")))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| Error::ReadOnly {
                reason: e.strip_backtrace(),
            })?;
        Ok((ctx, plan, tables))
    }

    /// The lake table a reference names: `layer.name` of a declared table. A two-part name in
    /// a layer that is not declared is an error (a typo), a one-part name is left to DataFusion.
    fn lake_table(&self, reference: &TableReference) -> Result<Option<TableId>> {
        let Some(schema) = reference.schema() else {
            return Ok(None);
        };
        let id: TableId = format!("{schema}.{}", reference.table()).parse()?;
        self.lake.catalog().table(&id)?;
        Ok(Some(id))
    }

    /// Opens `id` at the snapshot asked for and registers it in `ctx` under its layered name.
    async fn register(&self, ctx: &SessionContext, id: &TableId) -> Result<TableRead> {
        let at = match (self.versions.get(&id.to_string()), self.as_of) {
            (Some(v), _) => At::Version(*v),
            (None, Some(t)) => At::Time(t),
            (None, None) => At::Latest,
        };
        let table = self.lake.table_at(id, &at).await?;
        let files = table
            .snapshot()
            .map_err(|e| Error::delta(id, e))?
            .log_data()
            .iter()
            .count();
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Task("the session has no default catalog".into()))?;
        if catalog.schema(&id.layer).is_none() {
            catalog
                .register_schema(&id.layer, Arc::new(MemorySchemaProvider::new()))
                .map_err(crate::session::df(id))?;
        }
        let provider = table
            .table_provider()
            .await
            .map_err(crate::session::df(id))?;
        ctx.register_table(
            TableReference::partial(id.layer.as_str(), id.name.as_str()),
            provider,
        )
        .map_err(crate::session::df(id))?;
        Ok(TableRead {
            table: id.to_string(),
            version: table.version().unwrap_or(0),
            files,
        })
    }

    async fn execute(self) -> Result<QueryOutput> {
        let (ctx, plan, tables) = self.plan().await?;
        let query = TableId {
            layer: "query".into(),
            name: "sql".into(),
        };
        let frame = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(crate::session::df(&query))?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let rows = frame
            .execute_stream()
            .await
            .map_err(crate::session::df(&query))?;
        Ok(QueryOutput {
            tables,
            schema,
            rows,
        })
    }
}
operation!(QueryBuilder => QueryOutput);

/// Builder for `berserkr query --explain` (see [`Lakehouse::explain`]).
pub struct ExplainBuilder {
    query: QueryBuilder,
}

impl ExplainBuilder {
    /// See [`QueryBuilder::with_version`].
    pub fn with_version(mut self, table: impl Into<String>, version: u64) -> Self {
        self.query = self.query.with_version(table, version);
        self
    }

    /// See [`QueryBuilder::with_as_of`].
    pub fn with_as_of(mut self, time: Option<DateTime<Utc>>) -> Self {
        self.query = self.query.with_as_of(time);
        self
    }

    async fn execute(self) -> Result<Explanation> {
        let (ctx, plan, tables) = self.query.plan().await?;
        let query = TableId {
            layer: "query".into(),
            name: "sql".into(),
        };
        let physical = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(crate::session::df(&query))?
            .create_physical_plan()
            .await
            .map_err(crate::session::df(&query))?;
        let mut files = Vec::new();
        scanned_files(physical.as_ref(), &mut files);
        let mut scanned = BTreeMap::new();
        for t in &tables {
            let id: TableId = t.table.parse()?;
            let root = self.query.lake.table_url(&id);
            let prefix = root.path().trim_start_matches('/').to_string();
            let n = files
                .iter()
                .filter(|f| decode(f).starts_with(&decode(&prefix)))
                .count();
            scanned.insert(t.table.clone(), n);
        }
        Ok(Explanation {
            tables,
            scanned,
            plan: displayable(physical.as_ref()).indent(true).to_string(),
        })
    }
}
operation!(ExplainBuilder => Explanation);

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The paths of the files every file scan of `plan` reads.
fn scanned_files(plan: &dyn ExecutionPlan, out: &mut Vec<String>) {
    if let Some(source) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = source.data_source().downcast_ref::<FileScanConfig>()
    {
        for group in &config.file_groups {
            out.extend(
                group
                    .files()
                    .iter()
                    .map(|f| f.object_meta.location.to_string()),
            );
        }
    }
    for child in plan.children() {
        scanned_files(child.as_ref(), out);
    }
}
