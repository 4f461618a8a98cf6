//! `berserkr.toml`: where the lake is, how to reach its store, and how to read the drops of
//! each source.
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
//!
//! [sources."s3://vendor/exports/"]   # drops whose URL starts with this prefix
//! encoding = "windows-1252"
//!
//! [sources."drops/kaggle/"]          # a local path: relative to the working directory
//! encoding = "latin1"                # a WHATWG label: latin1 and iso-8859-1 mean windows-1252
//! ```
//!
//! `[sources."PREFIX"]` applies to every drop whose URL (`s3://bucket/key`, or
//! `file:///absolute/path` for a local file, symbolic links resolved) starts with `PREFIX`; a
//! prefix without `://` is a local path. When several prefixes match, the longest wins. Its
//! `encoding` is the text encoding the drops are written in ([`TextEncoding`]): they are
//! transcoded to UTF-8 as they are read. `lake append --encoding` wins over the file; without
//! either, drops are UTF-8.
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
    /// How to read the drops of each source (`[sources."PREFIX"]`), longest prefix first.
    pub sources: Vec<SourceRule>,
    /// `memory_limit`: the memory the lake's queries may hold, in bytes (see
    /// [`crate::Lakehouse::with_memory_limit`]).
    pub memory_limit: Option<usize>,
}

/// A size in bytes written as a number and a unit: `2GiB`, `512MiB`, `1.5G`, `3000000000`.
/// `K`, `M`, `G`, `T`, with or without `iB` or `B`, are powers of 1024 (`2GB` is `2GiB`, as
/// DataFusion and most tools that size memory read it); no unit (or `B`) is bytes.
pub fn parse_bytes(text: &str) -> Result<usize> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{text:?} is not a size: a number and a unit, like 2GiB, 512MiB, 1.5G or 3000000000"
        ))
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024f64.powi(2),
        "g" | "gb" | "gib" => 1024f64.powi(3),
        "t" | "tb" | "tib" => 1024f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > usize::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as usize)
}

/// A text encoding a drop may be written in: one whose bytes 0x00-0x7F are ASCII, so that the
/// separators, quotes and line ends of CSV and JSON lines are found in the raw bytes (UTF-8,
/// Windows-1252 and the other single-byte encodings, Shift_JIS, EUC-KR, GBK, Big5, ...; not
/// UTF-16 or ISO-2022-JP). Named by WHATWG label (`utf-8`, `windows-1252`, `latin1`, `cp1252`,
/// `iso-8859-15`, ...), as browsers name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextEncoding(&'static encoding_rs::Encoding);

impl TextEncoding {
    /// UTF-8, the default.
    pub const UTF_8: Self = Self(encoding_rs::UTF_8);

    /// The encoding's canonical name (`UTF-8`, `windows-1252`), as lineage records it.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Whether this is UTF-8 (bytes are taken as they are, only checked).
    pub fn is_utf8(self) -> bool {
        self.0 == encoding_rs::UTF_8
    }

    /// The encoding_rs encoding.
    pub fn encoding(self) -> &'static encoding_rs::Encoding {
        self.0
    }
}

impl std::str::FromStr for TextEncoding {
    type Err = Error;

    fn from_str(label: &str) -> Result<Self> {
        let e = encoding_rs::Encoding::for_label_no_replacement(label.trim().as_bytes())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown text encoding {label:?} (WHATWG labels: utf-8, windows-1252, latin1, iso-8859-15, shift_jis, ...)"
                ))
            })?;
        if !e.is_ascii_compatible() {
            return Err(Error::InvalidArgument(format!(
                "text encoding {label:?} ({}) is not ASCII-compatible: drops must be in an encoding whose separators, quotes and line ends are ASCII bytes (re-encode it as UTF-8)",
                e.name()
            )));
        }
        Ok(Self(e))
    }
}

impl std::fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for TextEncoding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// How the drops below one prefix are read (`[sources."PREFIX"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRule {
    /// The prefix as written in the file.
    pub prefix: String,
    /// The prefix as a URL prefix: as written when it has a scheme, else the local path made
    /// absolute (against the working directory, symbolic links resolved when it exists) as a
    /// `file://` URL.
    pub url_prefix: String,
    /// The text encoding of the drops (None: not set here).
    pub encoding: Option<TextEncoding>,
}

impl SourceRule {
    /// Whether this rule applies to the drop at `url`.
    pub fn matches(&self, url: &str) -> bool {
        url.starts_with(&self.url_prefix)
    }
}

