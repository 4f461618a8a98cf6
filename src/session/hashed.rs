//! A table read through an exchange that hash-partitions its rows by one column.
//!
//! Gold groups and joins silver's rows by the customer. Kept in memory, silver is
//! hash-partitioned by it once ([`super::keep::Keeper::keep_hashed`]); left on storage (past
//! the keeper's allowance), every aggregation over it would exchange its rows by all of its
//! group keys (customer, item and invoice for the per-invoice step, then customer and item), and
//! a customer's rows would end up spread over every partition, in no order. [`HashedScan`]
//! reads the files as they are and puts each row in its customer's partition on the way in, with
//! DataFusion's own exchange (its hash function and seed, as a [`super::kept::KeptTable`]'s
//! declared partitioning), so the plans over it group and join where the rows are, as they do
//! over silver kept in memory. Filters are applied before the exchange, so only the rows a query
//! reads are moved.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::view::ViewTable;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::datasource::{TableType, provider_as_source};
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableProviderFilterPushDown};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::physical_expr::expressions::Column;
use deltalake::datafusion::physical_plan::repartition::RepartitionExec;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};

/// `table` read hash-partitioned by `key` into `partitions` partitions (see the module).
#[derive(Debug)]
pub struct HashedScan {
    view: ViewTable,
    key: String,
    partitions: usize,
}

impl HashedScan {
    /// `table` (registered as `name`, for plans that display it) hash-partitioned by `key`.
    pub fn new(
        name: &str,
        table: Arc<dyn TableProvider>,
        key: &str,
        partitions: usize,
    ) -> DfResult<Self> {
        let plan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?.build()?;
        Ok(Self {
            view: ViewTable::new(plan, None),
            key: key.to_string(),
            partitions: partitions.max(1),
        })
    }
}

#[async_trait]
impl TableProvider for HashedScan {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Applied below the exchange, by the scan's own plan.
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self.view.scan(state, projection, filters, limit).await?;
        let Ok(key) = Column::new_with_schema(&self.key, &plan.schema()) else {
            return Ok(plan);
        };
        let key: Arc<dyn PhysicalExpr> = Arc::new(key);
        let hash = Partitioning::Hash(vec![key.clone()], self.partitions);
        let exchange = Arc::new(RepartitionExec::try_new(plan, hash)?);
        Ok(Arc::new(HashedExec::new(exchange, key)))
    }
}

/// Passes its input through, and requires it hash-partitioned by `key`: the physical optimizer
/// replaces the exchanges below a node to suit that node's own requirement, so a bare
/// exchange on top of the scan would be taken out again and the rows exchanged by each
/// aggregation's keys instead; under this node the exchange by the key stays.
#[derive(Debug)]
struct HashedExec {
    input: Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    properties: Arc<PlanProperties>,
}

impl HashedExec {
    fn new(input: Arc<dyn ExecutionPlan>, key: Arc<dyn PhysicalExpr>) -> Self {
        let properties = Arc::new(input.properties().as_ref().clone());
        Self {
            input,
            key,
            properties,
        }
    }
}

impl DisplayAs for HashedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "HashedExec: key={}", self.key)
    }
}

impl ExecutionPlan for HashedExec {
    fn name(&self) -> &'static str {
        "HashedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::KeyPartitioned(vec![self.key.clone()])]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        f(&self.key)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|c| {
            DataFusionError::Internal(format!("HashedExec takes one input, not {}", c.len()))
        })?;
        Ok(Arc::new(Self::new(input, self.key.clone())))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                deltalake::datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{AsArray, RecordBatch};
    use deltalake::arrow::datatypes::Int64Type;
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::physical_plan::{displayable, execute_stream_partitioned};
    use deltalake::datafusion::prelude::SessionContext;
    use futures::StreamExt;

    #[tokio::test]
    async fn rows_read_through_it_are_grouped_where_their_key_put_them() {
        let mut config = crate::session::config().with_target_partitions(4);
        config.options_mut().optimizer.subset_repartition_threshold = 4;
        let ctx = SessionContext::new_with_config(config);
        // Keys 0..97 in no order, in 10 batches of one partition of unknown partitioning.
        let batches = crate::session::tests::scattered_keys();
        let source = Arc::new(MemTable::try_new(batches[0].schema(), vec![batches]).unwrap());
        ctx.register_table("src", source.clone()).unwrap();
        let hashed = HashedScan::new("src", source, "k", 4).unwrap();
        ctx.register_table("hashed", Arc::new(hashed)).unwrap();

        // Grouped by the key and more (as gold's per-invoice step): one exchange, by the key,
        // below the aggregation; the filter applied before it; the rows those of the source.
        let query = |t: &str| {
            format!(
                "SELECT k, x % 5 AS m, count(*) AS n, sum(x) AS s FROM {t} WHERE x % 3 <> 0 \
                 GROUP BY k, x % 5 ORDER BY k, m"
            )
        };
        let plan = ctx
            .sql(&query("hashed"))
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let text = displayable(plan.as_ref()).indent(true).to_string();
        assert_eq!(text.matches("RepartitionExec").count(), 1, "{text}");
        assert!(
            text.contains("RepartitionExec: partitioning=Hash([k@0], 4)"),
            "{text}"
        );
        assert!(text.contains("HashedExec"), "{text}");
        assert!(!text.contains("mode=Partial"), "{text}");
        let rows = |batches: Vec<RecordBatch>| {
            deltalake::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        };
        let ours = ctx.sql(&query("hashed")).await.unwrap().collect().await;
        let theirs = ctx.sql(&query("src")).await.unwrap().collect().await;
        assert_eq!(rows(ours.unwrap()), rows(theirs.unwrap()));

        // Every key in one partition only.
        let plan = ctx
            .sql("SELECT k FROM hashed")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let mut seen = std::collections::HashMap::new();
        for (i, stream) in execute_stream_partitioned(plan, ctx.task_ctx())
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let batches: Vec<RecordBatch> = stream.map(|b| b.unwrap()).collect().await;
            for b in &batches {
                for k in b.column(0).as_primitive::<Int64Type>().values() {
                    assert_eq!(*seen.entry(*k).or_insert(i), i, "key {k} in two partitions");
                }
            }
        }
        assert_eq!(seen.len(), 97);
    }
}
