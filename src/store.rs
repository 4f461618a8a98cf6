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
    /// Options from key/value pairs; every key must be one object_store knows for S3.
    pub fn new<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let k: String = k.into();
            let key = k.to_ascii_lowercase();
            if AmazonS3ConfigKey::from_str(&key).is_err() {
                return Err(Error::InvalidArgument(format!(
                    "unknown storage option {k:?} (expected an object_store S3 key such as \
                     aws_endpoint, aws_region, aws_access_key_id, aws_allow_http)"
                )));
            }
            map.insert(key, v.into());
        }
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
    for (k, v) in options {
        if let Ok(key) = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()) {
            builder = builder.with_config(key, v);
        }
    }
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
