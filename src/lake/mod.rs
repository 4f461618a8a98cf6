//! The [`Lakehouse`] handle: where the lake is, how to reach its tables and which snapshot of
//! them ([`At`]), and what the lake records beside the tables' data: the commit log read as typed
//! actions ([`log`]), the exactly-once markers (application-transaction ids), the snapshots
//! models are pinned to ([`pins`]) and the symlink manifests other engines read ([`manifest`]).

/// Implements `IntoFuture` for an operation's builder whose `async fn execute(self)` does the
/// work, so every operation is built and awaited the same way, as delta-rs's are:
/// `lake.append(paths).with_keep_going(true).await`.
macro_rules! operation {
    ($builder:ty => $output:ty) => {
        impl ::std::future::IntoFuture for $builder {
            type Output = $crate::error::Result<$output>;
            type IntoFuture =
                ::std::pin::Pin<Box<dyn ::std::future::Future<Output = Self::Output> + Send>>;

            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.execute())
            }
        }
    };
}
pub(crate) use operation;

pub mod log;
pub mod manifest;
pub mod pins;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::catalog::{CUTOFF_COLUMN, Catalog, TableId};
use crate::error::{Error, Result};
use crate::store::StorageOptions;

/// App id of the application transaction that records the last migration applied to a table.
pub const MIGRATIONS_APP_ID: &str = "berserkr.migrations";

/// Prefix of the application-transaction id that marks a drop as ingested
/// (`berserkr.drop.<sha256 of the drop's bytes>`).
pub const DROP_APP_ID_PREFIX: &str = "berserkr.drop.";

/// The commit-info key under which a gold refresh records what it wrote: the source version,
/// the cutoffs and the feature definition they were computed with (see [`definitions`]).
pub const GOLD_COMMIT_KEY: &str = "berserkr.gold";

/// App id of the transaction recording the source version a table built from `source` reflects.
pub fn refresh_app_id(source: &TableId) -> String {
    format!("berserkr.refresh.{source}")
}

/// App id of the transaction recording the feature-table version a model's scores reflect.
pub fn score_app_id(model_id: &str) -> String {
    format!("berserkr.score.{model_id}")
}

/// Which snapshot of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// The latest version.
    Latest,
    /// This version.
    Version(u64),
    /// The last version committed at or before this instant.
    Time(DateTime<Utc>),
}

/// A lake: a root URL (a local folder or an object-store prefix) holding one Delta table per
/// declared table at `<root>/<layer>/<name>`.
///
/// Creating a handle does no I/O; each operation opens the tables it needs at their latest
/// version (or the version asked for).
#[derive(Debug, Clone)]
pub struct Lakehouse {
    root: Url,
    storage_options: StorageOptions,
    catalog: Arc<Catalog>,
    sources: Arc<Vec<crate::config::SourceRule>>,
    memory_limit: usize,
}

/// The memory a lake's queries may hold by default (see [`Lakehouse::with_memory_limit`]).
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 30;

impl Lakehouse {
    /// A handle on the lake at `location`: a URL (`file:///…`, `s3://bucket/prefix`) or a local
    /// path, relative to the working directory.
    pub fn open(location: &str) -> Result<Self> {
        crate::store::register();
        Ok(Self {
            root: parse_location(location)?,
            storage_options: StorageOptions::default(),
            catalog: Arc::new(Catalog::embedded()?),
            sources: Arc::default(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
        })
    }

    /// The memory the refreshes' queries may hold between them ([`DEFAULT_MEMORY_LIMIT`]
    /// unless set): hash tables, aggregations and the rows gold keeps for re-reading. Past it,
    /// aggregations spill to temporary files and gold reads silver from its files instead of a
    /// copy in memory, so a refresh's memory follows this setting, not the lake's size. The
    /// process holds more than this (buffers of the files being read and written).
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// See [`Lakehouse::with_memory_limit`].
    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// Replaces the catalog (tests use this to try other declarations).
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Arc::new(catalog);
        self
    }