impl Config {
    /// The rule for the drop at `url`: the matching `[sources]` entry with the longest prefix.
    pub fn source_rule<'a>(rules: &'a [SourceRule], url: &str) -> Option<&'a SourceRule> {
        rules
            .iter()
            .filter(|r| r.matches(url))
            .max_by_key(|r| r.url_prefix.len())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    lake: Option<String>,
    #[serde(default)]
    storage: BTreeMap<String, toml::Value>,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    memory_limit: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    encoding: Option<String>,
}

/// A source prefix as a URL prefix (see [`SourceRule::url_prefix`]).
fn url_prefix(prefix: &str) -> std::result::Result<String, String> {
    if prefix.contains("://") {
        return Ok(prefix.to_string());
    }
    let path = Path::new(prefix);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("working directory: {e}"))?
            .join(path)
    };
    let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
    let mut url = url::Url::from_file_path(&abs)
        .map_err(|()| format!("{prefix:?} is not a usable local path"))?
        .to_string();
    // A folder written with a trailing slash keeps it: it then matches only what is inside.
    if (prefix.ends_with('/') || prefix.ends_with(std::path::MAIN_SEPARATOR)) && !url.ends_with('/')
    {
        url.push('/');
    }
    Ok(url)
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
        let mut sources = Vec::new();
        for (prefix, src) in raw.sources {
            if prefix.is_empty() {
                return Err(bad(
                    "sources: an empty prefix matches every drop: name one".into()
                ));
            }
            let encoding = src
                .encoding
                .map(|label| {
                    label
                        .parse::<TextEncoding>()
                        .map_err(|e| bad(format!("sources.{prefix:?}.encoding: {e}")))
                })
                .transpose()?;
            let url_prefix = url_prefix(&prefix)
                .map_err(|reason| bad(format!("sources.{prefix:?}: {reason}")))?;
            sources.push(SourceRule {
                prefix,
                url_prefix,
                encoding,
            });
        }
        sources.sort_by_key(|r| std::cmp::Reverse(r.url_prefix.len()));
        let memory_limit = match raw.memory_limit {
            None => None,
            Some(toml::Value::String(s)) => {
                Some(parse_bytes(&s).map_err(|e| bad(format!("memory_limit: {e}")))?)
            }
            Some(toml::Value::Integer(i)) if i > 0 => Some(i as usize),
            Some(_) => {
                return Err(bad(
                    "memory_limit must be a size (\"2GiB\") or a number of bytes".into(),
                ));
            }
        };
        Ok(Self {
            lake: raw.lake,
            storage,
            sources,
            memory_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5 g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("3GB").unwrap(), 3 << 30);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        for bad in ["", "G", "2 parsecs", "-1G", "0", "1e400"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        let c = Config::parse("memory_limit = \"1GiB\"", "t.toml").unwrap();
        assert_eq!(c.memory_limit, Some(1 << 30));
        let c = Config::parse("memory_limit = 1000", "t.toml").unwrap();
        assert_eq!(c.memory_limit, Some(1000));
        let e = Config::parse("memory_limit = \"lots\"", "t.toml").unwrap_err();
        assert!(e.to_string().contains("memory_limit"), "{e}");
    }

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
    fn sources_set_encodings_by_longest_prefix() {
        let c = Config::parse(
            "[sources.\"s3://b/drops/\"]\nencoding = \"latin1\"\n\
             [sources.\"s3://b/drops/utf8/\"]\nencoding = \"utf-8\"\n\
             [sources.\"/data/kaggle/\"]\nencoding = \"cp1252\"\n",
            "t.toml",
        )
        .unwrap();
        let at = |url: &str| {
            Config::source_rule(&c.sources, url)
                .and_then(|r| r.encoding)
                .map(TextEncoding::name)
        };
        // latin1 and cp1252 are WHATWG labels of windows-1252.
        assert_eq!(at("s3://b/drops/2011-12-09.csv.lzo"), Some("windows-1252"));
        assert_eq!(at("s3://b/drops/utf8/2011-12-09.csv.lzo"), Some("UTF-8"));
        assert_eq!(at("s3://b/other/x.csv.lzo"), None);
        assert_eq!(at("file:///data/kaggle/x.csv.lzo"), Some("windows-1252"));
        assert_eq!(at("file:///data/kaggle2/x.csv.lzo"), None);
    }

    #[test]
    fn unknown_or_unreadable_encodings_are_refused() {
        for (label, why) in [("klingon", "unknown text encoding"), ("utf-16le", "ASCII")] {
            let text = format!("[sources.\"s3://b/\"]\nencoding = \"{label}\"\n");
            let e = Config::parse(&text, "t.toml").unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
        let e =
            Config::parse("[sources.\"s3://b/\"]\nencodin = \"utf-8\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("encodin"), "{e}");
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
