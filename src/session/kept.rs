//! A result a [`Keeper`](super::Keeper) holds in memory, as a table that says how its rows are
//! partitioned.
//!
//! DataFusion's `MemTable` reports its partitions as of unknown partitioning, so every
//! aggregation and join over it exchanges all its rows between the partitions again
//! (`RepartitionExec`), though the query that made them had already put each customer's rows
//! in one partition. [`KeptTable`] keeps each partition of that query's output as it came and
//! declares the query's hash partitioning: the plans over it group and join without an exchange
//! when their keys include the partitioning's columns.
//!
//! The declaration is only ever the partitioning DataFusion's own exchange produced (its hash
//! function, its fixed seed, the same partition count), so a join that pairs a kept table's
//! partition `i` with partition `i` of another exchange's output pairs the same keys.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::Statistics;
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::physical_expr::expressions::Column;
use deltalake::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use deltalake::datafusion::physical_plan::common::compute_record_batch_statistics;
use deltalake::datafusion::physical_plan::coop::cooperative;
use deltalake::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use deltalake::datafusion::physical_plan::memory::MemoryStream;
use deltalake::datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream, StatisticsArgs,
};

/// Batches in partitions, with the columns the rows were hash-partitioned by (in order, as
/// indices into the schema) when they were.
#[derive(Debug)]
pub struct KeptTable {
    schema: SchemaRef,
    partitions: Arc<Vec<Vec<RecordBatch>>>,
    hashed_by: Option<Vec<usize>>,
}

impl KeptTable {
    /// A table of `partitions`, hash-partitioned by the columns `hashed_by` (as DataFusion's
    /// exchange partitions rows into as many partitions) when given.
    pub fn new(
        schema: SchemaRef,
        partitions: Vec<Vec<RecordBatch>>,
        hashed_by: Option<Vec<usize>>,
    ) -> Self {
        Self {
            schema,
            partitions: Arc::new(partitions),
            hashed_by,
        }
    }

    /// The partitioning of a scan that reads the columns `projection` (all: `None`), whose
    /// schema is `schema`: the declared hash when every column of it is read, else unknown.
    fn partitioning(&self, projection: Option<&Vec<usize>>, schema: &SchemaRef) -> Partitioning {
        let n = self.partitions.len();
        let hashed = self.hashed_by.as_ref().and_then(|columns| {
            columns
                .iter()
                .map(|&c| {
                    let at = match projection {
                        Some(p) => p.iter().position(|&i| i == c)?,
                        None => c,
                    };
                    let name = schema.fields().get(at)?.name();
                    Some(Arc::new(Column::new(name, at)) as Arc<dyn PhysicalExpr>)
                })
                .collect::<Option<Vec<_>>>()
        });
        match hashed {
            Some(exprs) if !exprs.is_empty() => Partitioning::Hash(exprs, n),
            _ => Partitioning::UnknownPartitioning(n),
        }
    }
}

#[async_trait]
impl TableProvider for KeptTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            self.partitioning(projection, &schema),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(KeptExec {
            table_schema: self.schema.clone(),
            partitions: self.partitions.clone(),
            projection: projection.cloned(),
            properties: Arc::new(properties),
        }))
    }
}

/// The scan of a [`KeptTable`]: partition `i` streams the table's partition `i`.
#[derive(Debug)]
struct KeptExec {
    table_schema: SchemaRef,
    partitions: Arc<Vec<Vec<RecordBatch>>>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for KeptExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "KeptExec: partitions={}, partitioning={}",
            self.partitions.len(),
            self.properties.output_partitioning()
        )
    }
}

impl ExecutionPlan for KeptExec {
    fn name(&self) -> &'static str {
        "KeptExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let Some(batches) = self.partitions.get(partition) else {
            return Err(DataFusionError::Internal(format!(
                "KeptExec has {} partitions, partition {partition} was asked for",
                self.partitions.len()
            )));
        };
        Ok(Box::pin(cooperative(MemoryStream::try_new(
            batches.clone(),
            self.properties.eq_properties.schema().clone(),
            self.projection.clone(),
        )?)))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        let all = self.partitions.as_slice();
        let batches = match args.partition() {
            Some(i) => all.get(i..=i).unwrap_or(&[]),
            None => all,
        };
        Ok(Arc::new(compute_record_batch_statistics(
            batches,
            &self.table_schema,
            self.projection.clone(),
        )))
    }
}
