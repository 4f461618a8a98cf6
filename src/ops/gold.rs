//! `lake refresh gold`: point-in-time customer-item features with purchase labels.
//!
//! For each cutoff, `tables/gold/customer_item_features.sql` runs over one silver snapshot:
//! features from rows strictly before the cutoff, the label from the window
//! `[cutoff, cutoff + label_window_days]`. The cutoffs' partitions are replaced in one commit that
//! records the silver version (application transaction `berserkr.refresh.<silver>`) and the
//! cutoffs in its metadata. A cutoff whose label window is not yet fully in silver is refused:
//! its labels would be wrong, not just late.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDateTime};
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, Scalar, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::compute::kernels::cmp::eq;
use deltalake::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use deltalake::datafusion::datasource::ViewTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::sql::parser::{DFParser, Statement as DFStatement};
use deltalake::datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::catalog::{
    CUTOFF_COLUMN, CUTOFF_FORMAT, GOLD_FEATURES, SCORING_FEATURES, TableId, TableSpec,
};
use crate::error::{Error, Result};
use crate::lake::{
    CutoffOrigin, GOLD_COMMIT_KEY, Lakehouse, app_txn_version, cutoff_origins, definitions, log,
    operation, refresh_app_id,
};
use crate::ops::target::{Change, Committed, Staging, Target, Txn, WriterPool};
use crate::session::keep::{Keeper, PastAllowance, register};
use crate::session::{bounded, collect_sql, conform_by_name, df};

/// What a refresh keeps in memory (silver's columns, the views) may take this fraction of the
/// lake's memory limit (1/KEPT_SHARE); the rest is the operators'.
const KEPT_SHARE: usize = 4;

/// The name the gold transform reads its silver snapshot by.
const SOURCE: &str = "silver";

/// What `lake refresh gold` did.
#[derive(Debug, Clone, Serialize)]
pub struct GoldReport {
    /// The gold table.
    pub table: String,
    /// Silver table and version the features were computed from.
    pub source: String,
    /// Its version.
    pub source_version: u64,
    /// Cutoffs (re)built.
    pub cutoffs: Vec<String>,
    /// Cutoffs asked for that gold already holds as the current silver would make them (same
    /// feature definition; no silver row added since they were built falls before the end of
    /// their label window): not rebuilt.
    pub unchanged: Vec<String>,
    /// Rows written, all cutoffs.
    pub rows: u64,
    /// Rows with label 1.
    pub positives: u64,
    /// New gold version, or None when it was already up to date.
    pub version: Option<u64>,
    /// The scoring snapshot (features as of the last silver timestamp, no label), when the
    /// catalog declares its table.
    pub scoring: Option<ScoringReport>,
    /// What did not fit the lake's memory limit and was read from files instead: `silver` (read
    /// from its table's files, not a copy in memory) and the transform's views (written to
    /// spill files). Empty when everything fit.
    pub not_in_memory: Vec<String>,
}

/// What `lake refresh gold` did to the scoring snapshot (`gold.scoring_features`).
#[derive(Debug, Clone, Serialize)]
pub struct ScoringReport {
    /// The table.
    pub table: String,
    /// Its cutoff: the last silver timestamp (features from rows strictly before it).
    pub cutoff: String,
    /// Rows written.
    pub rows: u64,
    /// New version, or None when it was already up to date.
    pub version: Option<u64>,
}

/// How cutoffs are chosen. Written and read as text (`latest`, `monthly`, a date, or several
/// of these separated by commas), as the lake's setting ([`CUTOFFS_PROPERTY`]) holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cutoffs {
    /// The last silver timestamp minus the label window (the SPEC's cutoff).
    #[default]
    Latest,
    /// These instants.
    At(Vec<NaiveDateTime>),
    /// The first day of every month after the first month of silver whose label window ends
    /// within silver.
    Monthly,
    /// Every cutoff each of these rules chooses.
    Each(Vec<Cutoffs>),
}

/// The gold table property that holds the lake's cutoffs (see [`Cutoffs`]): what `lake refresh
/// gold` and `lake run` build when not told otherwise.
pub const CUTOFFS_PROPERTY: &str = "berserkr.cutoffs";

impl std::str::FromStr for Cutoffs {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut rules = Vec::new();
        let mut dates = Vec::new();
        for part in s.split(',').map(str::trim) {
            match part {
                "latest" => rules.push(Cutoffs::Latest),
                "monthly" => rules.push(Cutoffs::Monthly),
                _ => dates.push(parse_cutoff(part).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "cutoffs {s:?}: {part:?} is not `latest`, `monthly`, 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"
                    ))
                })?),
            }
        }
        if !dates.is_empty() {
            dates.sort();
            dates.dedup();
            rules.push(Cutoffs::At(dates));
        }
        rules.dedup();
        Ok(match rules.len() {
            1 => rules.pop().expect("one"),
            _ => Cutoffs::Each(rules),
        })
    }
}

impl std::fmt::Display for Cutoffs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cutoffs::Latest => f.write_str("latest"),
            Cutoffs::Monthly => f.write_str("monthly"),
            Cutoffs::At(v) => {
                let names: Vec<String> = v
                    .iter()
                    .map(|c| c.format(CUTOFF_FORMAT).to_string())
                    .collect();
                f.write_str(&names.join(","))
            }
            Cutoffs::Each(v) => {
                let names: Vec<String> = v.iter().map(ToString::to_string).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl Cutoffs {
    /// The instants these rules choose in a silver spanning `first ..= last`, for a label
    /// window of `window`.
    fn resolve(
        &self,
        first: NaiveDateTime,
        last: NaiveDateTime,
        window: Duration,
    ) -> Vec<NaiveDateTime> {
        match self {
            Cutoffs::Latest => vec![last - window],
            Cutoffs::At(v) => v.clone(),
            Cutoffs::Monthly => monthly(first, last - window),
            Cutoffs::Each(v) => v
                .iter()
                .flat_map(|c| c.resolve(first, last, window))
                .collect(),
        }
    }
}

/// A cutoff written 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD' (midnight).
fn parse_cutoff(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, CUTOFF_FORMAT)
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// What [`Lakehouse::set_cutoffs`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CutoffsSetting {
    /// The table holding the setting.
    pub table: String,
    /// The cutoffs now set.
    pub cutoffs: String,
    /// The new version, or None when the setting was already this.
    pub version: Option<u64>,
}

