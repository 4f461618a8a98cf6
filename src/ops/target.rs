//! Writing to a table: Parquet writers fed from tasks, and commits that carry an application
//! transaction (the exactly-once marker) and berserkr's metadata.

use std::sync::Arc;

use deltalake::arrow::array::StringArray;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::delta_datafusion::TableProviderBuilder;
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::logstore::LogStoreRef;
use deltalake::operations::write::writer::{DeltaWriter, WriterConfig};
use deltalake::parquet::basic::{Compression, Encoding};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt;
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableError};
use indexmap::IndexMap;
use tokio::sync::mpsc;

use crate::catalog::{ColumnRole, ColumnSpec, TableId, ValueEncoding};
use crate::error::{Error, Result};
use crate::lake::Lakehouse;

/// A table being written to: its log store and current state, updated by each commit.
pub(crate) struct Target {
    pub(crate) id: TableId,
    pub(crate) log_store: LogStoreRef,
    pub(crate) state: DeltaTableState,
    /// The table's declared columns: their roles and Parquet settings shape the writer.
    columns: Vec<ColumnSpec>,
    /// Application-transaction versions looked up in `state` (each lookup replays the log
    /// since the last checkpoint). Valid while `state` only moves by this writer's own commits;
    /// cleared whenever it takes in anyone else's.
    txns: std::sync::Mutex<std::collections::HashMap<String, Option<i64>>>,
}

impl Target {
    pub(crate) async fn open(lake: &Lakehouse, id: &TableId) -> Result<Self> {
        Self::of(lake, id, &lake.current_table(id).await?)
    }

    /// A target for a table already opened (its snapshot is the one commits build on).
    pub(crate) fn of(lake: &Lakehouse, id: &TableId, table: &DeltaTable) -> Result<Self> {
        let state = table.snapshot().map_err(|e| Error::delta(id, e))?.clone();
        let columns = lake.catalog().table(id)?.columns.clone();
        Ok(Self {
            id: id.clone(),
            log_store: table.log_store(),
            state,
            columns,
            txns: Default::default(),
        })
    }

    pub(crate) fn version(&self) -> u64 {
        self.state.version()
    }

    /// A DataFusion provider of the rows of this target's snapshot (no second log read).
    pub(crate) async fn provider(&self) -> Result<Arc<dyn TableProvider>> {
        let provider = TableProviderBuilder::default()
            .with_log_store(self.log_store.clone())
            .with_eager_snapshot(self.state.snapshot().clone())
            .await
            .map_err(|e| Error::Query {
                table: self.id.to_string(),
                source: Box::new(e),
            })?;
        Ok(provider)
    }

    /// Commits `actions` as `operation` on this target's snapshot and moves the snapshot to the
    /// new version. The files of the actions are left alone: on an error the caller decides.
    async fn commit_actions(
        &mut self,
        actions: Vec<Action>,
        operation: DeltaOperation,
        props: CommitProperties,
    ) -> std::result::Result<u64, DeltaTableError> {
        let finalized = CommitBuilder::from(props)
            .with_max_retries(COMMIT_RETRIES_PER_ATTEMPT)
            .with_actions(actions)
            .build(Some(&self.state), self.log_store.clone(), operation)
            .await?;
        self.state = finalized.snapshot();
        Ok(finalized.version())
    }

    pub(crate) async fn has_txn(&self, app_id: &str) -> Result<bool> {
        Ok(self.txn_version(app_id).await?.is_some_and(|v| v > 0))
    }

    /// Version of an application transaction in the table's log.
    pub(crate) async fn txn_version(&self, app_id: &str) -> Result<Option<i64>> {
        if let Some(v) = self.txns.lock().expect("txn cache").get(app_id) {
            return Ok(*v);
        }
        let v = self
            .state
            .transaction_version(self.log_store.as_ref(), app_id)
            .await
            .map_err(|e| Error::delta(&self.id, e))?;
        self.txns
            .lock()
            .expect("txn cache")
            .insert(app_id.to_string(), v);
        Ok(v)
    }

