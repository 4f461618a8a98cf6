//! Symlink-format manifests: Delta's own integration for engines without a Delta reader (Presto,
//! Trino's Hive connector, Athena, Redshift Spectrum, BigQuery).
//!
//! A manifest is a text file listing, one per line, the absolute URIs of the data files of one
//! table snapshot: `<table>/_symlink_format_manifest/manifest` for a table without partitions,
//! `<table>/_symlink_format_manifest/<col>=<value>/.../manifest` for each partition of a
//! partitioned one (the directory named as Hive names partitions, so `MSCK REPAIR TABLE` finds
//! them). Such an engine reads exactly the listed files, never a file a later commit removed.
//!
//! Manifests are derived from a snapshot's file list in the log and nothing else, so they never
//! list a file the snapshot does not hold. Each partition's manifest is one object put, which is
//! atomic on object stores and on local disks (written beside, then renamed); new and changed
//! partitions are written before the manifests of partitions that emptied are deleted. After
//! writing, the table's latest version is checked: when another writer committed meanwhile,
//! the manifests are written again from the newer snapshot, so concurrent writers converge on
//! the latest one. berserkr writes them after every commit of a table whose property
//! [`MANIFEST_PROPERTY`] is `true` (Delta's own property name), and on request
//! (`berserkr lake manifest`).

use std::collections::{BTreeMap, BTreeSet};

use deltalake::DeltaTable;
use deltalake::logstore::LogStoreRef;
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::logstore::object_store::path::Path;
use deltalake::table::state::DeltaTableState;
use futures::TryStreamExt;
use serde::Serialize;

use crate::catalog::TableId;
use crate::error::{Error, Result};

/// The table property that keeps a table's manifests current after every commit.
pub const MANIFEST_PROPERTY: &str = "delta.compatibility.symlinkFormatManifest.enabled";

/// The folder of a table holding its manifests.
pub const MANIFEST_DIR: &str = "_symlink_format_manifest";

/// The partition directory name Hive gives a NULL partition value.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Rounds of re-writing when other writers keep committing meanwhile.
const MAX_ROUNDS: usize = 8;

/// What writing a table's manifests did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestReport {
    /// The table.
    pub table: String,
    /// The snapshot the manifests list.
    pub version: u64,
    /// Manifests written (one per partition, or one).
    pub manifests: usize,
    /// Data files listed.
    pub files: usize,
    /// Manifests deleted: partitions the snapshot no longer has.
    pub removed: usize,
}

/// True when a table's configuration asks for manifests.
pub fn enabled(state: &DeltaTableState) -> bool {
    state
        .metadata()
        .configuration()
        .get(MANIFEST_PROPERTY)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The manifests of one snapshot: the manifest's path below the table root (`partition/manifest`),
/// and the absolute URIs it lists, sorted.
pub fn manifests_of(
    state: &DeltaTableState,
    table_root: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    let partition_columns = state.metadata().partition_columns().to_vec();
    let root = absolute_root(table_root);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in state.log_data().iter() {
        let values = f.partition_values_map();
        let dir: Vec<String> = partition_columns
            .iter()
            .map(|c| {
                let v = values.get(c).cloned().flatten();
                format!(
                    "{}={}",
                    hive_escape(c),
                    v.as_deref().map_or(HIVE_NULL.to_string(), hive_escape)
                )
            })
            .collect();
        let key = if dir.is_empty() {
            "manifest".to_string()
        } else {
            format!("{}/manifest", dir.join("/"))
        };
        out.entry(key)
            .or_default()
            .insert(format!("{root}{}", f.path()));
    }
    out
}

/// Writes the manifests of `state` (a snapshot of the table `id` whose log store is
/// `log_store`), then again from the latest snapshot while other writers moved the table on.
pub async fn write(
    id: &TableId,
    log_store: &LogStoreRef,
    state: &DeltaTableState,
) -> Result<ManifestReport> {
    let mut report = write_once(id, log_store, state).await?;
    for _ in 0..MAX_ROUNDS {
        let latest = log_store
            .get_latest_version(report.version)
            .await
            .map_err(|e| Error::delta(id, e))?;
        if latest <= report.version {
            return Ok(report);
        }
        let mut table = DeltaTable::new(log_store.clone());
        table.load().await.map_err(|e| Error::delta(id, e))?;
        let newer = table.snapshot().map_err(|e| Error::delta(id, e))?;
        report = write_once(id, log_store, newer).await?;
    }
    Ok(report)
}

/// Writes the manifests of `state` when the table asks for them (see [`MANIFEST_PROPERTY`]).
pub async fn write_if_enabled(
    id: &TableId,
    log_store: &LogStoreRef,
    state: &DeltaTableState,
) -> Result<Option<ManifestReport>> {
    if !enabled(state) {
        return Ok(None);
    }
    write(id, log_store, state)
        .await
        .map(Some)
        .map_err(|e| Error::Manifest {
            table: id.to_string(),
            version: state.version(),
            source: Box::new(e),
        })
}

async fn write_once(
    id: &TableId,
    log_store: &LogStoreRef,
    state: &DeltaTableState,
) -> Result<ManifestReport> {
    let store = log_store.object_store(None);
    let root = log_store.root_url().to_string();
    let wanted = manifests_of(state, &root);
    let at = |p: &Path| format!("{}/{p}", root.trim_end_matches('/'));
    for (key, files) in &wanted {
        // The key is already the object's name (Hive-escaped): taken verbatim, not encoded again.
        let path = Path::parse(format!("{MANIFEST_DIR}/{key}"))
            .map_err(|e| Error::store(format!("{root}/{MANIFEST_DIR}/{key}"), e))?;
        let mut text = String::new();
        for f in files {
            text.push_str(f);
            text.push('\n');
        }
        store
            .put(&path, text.into_bytes().into())
            .await
            .map_err(|e| Error::store(at(&path), e))?;
    }
    let prefix = Path::from(MANIFEST_DIR);
    let existing: Vec<Path> = store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| Error::store(at(&prefix), e))?;
    let mut removed = 0;
    for path in existing {
        let key = path
            .as_ref()
            .strip_prefix(&format!("{MANIFEST_DIR}/"))
            .unwrap_or(path.as_ref());
        if !wanted.contains_key(key) {
            store
                .delete(&path)
                .await
                .map_err(|e| Error::store(at(&path), e))?;
            removed += 1;
        }
    }
    Ok(ManifestReport {
        table: id.to_string(),
        version: state.version(),
        manifests: wanted.len(),
        files: wanted.values().map(BTreeSet::len).sum(),
        removed,
    })
}