/// Builder for [`Lakehouse::set_cutoffs`].
pub struct SetCutoffsBuilder {
    lake: Lakehouse,
    cutoffs: Cutoffs,
}

impl Lakehouse {
    /// The lake's cutoffs ([`CUTOFFS_PROPERTY`] of the gold table), when set.
    pub async fn cutoffs(&self) -> Result<Option<Cutoffs>> {
        let id: TableId = GOLD_FEATURES.parse()?;
        let table = self.current_table(&id).await?;
        cutoffs_of(&table, &id)
    }

    /// Sets the lake's cutoffs (a commit on the gold table setting [`CUTOFFS_PROPERTY`]).
    pub fn set_cutoffs(&self, cutoffs: Cutoffs) -> SetCutoffsBuilder {
        SetCutoffsBuilder {
            lake: self.clone(),
            cutoffs,
        }
    }
}

impl SetCutoffsBuilder {
    async fn execute(self) -> Result<CutoffsSetting> {
        let id: TableId = GOLD_FEATURES.parse()?;
        let table = self.lake.current_table(&id).await?;
        let text = self.cutoffs.to_string();
        let mut report = CutoffsSetting {
            table: id.to_string(),
            cutoffs: text.clone(),
            version: None,
        };
        if cutoffs_of(&table, &id)?.as_ref() == Some(&self.cutoffs) {
            return Ok(report);
        }
        let table = table
            .set_tbl_properties()
            .with_properties([(CUTOFFS_PROPERTY.to_string(), text)].into())
            .with_raise_if_not_exists(false)
            .await
            .map_err(|e| Error::delta(&id, e))?;
        report.version = table.version();
        Ok(report)
    }
}
operation!(SetCutoffsBuilder => CutoffsSetting);

/// The cutoffs a gold table's [`CUTOFFS_PROPERTY`] holds.
fn cutoffs_of(table: &DeltaTable, id: &TableId) -> Result<Option<Cutoffs>> {
    let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
    state
        .metadata()
        .configuration()
        .get(CUTOFFS_PROPERTY)
        .map(|v| {
            v.parse().map_err(|e: Error| Error::InvalidData {
                table: id.to_string(),
                reason: format!("table property {CUTOFFS_PROPERTY}: {e}"),
            })
        })
        .transpose()
}

/// Builder for `lake refresh gold` (see [`Lakehouse::refresh_gold`]).
pub struct RefreshGoldBuilder {
    lake: Lakehouse,
    cutoffs: Option<Cutoffs>,
    full: bool,
}

impl Lakehouse {
    /// Builds the gold features for the cutoffs asked for ([`RefreshGoldBuilder::with_cutoffs`],
    /// default [`Cutoffs::Latest`]) from the latest silver snapshot.
    pub fn refresh_gold(&self) -> RefreshGoldBuilder {
        RefreshGoldBuilder {
            lake: self.clone(),
            cutoffs: None,
            full: false,
        }
    }
}

impl RefreshGoldBuilder {
    /// Which cutoffs to build (default: the lake's setting, [`Lakehouse::cutoffs`], else
    /// [`Cutoffs::Latest`]).
    pub fn with_cutoffs(mut self, cutoffs: impl Into<Option<Cutoffs>>) -> Self {
        self.cutoffs = cutoffs.into();
        self
    }

    /// Rebuild every cutoff asked for and every cutoff gold holds, even those the new silver
    /// rows cannot change (default: only the cutoffs that may have changed, and new ones).
    pub fn with_full(mut self, full: bool) -> Self {
        self.full = full;
        self
    }

    async fn execute(self) -> Result<GoldReport> {
        let gold = Gold::open(&self.lake).await?;
        let rules = match self.cutoffs {
            Some(c) => c,
            None => cutoffs_of(&gold.table, &gold.id)?.unwrap_or_default(),
        };
        let (requested, last) = gold.cutoffs(rules).await?;
        // Where each cutoff gold holds came from (read once per refresh).
        let origins = cutoff_origins(&gold.table, &gold.id).await?;
        let plan = gold.plan_cutoffs(requested, &origins, self.full).await?;
        tracing::info!(table = %gold.id, source_version = gold.silver_version,
            build = ?plan.build.iter().map(|(_, n)| n).collect::<Vec<_>>(),
            unchanged = plan.unchanged.len(), "gold cutoffs planned");
        let mut report = GoldReport {
            table: gold.id.to_string(),
            source: gold.silver_id.to_string(),
            source_version: gold.silver_version,
            cutoffs: plan.build.iter().map(|(_, name)| name.clone()).collect(),
            unchanged: plan.unchanged.clone(),
            rows: 0,
            positives: 0,
            version: None,
            scoring: None,
            not_in_memory: Vec::new(),
        };
        let scoring = match &gold.scoring {
            Some(s) => s.cutoff_stale(&gold, last).await?,
            None => None,
        };
        if plan.build.is_empty() && scoring.is_none() {
            if let Some(s) = &gold.scoring {
                report.scoring = Some(s.report(last, 0, None));
            }
            return Ok(report);
        }
        gold.load_silver(plan.build.first().map_or(last, |(c, _)| *c))
            .await?;
        if !plan.build.is_empty() {
            let (rows, positives, version) = gold.write_labelled(&plan).await?;
            (report.rows, report.positives, report.version) = (rows, positives, version);
        }
        if let Some(s) = &gold.scoring {
            report.scoring = Some(match scoring {
                Some(cutoff) => s.write(&gold, cutoff).await?,
                None => s.report(last, 0, None),
            });
        }
        report.not_in_memory = gold.keeper.lock().await.not_in_memory().to_vec();
        if !report.not_in_memory.is_empty() {
            tracing::info!(table = %gold.id, not_in_memory = ?report.not_in_memory,
                limit = self.lake.memory_limit(), "past the memory limit: read from files");
        }
        Ok(report)
    }
}
operation!(RefreshGoldBuilder => GoldReport);

/// A gold refresh's inputs: the gold table and its declaration, the silver snapshot it reads
/// (registered in a session as [`SOURCE`]) and the label window.
struct Gold<'a> {
    lake: &'a Lakehouse,
    id: TableId,
    spec: TableSpec,
    table: DeltaTable,
    silver_id: TableId,
    silver_version: u64,
    /// Silver's log, to see what its commits after a version changed.
    silver_log: deltalake::logstore::LogStoreRef,
    /// Silver's rows, from its log's statistics (None when a file has none).
    silver_rows: Option<u64>,
    window: Duration,
    ctx: SessionContext,
    /// What the refresh reads more than once (silver's columns, the views), within the lake's
    /// memory limit.
    keeper: tokio::sync::Mutex<Keeper>,
    /// The scoring snapshot's table, when declared.
    scoring: Option<Scoring>,
}