    /// A Parquet writer for new files of this table (not committed until [`Self::commit`]).
    pub(crate) fn writer(&self) -> DeltaWriter {
        let config = self.state.table_config();
        let schema = self.state.snapshot().arrow_schema();
        // File statistics live in the footer (Delta reads them from there); page-level
        // statistics would double the min/max work for nothing. Only the columns Delta indexes
        // get any: min/max over every value of the others is work whose result nobody reads
        // (for bronze's raw strings it was a fifth of the append's CPU). Columns that hold one
        // long value per drop (file URL, hash) get none either: the commit metadata names each
        // file's drop.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_statistics_enabled(EnabledStatistics::None)
            // A row group is buffered until complete: cap it so memory does not grow with the
            // drop (256 Ki rows of bronze is ~20 MiB encoded).
            .set_max_row_group_row_count(Some(256 * 1024))
            .set_created_by(format!("berserkr {}", env!("CARGO_PKG_VERSION")));
        let partitions = self.state.metadata().partition_columns();
        let indexed = indexed_columns(
            config.data_skipping_stats_columns.as_deref(),
            self.state.metadata().configuration(),
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| !partitions.iter().any(|p| p == n)),
        );
        // Lineage columns with one value per drop.
        let constant = |name: &str| {
            self.columns.iter().any(|c| {
                c.name == name && matches!(c.role, ColumnRole::SourceFile | ColumnRole::DropSha256)
            })
        };
        for name in indexed.iter().filter(|n| !constant(n)) {
            props = props.set_column_statistics_enabled(
                ColumnPath::from(name.as_str()),
                EnabledStatistics::Chunk,
            );
        }
        for c in &self.columns {
            let path = || ColumnPath::from(c.name.as_str());
            if !c.dictionary {
                props = props.set_column_dictionary_enabled(path(), false);
            }
            match c.encoding {
                ValueEncoding::Plain => {}
                ValueEncoding::DeltaBinaryPacked => {
                    props = props.set_column_encoding(path(), Encoding::DELTA_BINARY_PACKED);
                }
            }
        }
        let props = props.build();
        let wc = WriterConfig::new(
            schema,
            self.state.metadata().partition_columns().to_vec(),
            Some(props),
            Some(config.target_file_size()),
            None,
            config.num_indexed_cols(),
            config
                .data_skipping_stats_columns
                .as_ref()
                .map(|c| c.iter().map(|s| s.to_string()).collect()),
        );
        DeltaWriter::new(self.log_store.object_store(None), wc)
    }

    /// Commits `adds` as one commit carrying the application transaction `txn` and `metadata`
    /// under `key` in the commit info: an append, or the replacement of whole partitions
    /// ([`Change::Replace`]: their current files are removed in the same commit).
    ///
    /// Concurrent writers are expected: delta-rs resolves a lost race against commits that do
    /// not conflict (other appends, other partitions) a few times at once; when the table keeps
    /// moving, this waits with exponential backoff and full jitter, refreshes the snapshot
    /// (recomputing the files a replacement removes) and tries again, up to
    /// [`COMMIT_ATTEMPTS`] rounds. With [`Txn::exactly_once`], a transaction already at or past
    /// `txn.version` (an earlier run that died before its next step, or another writer of the
    /// same drop) means the work is done: the files are deleted and [`Committed::AlreadyThere`]
    /// is returned. On an error the files are deleted when the store's answers show the commit
    /// did not land; when a request got no answer (it may still land) or the log cannot be
    /// read, they are kept and [`Error::CommitUnknown`] returned: a writer that gives up
    /// leaves nothing behind but what vacuum would remove anyway. After the commit, the table's symlink
    /// manifests are brought up to date when it asks for them.
    pub(crate) async fn commit(
        &mut self,
        adds: Vec<Add>,
        change: Change,
        txn: Txn<'_>,
        key: &str,
        metadata: serde_json::Value,
    ) -> Result<Committed> {
        let started = std::time::Instant::now();
        let start = self.state.version();
        let mut committed = self
            .commit_files(&adds, &change, &txn, key, start, metadata)
            .await;
        if let Err(e) = &committed {
            // The commit may have landed though its answer was lost (a connection dropped or a
            // 5xx after the store wrote it): then the files are the table's and must stay.
            // A request that got no answer at all (timed out, connection cut) may still land
            // after the log was read; when that is so, or the log cannot be read to tell, the
            // files stay too (orphans at worst, which vacuum removes after the retention):
            // only files known to be uncommitted, after answers from the store, are deleted.
            match self.landed(&adds, start).await {
                Ok(Some(version)) => committed = Ok(Committed::Version(version)),
                Ok(None) if !unanswered(e) => self.discard(&adds).await,
                Ok(None) => {
                    return Err(Error::CommitUnknown {
                        table: self.id.to_string(),
                        error: e.to_string(),
                        check: "a request of the commit got no answer from the store and may \
                                still land; it is not in the log yet"
                            .to_string(),
                    });
                }
                Err(check) => {
                    return Err(Error::CommitUnknown {
                        table: self.id.to_string(),
                        error: e.to_string(),
                        check: check.to_string(),
                    });
                }
            }
        } else if let Ok(Committed::AlreadyThere) = committed {
            self.discard(&adds).await;
        }
        match &committed {
            Ok(Committed::Version(v)) => tracing::info!(
                table = %self.id, version = v, files = adds.len(), app_id = txn.app_id,
                seconds = started.elapsed().as_secs_f64(), "committed"
            ),
            Ok(Committed::AlreadyThere) => tracing::info!(
                table = %self.id, app_id = txn.app_id, txn_version = txn.version,
                "already committed by an earlier run; files discarded"
            ),
            Err(e) => {
                tracing::warn!(table = %self.id, error = %e, "commit failed; its files deleted")
            }
        }
        let committed = committed?;
        if let Committed::Version(_) = committed {
            crate::lake::manifest::write_if_enabled(&self.id, &self.log_store, &self.state).await?;
        }
        Ok(committed)
    }

    /// The version after `start` whose commit added the first of `adds`, if one did (this
    /// writer's commit landed though it was not told so). Moves the snapshot to the latest (and
    /// forgets the cached transaction versions), whatever it finds.
    async fn landed(&mut self, adds: &[Add], start: u64) -> Result<Option<u64>> {
        self.state
            .update(self.log_store.as_ref(), None)
            .await
            .map_err(|e| Error::delta(&self.id, e))?;
        self.txns.lock().expect("txn cache").clear();
        let Some(first) = adds.first() else {
            return Ok(None);
        };
        let latest = self.state.version();
        let commits =
            crate::lake::log::read_commits(&self.log_store, &self.id, start + 1, latest).await?;
        Ok(commits.into_iter().find_map(|(v, c)| {
            c.is_some_and(|c| c.adds().any(|a| a.path == first.path))
                .then_some(v)
        }))
    }

    async fn commit_files(
        &mut self,
        adds: &[Add],
        change: &Change,
        txn: &Txn<'_>,
        key: &str,
        start: u64,
        metadata: serde_json::Value,
    ) -> Result<Committed> {
        let mut last_error = String::new();
        let before = self.txn_version(txn.app_id).await?;
        if txn.exactly_once && before >= Some(txn.version) {
            // Already committed: committing again would duplicate the rows.
            return Ok(Committed::AlreadyThere);
        }
        let attempts = commit_attempts();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
                // A lost race may have been lost to this writer's own commit, whose answer
                // never came (the store retried a PUT it had already applied). Either way the
                // snapshot is now the latest.
                if let Some(version) = self.landed(adds, start).await? {
                    return Ok(Committed::Version(version));
                }
                let now = self.txn_version(txn.app_id).await?;
                if now != before {
                    if txn.exactly_once && now >= Some(txn.version) {
                        return Ok(Committed::AlreadyThere);
                    }
                    return Err(Error::CommitGaveUp {
                        table: self.id.to_string(),
                        attempts: attempt,
                        last_error: format!(
                            "another writer moved {} from {before:?} to {now:?} meanwhile",
                            txn.app_id
                        ),
                    });
                }
            }
            let props = CommitProperties::default()
                .with_application_transaction(Transaction::new(txn.app_id, txn.version))
                .with_metadata([(key.to_string(), metadata.clone())]);
            let previous = self.state.version();
            let (operation, removes) = match change {
                Change::Append => (
                    DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: None,
                        predicate: None,
                    },
                    Vec::new(),
                ),
                Change::ReplaceAll => (
                    DeltaOperation::Write {
                        mode: SaveMode::Overwrite,
                        partition_by: None,
                        predicate: None,
                    },
                    self.state
                        .log_data()
                        .iter()
                        .map(|f| Action::Remove(f.remove_action(true)))
                        .collect(),
                ),
                Change::Replace { column, values } => (
                    DeltaOperation::Write {
                        mode: SaveMode::Overwrite,
                        partition_by: None,
                        predicate: Some(format!(
                            "{column} IN ({})",
                            values
                                .iter()
                                .map(|v| format!("'{}'", v.replace('\'', "''")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    },
                    self.partition_files(column, values),
                ),
            };
            let actions = adds
                .iter()
                .cloned()
                .map(Action::Add)
                .chain(removes)
                .collect();
            match self.commit_actions(actions, operation, props).await {
                Ok(version) => {
                    let mut txns = self.txns.lock().expect("txn cache");
                    if version != previous + 1 {
                        txns.clear(); // other writers' commits came in too
                    }
                    txns.insert(txn.app_id.to_string(), Some(txn.version));
                    return Ok(Committed::Version(version));
                }
                Err(e) if is_retryable(&e) => last_error = e.to_string(),
                Err(e) => return Err(Error::delta(&self.id, e)),
            }
        }
        Err(Error::CommitGaveUp {
            table: self.id.to_string(),
            attempts,
            last_error,
        })
    }

    /// Remove actions for the files of the partitions `column` in `values`, in this snapshot.
    fn partition_files(&self, column: &str, values: &[String]) -> Vec<Action> {
        self.state
            .log_data()
            .iter()
            .filter(|f| {
                f.partition_values_map()
                    .remove(column)
                    .flatten()
                    .is_some_and(|v| values.contains(&v))
            })
            .map(|f| Action::Remove(f.remove_action(true)))
            .collect()
    }

    /// Deletes data files that were written but will not be committed (best effort: an orphan
    /// file is harmless, no snapshot references it, and vacuum removes it).
    pub(crate) async fn discard(&self, adds: &[Add]) {
        discard_files(&self.log_store, adds).await;
    }
}