/// The manifests a table's store holds now: path below the table root and listed URIs.
pub async fn read(id: &TableId, log_store: &LogStoreRef) -> Result<BTreeMap<String, Vec<String>>> {
    let store = log_store.object_store(None);
    let root = log_store.root_url().to_string();
    let at = |p: &Path| format!("{}/{p}", root.trim_end_matches('/'));
    let prefix = Path::from(MANIFEST_DIR);
    let paths: Vec<Path> = store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| Error::store(at(&prefix), e))?;
    let mut out = BTreeMap::new();
    for path in paths {
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| Error::store(at(&path), e))?
            .bytes()
            .await
            .map_err(|e| Error::store(at(&path), e))?;
        let text = String::from_utf8_lossy(&bytes);
        let key = path
            .as_ref()
            .strip_prefix(&format!("{MANIFEST_DIR}/"))
            .unwrap_or(path.as_ref());
        out.insert(
            key.to_string(),
            text.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        );
    }
    let _ = id;
    Ok(out)
}

/// The table root as the prefix of absolute data-file URIs in a manifest: the URL with its path
/// percent-decoded (readers take each line as a Hadoop path: `s3://bucket/key`, `file:///path`),
/// ending with `/`.
fn absolute_root(table_root: &str) -> String {
    let decoded = decode(table_root);
    if decoded.ends_with('/') {
        decoded
    } else {
        format!("{decoded}/")
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A partition column or value as Hive (and Spark, and Delta's manifest writer) writes it in a
/// directory name: `%XX` for the characters a path or a `key=value` pair cannot hold.
pub fn hive_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let escape = matches!(
            c,
            '\u{01}'
                ..='\u{1F}'
                    | '"'
                    | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '\u{7F}'
                    | '{'
                    | '['
                    | ']'
                    | '^'
        );
        if escape {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_are_escaped_as_hive_does() {
        assert_eq!(
            hive_escape("2011-09-01 00:00:00"),
            "2011-09-01 00%3A00%3A00"
        );
        assert_eq!(hive_escape("a/b=c%"), "a%2Fb%3Dc%25");
        assert_eq!(hive_escape("plain-value_1"), "plain-value_1");
    }

    #[test]
    fn roots_are_decoded_hadoop_paths() {
        assert_eq!(
            absolute_root("file:///tmp/my%20lake/gold/t"),
            "file:///tmp/my lake/gold/t/"
        );
        assert_eq!(absolute_root("s3://b/lake/gold/t/"), "s3://b/lake/gold/t/");
    }
}
