//! Operations on the lake, as builders awaited like delta-rs operations
//! (`lake.append(paths).with_keep_going(true).await`).

pub mod append;
pub mod care;
mod dedupe;
pub mod gold;
pub mod refresh;
mod spark;
mod target;
