//! Where the bytes live: object stores for the lake and for drops, and the storage options that
//! reach them.
//!
//! delta-rs knows `file://` and `memory://` on its own. berserkr registers `s3://` and `s3a://`
//! with delta-rs's factory registries once per process ([`register`]): the object store is
//! object_store's own `AmazonS3` (configured from the `AWS_*` environment variables, then from
//! the explicit storage options), and the log store is delta-rs's default one, whose commits are
//! `PUT` with `If-None-Match: *`: the object store refuses the second writer of a version, so
//! concurrent writers cannot overwrite each other's commits without DynamoDB or a lock service
//! (S3 has had conditional writes since August 2024; MinIO and moto implement them too).
//!
//! Every request to S3 is retried by object_store on a 5xx answer, a timeout or a dropped
//! connection, with exponential backoff, within bounds berserkr sets deliberately
//! ([`RETRY_DEFAULTS`]): an unreachable or failing store gives a clear error in about a minute
//! rather than object_store's three, and a short outage (a restart, a burst of 503 SlowDown) is
//! ridden out. Each bound is a storage option (`max_retries`, `retry_timeout`,
//! `backoff_config.init_backoff`, `backoff_config.max_backoff`, `backoff_config.base`: the names
//! delta-rs gives them; `timeout`, `connect_timeout`: object_store's). A commit whose answer was
//! lost is safe to retry: it is a `PUT` with `If-None-Match: *`, so a retry that finds the
//! version written reports a conflict, and the committer then finds its own transaction there.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Once};

use deltalake::DeltaResult;
use deltalake::logstore::object_store::ObjectStore;
use deltalake::logstore::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use url::Url;

use crate::error::{Error, Result};

/// berserkr's retry and timeout settings for S3 requests, as storage options (key, value); any
/// of them given explicitly wins. object_store's own defaults are 10 retries within 3 minutes:
/// berserkr gives up after 1 minute (a stopped store is reported while someone still watches),
/// waits 5 s to connect and 30 s for an answer (a 100 MiB part at 30 Mbit/s). object_store
/// draws each wait at random between `init_backoff` and `base` times the previous one (capped at
/// `max_backoff`), so ten retries wait at least ten times `init_backoff`: from 300 ms, a store
/// stopped for 3 s is always ridden out (a restart), and with a base of 3 the waits typically
/// grow to the 5 s cap, so an outage of about half a minute usually is too. (From object_store's
/// 100 ms and base 2, ten refused connections can be spent in about a second.)
pub const RETRY_DEFAULTS: [(&str, &str); 7] = [
    ("max_retries", "10"),
    ("retry_timeout", "60s"),
    ("backoff_config.init_backoff", "300ms"),
    ("backoff_config.max_backoff", "5s"),
    ("backoff_config.base", "3"),
    ("connect_timeout", "5s"),
    ("timeout", "30s"),
];

/// The retry keys (delta-rs's names), which object_store's S3 builder takes as a `RetryConfig`.
const RETRY_KEYS: [&str; 5] = [
    "max_retries",
    "retry_timeout",
    "backoff_config.init_backoff",
    "backoff_config.max_backoff",
    "backoff_config.base",
];

fn parse_duration(key: &str, v: &str) -> std::result::Result<std::time::Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("storage option {key} = {v:?}: {e}"))
}

/// The retry configuration from `options` (retry keys only), berserkr's defaults filling in.
fn retry_config(
    options: &HashMap<String, String>,
) -> std::result::Result<deltalake::logstore::object_store::RetryConfig, String> {
    let get = |key: &str| -> &str {
        options.get(key).map(String::as_str).unwrap_or_else(|| {
            RETRY_DEFAULTS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .expect("every retry key has a default")
        })
    };
    use deltalake::logstore::object_store::{BackoffConfig, RetryConfig};
    Ok(RetryConfig {
        max_retries: get("max_retries")
            .parse()
            .map_err(|e| format!("storage option max_retries: {e}"))?,
        retry_timeout: parse_duration("retry_timeout", get("retry_timeout"))?,
        backoff: BackoffConfig {
            init_backoff: parse_duration(
                "backoff_config.init_backoff",
                get("backoff_config.init_backoff"),
            )?,
            max_backoff: parse_duration(
                "backoff_config.max_backoff",
                get("backoff_config.max_backoff"),
            )?,
            base: get("backoff_config.base")
                .parse()
                .map_err(|e| format!("storage option backoff_config.base: {e}"))?,
        },
    })
}

/// Registers the S3 object-store and log-store factories with delta-rs (idempotent).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3", "s3a"] {
            let url = Url::parse(&format!("{scheme}://")).expect("a scheme is a URL");
            object_store_factories().insert(url.clone(), Arc::new(S3Factory));
            logstore_factories().insert(url, Arc::new(S3Factory));
        }
    });
}

/// Object-store options (credentials, endpoint, region, ...): object_store's own keys, such as
/// `aws_endpoint`, `aws_access_key_id`, `aws_allow_http`. Values that are secrets are never shown:
/// the `Debug` form of this type redacts them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StorageOptions(BTreeMap<String, String>);