/// The scoring snapshot: gold's features as of the last silver timestamp, without a label, in a
/// table of its own (training never reads it).
struct Scoring {
    id: TableId,
    spec: TableSpec,
    table: DeltaTable,
}

impl Scoring {
    /// The cutoff to write when the table does not reflect this silver version yet.
    async fn cutoff_stale(
        &self,
        gold: &Gold<'_>,
        last: NaiveDateTime,
    ) -> Result<Option<NaiveDateTime>> {
        let app_id = refresh_app_id(&gold.silver_id);
        let reflected = app_txn_version(&self.table, &self.id, &app_id).await?;
        let current = gold.definition()?;
        let same_definition = definitions(&self.table, &self.id)
            .await?
            .values()
            .all(|d| d.as_deref() == Some(current.as_str()));
        Ok((reflected != gold.silver_version as i64 || !same_definition).then_some(last))
    }

    fn report(&self, cutoff: NaiveDateTime, rows: u64, version: Option<u64>) -> ScoringReport {
        ScoringReport {
            table: self.id.to_string(),
            cutoff: cutoff.format(CUTOFF_FORMAT).to_string(),
            rows,
            version,
        }
    }

    /// Replaces the table's snapshot with the features as of `cutoff` (the whole table: it holds
    /// one scoring cutoff at a time; older ones stay readable by version).
    async fn write(&self, gold: &Gold<'_>, cutoff: NaiveDateTime) -> Result<ScoringReport> {
        let name = cutoff.format(CUTOFF_FORMAT).to_string();
        let mut target = Target::of(gold.lake, &self.id, &self.table)?;
        let mut staging = Staging::new([&target]);
        // The transform's label window is empty here: the label column is computed and dropped.
        let plan = Transform::parse(&gold.sql_at(&cutoff, &cutoff)?, gold.file(), SOURCE)?
            .plan(&gold.ctx, &self.id, Some(&mut *gold.keeper.lock().await))
            .await?;
        let schema = self.spec.arrow_schema();
        let rows = match write_plan(&gold.ctx, plan, &target, &schema, &name, &mut staging).await {
            Ok((rows, _)) => rows,
            Err(e) => return staging.fail(e).await,
        };
        staging.close().await?;
        let metadata = json!({
            "source": gold.silver_id.to_string(),
            "source_version": gold.silver_version,
            "cutoffs": [name],
            "definition": gold.definition()?,
            "rows": rows,
        });
        let app_id = refresh_app_id(&gold.silver_id);
        let txn = Txn {
            app_id: &app_id,
            version: gold.silver_version as i64,
            exactly_once: false,
        };
        let committed = target
            .commit(
                staging.take(0),
                Change::ReplaceAll,
                txn,
                GOLD_COMMIT_KEY,
                metadata,
            )
            .await?;
        let version = match committed {
            Committed::Version(v) => Some(v),
            Committed::AlreadyThere => None,
        };
        Ok(self.report(cutoff, rows, version))
    }
}