/// What a commit changes besides adding its files.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Nothing: the files are appended.
    Append,
    /// Every current file is removed in the same commit: the table holds only the new files.
    ReplaceAll,
    /// The partitions where `column` is one of `values` are replaced: their current files are
    /// removed in the same commit.
    Replace {
        /// The partition column.
        column: String,
        /// The partitions' values.
        values: Vec<String>,
    },
}

/// The application transaction a commit carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Txn<'a> {
    /// Its app id.
    pub(crate) app_id: &'a str,
    /// Its version.
    pub(crate) version: i64,
    /// When the log already has this app id at `version` or later, the work is done: nothing
    /// is committed (a drop, a refresh of a source range, a model's scores of a version). When
    /// false the transaction only records what the commit reflects (gold's silver version),
    /// and another writer moving it meanwhile stops the commit.
    pub(crate) exactly_once: bool,
}

/// What [`Target::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Committed as this version.
    Version(u64),
    /// Another writer committed the same application transaction; nothing was added.
    AlreadyThere,
}

/// Rounds of commit attempts (each with delta-rs's own immediate retries) before giving up.
pub(crate) const COMMIT_ATTEMPTS: u32 = 12;

/// Environment variable overriding [`COMMIT_ATTEMPTS`] (for very busy tables, or to see a
/// writer give up).
pub(crate) const COMMIT_ATTEMPTS_ENV: &str = "BERSERKR_COMMIT_ATTEMPTS";