    /// Object-store options (credentials, endpoint) passed to every table; they override the
    /// `AWS_*` environment variables.
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage_options = options;
        self
    }

    /// How drops are read, by source prefix (`[sources]` of `berserkr.toml`): `lake append`
    /// takes a drop's text encoding from the rule with the longest matching prefix.
    pub fn with_sources(mut self, sources: Vec<crate::config::SourceRule>) -> Self {
        self.sources = Arc::new(sources);
        self
    }

    /// The source rules of this lake (see [`Lakehouse::with_sources`]).
    pub fn sources(&self) -> &[crate::config::SourceRule] {
        &self.sources
    }

    /// The object-store options of this lake.
    pub fn storage_options(&self) -> &StorageOptions {
        &self.storage_options
    }

    /// The lake's root URL (always ends with `/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The table declarations and migrations this build knows.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// True when the lake is a local folder.
    pub fn is_local(&self) -> bool {
        self.root.scheme() == "file"
    }

    /// URL of a table's root.
    pub fn table_url(&self, id: &TableId) -> Url {
        self.root
            .join(&format!("{}/", id.path()))
            .expect("table paths are plain relative paths")
    }

    fn builder(&self, id: &TableId) -> Result<DeltaTableBuilder> {
        Ok(DeltaTableBuilder::from_url(self.table_url(id))
            .map_err(|e| Error::delta(id, e))?
            .with_storage_options(self.storage_options.to_map()))
    }

    /// An object store rooted at the lake's root (for files beside the tables, such as pins).
    pub fn root_store(&self) -> Result<deltalake::logstore::ObjectStoreRef> {
        let builder = DeltaTableBuilder::from_url(self.root.clone())
            .map_err(|e| Error::delta(self.root.as_str(), e))?
            .with_storage_options(self.storage_options.to_map());
        let logstore = builder
            .build_storage()
            .map_err(|e| Error::delta(self.root.as_str(), e))?;
        Ok(logstore.object_store(None))
    }

    /// True for a local table without a log (delta-rs refuses a local location that does not
    /// exist before it looks for a log).
    fn missing_locally(&self, id: &TableId) -> bool {
        self.is_local()
            && !self
                .table_url(id)
                .to_file_path()
                .is_ok_and(|p| p.join("_delta_log").is_dir())
    }

    /// A table at its latest version, or `None` when it does not exist yet.
    pub async fn try_table(&self, id: &TableId) -> Result<Option<DeltaTable>> {
        if self.missing_locally(id) {
            return Ok(None);
        }
        let mut table = self.builder(id)?.build().map_err(|e| Error::delta(id, e))?;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(Error::delta(id, e)),
        }
    }

    /// A table at its latest version.
    pub async fn table(&self, id: &TableId) -> Result<DeltaTable> {
        self.try_table(id)
            .await?
            .ok_or_else(|| Error::TableMissing {
                table: id.to_string(),
                url: self.table_url(id).to_string(),
            })
    }

    /// A table handle that may not exist yet (for creating it).
    pub(crate) async fn uninitialized_table(&self, id: &TableId) -> Result<DeltaTable> {
        if self.is_local() {
            let path = self
                .table_url(id)
                .to_file_path()
                .map_err(|()| Error::InvalidLake {
                    location: self.root.to_string(),
                    reason: "not a local path".into(),
                })?;
            tokio::fs::create_dir_all(&path)
                .await
                .map_err(|e| Error::io(path.display(), e))?;
        }
        Ok(self
            .try_table(id)
            .await?
            .unwrap_or(self.builder(id)?.build().map_err(|e| Error::delta(id, e))?))
    }

    /// A table at a chosen snapshot. Only that snapshot's log is replayed (not the latest
    /// state first).
    pub async fn table_at(&self, id: &TableId, at: &At) -> Result<DeltaTable> {
        if self.missing_locally(id) {
            return Err(Error::TableMissing {
                table: id.to_string(),
                url: self.table_url(id).to_string(),
            });
        }
        let mut table = self.builder(id)?.build().map_err(|e| Error::delta(id, e))?;
        match at {
            At::Latest => table.load().await,
            At::Version(v) => {
                let latest = table
                    .get_latest_version()
                    .await
                    .map_err(|e| Error::delta(id, e))?;
                if *v > latest {
                    return Err(Error::VersionNotFound {
                        table: id.to_string(),
                        version: *v,
                        latest,
                    });
                }
                table.load_version(*v).await
            }
            At::Time(t) => table.load_with_datetime(*t).await,
        }
        .map_err(|e| Error::delta(id, e))?;
        if let At::Time(t) = at {
            // delta-rs falls back to the first version for an instant before it: refuse instead.
            let version = table.version().unwrap_or(0);
            let committed = log::read_commit(&table.log_store(), id, version)
                .await?
                .and_then(|c| c.info()?.timestamp);
            if committed.is_some_and(|ms| ms > t.timestamp_millis()) {
                return Err(Error::InvalidArgument(format!(
                    "{id} has no version committed at or before {t}: its first one here is version {version}"
                )));
            }
        }
        Ok(table)
    }

    /// A table at its latest version, checked to have every migration of this build applied.
    pub async fn current_table(&self, id: &TableId) -> Result<DeltaTable> {
        let table = self.table(id).await?;
        let applied = migration_level(&table, id).await?;
        let expected = self
            .catalog
            .migrations()
            .iter()
            .filter(|m| &m.table == id)
            .map(|m| m.seq)
            .max()
            .unwrap_or(0);
        if applied != expected {
            return Err(Error::MigrationsPending {
                table: id.to_string(),
                applied,
                expected,
            });
        }
        Ok(table)
    }
}

