//! berserkr: a Delta Lake medallion lakehouse that turns raw retail drops into purchase-likelihood
//! features and models, on one machine, with tables any Delta engine reads.
//!
//! The entry point is [`Lakehouse`]: a handle on a lake (a local folder or an object-store
//! prefix). Operations are methods returning builders that are awaited:
//!
//! ```no_run
//! # async fn demo() -> berserkr::Result<()> {
//! let lake = berserkr::Lakehouse::open("./lake")?;
//! lake.init().await?;
//! let report = lake.append(["drops/"]).with_keep_going(true).await?;
//! println!("{} rows", report.rows);
//! # Ok(()) }
//! ```
//!
//! See ARCHITECTURE.md for the map of the code and its invariants.

#![warn(missing_docs)]

pub mod catalog;
pub mod config;
pub mod error;
pub mod ingest;
pub mod lake;
pub mod lzo;
pub mod migrate;
pub mod ml;
pub mod ops;
pub mod pipeline;
pub mod serve;
pub mod session;
pub mod store;

pub use catalog::{Catalog, TableId};
pub use config::Config;
pub use error::{Error, Result};
pub use lake::Lakehouse;