fn commit_attempts() -> u32 {
    std::env::var(COMMIT_ATTEMPTS_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(COMMIT_ATTEMPTS)
}
/// Immediate retries delta-rs makes within one round, after checking for conflicts.
const COMMIT_RETRIES_PER_ATTEMPT: usize = 4;

/// Full-jitter exponential backoff: uniform in [0, min(4 s, 50 ms * 2^attempt)].
fn backoff(attempt: u32) -> std::time::Duration {
    use rand::Rng;
    let cap_ms = (50u64 << attempt.min(10)).min(4_000);
    std::time::Duration::from_millis(rand::rng().random_range(0..=cap_ms))
}

/// Whether `e` came from a request to the store that got no answer (a timeout, a connection
/// cut after the request was sent): the store may still apply it later. A refused connection
/// (nothing was sent), an answer with a status, a conflict or a local error are definite.
fn unanswered(e: &(dyn std::error::Error + 'static)) -> bool {
    use deltalake::logstore::object_store::client::{HttpError, HttpErrorKind};
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            return !matches!(h.kind(), HttpErrorKind::Connect);
        }
        next = e.source();
    }
    false
}

/// Lost races worth another round: the version was taken, the immediate retries ran out, or a
/// concurrent transaction with the same application id won (the next round sees it).
fn is_retryable(e: &DeltaTableError) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    match e {
        DeltaTableError::VersionAlreadyExists(_) => true,
        DeltaTableError::Transaction { source } => matches!(
            source,
            TransactionError::VersionAlreadyExists(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::CommitConflict(_)
        ),
        _ => false,
    }
}

