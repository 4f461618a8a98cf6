//! Where drops come from: local files, folders and glob patterns, or object-store URLs
//! (`s3://bucket/drops/2011-12-*.csv.lzo`), read as a stream without a temporary copy.

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};

use bytes::Bytes;
use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use futures::StreamExt;
use url::Url;

use crate::error::{Error, Result};
use crate::store::{StorageOptions, store_for};

/// One drop to read: its URL, its size, and how to open it.
#[derive(Clone)]
pub struct DropSource {
    /// The drop's URL (`file:///…` or `s3://…`).
    pub url: String,
    /// Its size in bytes.
    pub bytes: u64,
    loc: Loc,
}

#[derive(Clone)]
enum Loc {
    Local(PathBuf),
    /// `etag`: the version listed, so every read of the drop (hash, then parse) sees the same
    /// bytes; a drop replaced meanwhile fails instead of landing under the wrong hash.
    Remote {
        store: ObjectStoreRef,
        path: Path,
        etag: Option<String>,
    },
}

impl std::fmt::Debug for DropSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropSource")
            .field("url", &self.url)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl DropSource {
    /// A blocking reader over the drop's bytes. A remote drop is fetched by a task on the current
    /// tokio runtime and handed over in the chunks the store returns (a few in flight), so it is
    /// streamed, never copied to disk or held whole. Must be called within a tokio runtime; the
    /// reader itself is meant for a blocking thread.
    pub fn reader(&self) -> Result<Box<dyn Read + Send>> {
        match &self.loc {
            Loc::Local(p) => {
                let f = std::fs::File::open(p).map_err(|e| Error::io(p.display(), e))?;
                Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
            }
            Loc::Remote { store, path, etag } => {
                let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
                let (store, path) = (store.clone(), path.clone());
                let options = GetOptions {
                    if_match: etag.clone(),
                    ..Default::default()
                };
                tokio::spawn(async move {
                    let mut stream = match store.get_opts(&path, options).await {
                        Ok(r) => r.into_stream(),
                        Err(e) => {
                            let _ = tx.send(Err(std::io::Error::other(e))).await;
                            return;
                        }
                    };
                    while let Some(chunk) = stream.next().await {
                        let failed = chunk.is_err();
                        if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() || failed {
                            return;
                        }
                    }
                });
                Ok(Box::new(ChannelReader {
                    rx,
                    current: Bytes::new(),
                }))
            }
        }
    }
}

/// A `Read` over chunks arriving on a channel from an async task.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Expands files, folders (their `*.lzo` files), glob patterns and object-store URLs (a key, a
/// prefix ending in `/`, or a pattern) into drops, sorted within each source, without duplicates.
pub async fn resolve_sources(
    sources: &[String],
    options: &StorageOptions,
) -> Result<Vec<DropSource>> {
    let mut out: Vec<DropSource> = Vec::new();
    for s in sources {
        if s.contains("://") && !s.starts_with("file://") {
            out.extend(resolve_remote(s, options).await?);
        } else {
            let s = s.strip_prefix("file://").unwrap_or(s).to_string();
            let found = tokio::task::spawn_blocking(move || resolve_local(&s))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
            out.extend(found);
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|d| seen.insert(d.url.clone()));
    Ok(out)
}

fn resolve_local(s: &str) -> Result<Vec<DropSource>> {
    let p = FsPath::new(s);
    let mut paths: Vec<PathBuf> = if s.contains(['*', '?', '[']) {
        let matched: Vec<PathBuf> = glob::glob(s)
            .map_err(|e| Error::InvalidArgument(format!("{s}: bad pattern: {e}")))?
            .filter_map(|r| r.ok())
            .filter(|p| p.is_file())
            .collect();
        if matched.is_empty() {
            return Err(Error::NotFound {
                what: format!("no drops match {s}"),
            });
        }
        matched
    } else if p.is_dir() {
        let found: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| Error::io(p.display(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "lzo"))
            .collect();
        if found.is_empty() {
            return Err(Error::NotFound {
                what: format!("no .lzo drops in {s}"),
            });
        }
        found
    } else {
        std::fs::metadata(p).map_err(|e| Error::io(p.display(), e))?;
        vec![p.to_path_buf()]
    };
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let abs = std::fs::canonicalize(&p).map_err(|e| Error::io(p.display(), e))?;
            let bytes = std::fs::metadata(&abs)
                .map_err(|e| Error::io(abs.display(), e))?
                .len();
            let url = Url::from_file_path(&abs)
                .map(|u| u.to_string())
                .unwrap_or_else(|()| abs.display().to_string());
            Ok(DropSource {
                url,
                bytes,
                loc: Loc::Local(abs),
            })
        })
        .collect()
}

