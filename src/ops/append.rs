//! `lake append`: land lzop drops in a bronze table, exactly once, one atomic commit per drop.
//!
//! For each drop: hash its bytes; if the bronze log already has the application transaction
//! `berserkr.drop.<sha256>` the drop is skipped (whatever its name). Otherwise it is decoded and
//! parsed on the blocking pool while its rows stream into new Parquet files; only when the whole
//! drop was read without error are the files committed, in one commit that carries the
//! application transaction and the drop's lineage in its metadata. Rejected lines are committed
//! to the rejects table first (under the same transaction id), so a crash between the two commits
//! is repaired by simply running the append again.
//!
//! A drop is read in the text encoding given to [`AppendBuilder::with_encoding`], else the one
//! of the longest `[sources."PREFIX"]` of the configuration matching its URL
//! ([`Lakehouse::with_sources`]), else UTF-8. Its commit metadata (`berserkr.drop`) records the
//! encoding it was read in and where that came from, and for CSV the header as written and the
//! columns it filled through an alias: `lake history --table bronze.online_retail --json`
//! shows them.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::catalog::TableId;
use crate::config::{Config, TextEncoding};
use crate::error::{Error, Result};
use crate::ingest::{
    Chunk, DropFormat, DropLayout, DropMeta, DropSource, DropStats, read_drop, resolve_sources,
};
use crate::lake::DROP_APP_ID_PREFIX;
use crate::lake::Lakehouse;
use crate::ops::target::{
    Change, Committed, PARALLEL_WRITE_BYTES, Staging, Target, Txn, WriterPool,
};

/// Staging slots of a drop's two tables.
const BRONZE_SLOT: usize = 0;
const REJECTS_SLOT: usize = 1;

/// What happened to one drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropStatus {
    /// Committed now.
    Added,
    /// Already in the table (same content hash), nothing written.
    Skipped,
    /// Could not be ingested; nothing of it was committed.
    Failed,
    /// Not tried: an earlier drop failed and `keep_going` was off.
    NotAttempted,
}

/// One drop's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct DropReport {
    /// The drop (URL).
    pub file: String,
    /// sha256 of its bytes (empty when it could not be read).
    pub sha256: String,
    /// What happened.
    pub status: DropStatus,
    /// Text format.
    pub format: Option<DropFormat>,
    /// Rows committed to bronze.
    pub rows: u64,
    /// Lines committed to the rejects table.
    pub rejects: u64,
    /// Compressed size in bytes.
    pub bytes: u64,
    /// Bronze version committed for this drop.
    pub version: Option<u64>,
    /// The text encoding it was read in (when it was read).
    pub encoding: Option<TextEncoding>,
    /// CSV: columns filled through an alias, and the header name that did it.
    pub aliased: std::collections::BTreeMap<String, String>,
    /// Why it failed (the error chain, one line).
    pub error: Option<String>,
    /// True when the failure was in the drop itself (corrupt, truncated, unusable header).
    #[serde(skip)]
    pub bad_input: bool,
}

/// What `lake append` did.
#[derive(Debug, Clone, Serialize)]
pub struct AppendReport {
    /// The bronze table.
    pub table: String,
    /// Its rejects table.
    pub rejects_table: String,
    /// Bronze version before the run.
    pub version_before: u64,
    /// Bronze version after the run.
    pub version_after: u64,
    /// Drops added.
    pub added: usize,
    /// Drops skipped as already ingested.
    pub skipped: usize,
    /// Drops that failed.
    pub failed: usize,
    /// Rows added to bronze.
    pub rows: u64,
    /// Lines added to the rejects table.
    pub rejects: u64,
    /// Every drop, in processing order.
    pub drops: Vec<DropReport>,
    /// Compactions run after the appends (tables whose `berserkr.autoCompact.minFiles` was
    /// reached).
    pub compacted: Vec<crate::ops::OptimizeTableReport>,
    /// Why auto-compaction failed, if it did (the appends stand; `lake optimize` can be run
    /// later).
    pub compact_error: Option<String>,
}

/// Progress of an append, for a progress bar.
#[derive(Debug, Clone)]
pub enum AppendProgress {
    /// The drops were resolved: how many, and their compressed bytes.
    Planned {
        /// Number of drops.
        drops: usize,
        /// Their total size.
        bytes: u64,
    },
    /// A drop is being read.
    Started {
        /// The drop.
        file: String,
    },
    /// A drop is done (any outcome); `bytes` of the plan are accounted for.
    Finished {
        /// Its report.
        report: DropReport,
    },
}