/// Compressed drops above this size are encoded by several Parquet writers at once.
pub(crate) const PARALLEL_WRITE_BYTES: u64 = 16 * 1024 * 1024;

/// Writers of one table, each on its own task, draining one queue: each batch goes to whichever
/// writer is free, so a slow batch holds up only its writer and every writer stays busy to the
/// end. Any number of producers can feed it ([`WriterPool::sender`]).
pub(crate) struct WriterPool {
    sender: mpsc::Sender<RecordBatch>,
    tasks: Vec<tokio::task::JoinHandle<Result<DeltaWriter, DeltaTableError>>>,
}

impl WriterPool {
    /// `n` writers of `target`; each batch is split by the table's partition columns.
    pub(crate) fn new(target: &Target, n: usize) -> Self {
        Self::with_partition(target, n, None)
    }

    /// `n` writers of `target` whose every batch is the rows of the partition where `column` is
    /// `value` (no batch is split by its partition values; delta-rs groups the rows and copies
    /// every column to do that).
    pub(crate) fn of_partition(target: &Target, n: usize, column: &str, value: &str) -> Self {
        Self::with_partition(target, n, Some((column, value)))
    }

    fn with_partition(target: &Target, n: usize, partition: Option<(&str, &str)>) -> Self {
        // The partition's values, built once (delta-rs does not export its `Scalar` by name: the
        // map's type comes from `write_partition` below).
        let partition = partition.map(|(column, value)| {
            let scalar = ScalarExt::from_array(&StringArray::from(vec![value]), 0)
                .expect("the one value of a string array is a scalar");
            IndexMap::from([(column.to_string(), scalar)])
        });
        let n = n.max(1);
        let (sender, rx) = mpsc::channel::<RecordBatch>(n);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let tasks = (0..n)
            .map(|_| {
                let (mut writer, rx, partition) = (target.writer(), rx.clone(), partition.clone());
                tokio::spawn(async move {
                    loop {
                        let batch = rx.lock().await.recv().await;
                        let Some(batch) = batch else {
                            return Ok(writer);
                        };
                        let written = match &partition {
                            Some(p) => writer.write_partition(batch, p).await,
                            None => writer.write(&batch).await,
                        };
                        if let Err(e) = written {
                            let _ = writer.abort().await;
                            return Err(e);
                        }
                    }
                })
            })
            .collect();
        Self { sender, tasks }
    }

    /// A producer's handle on the queue. A send fails once every writer has stopped (their
    /// errors come out of [`WriterPool::finish`]).
    pub(crate) fn sender(&self) -> mpsc::Sender<RecordBatch> {
        self.sender.clone()
    }

    /// Hands a batch to the first free writer: false once every writer has stopped (the batch
    /// is then dropped, and the writers' errors come out of [`WriterPool::finish`]), so the
    /// caller stops producing rows nobody will write.
    pub(crate) async fn write(&mut self, batch: RecordBatch) -> bool {
        self.sender.send(batch).await.is_ok()
    }