async fn resolve_remote(s: &str, options: &StorageOptions) -> Result<Vec<DropSource>> {
    let url = Url::parse(s).map_err(|e| Error::InvalidArgument(format!("{s}: {e}")))?;
    let bucket_url = {
        let mut u = url.clone();
        u.set_path("/");
        u
    };
    let (store, _) = store_for(&url, options)?;
    let store_err = |e: deltalake::logstore::object_store::Error| Error::Store {
        location: s.to_string(),
        source: Box::new(e),
    };
    // The key, percent-decoded (a pattern's `[`, `*` come back as typed).
    let key = percent_decode(url.path().trim_start_matches('/'));
    let source = |path: Path, bytes: u64, etag: Option<String>| DropSource {
        url: bucket_url
            .join(path.as_ref())
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("{bucket_url}{path}")),
        bytes,
        loc: Loc::Remote {
            store: store.clone(),
            path,
            etag,
        },
    };
    let list = |prefix: Option<Path>| {
        let store = store.clone();
        async move {
            let mut found: Vec<(Path, u64, Option<String>)> = Vec::new();
            let mut stream = store.list(prefix.as_ref());
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(store_err)?;
                found.push((meta.location, meta.size, meta.e_tag));
            }
            found.sort();
            Ok::<_, Error>(found)
        }
    };
    let mut out = Vec::new();
    if key.contains(['*', '?', '[']) {
        let pattern = glob::Pattern::new(&key)
            .map_err(|e| Error::InvalidArgument(format!("{s}: bad pattern: {e}")))?;
        let literal: Vec<&str> = key
            .split('/')
            .take_while(|c| !c.contains(['*', '?', '[']))
            .collect();
        let prefix = (!literal.is_empty()).then(|| Path::from(literal.join("/")));
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        for (path, size, etag) in list(prefix).await? {
            if pattern.matches_with(path.as_ref(), opts) {
                out.push(source(path, size, etag));
            }
        }
        if out.is_empty() {
            return Err(Error::NotFound {
                what: format!("no drops match {s}"),
            });
        }
    } else if key.is_empty() || key.ends_with('/') {
        let prefix = (!key.is_empty()).then(|| Path::from(key.trim_end_matches('/')));
        for (path, size, etag) in list(prefix).await? {
            if path.as_ref().ends_with(".lzo") {
                out.push(source(path, size, etag));
            }
        }
        if out.is_empty() {
            return Err(Error::NotFound {
                what: format!("no .lzo drops under {s}"),
            });
        }
    } else {
        let path = Path::from(key.as_str());
        let meta = store.head(&path).await.map_err(store_err)?;
        out.push(source(path, meta.size, meta.e_tag));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a drop to its end on the calling (blocking) thread and returns the SHA-256 of its bytes.
pub fn sha256(reader: &mut dyn Read, url: &str) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::io(url, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_plain_text() {
        assert_eq!(
            percent_decode("drops/2011-12-%2A.lzo"),
            "drops/2011-12-*.lzo"
        );
        assert_eq!(percent_decode("a%5B0-9%5D"), "a[0-9]");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("x%zz"), "x%zz");
    }

    #[test]
    fn percent_decoding_never_splits_a_character() {
        assert_eq!(percent_decode("%é1"), "%é1");
        assert_eq!(percent_decode("a%4"), "a%4");
    }

    /// Every read of a remote drop sees the version that was listed: a drop replaced in between
    /// fails to read instead of landing under another drop's hash.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_remote_drop_replaced_meanwhile_fails_to_read() {
        use deltalake::logstore::object_store::memory::InMemory;
        let store: ObjectStoreRef = std::sync::Arc::new(InMemory::new());
        let path = Path::from("drops/day.csv.lzo");
        store.put(&path, b"first".to_vec().into()).await.unwrap();
        let meta = store.head(&path).await.unwrap();
        let drop = DropSource {
            url: "s3://b/drops/day.csv.lzo".into(),
            bytes: meta.size,
            loc: Loc::Remote {
                store: store.clone(),
                path: path.clone(),
                etag: meta.e_tag.clone(),
            },
        };
        let read = |d: DropSource| async move {
            let mut r = d.reader().unwrap();
            tokio::task::spawn_blocking(move || {
                let mut v = Vec::new();
                r.read_to_end(&mut v).map(|_| v)
            })
            .await
            .unwrap()
        };
        assert_eq!(read(drop.clone()).await.unwrap(), b"first");
        store.put(&path, b"second".to_vec().into()).await.unwrap();
        let e = read(drop).await.unwrap_err();
        assert!(e.to_string().to_lowercase().contains("precondition"), "{e}");
    }
}