/// Distinct values of a partition column in a table's snapshot, from the add actions of its
/// log (no data file is read, whatever the file paths look like).
pub(crate) fn partition_values(
    table: &DeltaTable,
    id: &TableId,
    column: &str,
) -> Result<std::collections::BTreeSet<String>> {
    let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
    Ok(state
        .log_data()
        .iter()
        .filter_map(|f| f.partition_values_map().remove(column).flatten())
        .collect())
}

/// Sequence number of the last migration recorded in a table's log (0 when none).
pub(crate) async fn migration_level(table: &DeltaTable, id: &TableId) -> Result<i64> {
    app_txn_version(table, id, MIGRATIONS_APP_ID).await
}

/// Version of an application transaction in a table's log (0 when absent).
pub(crate) async fn app_txn_version(table: &DeltaTable, id: &TableId, app_id: &str) -> Result<i64> {
    let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
    Ok(state
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(id, e))?
        .unwrap_or(0))
}

fn parse_location(location: &str) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidLake {
        location: location.to_string(),
        reason,
    };
    let mut url = if location.contains("://") {
        Url::parse(location).map_err(|e| invalid(e.to_string()))?
    } else {
        let path = std::path::Path::new(location);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| invalid(e.to_string()))?
                .join(path)
        };
        Url::from_directory_path(&abs).map_err(|()| invalid("not an absolute path".into()))?
    };
    match url.scheme() {
        "file" | "s3" | "s3a" | "memory" => {}
        other => return Err(invalid(format!("unsupported scheme {other}://"))),
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// Where a cutoff partition of gold came from: the feature definition and the source (silver)
/// version it was computed with, as recorded under [`GOLD_COMMIT_KEY`] by the newest commit at
/// or before the snapshot that wrote it or checked it unchanged (`None`: written before these
/// were recorded, or its commit is no longer in the log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutoffOrigin {
    /// Digest of the feature definition (see [`crate::catalog::Catalog::definition`]).
    pub definition: Option<String>,
    /// Version of the source table the cutoff's rows were computed from.
    pub source_version: Option<u64>,
}

/// The feature definition each cutoff of a gold snapshot was computed with (see
/// [`cutoff_origins`]).
pub async fn definitions(
    table: &DeltaTable,
    id: &TableId,
) -> Result<BTreeMap<String, Option<String>>> {
    Ok(cutoff_origins(table, id)
        .await?
        .into_iter()
        .map(|(c, o)| (c, o.definition))
        .collect())
}

/// Each cutoff partition of a gold snapshot and where it came from ([`CutoffOrigin`]). The log is
/// read newest first, 16 commits at a time ([`log::read_commits`]), and only until every cutoff
/// is found.
pub async fn cutoff_origins(
    table: &DeltaTable,
    id: &TableId,
) -> Result<BTreeMap<String, CutoffOrigin>> {
    let mut out: BTreeMap<String, Option<CutoffOrigin>> =
        partition_values(table, id, CUTOFF_COLUMN)?
            .into_iter()
            .map(|c| (c, None))
            .collect();
    let mut pending = out.len();
    let log_store = table.log_store();
    let mut to = table.version().unwrap_or(0);
    while pending > 0 {
        let from = to.saturating_sub(15);
        for (_, commit) in log::read_commits(&log_store, id, from, to)
            .await?
            .into_iter()
            .rev()
        {
            let Some(info) = commit.as_ref().and_then(|c| c.info()).and_then(gold_record) else {
                continue;
            };
            let origin = CutoffOrigin {
                definition: info["definition"].as_str().map(str::to_string),
                source_version: info["source_version"].as_u64(),
            };
            // The cutoffs it wrote, and those it checked to be what that version makes.
            let listed = ["cutoffs", "unchanged"].map(|k| info[k].as_array());
            for c in listed.into_iter().flatten().flatten() {
                if let Some(slot) = c.as_str().and_then(|c| out.get_mut(c))
                    && slot.is_none()
                {
                    *slot = Some(origin.clone());
                    pending -= 1;
                }
            }
        }
        if from == 0 {
            break;
        }
        to = from - 1;
    }
    Ok(out
        .into_iter()
        .map(|(c, o)| (c, o.unwrap_or_default()))
        .collect())
}