impl<'a> Gold<'a> {
    async fn open(lake: &'a Lakehouse) -> Result<Self> {
        let id: TableId = GOLD_FEATURES.parse()?;
        let spec = lake.catalog().table(&id)?.clone();
        let silver_id: TableId = spec
            .source
            .as_deref()
            .ok_or_else(|| Error::Catalog {
                file: format!("tables/{}.toml", id.path()),
                message: "a gold table needs a source".into(),
            })?
            .parse()?;
        let window = Duration::days(spec.label_window());
        let silver = lake.current_table(&silver_id).await?;
        let silver_version = silver.version().unwrap_or(0);
        let silver_rows = crate::lake::file_stats(&silver, &silver_id)?.rows;
        let table = lake.current_table(&id).await?;
        let ctx = bounded(lake.memory_limit()).map_err(df(&id))?;
        // The transform names the small side of every join first: each is built once from the
        // whole of that side, and the pairs stream through it in the partitions they are in,
        // never exchanged (DataFusion would hash both sides across partitions when it cannot
        // tell the sizes, as after an aggregation).
        //
        // Its steps run in more partitions than there are cores while silver is small next to
        // the memory limit (`partitions_per_core`).
        let per_core = partitions_per_core(silver_rows, lake.memory_limit());
        {
            let state = ctx.state_ref();
            let mut state = state.write();
            let options = state.config_mut().options_mut();
            options.optimizer.repartition_joins = false;
            let partitions = options.execution.target_partitions * per_core;
            options.execution.target_partitions = partitions;
            options.optimizer.subset_repartition_threshold = partitions;
            tracing::debug!(table = %id, silver_rows, partitions, "gold's partitions");
        }
        let keeper = tokio::sync::Mutex::new(Keeper::new(&ctx, lake.memory_limit() / KEPT_SHARE));
        ctx.register_table(
            SOURCE,
            silver.table_provider().await.map_err(df(&silver_id))?,
        )
        .map_err(df(&silver_id))?;
        let scoring_id: TableId = SCORING_FEATURES.parse()?;
        let scoring = match lake.catalog().table(&scoring_id) {
            Ok(spec) => Some(Scoring {
                spec: spec.clone(),
                table: lake.current_table(&scoring_id).await?,
                id: scoring_id,
            }),
            Err(Error::UnknownTable { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            lake,
            id,
            spec,
            table,
            silver_id,
            silver_version,
            silver_log: silver.log_store(),
            silver_rows,
            window,
            ctx,
            keeper,
            scoring,
        })
    }

    /// The transform's file.
    fn file(&self) -> &str {
        self.spec.transform.as_deref().unwrap_or_default()
    }

    /// The transform's SQL for `cutoff`, its label window ending at `label_end`.
    fn sql_at(&self, cutoff: &NaiveDateTime, label_end: &NaiveDateTime) -> Result<String> {
        Ok(self
            .lake
            .catalog()
            .sql(self.file())?
            .replace("${cutoff}", &cutoff.format(CUTOFF_FORMAT).to_string())
            .replace("${label_end}", &label_end.format(CUTOFF_FORMAT).to_string()))
    }

    /// The digest of the features' definition: the transform's SQL (see
    /// [`crate::catalog::Catalog::definition`]), recorded with every cutoff gold writes.
    fn definition(&self) -> Result<String> {
        self.lake.catalog().definition(self.file())
    }

    /// Replaces silver in the session by an in-memory copy of the columns the transform reads
    /// (it reads silver several times: pairs, customers, labels; each cutoff again).
    async fn load_silver(&self, cutoff: NaiveDateTime) -> Result<()> {
        let first = Transform::parse(
            &self.sql_at(&cutoff, &(cutoff + self.window))?,
            self.file(),
            SOURCE,
        )?;
        let plan = first.plan(&self.ctx, &self.id, None).await?;
        let mut keeper = self.keeper.lock().await;
        let past = PastAllowance::Leave {
            rows: self.silver_rows,
        };
        load_into_memory(&self.ctx, &mut keeper, past, plan, &self.silver_id).await
    }

    /// Writes and commits the labelled cutoffs (their partitions replaced in one commit): rows,
    /// positives, and the new version (None: another refresh did it meanwhile).
    async fn write_labelled(&self, plan: &CutoffPlan) -> Result<(u64, u64, Option<u64>)> {
        let cutoffs = &plan.build;
        let mut target = Target::of(self.lake, &self.id, &self.table)?;
        let mut staging = Staging::new([&target]);
        let (rows, positives) = match self.write(cutoffs, &target, &mut staging).await {
            Ok(counts) => counts,
            Err(e) => return staging.fail(e).await,
        };
        staging.close().await?;
        let names: Vec<&String> = cutoffs.iter().map(|(_, n)| n).collect();
        let metadata = json!({
            "source": self.silver_id.to_string(),
            "source_version": self.silver_version,
            "cutoffs": names,
            // Cutoffs checked to be what this silver version makes (not rewritten).
            "unchanged": plan.unchanged,
            "definition": self.definition()?,
            "label_window_days": self.window.num_days(),
            "rows": rows,
            "positives": positives,
        });
        // The cutoffs' partitions are replaced: their current files go in the same commit.
        let change = Change::Replace {
            column: CUTOFF_COLUMN.to_string(),
            values: names.into_iter().cloned().collect(),
        };
        let app_id = refresh_app_id(&self.silver_id);
        let txn = Txn {
            app_id: &app_id,
            version: self.silver_version as i64,
            exactly_once: false,
        };
        let committed = target
            .commit(staging.take(0), change, txn, GOLD_COMMIT_KEY, metadata)
            .await?;
        Ok((
            rows,
            positives,
            match committed {
                Committed::Version(v) => Some(v),
                Committed::AlreadyThere => None,
            },
        ))
    }

    /// The cutoffs asked for, each whole label window inside silver, with their names.
    async fn cutoffs(
        &self,
        cutoffs: Cutoffs,
    ) -> Result<(Vec<(NaiveDateTime, String)>, NaiveDateTime)> {
        let silver_id = &self.silver_id;
        let bounds = collect_sql(
            &self.ctx,
            &format!("SELECT min(InvoiceDate), max(InvoiceDate) FROM {SOURCE}"),
            silver_id,
        )
        .await?;
        let (Some(first), Some(last)) = (timestamp(&bounds, 0), timestamp(&bounds, 1)) else {
            return Err(Error::Precondition(format!(
                "{silver_id} is empty: run `berserkr lake refresh silver` after appending drops"
            )));
        };
        let window = self.window;
        let mut cuts = cutoffs.resolve(first, last, window);
        cuts.sort();
        cuts.dedup();
        if cuts.is_empty() {
            return Err(Error::Precondition(format!(
                "no monthly cutoff fits: {silver_id} spans {first} .. {last}, the label window is {} days",
                window.num_days()
            )));
        }
        if let Some(c) = cuts.iter().find(|c| **c + window > last) {
            return Err(Error::InvalidArgument(format!(
                "cutoff {c} leaves its {}-day label window past the last silver row ({last}): its labels would be incomplete",
                window.num_days()
            )));
        }
        let named = cuts
            .into_iter()
            .map(|c| (c, c.format(CUTOFF_FORMAT).to_string()))
            .collect();
        Ok((named, last))
    }

    /// Which cutoffs to build: those asked for and those gold holds, except the ones gold holds
    /// computed with the current feature definition from a silver version whose later changes
    /// cannot reach them (every row added since falls after the end of their label window).
    /// Held cutoffs of another definition are rebuilt (gold never mixes them); held cutoffs
    /// written before source versions were recorded, and not asked for, are left as they are.
    /// `full`: rebuild every one.
    async fn plan_cutoffs(
        &self,
        requested: Vec<(NaiveDateTime, String)>,
        origins: &BTreeMap<String, CutoffOrigin>,
        full: bool,
    ) -> Result<CutoffPlan> {
        let current = self.definition()?;
        let current = Some(current.as_str());
        let mut all: BTreeMap<String, (NaiveDateTime, bool)> = requested
            .into_iter()
            .map(|(at, name)| (name, (at, true)))
            .collect();
        for name in origins.keys() {
            if !all.contains_key(name) {
                let at = NaiveDateTime::parse_from_str(name, CUTOFF_FORMAT).map_err(|e| {
                    Error::InvalidData {
                        table: self.id.to_string(),
                        reason: format!("cutoff partition {name:?} is not {CUTOFF_FORMAT}: {e}"),
                    }
                })?;
                all.insert(name.clone(), (at, false));
            }
        }
        let since = origins
            .values()
            .filter(|o| o.definition.as_deref() == current)
            .filter_map(|o| o.source_version)
            .min();
        let changes = match since {
            Some(v) if !full => SilverChanges::read(self, v).await?,
            _ => SilverChanges::default(),
        };
        let mut plan = CutoffPlan::default();
        for (name, (at, asked)) in all {
            let origin = origins.get(&name);
            let same = origin.is_some_and(|o| o.definition.as_deref() == current);
            let source = origin.and_then(|o| o.source_version);
            let kept =
                !full && same && source.is_some_and(|v| changes.unaffected(v, at + self.window));
            if kept {
                plan.unchanged.push(name);
            } else if full || asked || !same || source.is_some() {
                plan.build.push((at, name));
            }
        }
        plan.build.sort();
        Ok(plan)
    }

    /// Writes every cutoff's rows into new files held by `staging` (nothing is committed):
    /// the rows and the rows whose label is 1. Silver is in memory already ([`Self::load_silver`]).
    async fn write(
        &self,
        cutoffs: &[(NaiveDateTime, String)],
        target: &Target,
        staging: &mut Staging,
    ) -> Result<(u64, u64)> {
        let schema = self.spec.arrow_schema();
        // Each cutoff's rows stream from the query into Parquet writers (one per partition of
        // the plan, so both cores encode).
        let (mut rows, mut positives) = (0u64, 0u64);
        for (c, name) in cutoffs {
            let plan =
                Transform::parse(&self.sql_at(c, &(*c + self.window))?, self.file(), SOURCE)?
                    .plan(&self.ctx, &self.id, Some(&mut *self.keeper.lock().await))
                    .await?;
            let started = std::time::Instant::now();
            let (r, p) = write_plan(&self.ctx, plan, target, &schema, name, staging).await?;
            tracing::debug!(table = %self.id, cutoff = %name, rows = r, positives = p,
                seconds = started.elapsed().as_secs_f64(), "cutoff written");
            rows += r;
            positives += p;
        }
        Ok((rows, positives))
    }
}

/// The cutoffs one refresh builds, and those it keeps as they are.
#[derive(Debug, Default)]
struct CutoffPlan {
    /// Cutoffs to (re)build, in order.
    build: Vec<(NaiveDateTime, String)>,
    /// Cutoffs asked for that gold holds as the current silver makes them.
    unchanged: Vec<String>,
}

/// What each silver commit after some version did to the rows gold reads.
#[derive(Debug, Default)]
struct SilverChanges {
    /// Per version: `None` when the commit may have changed any row (a removal, a schema change,
    /// an added file without statistics, a commit no longer in the log); else the earliest
    /// `InvoiceDate` of the rows it added (`NaiveDateTime::MAX` when it added none).
    commits: Vec<(u64, Option<NaiveDateTime>)>,
}

impl SilverChanges {
    /// The data changes of silver's commits after `since`, up to the version gold reads.
    async fn read(gold: &Gold<'_>, since: u64) -> Result<Self> {
        let commits = log::read_commits(
            &gold.silver_log,
            &gold.silver_id,
            since + 1,
            gold.silver_version,
        )
        .await?;
        Ok(Self {
            commits: commits
                .into_iter()
                .map(|(v, c)| (v, c.as_ref().and_then(earliest_added)))
                .collect(),
        })
    }