impl StorageOptions {
    /// Options from key/value pairs; every key must be one object_store knows for S3, or one of
    /// the retry keys (see the module's documentation).
    pub fn new<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let k: String = k.into();
            let key = k.to_ascii_lowercase();
            if AmazonS3ConfigKey::from_str(&key).is_err() && !RETRY_KEYS.contains(&key.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "unknown storage option {k:?} (expected an object_store S3 key such as \
                     aws_endpoint, aws_region, aws_access_key_id, aws_allow_http, or a retry \
                     setting: {})",
                    RETRY_KEYS.join(", ")
                )));
            }
            map.insert(key, v.into());
        }
        retry_config(&map.clone().into_iter().collect()).map_err(Error::InvalidArgument)?;
        Ok(Self(map))
    }

    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The options as delta-rs takes them.
    pub fn to_map(&self) -> HashMap<String, String> {
        self.0.clone().into_iter().collect()
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if is_secret(k) {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// True for option keys whose values are credentials.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "token", "password", "key_id", "customer_key"]
        .iter()
        .any(|s| k.contains(s))
}

/// An object store for `url` (its bucket's root) and the path of `url` inside it.
pub fn store_for(url: &Url, options: &StorageOptions) -> Result<(ObjectStoreRef, Path)> {
    register();
    match url.scheme() {
        "file" => {
            let store: ObjectStoreRef =
                Arc::new(deltalake::logstore::object_store::local::LocalFileSystem::new());
            let path = url
                .to_file_path()
                .ok()
                .and_then(|p| Path::from_absolute_path(p).ok())
                .ok_or_else(|| Error::InvalidArgument(format!("{url}: not a local path")))?;
            Ok((store, path))
        }
        "s3" | "s3a" => s3_store(url, &options.to_map()).map_err(|e| Error::Store {
            location: url.to_string(),
            source: Box::new(e),
        }),
        other => Err(Error::InvalidArgument(format!(
            "{url}: unsupported scheme {other}://"
        ))),
    }
}

fn s3_store(
    url: &Url,
    options: &HashMap<String, String>,
) -> std::result::Result<(ObjectStoreRef, Path), deltalake::DeltaTableError> {
    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
    for (k, v) in RETRY_DEFAULTS {
        if let Ok(key) = AmazonS3ConfigKey::from_str(k) {
            builder = builder.with_config(key, v);
        }
    }
    for (k, v) in options {
        if let Ok(key) = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()) {
            builder = builder.with_config(key, v);
        }
    }
    let options: HashMap<String, String> = options
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let retry = retry_config(&options).map_err(deltalake::DeltaTableError::Generic)?;
    builder = builder.with_retry(retry);
    let store = builder.build()?;
    let path = Path::from_url_path(url.path())?;
    Ok((Arc::new(store) as Arc<dyn ObjectStore>, path))
}

/// delta-rs factory for `s3://` object stores and their (default, conditional-put) log stores.
#[derive(Debug)]
struct S3Factory;

impl ObjectStoreFactory for S3Factory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        s3_store(url, &config.raw)
    }
}

impl LogStoreFactory for S3Factory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_unknown_keys_refused() {
        let o = StorageOptions::new([
            ("AWS_SECRET_ACCESS_KEY", "hunter2-very-secret"),
            ("aws_access_key_id", "AKIDSECRET"),
            ("aws_endpoint", "http://127.0.0.1:9000"),
        ])
        .unwrap();
        let shown = format!("{o:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("AKIDSECRET"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:9000"), "{shown}");
        let e = StorageOptions::new([("aws_endpiont", "x")]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains("aws_endpiont"), "{e}");
    }

    #[test]
    fn retries_have_deliberate_defaults_and_can_be_overridden() {
        let none = retry_config(&HashMap::new()).unwrap();
        assert_eq!(none.max_retries, 10);
        assert_eq!(none.retry_timeout, std::time::Duration::from_secs(60));
        assert_eq!(
            none.backoff.init_backoff,
            std::time::Duration::from_millis(300)
        );
        assert_eq!(none.backoff.max_backoff, std::time::Duration::from_secs(5));
        let o = StorageOptions::new([("max_retries", "2"), ("RETRY_TIMEOUT", "1500ms")]).unwrap();
        let r = retry_config(&o.to_map()).unwrap();
        assert_eq!(r.max_retries, 2);
        assert_eq!(r.retry_timeout, std::time::Duration::from_millis(1500));
        let e = StorageOptions::new([("retry_timeout", "soon")]).unwrap_err();
        assert!(e.to_string().contains("retry_timeout"), "{e}");
        // object_store's own client keys pass through as they are.
        StorageOptions::new([("timeout", "2s"), ("connect_timeout", "1s")]).unwrap();
    }

    #[test]
    fn s3_urls_map_to_bucket_and_prefix() {
        let o = StorageOptions::new([
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "a"),
            ("aws_secret_access_key", "b"),
        ])
        .unwrap();
        let (_, path) = store_for(&Url::parse("s3://bucket/drops/day.lzo").unwrap(), &o).unwrap();
        assert_eq!(path.as_ref(), "drops/day.lzo");
    }
}