/// What a commit recorded under [`GOLD_COMMIT_KEY`]: a key of the commit info (berserkr's
/// commits), or of the JSON object in its `userMetadata` (writers that cannot add keys to the
/// commit info, such as delta-spark's `userMetadata` option: `examples/spark/`).
fn gold_record(
    info: &deltalake::kernel::CommitInfo,
) -> Option<std::borrow::Cow<'_, serde_json::Value>> {
    use std::borrow::Cow;
    if let Some(v) = info.info.get(GOLD_COMMIT_KEY) {
        return Some(Cow::Borrowed(v));
    }
    let mut user: serde_json::Value = serde_json::from_str(info.user_metadata.as_deref()?).ok()?;
    Some(Cow::Owned(user.get_mut(GOLD_COMMIT_KEY)?.take()))
}

/// The files of a table snapshot.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct FileStats {
    /// Data files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Rows, from the files' statistics (`None` when a file has none).
    pub rows: Option<u64>,
    /// Files below the target size that share a partition with another such file: what
    /// compaction would merge.
    pub small_files: u64,
}

/// The files of `table`'s snapshot, from its log alone (no data file is read).
pub fn file_stats(table: &DeltaTable, id: &TableId) -> Result<FileStats> {
    let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
    let target = state.table_config().target_file_size().get();
    let mut stats = FileStats {
        rows: Some(0),
        ..FileStats::default()
    };
    let mut small: BTreeMap<Vec<(String, Option<String>)>, u64> = BTreeMap::new();
    for f in state.log_data().iter() {
        let size = u64::try_from(f.size()).map_err(|_| Error::CorruptLog {
            table: id.to_string(),
            version: state.version(),
            line: None,
            reason: format!("file {} has a negative size ({})", f.path(), f.size()),
        })?;
        stats.files += 1;
        stats.bytes += size;
        stats.rows = match (stats.rows, f.num_records()) {
            (Some(r), Some(n)) => Some(r + n as u64),
            _ => None,
        };
        if size < target {
            let mut key: Vec<_> = f.partition_values_map().into_iter().collect();
            key.sort();
            *small.entry(key).or_default() += 1;
        }
    }
    stats.small_files = small.values().filter(|&&n| n > 1).sum();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_become_directory_urls() {
        let l = Lakehouse::open("/tmp/x/lake").unwrap();
        assert_eq!(l.root().as_str(), "file:///tmp/x/lake/");
        let id: TableId = "bronze.online_retail".parse().unwrap();
        assert_eq!(
            l.table_url(&id).as_str(),
            "file:///tmp/x/lake/bronze/online_retail/"
        );
        let s = Lakehouse::open("s3://bucket/pre").unwrap();
        assert_eq!(s.root().as_str(), "s3://bucket/pre/");
        assert!(Lakehouse::open("ftp://x/y").is_err());
    }

    /// Gold's record is read from the commit info's own key, else from `userMetadata` (what
    /// delta-spark can write); the commit info's key wins, other metadata is no record.
    #[test]
    fn gold_records_come_from_the_commit_info_or_its_user_metadata() {
        use deltalake::kernel::CommitInfo;
        let record = serde_json::json!({"cutoffs": ["2011-09-01 00:00:00"], "definition": "d1"});
        let spark = CommitInfo {
            user_metadata: Some(serde_json::json!({ GOLD_COMMIT_KEY: record }).to_string()),
            ..Default::default()
        };
        assert_eq!(gold_record(&spark).as_deref(), Some(&record));
        let mut ours = spark.clone();
        ours.info.insert(
            GOLD_COMMIT_KEY.into(),
            serde_json::json!({"definition": "d2"}),
        );
        assert_eq!(gold_record(&ours).unwrap()["definition"], "d2");
        for other in [
            Some("not json".to_string()),
            Some("{}".into()),
            Some("[1]".into()),
            None,
        ] {
            let info = CommitInfo {
                user_metadata: other,
                ..Default::default()
            };
            assert!(gold_record(&info).is_none());
        }
    }
}