type ProgressFn = Arc<dyn Fn(&AppendProgress) + Send + Sync>;

/// Builder for `lake append` (see [`Lakehouse::append`]).
pub struct AppendBuilder {
    lake: Lakehouse,
    sources: Vec<String>,
    table: String,
    keep_going: bool,
    format: Option<DropFormat>,
    encoding: Option<TextEncoding>,
    writers: Option<usize>,
    progress: Option<ProgressFn>,
}

impl Lakehouse {
    /// Appends the drops named by `sources` (files, folders, glob patterns, object-store URLs
    /// such as `s3://bucket/drops/2011-12-*.csv.lzo`) to bronze.
    pub fn append<S: Into<String>>(&self, sources: impl IntoIterator<Item = S>) -> AppendBuilder {
        AppendBuilder {
            lake: self.clone(),
            sources: sources.into_iter().map(Into::into).collect(),
            table: crate::catalog::BRONZE.to_string(),
            keep_going: false,
            format: None,
            encoding: None,
            writers: None,
            progress: None,
        }
    }
}

impl AppendBuilder {
    /// The bronze table to append to (default `bronze.online_retail`).
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Go on with the other drops after one fails (default: stop at the first failure).
    pub fn with_keep_going(mut self, keep_going: bool) -> Self {
        self.keep_going = keep_going;
        self
    }

    /// Force the text format instead of guessing it from the name and content.
    pub fn with_format(mut self, format: Option<DropFormat>) -> Self {
        self.format = format;
        self
    }

    /// The drops' text encoding, over the configuration's `[sources]` (default: the source's,
    /// else UTF-8). Non-UTF-8 text is transcoded to UTF-8 as it is read.
    pub fn with_encoding(mut self, encoding: Option<TextEncoding>) -> Self {
        self.encoding = encoding;
        self
    }

    /// Parquet writers per drop (default: one per core for drops over 16 MiB, else one).
    pub fn with_writers(mut self, writers: Option<usize>) -> Self {
        self.writers = writers;
        self
    }

    /// Called as drops are planned, started and finished.
    pub fn with_progress(mut self, f: impl Fn(&AppendProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    async fn execute(self) -> Result<AppendReport> {
        let catalog = self.lake.catalog();
        let bronze_id: TableId = self.table.parse()?;
        let bronze_spec = catalog.table(&bronze_id)?;
        let rejects_id: TableId = bronze_spec
            .rejects
            .as_deref()
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{bronze_id} is not a bronze table (it declares no rejects table)"
                ))
            })?
            .parse()?;
        let layout = Arc::new(DropLayout::new(bronze_spec, catalog.table(&rejects_id)?)?);
        let mut bronze = Target::open(&self.lake, &bronze_id).await?;
        let mut rejects = Target::open(&self.lake, &rejects_id).await?;

        let drops = resolve_sources(&self.sources, self.lake.storage_options()).await?;
        let notify = |p: AppendProgress| {
            if let Some(f) = &self.progress {
                f(&p);
            }
        };
        notify(AppendProgress::Planned {
            drops: drops.len(),
            bytes: drops.iter().map(|d| d.bytes).sum(),
        });

        let version_before = bronze.version();
        let mut reports = Vec::with_capacity(drops.len());
        let mut stop = false;
        for drop in drops {
            let (file, bytes) = (drop.url.clone(), drop.bytes);
            if stop {
                reports.push(DropReport::new(file, bytes, DropStatus::NotAttempted));
                continue;
            }
            notify(AppendProgress::Started { file: file.clone() });
            let writers = self.writers.unwrap_or(if bytes > PARALLEL_WRITE_BYTES {
                crate::session::cores().min(4)
            } else {
                1
            });
            let encoding = match (
                self.encoding,
                Config::source_rule(self.lake.sources(), &file),
            ) {
                (Some(e), _) => Declared {
                    encoding: e,
                    from: "argument".into(),
                },
                (None, Some(rule)) if rule.encoding.is_some() => Declared {
                    encoding: rule.encoding.expect("checked"),
                    from: format!("config sources.{:?}", rule.prefix),
                },
                _ => Declared {
                    encoding: TextEncoding::UTF_8,
                    from: "default".into(),
                },
            };
            let report = match ingest_one(
                &drop,
                &layout,
                self.format,
                &encoding,
                writers,
                &mut bronze,
                &mut rejects,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    let mut r = DropReport::new(file, bytes, DropStatus::Failed);
                    r.bad_input = e.is_bad_input();
                    r.error = Some(crate::error::display_chain(&e));
                    r
                }
            };
            tracing::info!(
                drop = %report.file, status = ?report.status, rows = report.rows,
                rejects = report.rejects, version = ?report.version, error = ?report.error,
                "drop"
            );
            if report.status == DropStatus::Failed && !self.keep_going {
                stop = true;
            }
            notify(AppendProgress::Finished {
                report: report.clone(),
            });
            reports.push(report);
        }
        let count = |s| reports.iter().filter(|r| r.status == s).count();
        let (mut compacted, mut compact_error) = (Vec::new(), None);
        if count(DropStatus::Added) > 0 {
            for id in [&bronze_id, &rejects_id] {
                match self.lake.auto_compact(id).await {
                    Ok(Some(r)) => compacted.push(r),
                    Ok(None) => {}
                    Err(e) => {
                        compact_error.get_or_insert(crate::error::display_chain(&e));
                    }
                }
            }
        }
        Ok(AppendReport {
            compacted,
            compact_error,
            table: bronze_id.to_string(),
            rejects_table: rejects_id.to_string(),
            version_before,
            version_after: bronze.version(),
            added: count(DropStatus::Added),
            skipped: count(DropStatus::Skipped),
            failed: count(DropStatus::Failed),
            rows: reports.iter().map(|r| r.rows).sum(),
            rejects: reports.iter().map(|r| r.rejects).sum(),
            drops: reports,
        })
    }
}

