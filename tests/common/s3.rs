//! A real S3-compatible server for the tests: moto's (`tests/tools/s3_server.py`), started once
//! per test process on 127.0.0.1 and stopped when the process exits (the server serves until
//! its standard input closes).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use berserkr::store::StorageOptions;

/// Bucket holding test lakes.
pub const LAKE_BUCKET: &str = "berserkr-lake";
/// Bucket holding test drops.
pub const DROPS_BUCKET: &str = "berserkr-drops";
/// The access key id the tests use: it must never appear in any output.
pub const KEY_ID: &str = "AKIABERSERKRTESTKEY7";
/// The secret the tests use: it must never appear in any output, log or commit.
pub const SECRET: &str = "berserkr-test-secret-0f3a9c77e2";

pub struct S3Server {
    pub port: u16,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The process's S3 server (started on first use).
pub fn server() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let log = std::env::temp_dir().join(format!("berserkr-moto-{}.log", std::process::id()));
        let mut child = Command::new(super::python())
            .arg(super::repo().join("tests/tools/s3_server.py"))
            .args([LAKE_BUCKET, DROPS_BUCKET])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python with moto[server] (make py-deps)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "moto server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        S3Server {
            port,
            _stdin: Mutex::new(child.stdin.take().unwrap()),
            _child: Mutex::new(child),
        }
    })
}

impl S3Server {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Storage options reaching this server.
    pub fn options(&self) -> StorageOptions {
        StorageOptions::new(self.pairs()).unwrap()
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint()),
            ("aws_allow_http", "true".into()),
            ("aws_region", "us-east-1".into()),
            ("aws_access_key_id", KEY_ID.into()),
            ("aws_secret_access_key", SECRET.into()),
        ]
    }

    /// The same settings as `AWS_*` environment variables, for the CLI.
    pub fn env(&self) -> Vec<(String, String)> {
        self.pairs()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect()
    }

    /// A fresh prefix in the lake bucket.
    pub fn lake_url(&self, name: &str) -> String {
        format!(
            "s3://{LAKE_BUCKET}/{name}-{}/",
            uuid::Uuid::new_v4().simple()
        )
    }

    /// Every object under `url` (an s3:// prefix), with its bytes.
    pub async fn objects(&self, url: &str) -> Vec<(String, Vec<u8>)> {
        use deltalake::logstore::object_store::ObjectStoreExt;
        use futures::TryStreamExt;
        let url = url::Url::parse(url).unwrap();
        let (store, prefix) = berserkr::store::store_for(&url, &self.options()).unwrap();
        let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
        let mut out = Vec::new();
        for m in metas {
            let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            out.push((m.location.to_string(), bytes.to_vec()));
        }
        out
    }

    /// Puts `bytes` at `url` (an s3:// object URL).
    pub async fn put(&self, url: &str, bytes: Vec<u8>) {
        use deltalake::logstore::object_store::ObjectStoreExt;
        let url = url::Url::parse(url).unwrap();
        let (store, path) = berserkr::store::store_for(&url, &self.options()).unwrap();
        store.put(&path, bytes.into()).await.unwrap();
    }
}
