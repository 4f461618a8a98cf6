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
    /// An argument that makes no sense (a bad table name, option value, pattern or cutoff): fix
    /// the command line or the call.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something asked for by name does not exist (no drop matches a pattern, no such file).
    #[error("{what}")]
    NotFound {
        /// What was looked for, and where.
        what: String,
    },
    /// A table name this build does not declare (see `tables/`).
    #[error("unknown table {table} (see tables/)")]
    UnknownTable {
        /// The name given.
        table: String,
    },
    /// A table version that does not exist (yet).
    #[error("{table} has no version {version}: its latest is {latest}")]
    VersionNotFound {
        /// The table.
        table: String,
        /// The version asked for.
        version: u64,
        /// Its latest version.
        latest: u64,
    },
    /// The lake is not in the state the operation needs: another command must run first (the
    /// message says which).
    #[error("{0}")]
    Precondition(String),
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
    /// An object store could not be configured, reached or read (the location names the bucket
    /// and key; credentials never appear).
    #[error("{location}: {source}")]
    Store {
        /// The object-store URL involved.
        location: String,
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
    /// A commit failed on the store, and whether it landed cannot be told: a request got no answer
    /// (it may still land), or the log could not be read back.
    #[error(
        "table {table}: the commit failed ({error}) and whether it landed cannot be told ({check}); its data files were kept: rerun the command, which lands the work exactly once, and `lake vacuum` removes files nothing references"
    )]
    CommitUnknown {
        /// The table.
        table: String,
        /// The commit's error.
        error: String,
        /// Why it cannot be told: the unanswered request, or the error reading the log back.
        check: String,
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
    /// A table's Delta log holds something that is not a valid commit: a line that is not JSON
    /// or not an action, or a commit that is missing.
    #[error("table {table} version {version}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    CorruptLog {
        /// The table.
        table: String,
        /// The commit's version.
        version: u64,
        /// 1-based line of the commit file, when one line is at fault.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// Rows of a table hold values the operation cannot use (a null feature, a label that is
    /// not 0 or 1, a column a model needs missing).
    #[error("{table}: {reason}")]
    InvalidData {
        /// The table (and version).
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// A model directory or manifest that is not berserkr's, or not for this use.
    #[error("{path}: {reason}")]
    InvalidModel {
        /// The file or directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A statement `berserkr query` refuses: it would write (DDL, DML, COPY, SET).
    #[error("query is read-only: {reason}")]
    ReadOnly {
        /// What the statement would do.
        reason: String,
    },
    /// A value could not be serialized (a manifest, a model, a report).
    #[error("serializing {what}: {source}")]
    Serialize {
        /// What was being written.
        what: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// A table's commit landed, but its symlink manifests could not be brought up to date:
    /// engines reading the manifests see an older snapshot until they are.
    #[error(
        "table {table}: version {version} is committed, but its symlink manifests could not be written (run `berserkr lake manifest --table {table}`)"
    )]
    Manifest {
        /// The table.
        table: String,
        /// The committed version.
        version: u64,
        /// Why writing failed.
        #[source]
        source: Box<Error>,
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

    /// Wraps an object-store error with the location it concerns.
    pub fn store(
        location: impl ToString,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Store {
            location: location.to_string(),
            source: Box::new(source),
        }
    }

    /// Wraps a serialization error with what was being written.
    pub fn serialize(what: impl ToString, source: serde_json::Error) -> Self {
        Self::Serialize {
            what: what.to_string(),
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