    /// True when no commit after `since` can change rows at or before `until`.
    fn unaffected(&self, since: u64, until: NaiveDateTime) -> bool {
        self.commits
            .iter()
            .filter(|(v, _)| *v > since)
            .all(|(_, earliest)| earliest.is_some_and(|t| t > until))
    }
}

/// The earliest `InvoiceDate` among the rows a commit added (`NaiveDateTime::MAX`: none), or
/// `None` when the commit may have changed rows another way (see [`SilverChanges`]).
fn earliest_added(commit: &log::Commit) -> Option<NaiveDateTime> {
    use deltalake::kernel::Action;
    let mut earliest = NaiveDateTime::MAX;
    for action in commit.actions() {
        match action {
            Action::Remove(r) if r.data_change => return None,
            Action::Metadata(_) => return None,
            Action::Add(a) if a.data_change => {
                let stats: serde_json::Value = serde_json::from_str(a.stats.as_deref()?).ok()?;
                if stats["numRecords"].as_u64() == Some(0) {
                    continue;
                }
                let min = parse_stat_time(stats["minValues"][INVOICE_DATE].as_str()?)?;
                earliest = earliest.min(min);
            }
            _ => {}
        }
    }
    commit
        .entries
        .iter()
        .all(|e| matches!(e, log::Entry::Action(_)))
        .then_some(earliest)
}

/// The column whose date says which cutoffs a silver row can reach.
const INVOICE_DATE: &str = "InvoiceDate";

/// A timestamp as Delta statistics write it ('2011-12-09 12:50:00', '2011-12-09T12:50:00.000Z').
fn parse_stat_time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim_end_matches('Z');
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

/// A gold transform: `CREATE [OR REPLACE] [TEMPORARY] VIEW name AS ...;` statements, then the
/// query whose rows are the table (Spark SQL runs the same file statement by statement).
struct Transform {
    /// Each view's name (one identifier, as written: the session keeps identifiers' case) and
    /// its query.
    views: Vec<(String, DFStatement)>,
    query: DFStatement,
}

impl Transform {
    /// Parses `sql` (the text of `file`); its views may not shadow `source`, the table it reads.
    fn parse(sql: &str, file: &str, source: &str) -> Result<Self> {
        let bad = |message: String| Error::Catalog {
            file: file.to_string(),
            message,
        };
        let mut statements: Vec<DFStatement> = DFParser::parse_sql(sql)
            .map_err(|e| bad(e.to_string()))?
            .into();
        let query = match statements.pop() {
            Some(q @ DFStatement::Statement(_)) if is_query(&q) => q,
            _ => return Err(bad("the last statement must be the query (a SELECT)".into())),
        };
        let views = statements
            .into_iter()
            .map(|s| {
                let view = match &s {
                    DFStatement::Statement(st) => match st.as_ref() {
                        SqlStatement::CreateView(v) => Some(v),
                        _ => None,
                    },
                    _ => None,
                };
                // The name as the query will look it up: unquoted, case kept.
                let name = view.and_then(|v| match v.name.0.as_slice() {
                    [part] => part.as_ident().map(|i| i.value.clone()),
                    _ => None,
                });
                match (view, name) {
                    (Some(_), Some(name)) if name == source => Err(bad(format!(
                        "a view may not be named {source}: that is the table it reads"
                    ))),
                    (Some(v), Some(name)) if !v.materialized && v.columns.is_empty() => {
                        let query = SqlStatement::Query(v.query.clone());
                        Ok((name, DFStatement::Statement(Box::new(query))))
                    }
                    _ => Err(bad(format!(
                        "only CREATE TEMPORARY VIEW statements (a one-part name, no column list) may come before the query, not: {s}"
                    ))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { views, query })
    }

    /// Registers the views in `ctx` (kept by `keeper`, in memory or in a spill file, when
    /// given; else as logical views that the query's plan inlines) and plans the query.
    async fn plan(
        self,
        ctx: &SessionContext,
        id: &TableId,
        mut keeper: Option<&mut Keeper>,
    ) -> Result<LogicalPlan> {
        let state = ctx.state();
        for (name, query) in self.views {
            let plan = state.statement_to_plan(query).await.map_err(df(id))?;
            match keeper.as_deref_mut() {
                Some(keeper) => {
                    let started = std::time::Instant::now();
                    let data = ctx.execute_logical_plan(plan).await.map_err(df(id))?;
                    let kept = keeper
                        .keep(ctx, &name, data, PastAllowance::Spill, id)
                        .await?;
                    tracing::debug!(table = %id, view = %name, kept = ?kept,
                        seconds = started.elapsed().as_secs_f64(), "view kept");
                }
                None => register(ctx, &name, Arc::new(ViewTable::new(plan, None)), id)?,
            }
        }
        state.statement_to_plan(self.query).await.map_err(df(id))
    }
}

fn is_query(s: &DFStatement) -> bool {
    matches!(s, DFStatement::Statement(st) if matches!(st.as_ref(), SqlStatement::Query(_)))
}

/// Runs `plan` (the rows of `cutoff`) and writes its rows, conformed to `schema`, to new files
/// of `target`: the files, the rows and the rows whose label is 1.
///
/// Every row is in the cutoff's partition, so the writers are handed that partition instead of
/// splitting each batch by its partition values (delta-rs groups the rows and copies every
/// column of the batch to do that); a row of another cutoff is an error, not a misplaced file.
async fn write_plan(
    ctx: &SessionContext,
    plan: LogicalPlan,
    target: &Target,
    schema: &SchemaRef,
    cutoff: &str,
    staging: &mut Staging,
) -> Result<(u64, u64)> {
    let id = &target.id;
    let index_of = |name: &str| {
        schema.index_of(name).map_err(|source| Error::Arrow {
            context: format!("{id} schema"),
            source,
        })
    };
    // The scoring table has no label: the query's label column is left out by name.
    let (label, cutoff_at) = (schema.index_of("label").ok(), index_of(CUTOFF_COLUMN)?);
    let value = StringArray::from(vec![cutoff]);
    let table = id.to_string();
    let outside = move |message: String| Error::Query {
        table: table.clone(),
        source: Box::new(DataFusionError::Execution(message)),
    };
    let streams = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(df(id))?
        .execute_stream_partitioned()
        .await
        .map_err(df(id))?;
    // The query's partitions may outnumber the cores (`partitions_per_core`): each runs in a
    // task of its own and hands its checked batches to one writer a core, whichever is free, so
    // a partition that ends early leaves its core to the others' rows and the cutoff gets a
    // file a core, not a file a partition.
    let pool = WriterPool::of_partition(target, crate::session::cores(), CUTOFF_COLUMN, cutoff);
    let mut producers = tokio::task::JoinSet::new();
    for mut stream in streams {
        let (schema, id, tx) = (schema.clone(), id.clone(), pool.sender());
        let (value, outside) = (Scalar::new(value.clone()), outside.clone());
        let cutoff = cutoff.to_string();
        producers.spawn(async move {
            let (mut rows, mut positives) = (0u64, 0u64);
            while let Some(batch) = stream.next().await {
                let batch = conform_by_name(batch.map_err(df(&id))?, &schema, &id)?;
                rows += batch.num_rows() as u64;
                if let Some(label) = label {
                    let l = cast(batch.column(label), &DataType::Int64).map_err(|source| {
                        Error::Arrow {
                            context: format!("labels of {id}"),
                            source,
                        }
                    })?;
                    positives += l.as_primitive::<Int64Type>().iter().flatten().sum::<i64>() as u64;
                }
                let same = eq(batch.column(cutoff_at), &value).map_err(|source| Error::Arrow {
                    context: format!("cutoff column of {id}"),
                    source,
                })?;
                if same.true_count() != batch.num_rows() {
                    return Err(outside(format!(
                        "the query returned a row outside the partition {CUTOFF_COLUMN}={cutoff}"
                    )));
                }
                if tx.send(batch).await.is_err() {
                    // Every writer has stopped: their errors say why.
                    break;
                }
            }
            Ok((rows, positives))
        });
    }
    // The first partition to fail fails the write: the others are stopped there (their queries
    // dropped), not run to their end for rows that will be discarded.
    let mut counts = Ok((0u64, 0u64));
    while let Some(r) = producers.join_next().await {
        let r = match r {
            Ok(r) => r,
            Err(e) if e.is_cancelled() => continue,
            Err(e) => Err(Error::Task(format!("reading the rows of {id}: {e}"))),
        };
        counts = match (counts, r) {
            (Ok((r, p)), Ok((r1, p1))) => Ok((r + r1, p + p1)),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => {
                producers.abort_all();
                Err(e)
            }
        };
    }
    // A query's error comes first (a writer's error is then only its consequence).
    let written = pool.finish().await.map_err(|e| Error::delta(id, e));
    match written {
        Ok(writers) => staging.hold(0, writers),
        Err(e) => return counts.and(Err(e)),
    }
    counts
}

/// Partitions of gold's queries per core: [`PARTITIONS_PER_CORE`] while silver's rows take at
/// most [`BYTES_PER_SILVER_ROW`] each of the memory `limit`, else (or when its row count is not
/// known) one.
///
/// A customer's rows are all in one partition, and with one partition a core the core whose
/// customers bought more ran on alone at the end of every step (perf, gold at 5M generated rows
/// on 2 cores: 1.5 s of 3.9 s on one core). Smaller partitions share the cores out. Measured on
/// 2 cores under the 2 GiB default: at 5M generated rows gold took 3.0-3.2 s with one
/// partition a core, 2.6 s with two, 2.3-2.7 s with four, and less CPU and memory (1.1 -> 0.8
/// GiB); at 20M (14.3M silver rows) 17.0, 12.6 and 11.9 s (peak 2.0 -> 2.3 GB). At 50M (35.7M
/// silver rows) gold spills, every partition merges its own spill files, and four a core peaked
/// at 3.5 GB against 2.6-2.8 GB, no faster (44-45 s against 42-45 s).
fn partitions_per_core(silver_rows: Option<u64>, limit: usize) -> usize {
    match silver_rows {
        Some(rows) if rows.saturating_mul(BYTES_PER_SILVER_ROW) <= limit as u64 => {
            PARTITIONS_PER_CORE
        }
        _ => 1,
    }
}

/// See [`partitions_per_core`].
const PARTITIONS_PER_CORE: usize = 4;

/// Memory per silver row below which gold runs [`PARTITIONS_PER_CORE`] partitions a core: 2 GiB
/// holds 16.7M rows (the 20M-row bench's 14.3M, not the 50M-row bench's 35.7M).
const BYTES_PER_SILVER_ROW: u64 = 128;

/// The column every step of gold's transform groups or joins silver's rows by (a customer's
/// pairs, invoices and labels): silver kept in memory is hash-partitioned by it, so those steps
/// run where the rows are, without exchanging them between partitions.
const SOURCE_KEY: &str = "CustomerID";

/// Replaces [`SOURCE`] in `ctx` by an in-memory copy of the columns `plan` reads of it, when
/// `keeper` has room for them; else leaves it (`past`). The copy is hash-partitioned by
/// [`SOURCE_KEY`].
async fn load_into_memory(
    ctx: &SessionContext,
    keeper: &mut Keeper,
    past: PastAllowance,
    plan: LogicalPlan,
    id: &TableId,
) -> Result<()> {
    let name = SOURCE;
    use deltalake::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};

    let plan = ctx.state().optimize(&plan).map_err(df(id))?;
    let mut used: Vec<String> = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == name
        {
            let filtered = scan.filters.iter().flat_map(|f| f.column_refs());
            for c in scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .chain(filtered.map(|c| c.name.clone()))
            {
                if !used.contains(&c) {
                    used.push(c);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(df(id))?;
    if used.is_empty() {
        return Ok(());
    }
    let data = ctx
        .sql(&format!("SELECT {} FROM {name}", used.join(", ")))
        .await
        .map_err(df(id))?;
    let started = std::time::Instant::now();
    let kept = if used.iter().any(|c| c == SOURCE_KEY) {
        keeper
            .keep_hashed(ctx, name, data, SOURCE_KEY, past, id)
            .await?
    } else {
        keeper.keep(ctx, name, data, past, id).await?
    };
    tracing::debug!(table = %id, columns = ?used, kept = ?kept,
        seconds = started.elapsed().as_secs_f64(), "source columns kept");
    Ok(())
}

/// Month starts after `first`'s month, up to `last_cutoff`.
fn monthly(first: NaiveDateTime, last_cutoff: NaiveDateTime) -> Vec<NaiveDateTime> {
    use chrono::Datelike;
    let mut out = Vec::new();
    let (mut y, mut m) = (first.year(), first.month());
    loop {
        m += 1;
        if m == 13 {
            m = 1;
            y += 1;
        }
        let Some(d) = chrono::NaiveDate::from_ymd_opt(y, m, 1).and_then(|d| d.and_hms_opt(0, 0, 0))
        else {
            break;
        };
        if d > last_cutoff {
            break;
        }
        out.push(d);
    }
    out
}

fn timestamp(
    batches: &[deltalake::arrow::array::RecordBatch],
    col: usize,
) -> Option<NaiveDateTime> {
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let c = cast(
        b.column(col),
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )
    .ok()?;
    let a = c.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
    if a.is_null(0) {
        return None;
    }
    chrono::DateTime::from_timestamp_micros(a.value(0)).map(|t| t.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transform_is_views_then_one_query() {
        let t = Transform::parse(
            "CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1 AS x;\n\
             CREATE VIEW w AS WITH a AS (SELECT x FROM v) SELECT x FROM a;\n\
             SELECT x FROM w",
            "t.sql",
            "src",
        )
        .unwrap();
        let names: Vec<&str> = t.views.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["v", "w"]);
        assert!(is_query(&t.query));
        for (sql, says) in [
            (
                "CREATE TEMPORARY VIEW v AS SELECT 1",
                "the last statement must be the query",
            ),
            (
                "SELECT 1; SELECT 2",
                "only CREATE TEMPORARY VIEW statements",
            ),
            (
                "DROP TABLE x; SELECT 1",
                "only CREATE TEMPORARY VIEW statements",
            ),
            (
                "CREATE VIEW v (y) AS SELECT 1; SELECT 1",
                "only CREATE TEMPORARY VIEW",
            ),
            ("SELECT (1", "t.sql"),
            (
                "CREATE VIEW src AS SELECT 1; SELECT 1",
                "a view may not be named src",
            ),
            (
                "CREATE VIEW \"src\" AS SELECT 1; SELECT 1",
                "a view may not be named src",
            ),
            ("CREATE VIEW db.v AS SELECT 1; SELECT 1", "one-part name"),
        ] {
            let e = Transform::parse(sql, "t.sql", "src")
                .err()
                .expect(sql)
                .to_string();
            assert!(e.contains(says) && e.contains("t.sql"), "{sql}: {e}");
        }
    }

    /// One cutoff's rows go to its partition; a row of another cutoff stops the write, and the
    /// files written so far are deleted.
    #[tokio::test]
    async fn rows_land_in_their_cutoffs_partition_or_nowhere() {
        use deltalake::arrow::array::{ArrayRef, Int64Array};
        use deltalake::arrow::record_batch::RecordBatch;

        let dir = tempfile::tempdir().unwrap();
        let lake = Lakehouse::open(dir.path().to_str().unwrap()).unwrap();
        lake.init().await.unwrap();
        let id: TableId = GOLD_FEATURES.parse().unwrap();
        let schema = lake.catalog().table(&id).unwrap().arrow_schema();
        // Rows of the given cutoffs, every other column a zero (or a stock code) of its type.
        let rows = |cutoffs: &[&str]| {
            let n = cutoffs.len();
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| match (f.name().as_str(), f.data_type()) {
                    (CUTOFF_COLUMN, _) => Arc::new(StringArray::from(cutoffs.to_vec())) as ArrayRef,
                    (_, DataType::Utf8) => Arc::new(StringArray::from(vec!["85123A"; n])),
                    (_, t) => cast(&Int64Array::from(vec![0; n]), t).unwrap(),
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let gold = lake.table(&id).await.unwrap();
        let target = Target::of(&lake, &id, &gold).unwrap();
        let ctx = crate::session::session();
        // Writes the rows of `table`.
        let write_table = |table: Arc<dyn deltalake::datafusion::catalog::TableProvider>| {
            let (ctx, target, schema) = (&ctx, &target, &schema);
            async move {
                ctx.deregister_table("t").unwrap();
                ctx.register_table("t", table).unwrap();
                let plan = ctx
                    .sql("SELECT * FROM t")
                    .await
                    .unwrap()
                    .into_unoptimized_plan();
                let mut staging = Staging::new([target]);
                match write_plan(
                    ctx,
                    plan,
                    target,
                    schema,
                    "2011-09-01 00:00:00",
                    &mut staging,
                )
                .await
                {
                    Ok((n, p)) => {
                        staging.close().await.unwrap();
                        Ok((staging.take(0), n, p))
                    }
                    Err(e) => staging.fail(e).await,
                }
            }
        };
        // Writes the rows of a table whose partitions are `parts`.
        let write_parts = |parts: Vec<Vec<RecordBatch>>| {
            let table = deltalake::datafusion::datasource::MemTable::try_new(schema.clone(), parts)
                .unwrap();
            write_table(Arc::new(table))
        };
        let write = |batch: RecordBatch| write_parts(vec![vec![batch]]);
        // The table's data files, as its object store lists them.
        let store = target.log_store.object_store(None);
        let files = || async {
            store
                .list(None)
                .map(|m| m.unwrap().location.to_string())
                .filter(|p| std::future::ready(p.ends_with(".parquet")))
                .collect::<Vec<_>>()
                .await
        };

        // A cutoff without rows writes no file (not an empty one).
        let (adds, n, _) = write(rows(&[])).await.unwrap();
        assert_eq!((adds.len(), n), (0, 0));
        assert!(files().await.is_empty());

        let (adds, n, _) = write(rows(&["2011-09-01 00:00:00"; 3])).await.unwrap();
        assert_eq!(n, 3);
        assert_eq!(adds.len(), 1);
        assert!(
            adds[0].path.starts_with("cutoff=2011-09-01"),
            "{}",
            adds[0].path
        );
        assert_eq!(files().await.len(), 1);

        let e = write(rows(&["2011-09-01 00:00:00", "2011-10-01 00:00:00"]))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the partition cutoff=2011-09-01"), "{e}");
        assert_eq!(files().await.len(), 1, "the failed write left no file");

        // A query of more partitions than cores: every row written, in a file a core at most.
        let parts: Vec<Vec<RecordBatch>> = (0..8)
            .map(|i| vec![rows(&["2011-09-01 00:00:00"; 5]); i % 3 + 1])
            .collect();
        let (adds, n, _) = write_parts(parts).await.unwrap();
        assert_eq!(n, 5 * (1 + 2 + 3 + 1 + 2 + 3 + 1 + 2));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!((1..=cores).contains(&adds.len()), "{} files", adds.len());
        let written: i64 = adds
            .iter()
            .map(|a| {
                let stats: serde_json::Value =
                    serde_json::from_str(a.stats.as_deref().unwrap()).unwrap();
                stats["numRecords"].as_i64().unwrap()
            })
            .sum();
        assert_eq!(written as u64, n);
        // A row outside the cutoff in one partition of many fails the whole write.
        let mut parts: Vec<Vec<RecordBatch>> = (0..8)
            .map(|_| vec![rows(&["2011-09-01 00:00:00"; 5])])
            .collect();
        parts[5].push(rows(&["2011-10-01 00:00:00"]));
        let before = files().await.len();
        let e = write_parts(parts).await.unwrap_err().to_string();
        assert!(e.contains("outside the partition cutoff=2011-09-01"), "{e}");
        assert_eq!(files().await.len(), before, "the failed write left no file");

        // The first partition to fail stops the others: the write ends with its error while
        // another partition is still waiting for rows (left to run, it would wait forever).
        use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
        use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
        use deltalake::datafusion::physical_plan::streaming::PartitionStream;
        #[derive(Debug)]
        struct Part(SchemaRef, Option<RecordBatch>);
        impl PartitionStream for Part {
            fn schema(&self) -> &SchemaRef {
                &self.0
            }
            fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
                let rows = match &self.1 {
                    Some(batch) => futures::stream::iter([Ok(batch.clone())]).boxed(),
                    None => futures::stream::pending().boxed(),
                };
                Box::pin(RecordBatchStreamAdapter::new(self.0.clone(), rows))
            }
        }
        let parts: Vec<Arc<dyn PartitionStream>> = vec![
            Arc::new(Part(schema.clone(), None)),
            Arc::new(Part(schema.clone(), Some(rows(&["2011-10-01 00:00:00"])))),
        ];
        let table = deltalake::datafusion::catalog::streaming::StreamingTable::try_new(
            schema.clone(),
            parts,
        )
        .unwrap();
        let e = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            write_table(Arc::new(table)),
        )
        .await
        .expect("the failing partition stopped the write")
        .unwrap_err()
        .to_string();
        assert!(e.contains("outside the partition cutoff=2011-09-01"), "{e}");
        assert_eq!(files().await.len(), before, "the failed write left no file");
    }

    #[test]
    fn gold_runs_more_partitions_while_silver_is_small_next_to_the_limit() {
        let gib = 1usize << 30;
        assert_eq!(partitions_per_core(Some(0), gib), PARTITIONS_PER_CORE);
        assert_eq!(
            partitions_per_core(Some(14_300_000), 2 * gib),
            PARTITIONS_PER_CORE
        );
        assert_eq!(partitions_per_core(Some(35_700_000), 2 * gib), 1);
        assert_eq!(partitions_per_core(Some(14_300_000), gib), 1);
        assert_eq!(partitions_per_core(Some(u64::MAX), 2 * gib), 1);
        assert_eq!(partitions_per_core(None, 2 * gib), 1);
    }

    /// Views are materialized before the query runs, and replaced on the next run.
    #[tokio::test]
    async fn views_are_materialized_then_replaced() {
        let ctx = bounded(64 << 20).unwrap();
        let id: TableId = GOLD_FEATURES.parse().unwrap();
        let mut keeper = Keeper::new(&ctx, 1 << 20);
        for n in [1i64, 2] {
            // A name with capitals, looked up as written (the session does not lower-case).
            let sql = format!(
                "CREATE OR REPLACE TEMPORARY VIEW Pairs AS SELECT CAST({n} AS BIGINT) AS x; SELECT x * 10 AS y FROM Pairs"
            );
            let plan = Transform::parse(&sql, "t.sql", "src")
                .unwrap()
                .plan(&ctx, &id, Some(&mut keeper))
                .await
                .unwrap();
            let table = ctx
                .table_provider(deltalake::datafusion::common::TableReference::bare("Pairs"))
                .await
                .unwrap();
            // In memory, not a logical view that the query would recompute.
            assert_eq!(
                table.table_type(),
                deltalake::datafusion::logical_expr::TableType::Base
            );
            let rows = ctx
                .execute_logical_plan(plan)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert_eq!(
                rows[0].column(0).as_primitive::<Int64Type>().value(0),
                n * 10
            );
        }
    }
}