crate::lake::operation!(AppendBuilder => AppendReport);

impl DropReport {
    fn new(file: String, bytes: u64, status: DropStatus) -> Self {
        Self {
            file,
            sha256: String::new(),
            status,
            format: None,
            rows: 0,
            rejects: 0,
            bytes,
            version: None,
            encoding: None,
            aliased: Default::default(),
            error: None,
            bad_input: false,
        }
    }
}

/// The text encoding a drop is declared in, and who declared it (for its lineage).
struct Declared {
    encoding: TextEncoding,
    /// `argument`, `config sources."PREFIX"` or `default`.
    from: String,
}

async fn ingest_one(
    drop: &DropSource,
    layout: &Arc<DropLayout>,
    format: Option<DropFormat>,
    declared: &Declared,
    writers: usize,
    bronze: &mut Target,
    rejects: &mut Target,
) -> Result<DropReport> {
    let (file, bytes) = (drop.url.as_str(), drop.bytes);
    let sha256 = drop_sha256(drop).await?;
    let app_id = format!("{DROP_APP_ID_PREFIX}{sha256}");
    let mut report = DropReport::new(file.to_string(), bytes, DropStatus::Skipped);
    report.sha256 = sha256.clone();
    let format = format.or_else(|| DropFormat::from_name(file));
    report.format = format;
    if bronze.has_txn(&app_id).await? {
        return Ok(report);
    }
    let meta = DropMeta {
        file: file.to_string(),
        sha256: sha256.clone(),
        ingested_at_us: chrono::Utc::now().timestamp_micros(),
    };
    let (stats, staging) = write_drop(
        drop,
        layout,
        format,
        declared.encoding,
        writers,
        &meta,
        bronze,
        rejects,
    )
    .await?;
    // A UTF-8 byte order mark wins over a declared encoding.
    let encoding_from = if stats.bom && !declared.encoding.is_utf8() {
        "byte order mark"
    } else {
        declared.from.as_str()
    };
    let metadata = json!({
        "file": file,
        "sha256": sha256,
        "format": format,
        "rows": stats.rows,
        "rejects": stats.rejects,
        "lines": stats.lines,
        "compressed_bytes": bytes,
        "uncompressed_bytes": stats.uncompressed_bytes,
        "encoding": stats.encoding,
        "encoding_from": encoding_from,
        "bom": stats.bom,
        "header": stats.header,
        "aliased": stats.aliased,
    });
    report.encoding = Some(stats.encoding);
    report.aliased = stats.aliased.clone();
    let Some(version) = commit_drop(staging, &app_id, metadata, bronze, rejects).await? else {
        // A concurrent writer landed the same drop: it is in the table once, by that writer.
        return Ok(report);
    };
    report.status = DropStatus::Added;
    report.rows = stats.rows;
    report.rejects = stats.rejects;
    report.version = Some(version);
    Ok(report)
}

