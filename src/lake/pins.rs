//! Pins: the table snapshots that trained models need, which table care must keep readable.
//!
//! A pin is a small JSON file beside the tables (`<lake>/_berserkr/pins/<model id>.json`):
//! training writes one, vacuum reads them all and keeps every pinned version's files.

use deltalake::Path as ObjectPath;
use deltalake::logstore::object_store::ObjectStoreExt as _;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::Lakehouse;
use crate::error::{Error, Result};

/// Where pins live, under the lake root.
pub const PINS_PREFIX: &str = "_berserkr/pins";

/// A snapshot a model was trained on, which table care must keep readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The model.
    pub model_id: String,
    /// The table.
    pub table: String,
    /// Its version.
    pub version: u64,
}

impl Lakehouse {
    /// Records `pin` (replacing the model's earlier pin, if any).
    pub async fn pin(&self, pin: &Pin) -> Result<()> {
        let bytes = serde_json::to_vec(pin).map_err(|e| Error::serialize("a pin", e))?;
        let location = ObjectPath::from(format!("{PINS_PREFIX}/{}.json", pin.model_id));
        self.root_store()?
            .put(&location, bytes.into())
            .await
            .map_err(|e| Error::store(format!("{}{location}", self.root()), e))?;
        Ok(())
    }

    /// Every pin recorded in the lake, by model id.
    pub async fn pins(&self) -> Result<Vec<Pin>> {
        let store = self.root_store()?;
        let prefix = ObjectPath::from(PINS_PREFIX);
        let metas: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| Error::store(format!("{}{prefix}", self.root()), e))?;
        let mut out = Vec::new();
        for meta in metas {
            let loc = format!("{}{}", self.root(), meta.location);
            let bytes = store
                .get(&meta.location)
                .await
                .map_err(|e| Error::store(&loc, e))?
                .bytes()
                .await
                .map_err(|e| Error::store(&loc, e))?;
            out.push(serde_json::from_slice(&bytes).map_err(|e| Error::Catalog {
                file: loc,
                message: format!("not a pin: {e}"),
            })?);
        }
        out.sort_by(|a: &Pin, b| a.model_id.cmp(&b.model_id));
        Ok(out)
    }
}
