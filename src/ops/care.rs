//! Table care: `optimize`, `vacuum`, `history`, `restore` and `status`, on one table or every
//! table of the lake, on a local folder or an object store alike.
//!
//! Each operation is delta-rs's own (so the commits are the ones Spark and Trino expect), with
//! berserkr's guards around it: vacuum refuses a retention under seven days and keeps every
//! version a trained model is pinned to; restore also rolls back the application transactions
//! (which drops are in bronze, which bronze version silver has read), so the tables and the
//! markers that make appends and refreshes exactly-once keep telling the same story.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::logstore::object_store::path::Path as ObjectPath;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::table::config::TablePropertiesExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::TableId;
use crate::error::{Error, Result};
use crate::lake::{At, FileStats, Lakehouse, file_stats, log, manifest, operation};
use crate::session::{df, finish_exchange_spill_files};

/// Vacuum refuses to keep less history than this without `force` (Delta's own default).
pub const MIN_RETAIN_HOURS: u64 = 7 * 24;

/// Table property: when an append or refresh leaves at least this many small files (files that
/// compaction would merge), they are compacted right away. Absent or 0: never.
pub const AUTO_COMPACT_PROPERTY: &str = "berserkr.autoCompact.minFiles";

/// The tables an operation applies to: the one named, or every declared table that exists.
async fn targets(lake: &Lakehouse, table: Option<&str>) -> Result<Vec<(TableId, DeltaTable)>> {
    let ids: Vec<TableId> = match table {
        Some(t) => {
            let id: TableId = t.parse()?;
            lake.catalog().table(&id)?;
            vec![id]
        }
        None => lake.catalog().tables().map(|t| t.id()).collect(),
    };
    let mut out = Vec::new();
    for id in ids {
        match lake.try_table(&id).await? {
            Some(t) => out.push((id, t)),
            None if table.is_some() => {
                return Err(Error::TableMissing {
                    table: id.to_string(),
                    url: lake.table_url(&id).to_string(),
                });
            }
            None => {}
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// optimize

/// What optimize did to one table.
#[derive(Debug, Clone, Serialize)]
pub struct OptimizeTableReport {
    /// The table.
    pub table: String,
    /// Its version before.
    pub version_before: u64,
    /// The version optimize committed (`None`: nothing to do).
    pub version: Option<u64>,
    /// Files before.
    pub before: FileStats,
    /// Files after.
    pub after: FileStats,
    /// Files rewritten.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Z-order columns, if any.
    pub zorder: Vec<String>,
    /// Seconds taken.
    pub seconds: f64,
}

/// What `lake optimize` did.
#[derive(Debug, Clone, Serialize)]
pub struct OptimizeReport {
    /// One entry per table.
    pub tables: Vec<OptimizeTableReport>,
}

/// Builder for `lake optimize` (see [`Lakehouse::optimize`]).
pub struct OptimizeBuilder {
    lake: Lakehouse,
    table: Option<String>,
    zorder: Vec<String>,
    target_size: Option<u64>,
}

impl Lakehouse {
    /// Compacts small files into files of the target size (the table's `delta.targetFileSize`,
    /// 100 MiB by default), or rewrites them in Z-order. Rows and versions are unchanged; only
    /// the files change (`dataChange = false`, so streaming readers skip the commit).
    pub fn optimize(&self) -> OptimizeBuilder {
        OptimizeBuilder {
            lake: self.clone(),
            table: None,
            zorder: Vec::new(),
            target_size: None,
        }
    }
}

impl OptimizeBuilder {
    /// Only this table (default: every table).
    pub fn with_table(mut self, table: Option<String>) -> Self {
        self.table = table;
        self
    }

    /// Z-order by these columns instead of plain compaction (needs one table).
    pub fn with_zorder(mut self, columns: Vec<String>) -> Self {
        self.zorder = columns;
        self
    }

    /// Target file size in bytes.
    pub fn with_target_size(mut self, bytes: Option<u64>) -> Self {
        self.target_size = bytes;
        self
    }

    async fn execute(self) -> Result<OptimizeReport> {
        if !self.zorder.is_empty() && self.table.is_none() {
            return Err(Error::InvalidArgument(
                "Z-order needs one table (--table): its columns differ from table to table".into(),
            ));
        }
        let mut tables = Vec::new();
        for (id, table) in targets(&self.lake, self.table.as_deref()).await? {
            if !self.zorder.is_empty() {
                let spec = self.lake.catalog().table(&id)?;
                for c in &self.zorder {
                    if !spec.columns.iter().any(|s| &s.name == c) {
                        return Err(Error::InvalidArgument(format!(
                            "{id} has no column {c:?} to Z-order by"
                        )));
                    }
                    if spec.partition_by.contains(c) {
                        return Err(Error::InvalidArgument(format!(
                            "{id}: {c:?} is a partition column; Z-order by data columns"
                        )));
                    }
                }
            }
            tables.push(
                optimize_table(
                    &id,
                    table,
                    &self.zorder,
                    self.target_size,
                    self.lake.memory_limit(),
                    json!({"reason": "requested"}),
                )
                .await?,
            );
        }
        Ok(OptimizeReport { tables })
    }
}

async fn optimize_table(
    id: &TableId,
    table: DeltaTable,
    zorder: &[String],
    target_size: Option<u64>,
    memory: usize,
    why: Value,
) -> Result<OptimizeTableReport> {
    let started = Instant::now();
    let before = file_stats(&table, id)?;
    let version_before = table.version().unwrap_or(0);
    let mut session =
        deltalake::delta_datafusion::create_session_state_with_spill_config(Some(memory), None);
    finish_exchange_spill_files(session.config_mut()).map_err(df(id))?;
    let mut builder = table
        .optimize()
        .with_type(if zorder.is_empty() {
            OptimizeType::Compact
        } else {
            OptimizeType::ZOrder(zorder.to_vec())
        })
        .with_session_state(Arc::new(session))
        .with_commit_properties(
            CommitProperties::default().with_metadata([("berserkr.optimize".to_string(), why)]),
        );
    if let Some(t) = target_size {
        let t = NonZeroU64::new(t)
            .ok_or_else(|| Error::InvalidArgument("the target file size must be above 0".into()))?;
        builder = builder.with_target_size(t);
    }
    let (table, metrics) = builder.await.map_err(|e| Error::delta(id, e))?;
    let version = table.version().unwrap_or(0);
    if version != version_before {
        let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
        manifest::write_if_enabled(id, &table.log_store(), state).await?;
    }
    Ok(OptimizeTableReport {
        table: id.to_string(),
        version_before,
        version: (version != version_before).then_some(version),
        after: file_stats(&table, id)?,
        before,
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        zorder: zorder.to_vec(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl Lakehouse {
    /// Compacts `id` when its [`AUTO_COMPACT_PROPERTY`] asks for it and enough small files
    /// have gathered; `None` when nothing was done.
    pub(crate) async fn auto_compact(&self, id: &TableId) -> Result<Option<OptimizeTableReport>> {
        auto_compact(self, id).await
    }
}

async fn auto_compact(lake: &Lakehouse, id: &TableId) -> Result<Option<OptimizeTableReport>> {
    let Some(table) = lake.try_table(id).await? else {
        return Ok(None);
    };
    let min_files = table
        .snapshot()
        .map_err(|e| Error::delta(id, e))?
        .metadata()
        .configuration()
        .get(AUTO_COMPACT_PROPERTY)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if min_files == 0 {
        return Ok(None);
    }
    let small = file_stats(&table, id)?.small_files;
    if small < min_files {
        return Ok(None);
    }
    optimize_table(
        id,
        table,
        &[],
        None,
        lake.memory_limit(),
        json!({"reason": "auto-compact", "small_files": small, "min_files": min_files}),
    )
    .await
    .map(Some)
}

// ------------------------------------------------------------------------------------------------
// vacuum

/// What vacuum did (or would do) to one table.
#[derive(Debug, Clone, Serialize)]
pub struct VacuumTableReport {
    /// The table.
    pub table: String,
    /// Files deleted (or, in a dry run, that would be).
    pub files: Vec<String>,
    /// Versions kept whole because a trained model is pinned to them.
    pub pinned_versions: Vec<u64>,
}

/// What `lake vacuum` did.
#[derive(Debug, Clone, Serialize)]
pub struct VacuumReport {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// History kept, in hours.
    pub retain_hours: u64,
    /// One entry per table.
    pub tables: Vec<VacuumTableReport>,
}

/// Builder for `lake vacuum` (see [`Lakehouse::vacuum`]).
pub struct VacuumBuilder {
    lake: Lakehouse,
    table: Option<String>,
    retain_hours: u64,
    dry_run: bool,
    force: bool,
}

impl Lakehouse {
    /// Deletes files no version inside the retention period needs: files removed from the
    /// table longer ago than that, and files no commit ever added (a writer that died), once
    /// older than the retention. Files of versions a trained model is pinned to
    /// ([`Lakehouse::pins`]) are kept whatever their age.
    pub fn vacuum(&self) -> VacuumBuilder {
        VacuumBuilder {
            lake: self.clone(),
            table: None,
            retain_hours: MIN_RETAIN_HOURS,
            dry_run: false,
            force: false,
        }
    }
}

impl VacuumBuilder {
    /// Only this table (default: every table).
    pub fn with_table(mut self, table: Option<String>) -> Self {
        self.table = table;
        self
    }

    /// Hours of history to keep (default 168, seven days).
    pub fn with_retain_hours(mut self, hours: u64) -> Self {
        self.retain_hours = hours;
        self
    }

    /// Report what would be deleted, delete nothing.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Allow a retention under seven days (and under the table's
    /// `delta.deletedFileRetentionDuration`): readers and writers still working on an older
    /// version may fail.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    async fn execute(self) -> Result<VacuumReport> {
        if self.retain_hours < MIN_RETAIN_HOURS && !self.force {
            return Err(Error::VacuumRefused {
                retain_hours: self.retain_hours,
                min_hours: MIN_RETAIN_HOURS,
            });
        }
        let pins = self.lake.pins().await?;
        let mut tables = Vec::new();
        for (id, table) in targets(&self.lake, self.table.as_deref()).await? {
            let pinned: BTreeSet<u64> = pins
                .iter()
                .filter(|p| p.table == id.to_string())
                .map(|p| p.version)
                .collect();
            let keep: Vec<u64> = pinned.iter().copied().collect();
            let retention =
                chrono::Duration::hours(i64::try_from(self.retain_hours).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "retention of {} hours is too long",
                        self.retain_hours
                    ))
                })?);
            let (_, metrics) = table
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(!self.force)
                .with_keep_versions(&keep)
                .with_mode(VacuumMode::Full)
                .with_dry_run(self.dry_run)
                .with_commit_properties(CommitProperties::default().with_metadata([(
                    "berserkr.vacuum".to_string(),
                    json!({"retain_hours": self.retain_hours, "pinned_versions": keep, "forced": self.force}),
                )]))
                .await
                .map_err(|e| Error::delta(&id, e))?;
            let mut files = metrics.files_deleted;
            files.sort();
            tables.push(VacuumTableReport {
                table: id.to_string(),
                files,
                pinned_versions: keep,
            });
        }
        Ok(VacuumReport {
            dry_run: self.dry_run,
            retain_hours: self.retain_hours,
            tables,
        })
    }
}

// ------------------------------------------------------------------------------------------------
// history

/// One commit of a table's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The version the commit made.
    pub version: u64,
    /// Commit time (milliseconds since the epoch), when recorded.
    pub timestamp: Option<i64>,
    /// Delta's operation name (WRITE, OPTIMIZE, VACUUM END, RESTORE, ...).
    pub operation: String,
    /// The operation's parameters.
    pub parameters: Value,
    /// The operation's metrics, when recorded.
    pub metrics: Value,
    /// berserkr's own commit metadata (the drop, the refresh, the migration, ...).
    pub berserkr: BTreeMap<String, Value>,
    /// The engine that wrote the commit.
    pub engine: Option<String>,
}

/// Builder for `lake history` (see [`Lakehouse::history`]).
pub struct HistoryBuilder {
    lake: Lakehouse,
    table: String,
    limit: Option<usize>,
}

impl Lakehouse {
    /// The commits of `table`, newest first: all that the log still holds, or the last
    /// [`HistoryBuilder::with_limit`].
    pub fn history(&self, table: impl Into<String>) -> HistoryBuilder {
        HistoryBuilder {
            lake: self.clone(),
            table: table.into(),
            limit: None,
        }
    }
}

impl HistoryBuilder {
    /// At most this many commits.
    pub fn with_limit(mut self, limit: Option<usize>) -> Self {
        self.limit = limit;
        self
    }

    async fn execute(self) -> Result<Vec<HistoryEntry>> {
        let id: TableId = self.table.parse()?;
        let table = self.lake.table(&id).await?;
        let latest = table.version().unwrap_or(0);
        let oldest = self
            .limit
            .map_or(0, |l| (latest + 1).saturating_sub(l as u64));
        let commits = log::read_commits(&table.log_store(), &id, oldest, latest).await?;
        let mut out = Vec::new();
        for (version, commit) in commits.into_iter().rev() {
            let Some(commit) = commit else {
                break; // older commits were cleaned up (delta.logRetentionDuration)
            };
            out.push(history_entry(version, &commit));
        }
        Ok(out)
    }
}
operation!(HistoryBuilder => Vec<HistoryEntry>);

fn history_entry(version: u64, commit: &log::Commit) -> HistoryEntry {
    let info = commit.info();
    let extra = |key: &str| info.and_then(|i| i.info.get(key)).cloned();
    HistoryEntry {
        version,
        timestamp: info.and_then(|i| i.timestamp),
        operation: info
            .and_then(|i| i.operation.clone())
            .unwrap_or_else(|| "UNKNOWN".into()),
        parameters: info
            .and_then(|i| i.operation_parameters.as_ref())
            .map_or(Value::Null, |p| json!(p)),
        metrics: extra("operationMetrics").unwrap_or(Value::Null),
        berserkr: info
            .map(|i| {
                i.info
                    .iter()
                    .filter(|(k, _)| k.starts_with("berserkr"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        engine: info
            .and_then(|i| i.engine_info.clone())
            .or_else(|| extra("clientVersion").and_then(|v| v.as_str().map(str::to_string))),
    }
}

// ------------------------------------------------------------------------------------------------
// restore

/// What `lake restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The table.
    pub table: String,
    /// The version whose state was restored.
    pub restored_version: u64,
    /// The version before.
    pub version_before: u64,
    /// The version the restore committed.
    pub version: u64,
    /// Files removed from the table.
    pub files_removed: u64,
    /// Files added back.
    pub files_restored: u64,
    /// Application transactions set back to their value at the restored version (app id ->
    /// version; 0 means "never").
    pub transactions: BTreeMap<String, i64>,
    /// Tables refreshed from this one, which the restore does not change.
    pub downstream: Vec<String>,
}

/// Builder for `lake restore` (see [`Lakehouse::restore`]).
pub struct RestoreBuilder {
    lake: Lakehouse,
    table: String,
    version: u64,
}

impl Lakehouse {
    /// Makes the latest version of `table` hold what version `version` held: the same files,
    /// schema and properties, as a new commit (history is kept; time travel to the versions
    /// in between still works). The application transactions committed since are set back
    /// too, so drops removed from bronze can be appended again, and a silver table restored
    /// to before some bronze versions reads them again at the next refresh.
    pub fn restore(&self, table: impl Into<String>, version: u64) -> RestoreBuilder {
        RestoreBuilder {
            lake: self.clone(),
            table: table.into(),
            version,
        }
    }
}

impl RestoreBuilder {
    async fn execute(self) -> Result<RestoreReport> {
        let (lake, version) = (&self.lake, self.version);
        let id: TableId = self.table.parse()?;
        lake.catalog().table(&id)?;
        let current = lake.table(&id).await?;
        let latest = current.version().unwrap_or(0);
        if version >= latest {
            return Err(Error::InvalidArgument(format!(
                "{id} is at version {latest}: restore needs an earlier version than that"
            )));
        }
        let target = lake.table_at(&id, &At::Version(version)).await?;
        let log_store = current.log_store();
        let transactions = moved_transactions(&id, &log_store, &target, version, latest).await?;
        let props = CommitProperties::default()
            .with_application_transactions(
                transactions
                    .iter()
                    .map(|(app, v)| Transaction::new(app, *v))
                    .collect(),
            )
            .with_metadata([(
                "berserkr.restore".to_string(),
                json!({"version": version, "transactions": transactions}),
            )]);
        let (table, metrics) = current
            .restore()
            .with_version_to_restore(version)
            .with_commit_properties(props)
            .await
            .map_err(|e| Error::delta(&id, e))?;
        let state = table.snapshot().map_err(|e| Error::delta(&id, e))?;
        manifest::write_if_enabled(&id, &table.log_store(), state).await?;
        let downstream = lake
            .catalog()
            .tables()
            .filter(|t| t.source.as_deref() == Some(id.to_string().as_str()))
            .map(|t| t.id().to_string())
            .collect();
        Ok(RestoreReport {
            table: id.to_string(),
            restored_version: version,
            version_before: latest,
            version: table.version().unwrap_or(0),
            files_removed: metrics.num_removed_file as u64,
            files_restored: metrics.num_restored_file as u64,
            transactions,
            downstream,
        })
    }
}
operation!(RestoreBuilder => RestoreReport);

/// Every application id a commit after `version` (up to `latest`) set, mapped to its value at
/// `version` (0: never set), when that differs from its value now.
async fn moved_transactions(
    id: &TableId,
    log_store: &deltalake::logstore::LogStoreRef,
    then: &DeltaTable,
    version: u64,
    latest: u64,
) -> Result<BTreeMap<String, i64>> {
    let mut now: BTreeMap<String, i64> = BTreeMap::new();
    for (v, commit) in log::read_commits(log_store, id, version + 1, latest)
        .await?
        .into_iter()
        .rev()
    {
        let commit = commit.ok_or_else(|| Error::CorruptLog {
            table: id.to_string(),
            version: v,
            line: None,
            reason: "the commit is missing from the log".into(),
        })?;
        for t in commit.txns() {
            now.entry(t.app_id.clone()).or_insert(t.version);
        }
    }
    let then = then.snapshot().map_err(|e| Error::delta(id, e))?;
    let mut transactions = BTreeMap::new();
    for (app, new) in now {
        let old = then
            .transaction_version(log_store.as_ref(), &app)
            .await
            .map_err(|e| Error::delta(id, e))?
            .unwrap_or(0);
        if old != new {
            transactions.insert(app, old);
        }
    }
    Ok(transactions)
}

// ------------------------------------------------------------------------------------------------
// status

/// The state of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    /// The table.
    pub table: String,
    /// Its URL.
    pub url: String,
    /// Latest version (`None`: the table does not exist yet).
    pub version: Option<u64>,
    /// Its files.
    pub files: FileStats,
    /// Version of the last checkpoint, if any.
    pub last_checkpoint: Option<u64>,
    /// Commits between checkpoints (`delta.checkpointInterval`).
    pub checkpoint_interval: u64,
    /// Target file size of compaction (`delta.targetFileSize`).
    pub target_file_size: u64,
    /// Files under the table that no version its log holds references: what a writer killed
    /// between writing its files and committing them leaves behind (`None` for a status at an
    /// earlier version). Readers never see them; `lake vacuum` deletes them once they are older
    /// than the retention.
    pub orphans: Option<Orphans>,
}

/// Files under a table that no commit of its log references (see [`TableStatus::orphans`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Orphans {
    /// How many.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Their paths, relative to the table's root, sorted.
    pub paths: Vec<String>,
}

/// Builder for `lake status` (see [`Lakehouse::status`]).
pub struct StatusBuilder {
    lake: Lakehouse,
    table: Option<String>,
    version: Option<u64>,
}

impl Lakehouse {
    /// Version, files, rows, bytes, last checkpoint and small files of every declared table (or
    /// of one, at its latest or an earlier version).
    pub fn status(&self) -> StatusBuilder {
        StatusBuilder {
            lake: self.clone(),
            table: None,
            version: None,
        }
    }
}

impl StatusBuilder {
    /// Only this table.
    pub fn with_table(mut self, table: Option<String>) -> Self {
        self.table = table;
        self
    }

    /// The table's state at this version (time travel: that version's files, rows and bytes;
    /// the checkpoint is the table's latest). Needs [`Self::with_table`].
    pub fn with_version(mut self, version: Option<u64>) -> Self {
        self.version = version;
        self
    }

    async fn execute(self) -> Result<Vec<TableStatus>> {
        let lake = &self.lake;
        let ids: Vec<TableId> = match &self.table {
            Some(t) => {
                let id: TableId = t.parse()?;
                lake.catalog().table(&id)?;
                vec![id]
            }
            None => lake.catalog().tables().map(|t| t.id()).collect(),
        };
        if let (None, Some(_)) = (&self.table, self.version) {
            return Err(Error::InvalidArgument(
                "a status at a version needs one table".into(),
            ));
        }
        let mut out = Vec::new();
        for id in ids {
            let table = match self.version {
                Some(v) => Some(lake.table_at(&id, &At::Version(v)).await?),
                None => lake.try_table(&id).await?,
            };
            out.push(match table {
                Some(table) => {
                    let mut status = table_status(lake, &id, &table).await?;
                    if self.version.is_none() {
                        status.orphans = Some(orphans(&id, &table).await?);
                    }
                    status
                }
                None => TableStatus {
                    table: id.to_string(),
                    url: lake.table_url(&id).to_string(),
                    version: None,
                    files: FileStats::default(),
                    last_checkpoint: None,
                    checkpoint_interval: 0,
                    target_file_size: 0,
                    orphans: None,
                },
            });
        }
        Ok(out)
    }
}
operation!(StatusBuilder => Vec<TableStatus>);

async fn table_status(lake: &Lakehouse, id: &TableId, table: &DeltaTable) -> Result<TableStatus> {
    let config = table
        .snapshot()
        .map_err(|e| Error::delta(id, e))?
        .table_config();
    Ok(TableStatus {
        table: id.to_string(),
        url: lake.table_url(id).to_string(),
        version: table.version(),
        files: file_stats(table, id)?,
        last_checkpoint: last_checkpoint(table, id).await?,
        checkpoint_interval: config.checkpoint_interval().get(),
        target_file_size: config.target_file_size().get(),
        orphans: None,
    })
}

/// The files under `table` that neither its latest snapshot nor any commit its log still holds
/// (an add or a remove) names: the same files vacuum's full mode would delete, less the files of
/// earlier versions. Hidden entries (`_delta_log`, manifests, names starting with `_` or `.`) are
/// not data files, except partition folders (`column=value`).
async fn orphans(id: &TableId, table: &DeltaTable) -> Result<Orphans> {
    use futures::TryStreamExt;
    let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
    let parse = |p: &str| ObjectPath::parse(p).unwrap_or_else(|_| ObjectPath::from(p));
    let mut referenced: std::collections::HashSet<ObjectPath> = state
        .log_data()
        .iter()
        .map(|f| parse(f.path().as_ref()))
        .collect();
    let latest = table.version().unwrap_or(0);
    for (_, commit) in log::read_commits(&table.log_store(), id, 0, latest).await? {
        for c in commit.iter() {
            referenced.extend(c.adds().map(|a| parse(&a.path)));
            referenced.extend(c.removes().map(|r| parse(&r.path)));
        }
    }
    let partitions = state.metadata().partition_columns().to_vec();
    let hidden = |p: &str| {
        (p.starts_with('_') || p.starts_with('.'))
            && !partitions.iter().any(|c| {
                p.strip_prefix(c.as_str())
                    .is_some_and(|r| r.starts_with('='))
            })
    };
    let store = table.log_store().object_store(None);
    let listed: Vec<_> = store
        .list(None)
        .try_collect()
        .await
        .map_err(|e| Error::store(table.table_url().to_string(), e))?;
    let mut out = Orphans::default();
    for meta in listed {
        if hidden(meta.location.as_ref()) || referenced.contains(&meta.location) {
            continue;
        }
        out.files += 1;
        out.bytes += meta.size;
        out.paths.push(meta.location.to_string());
    }
    out.paths.sort();
    Ok(out)
}

/// The version in `_delta_log/_last_checkpoint`, if the table has one.
async fn last_checkpoint(table: &DeltaTable, id: &TableId) -> Result<Option<u64>> {
    let store = table.log_store().object_store(None);
    let path = ObjectPath::from("_delta_log/_last_checkpoint");
    match store.get(&path).await {
        Ok(r) => {
            let bytes = r
                .bytes()
                .await
                .map_err(|e| Error::store(format!("{}{path}", table.table_url()), e))?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptLog {
                table: id.to_string(),
                version: 0,
                line: None,
                reason: format!("_delta_log/_last_checkpoint is not JSON: {e}"),
            })?;
            Ok(v.get("version").and_then(Value::as_u64))
        }
        Err(deltalake::ObjectStoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::store(format!("{}{path}", table.table_url()), e)),
    }
}

operation!(OptimizeBuilder => OptimizeReport);
operation!(VacuumBuilder => VacuumReport);