    /// Waits for every writer (after every [`WriterPool::sender`] is dropped); the writers come
    /// back unclosed, so the caller decides between closing (to commit) and aborting.
    pub(crate) async fn finish(self) -> Result<Vec<DeltaWriter>, DeltaTableError> {
        drop(self.sender);
        let mut writers = Vec::new();
        let mut error = None;
        for t in self.tasks {
            match t.await {
                Ok(Ok(w)) => writers.push(w),
                Ok(Err(e)) => {
                    error.get_or_insert(e);
                }
                Err(e) => {
                    error.get_or_insert(DeltaTableError::Generic(format!("writer task: {e}")));
                }
            }
        }
        match error {
            None => Ok(writers),
            Some(e) => {
                for w in writers {
                    let _ = w.abort().await;
                }
                Err(e)
            }
        }
    }
}

/// Awaits tasks that each hand back their writers and a result: every writer that came back,
/// and the results, or the first error (a task that panicked loses its writers, whose files
/// no commit references).
pub(crate) async fn join_writing<W, T>(
    tasks: Vec<tokio::task::JoinHandle<(W, Result<T>)>>,
    what: &str,
) -> (Vec<W>, Result<Vec<T>>) {
    let (mut writers, mut results, mut error) = (Vec::new(), Vec::new(), None);
    for t in tasks {
        match t.await {
            Ok((w, r)) => {
                writers.push(w);
                match r {
                    Ok(r) => results.push(r),
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            Err(e) => {
                error.get_or_insert(Error::Task(format!("{what}: {e}")));
            }
        }
    }
    (writers, error.map_or(Ok(results), Err))
}

/// Files being written for one or several tables and not committed yet: the writers still open
/// and the files already closed, per table.
///
/// Every write path holds its writers here, so failure is handled one way: [`Staging::discard`]
/// aborts the open writers and deletes the closed files of every table, and [`Staging::close`]
/// either closes every writer or (on the first error) discards everything. Committed files are
/// taken out table by table ([`Staging::take`]); [`Target::commit`] deletes its own files when
/// it fails.
pub(crate) struct Staging {
    tables: Vec<Staged>,
}

struct Staged {
    id: TableId,
    log_store: LogStoreRef,
    open: Vec<DeltaWriter>,
    closed: Vec<Add>,
}

impl Staging {
    /// Staging for the tables of `targets`; slot `i` is `targets[i]`'s.
    pub(crate) fn new<'a>(targets: impl IntoIterator<Item = &'a Target>) -> Self {
        Self {
            tables: targets
                .into_iter()
                .map(|t| Staged {
                    id: t.id.clone(),
                    log_store: t.log_store.clone(),
                    open: Vec::new(),
                    closed: Vec::new(),
                })
                .collect(),
        }
    }

    /// Holds `writers` of the table in `slot` until [`Self::close`] or [`Self::discard`].
    pub(crate) fn hold(&mut self, slot: usize, writers: impl IntoIterator<Item = DeltaWriter>) {
        self.tables[slot].open.extend(writers);
    }

    /// Closes every open writer into files. On the first failure every writer is aborted, every
    /// file of every table deleted, and the error returned.
    pub(crate) async fn close(&mut self) -> Result<()> {
        for i in 0..self.tables.len() {
            let writers = std::mem::take(&mut self.tables[i].open);
            let mut writers = writers.into_iter();
            while let Some(w) = writers.next() {
                match w.close().await {
                    Ok(adds) => self.tables[i].closed.extend(adds),
                    Err(e) => {
                        self.tables[i].open.extend(writers);
                        let id = self.tables[i].id.clone();
                        self.discard_all().await;
                        return Err(Error::delta(&id, e));
                    }
                }
            }
        }
        Ok(())
    }

    /// The closed files of the table in `slot`, for its commit (they leave the staging).
    pub(crate) fn take(&mut self, slot: usize) -> Vec<Add> {
        std::mem::take(&mut self.tables[slot].closed)
    }

    /// Aborts every open writer and deletes every closed file, of every table.
    pub(crate) async fn discard(mut self) {
        self.discard_all().await;
    }

    /// [`Self::discard`], then `Err(error)`.
    pub(crate) async fn fail<T>(self, error: Error) -> Result<T> {
        self.discard().await;
        Err(error)
    }

    async fn discard_all(&mut self) {
        for t in &mut self.tables {
            for w in t.open.drain(..) {
                let _ = w.abort().await;
            }
            discard_files(&t.log_store, &t.closed).await;
            t.closed.clear();
        }
    }
}

/// Deletes data files that were written but will not be committed (best effort: an orphan
/// file is harmless, no snapshot references it, and vacuum removes it).
async fn discard_files(log_store: &LogStoreRef, adds: &[Add]) {
    let store = log_store.object_store(None);
    for a in adds {
        if let Ok(path) = deltalake::Path::parse(&a.path) {
            let _ = deltalake::logstore::object_store::ObjectStoreExt::delete(&store, &path).await;
        }
    }
}

/// The columns whose statistics Delta records in the log, as delta-rs picks them: the table's
/// `delta.dataSkippingStatsColumns` (`listed`, as the table config parsed it) when set, else the
/// first `delta.dataSkippingNumIndexedCols` (default 32; -1 for all) of `columns` (the
/// non-partition columns, in schema order). The count is read from the raw `configuration`:
/// delta-rs parses it into a kernel type it does not re-export.
fn indexed_columns<'a, C: std::ops::Deref<Target = [String]>>(
    listed: Option<&[C]>,
    configuration: &std::collections::HashMap<String, String>,
    columns: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    if let Some(listed) = listed {
        return columns
            .filter(|c| listed.iter().any(|l| matches!(&**l, [only] if only == c)))
            .map(str::to_string)
            .collect();
    }
    let n = configuration
        .get("delta.dataSkippingNumIndexedCols")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(32);
    let n = if n < 0 { usize::MAX } else { n as usize };
    columns.take(n).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_without_an_answer_leave_a_commit_unknown() {
        use deltalake::logstore::object_store::client::{HttpError, HttpErrorKind};
        let io = || std::io::Error::other("cut");
        let wrapped = |kind| deltalake::logstore::object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(kind, io())),
        };
        for kind in [
            HttpErrorKind::Timeout,
            HttpErrorKind::Interrupted,
            HttpErrorKind::Request,
            HttpErrorKind::Unknown,
        ] {
            assert!(unanswered(&wrapped(kind)), "{kind:?}");
        }
        assert!(!unanswered(&wrapped(HttpErrorKind::Connect)));
        assert!(!unanswered(&io()));
        let gave_up = Error::CommitGaveUp {
            table: "bronze.t".into(),
            attempts: 3,
            last_error: "version 4 exists".into(),
        };
        assert!(!unanswered(&gave_up));
    }

    #[test]
    fn statistics_go_to_the_columns_delta_indexes() {
        let cols = ["a", "b", "c", "d"];
        let conf = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let none: Option<&[Vec<String>]> = None;
        let counted = |kv: &[(&str, &str)]| indexed_columns(none, &conf(kv), cols.iter().copied());
        assert_eq!(counted(&[]), ["a", "b", "c", "d"]);
        assert_eq!(
            counted(&[("delta.dataSkippingNumIndexedCols", "2")]),
            ["a", "b"]
        );
        assert_eq!(
            counted(&[("delta.dataSkippingNumIndexedCols", "-1")]),
            ["a", "b", "c", "d"]
        );
        assert!(counted(&[("delta.dataSkippingNumIndexedCols", "0")]).is_empty());
        // An explicit list wins over the count, in schema order; unknown names are ignored.
        let listed = [
            vec!["d".to_string()],
            vec!["b".to_string()],
            vec!["zz".to_string()],
        ];
        assert_eq!(
            indexed_columns(
                Some(&listed[..]),
                &conf(&[("delta.dataSkippingNumIndexedCols", "1")]),
                cols.iter().copied()
            ),
            ["b", "d"]
        );
    }

    fn txn(app_id: &str, version: i64) -> Txn<'_> {
        Txn {
            app_id,
            version,
            exactly_once: true,
        }
    }

    async fn fake_file(lake: &Lakehouse, id: &TableId, name: &str) -> (Add, std::path::PathBuf) {
        let path = lake.table_url(id).to_file_path().unwrap().join(name);
        std::fs::write(&path, b"not committed").unwrap();
        let add = Add {
            path: name.to_string(),
            size: 13,
            modification_time: 0,
            data_change: true,
            ..Default::default()
        };
        (add, path)
    }

    /// A pool whose writers have all failed says so to its producer (which then stops reading),
    /// and their error comes out of `finish`.
    #[tokio::test]
    async fn a_pool_whose_writers_failed_takes_no_more_batches() {
        use deltalake::arrow::array::Int64Array;
        use deltalake::arrow::datatypes::{DataType, Field, Schema};

        let dir = tempfile::tempdir().unwrap();
        let lake = Lakehouse::open(dir.path().to_str().unwrap()).unwrap();
        lake.init().await.unwrap();
        let id: TableId = "bronze.online_retail_rejects".parse().unwrap();
        let target = Target::open(&lake, &id).await.unwrap();
        // Rows of another schema: every writer that takes one fails.
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let wrong =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let mut pool = WriterPool::new(&target, 2);
        let mut taken = 0;
        while pool.write(wrong.clone()).await {
            taken += 1;
            assert!(
                taken < 1000,
                "the pool kept taking batches after its writers failed"
            );
            tokio::task::yield_now().await;
        }
        let e = pool.finish().await.err().expect("the writers' error");
        assert!(matches!(e, DeltaTableError::SchemaMismatch { .. }), "{e}");
    }

    /// A writer whose commit keeps conflicting gives up with an error that says so, and the
    /// files it wrote are gone: nothing half-done.
    #[tokio::test]
    async fn a_writer_that_gives_up_says_so_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lakehouse::open(dir.path().to_str().unwrap()).unwrap();
        lake.init().await.unwrap();
        let id: TableId = "bronze.online_retail_rejects".parse().unwrap();
        let mut stale = Target::open(&lake, &id).await.unwrap();
        let mut other = Target::open(&lake, &id).await.unwrap();
        let before = other.version();
        // Another writer moves the application transaction meanwhile.
        let done = other
            .commit(
                vec![],
                Change::Append,
                txn("app", 1),
                "test",
                serde_json::json!({}),
            )
            .await
            .unwrap();
        assert_eq!(done, Committed::Version(before + 1));
        let (add, path) = fake_file(&lake, &id, "part-gives-up.parquet").await;
        let e = stale
            .commit(
                vec![add],
                Change::Append,
                txn("app", 2),
                "test",
                serde_json::json!({}),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::CommitGaveUp { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("gave up") && text.contains("nothing was committed"),
            "{text}"
        );
        assert!(!path.exists(), "the writer's file was deleted");
        assert_eq!(lake.table(&id).await.unwrap().version(), Some(before + 1));

        // The same drop committed by another writer first is not an error: nothing is added.
        let mut stale = Target::open(&lake, &id).await.unwrap();
        let mut other = Target::open(&lake, &id).await.unwrap();
        other
            .commit(
                vec![],
                Change::Append,
                txn("drop", 1),
                "test",
                serde_json::json!({}),
            )
            .await
            .unwrap();
        let (add, path) = fake_file(&lake, &id, "part-same-drop.parquet").await;
        let r = stale
            .commit(
                vec![add],
                Change::Append,
                txn("drop", 1),
                "test",
                serde_json::json!({}),
            )
            .await
            .unwrap();
        assert_eq!(r, Committed::AlreadyThere);
        assert!(!path.exists());
        // A writer whose own snapshot already holds the transaction commits nothing either.
        let v = lake.table(&id).await.unwrap().version();
        let (add, path) = fake_file(&lake, &id, "part-seen.parquet").await;
        let r = other
            .commit(
                vec![add],
                Change::Append,
                txn("drop", 1),
                "test",
                serde_json::json!({}),
            )
            .await
            .unwrap();
        assert_eq!(r, Committed::AlreadyThere);
        assert!(!path.exists());
        assert_eq!(lake.table(&id).await.unwrap().version(), v);
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        for attempt in 0..20 {
            let cap = (50u64 << attempt.min(10)).min(4_000);
            for _ in 0..20 {
                assert!(backoff(attempt).as_millis() as u64 <= cap);
            }
        }
        let samples: std::collections::BTreeSet<_> = (0..50).map(|_| backoff(6)).collect();
        assert!(samples.len() > 10, "jitter spreads the waits");
    }
}
