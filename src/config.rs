//! `berserkr.toml`: where the lake is and how to reach its store.
//!
//! ```toml
//! lake = "s3://retail/lake"
//!
//! [storage]                       # object_store's S3 keys; they override AWS_* variables
//! aws_endpoint = "http://127.0.0.1:9000"
//! aws_allow_http = "true"
//! aws_region = "us-east-1"
//! aws_access_key_id = "minio"
//! aws_secret_access_key = "minio123"
//! ```
//!
//! Secrets in the file never reach an error message: a syntax error is reported by line and
//! column only, never with the offending text.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::store::StorageOptions;

/// Name of the configuration file looked for in the working directory.
pub const FILE_NAME: &str = "berserkr.toml";

/// The contents of a `berserkr.toml`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The lake location, when the file names one.
    pub lake: Option<String>,
    /// Object-store options for the lake and for drops read from object stores.
    pub storage: StorageOptions,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    lake: Option<String>,
    #[serde(default)]
    storage: BTreeMap<String, toml::Value>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            file: origin.to_string(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    let col = s.start - text[..s.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" at line {line}, column {col}")
                })
                .unwrap_or_default();
            bad(format!("{}{at}", e.message().trim_end()))
        })?;
        let mut pairs = Vec::new();
        for (k, v) in raw.storage {
            let v = match v {
                toml::Value::String(s) => s,
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Integer(i) => i.to_string(),
                _ => {
                    return Err(bad(format!(
                        "storage.{k} must be a string, boolean or integer"
                    )));
                }
            };
            pairs.push((k, v));
        }
        let storage = StorageOptions::new(pairs).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            lake: raw.lake,
            storage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lake_and_storage() {
        let c = Config::parse(
            "lake = \"s3://b/p\"\n[storage]\naws_allow_http = true\nAWS_ENDPOINT = \"http://h:1\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.lake.as_deref(), Some("s3://b/p"));
        let m = c.storage.to_map();
        assert_eq!(m["aws_allow_http"], "true");
        assert_eq!(m["aws_endpoint"], "http://h:1");
    }

    #[test]
    fn errors_never_quote_the_file() {
        let text = "[storage]\naws_secret_access_key = \"s3cr3t-value\" oops\n";
        let e = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("t.toml") && e.contains("line 2"), "{e}");
        let e = Config::parse(
            "[storage]\naws_secret_acces_key = \"s3cr3t-value\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("aws_secret_acces_key"), "{e}");
        let e = Config::parse("lak = 1\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lak"), "{e}");
    }
}
