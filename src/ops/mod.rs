//! Operations on the lake, as builders awaited like delta-rs operations
//! (`lake.append(paths).with_keep_going(true).await`).
//!
//! Each operation lives in its own file and uses only the shared helpers beside it (`target`:
//! writing and committing; `dedupe`: silver's row-hash set) and the layers below (`lake`,
//! `session`, `catalog`, ...), never another operation's file; the few types one operation's
//! report shares with another's are re-exported here.

pub mod append;
pub mod care;
mod dedupe;
pub mod engines;
pub mod gold;
pub mod query;
pub mod refresh;
pub(crate) mod target;

/// Compaction's report, also part of an append's (appends auto-compact).
pub use care::OptimizeTableReport;
