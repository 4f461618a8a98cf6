//! The library's one public error type.

use deltalake::DeltaTableError;

use crate::lzo::LzoError;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in berserkr, each naming the file, table, version or offset
/// involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request that makes no sense (bad table name, bad option value).
    #[error("{0}")]
    Usage(String),
    /// The lake location is not a usable URL or path.
    #[error("invalid lake location {location:?}: {reason}")]
    InvalidLake {
        /// What was given.
        location: String,
        /// Why it is unusable.
        reason: String,
    },
    /// A configuration file is unreadable or invalid (its text is never quoted: it may hold
    /// secrets).
    #[error("config {file}: {reason}")]
    Config {
        /// The file.
        file: String,
        /// What is wrong, and where.
        reason: String,
    },
    /// An object store could not be configured or reached (the URL names the bucket and key;
    /// credentials never appear).
    #[error("{url}: {source}")]
    Store {
        /// The object-store URL involved.
        url: String,
        /// The store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A Delta operation on a table failed.
    #[error("table {table}: {source}")]
    Delta {
        /// The table.
        table: String,
        /// delta-rs's error.
        #[source]
        source: DeltaTableError,
    },
    /// A commit kept losing races with other writers and was given up; its files were deleted.
    #[error(
        "table {table}: gave up committing after {attempts} rounds of conflicts with concurrent writers (last: {last_error}); nothing was committed"
    )]
    CommitGaveUp {
        /// The table.
        table: String,
        /// Rounds tried.
        attempts: u32,
        /// The last conflict.
        last_error: String,
    },
    /// Vacuum was asked to keep less history than is safe.
    #[error(
        "refusing to vacuum with a retention of {retain_hours} hours, under {min_hours}: readers of older versions and writers still at work could lose files (use --force to do it anyway)"
    )]
    VacuumRefused {
        /// Hours asked for.
        retain_hours: u64,
        /// The minimum without force.
        min_hours: u64,
    },
    /// A table that does not exist yet.
    #[error("table {table} does not exist at {url}: run `berserkr lake init`")]
    TableMissing {
        /// The table.
        table: String,
        /// Where it was looked for.
        url: String,
    },
    /// A table whose migrations are behind (or ahead of) this build.
    #[error(
        "table {table} is at migration {applied}, this build expects {expected}: run `berserkr lake init`"
    )]
    MigrationsPending {
        /// The table.
        table: String,
        /// Last migration recorded in its log.
        applied: i64,
        /// Last migration this build has for it.
        expected: i64,
    },
    /// A file of `tables/` or `migrations/` is invalid.
    #[error("{file}: {message}")]
    Catalog {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A migration step could not be applied.
    #[error("migration {migration} on table {table}: {message}")]
    Migration {
        /// The migration's file stem.
        migration: String,
        /// The table.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// A drop's lzop stream is corrupt or truncated.
    #[error(transparent)]
    Lzo(#[from] LzoError),
    /// A drop is unusable as a whole (not only some of its lines).
    #[error("{file}: {message}")]
    BadDrop {
        /// The drop.
        file: String,
        /// Why.
        message: String,
    },
    /// Reading or listing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Building Arrow data failed.
    #[error("{context}: {source}")]
    Arrow {
        /// What was being built.
        context: String,
        /// Arrow's error.
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// Reading from the object store failed.
    #[error("{location}: {source}")]
    ObjectStore {
        /// The object.
        location: String,
        /// object_store's error.
        #[source]
        source: deltalake::ObjectStoreError,
    },
    /// A query over a table failed.
    #[error("query on {table}: {source}")]
    Query {
        /// The table being built or read.
        table: String,
        /// DataFusion's error.
        #[source]
        source: Box<deltalake::datafusion::error::DataFusionError>,
    },
    /// A `fail` expectation was violated: the refresh committed nothing.
    #[error(
        "expectation {rule} of {table} failed on {violations} rows (first at {first}); nothing was committed"
    )]
    ExpectationFailed {
        /// The table declaring the rule.
        table: String,
        /// The rule.
        rule: String,
        /// Rows violating it.
        violations: u64,
        /// Where the first violating row came from.
        first: String,
    },
    /// A table cannot be refreshed incrementally from its source's log.
    #[error(
        "{table}: version {version} {reason}; incremental refresh is not possible, rebuild from a full scan"
    )]
    IncrementalUnavailable {
        /// The source table.
        table: String,
        /// The source version that blocks it.
        version: u64,
        /// Why.
        reason: String,
    },
    /// A background task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Error {
    /// Wraps a delta-rs error with the table it concerns.
    pub fn delta(table: impl ToString, source: DeltaTableError) -> Self {
        Self::Delta {
            table: table.to_string(),
            source,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl ToString, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }

    /// True when the error is about the input data (a bad drop), not the environment.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Lzo(_) | Self::BadDrop { .. } | Self::ExpectationFailed { .. }
        )
    }
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose text the line
/// already holds (delta-rs often repeats its source in its own message).
pub fn display_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