/// The SHA-256 of a drop's bytes (read on the blocking pool).
async fn drop_sha256(drop: &DropSource) -> Result<String> {
    let mut reader = drop.reader()?;
    let url = drop.url.clone();
    tokio::task::spawn_blocking(move || crate::ingest::sha256(&mut reader, &url))
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// Parses a drop on the blocking pool while its chunks stream into new files of bronze and its
/// rejects table: the parse's figures and the closed files (nothing committed). Nothing is
/// kept unless the whole drop parsed and every writer is sound.
#[allow(clippy::too_many_arguments)]
async fn write_drop(
    drop: &DropSource,
    layout: &Arc<DropLayout>,
    format: Option<DropFormat>,
    encoding: TextEncoding,
    writers: usize,
    meta: &DropMeta,
    bronze: &Target,
    rejects: &Target,
) -> Result<(DropStats, Staging)> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(2);
    let parse = {
        let reader = drop.reader()?;
        let layout = layout.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || -> Result<DropStats> {
            read_drop(reader, &meta, &layout, format, encoding, |chunk| {
                tx.blocking_send(chunk)
                    .map_err(|_| Error::Task("the Parquet writer stopped".into()))
            })
        })
    };
    let mut staging = Staging::new([bronze, rejects]);
    let mut bronze_pool = WriterPool::new(bronze, writers);
    let mut rejects_pool: Option<WriterPool> = None;
    // Once a table's writers have all stopped, the rest of the drop is not read: the parser's
    // next send fails, and the writers' error is the one to report.
    let mut writers_stopped = false;
    while let Some(chunk) = rx.recv().await {
        if chunk.rows.num_rows() > 0 && !bronze_pool.write(chunk.rows).await {
            writers_stopped = true;
            break;
        }
        if let Some(rj) = chunk.rejects {
            let pool = rejects_pool.get_or_insert_with(|| WriterPool::new(rejects, 1));
            if !pool.write(rj).await {
                writers_stopped = true;
                break;
            }
        }
    }
    std::mem::drop(rx);
    let parsed = parse
        .await
        .unwrap_or_else(|e| Err(Error::Task(e.to_string())));
    let mut written = Ok(());
    for (slot, pool, id) in [
        (BRONZE_SLOT, Some(bronze_pool), &bronze.id),
        (REJECTS_SLOT, rejects_pool, &rejects.id),
    ] {
        if let Some(pool) = pool {
            match pool.finish().await {
                Ok(ws) => staging.hold(slot, ws),
                Err(e) => written = written.and(Err(Error::delta(id, e))),
            }
        }
    }
    // The writers' error when they stopped the read; else the parse error comes first (a
    // writer's error is then only its consequence).
    let stats = if writers_stopped {
        written.and(parsed)
    } else {
        parsed.and_then(|s| written.map(|()| s))
    };
    let stats = match stats {
        Ok(s) => s,
        Err(e) => return staging.fail(e).await,
    };
    staging.close().await?;
    Ok((stats, staging))
}

/// Commits a written drop: its rejected lines first, then its rows, both under the drop's
/// transaction. The bronze version, or `None` when another writer landed the same drop.
async fn commit_drop(
    mut staging: Staging,
    app_id: &str,
    metadata: serde_json::Value,
    bronze: &mut Target,
    rejects: &mut Target,
) -> Result<Option<u64>> {
    let txn = Txn {
        app_id,
        version: 1,
        exactly_once: true,
    };
    // Rejects committed by an earlier run that died before its bronze commit are AlreadyThere.
    let rejects_adds = staging.take(REJECTS_SLOT);
    if !rejects_adds.is_empty()
        && let Err(e) = rejects
            .commit(
                rejects_adds,
                Change::Append,
                txn,
                "berserkr.drop",
                metadata.clone(),
            )
            .await
    {
        return staging.fail(e).await;
    }
    let bronze_adds = staging.take(BRONZE_SLOT);
    Ok(
        match bronze
            .commit(bronze_adds, Change::Append, txn, "berserkr.drop", metadata)
            .await?
        {
            Committed::Version(v) => Some(v),
            Committed::AlreadyThere => None,
        },
    )
}
