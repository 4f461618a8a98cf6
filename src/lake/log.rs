//! A table's commit files (`_delta_log/<version>.json`) read as typed actions: the one reader
//! behind incremental refresh (which files a version added), history (each commit's info),
//! restore (which application transactions moved) and model manifests (a version's commit
//! time).
//!
//! A commit file is newline-delimited JSON, one action per line. Each line is parsed as delta-rs's
//! own [`Action`] (the types its log replay uses); a line that is not a JSON object with exactly
//! one key, or whose known action does not parse, is [`Error::CorruptLog`] naming the table,
//! the version and the line. Actions delta-rs does not know (a newer protocol's) are kept as
//! [`Entry::Other`] with their name, never dropped silently.

use deltalake::kernel::{Action, Add, CommitInfo, Remove, Transaction};
use deltalake::logstore::LogStoreRef;
use futures::{StreamExt, TryStreamExt};

use crate::catalog::TableId;
use crate::error::{Error, Result};

/// One line of a commit file.
#[derive(Debug, Clone)]
pub enum Entry {
    /// An action delta-rs knows.
    Action(Box<Action>),
    /// An action of another kind (its key), kept so nothing is skipped unseen.
    Other(String),
}

/// One commit: its version and its actions, in file order.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The version the commit made.
    pub version: u64,
    /// Its lines.
    pub entries: Vec<Entry>,
}

impl Commit {
    /// The actions delta-rs knows.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Action(a) => Some(a.as_ref()),
            Entry::Other(_) => None,
        })
    }

    /// The commit's `commitInfo`, when it has one.
    pub fn info(&self) -> Option<&CommitInfo> {
        self.actions().find_map(|a| match a {
            Action::CommitInfo(i) => Some(i),
            _ => None,
        })
    }

    /// Files added.
    pub fn adds(&self) -> impl Iterator<Item = &Add> {
        self.actions().filter_map(|a| match a {
            Action::Add(x) => Some(x),
            _ => None,
        })
    }

    /// Files removed.
    pub fn removes(&self) -> impl Iterator<Item = &Remove> {
        self.actions().filter_map(|a| match a {
            Action::Remove(x) => Some(x),
            _ => None,
        })
    }

    /// Application transactions set.
    pub fn txns(&self) -> impl Iterator<Item = &Transaction> {
        self.actions().filter_map(|a| match a {
            Action::Txn(x) => Some(x),
            _ => None,
        })
    }
}

/// Parses the bytes of the commit file of `version` of `table`.
pub fn parse_commit(bytes: &[u8], table: &TableId, version: u64) -> Result<Commit> {
    let corrupt = |line: usize, reason: String| Error::CorruptLog {
        table: table.to_string(),
        version,
        line: Some(line),
        reason,
    };
    let mut entries = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let n = i + 1;
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
            .map_err(|e| corrupt(n, format!("not a JSON object: {e}")))?;
        let key = match object.len() {
            1 => object.keys().next().expect("one key").clone(),
            k => {
                return Err(corrupt(
                    n,
                    format!("an action has one key, this line has {k}"),
                ));
            }
        };
        const KNOWN: [&str; 8] = [
            "metaData",
            "protocol",
            "add",
            "remove",
            "cdc",
            "txn",
            "commitInfo",
            "domainMetadata",
        ];
        if !KNOWN.contains(&key.as_str()) {
            entries.push(Entry::Other(key));
            continue;
        }
        let action: Action = serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|e| corrupt(n, format!("not a valid {key} action: {e}")))?;
        entries.push(Entry::Action(Box::new(action)));
    }
    Ok(Commit { version, entries })
}

/// The commit of `version`, or `None` when the log no longer holds it (log retention) or never
/// did.
pub async fn read_commit(
    log_store: &LogStoreRef,
    table: &TableId,
    version: u64,
) -> Result<Option<Commit>> {
    let bytes = log_store
        .read_commit_entry(version)
        .await
        .map_err(|e| Error::delta(table, e))?;
    bytes.map(|b| parse_commit(&b, table, version)).transpose()
}

/// The commits `from..=to`, oldest first (`None` for a version the log no longer holds). Commit
/// files are read 16 at a time: one GET each on an object store.
pub async fn read_commits(
    log_store: &LogStoreRef,
    table: &TableId,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, Option<Commit>)>> {
    if from > to {
        return Ok(Vec::new());
    }
    futures::stream::iter(from..=to)
        .map(|v| async move { Ok((v, read_commit(log_store, table, v).await?)) })
        .buffered(16)
        .try_collect()
        .await
}

/// The commit of `version`, which must be in the log.
pub async fn require_commit(
    log_store: &LogStoreRef,
    table: &TableId,
    version: u64,
) -> Result<Commit> {
    read_commit(log_store, table, version)
        .await?
        .ok_or_else(|| Error::CorruptLog {
            table: table.to_string(),
            version,
            line: None,
            reason: "the commit is missing from the log (cleaned up by log retention?)".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> TableId {
        "bronze.online_retail".parse().unwrap()
    }

    #[test]
    fn commits_parse_into_typed_actions() {
        let text = br#"{"commitInfo":{"timestamp":1700000000000,"operation":"WRITE","berserkr.drop":{"rows":3}}}
{"txn":{"appId":"berserkr.drop.ab","version":1}}
{"add":{"path":"a.parquet","partitionValues":{},"size":10,"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":3}"}}
{"checkpointMetadata":{"version":3}}

"#;
        let c = parse_commit(text, &id(), 7).unwrap();
        assert_eq!(c.version, 7);
        assert_eq!(c.info().unwrap().timestamp, Some(1_700_000_000_000));
        assert_eq!(c.info().unwrap().info["berserkr.drop"]["rows"], 3);
        assert_eq!(c.txns().next().unwrap().app_id, "berserkr.drop.ab");
        assert_eq!(c.adds().next().unwrap().path, "a.parquet");
        assert!(matches!(&c.entries[3], Entry::Other(k) if k == "checkpointMetadata"));
    }

    #[test]
    fn a_corrupt_line_names_table_version_and_line() {
        for (text, says) in [
            (
                &b"{\"txn\":{\"appId\":\"a\",\"version\":1}}\nnot json\n"[..],
                "line 2",
            ),
            (b"[1,2]\n", "line 1"),
            (b"{\"add\":{\"path\":3}}\n", "not a valid add action"),
            (b"{\"txn\":{},\"add\":{}}\n", "one key"),
        ] {
            let e = parse_commit(text, &id(), 4).unwrap_err();
            assert!(matches!(e, Error::CorruptLog { version: 4, .. }), "{e}");
            let shown = e.to_string();
            assert!(
                shown.contains("bronze.online_retail version 4") && shown.contains(says),
                "{shown}"
            );
        }
    }
}
