//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub mod s3;

/// Runs Debian's `lzop` with `args`, feeding `input` on stdin, and returns stdout.
/// Panics with a clear message when lzop is missing: CI installs it (`make test` does).
pub fn lzop(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("lzop")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Debian's lzop must be installed (apt-get install lzop; `make test` does it)");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "lzop {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Compresses `input` with `lzop -c ARGS` reading stdin.
pub fn lzop_compress(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut a = vec!["-c"];
    a.extend_from_slice(args);
    lzop(&a, input)
}

/// Decodes a whole lzop byte string with berserkr's reader.
pub fn decode(bytes: &[u8]) -> Result<Vec<u8>, berserkr::lzo::LzoError> {
    let mut out = Vec::new();
    for b in berserkr::lzo::LzopDecoder::new(bytes, "test.lzo") {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

/// Deterministic pseudo-random bytes (xorshift), mixed with text-like runs so LZO finds matches.
pub fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let words: [&[u8]; 6] = [
        b"WHITE HANGING HEART ",
        b"536365,",
        b"2010-12-01 08:26:00,",
        b"United Kingdom\n",
        b"\"A, B\",",
        b"17850.0,",
    ];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let r = next();
        if r % 3 == 0 {
            out.push((r >> 8) as u8);
        } else {
            out.extend_from_slice(words[(r >> 16) as usize % words.len()]);
        }
    }
    out.truncate(len);
    out
}

/// Options of a hand-built lzop member (for header variants Debian's lzop does not write).
#[derive(Clone)]
pub struct Member {
    pub version: u16,
    pub method: u8,
    pub level: u8,
    pub flags: u32,
    pub filter: u32,
    pub extra: Option<Vec<u8>>,
    pub block_size: usize,
}

impl Default for Member {
    fn default() -> Self {
        Self {
            version: 0x1040,
            method: 1,
            level: 5,
            flags: 0x0300_0001, // Unix, adler32 of uncompressed data
            filter: 0,
            extra: None,
            block_size: 256 * 1024,
        }
    }
}

pub const F_ADLER32_D: u32 = 0x1;
pub const F_ADLER32_C: u32 = 0x2;
pub const F_H_EXTRA_FIELD: u32 = 0x40;
pub const F_CRC32_D: u32 = 0x100;
pub const F_CRC32_C: u32 = 0x200;
pub const F_H_FILTER: u32 = 0x800;
pub const F_H_CRC32: u32 = 0x1000;

fn adler(d: &[u8]) -> u32 {
    let mut a = adler2::Adler32::new();
    a.write_slice(d);
    a.checksum()
}

/// Writes `data` as one lzop member, compressing blocks with lzokay-native (an independent LZO1X
/// encoder), with checksums computed here.
pub fn write_member(m: &Member, data: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&m.version.to_be_bytes());
    h.extend_from_slice(&0x20a0u16.to_be_bytes()); // lib version
    if m.version >= 0x0940 {
        h.extend_from_slice(&0x0940u16.to_be_bytes());
    }
    h.push(m.method);
    if m.version >= 0x0940 {
        h.push(m.level);
    }
    h.extend_from_slice(&m.flags.to_be_bytes());
    if m.flags & F_H_FILTER != 0 {
        h.extend_from_slice(&m.filter.to_be_bytes());
    }
    h.extend_from_slice(&0o100644u32.to_be_bytes());
    h.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    if m.version >= 0x0940 {
        h.extend_from_slice(&0u32.to_be_bytes());
    }
    let name = b"sample.csv";
    h.push(name.len() as u8);
    h.extend_from_slice(name);
    let hc = if m.flags & F_H_CRC32 != 0 {
        crc32fast::hash(&h)
    } else {
        adler(&h)
    };
    let mut out = vec![0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a];
    out.extend_from_slice(&h);
    out.extend_from_slice(&hc.to_be_bytes());
    if let Some(extra) = &m.extra {
        let mut e = (extra.len() as u32).to_be_bytes().to_vec();
        e.extend_from_slice(extra);
        let ec = if m.flags & F_H_CRC32 != 0 {
            crc32fast::hash(&e)
        } else {
            adler(&e)
        };
        out.extend_from_slice(&e);
        out.extend_from_slice(&ec.to_be_bytes());
    }
    for block in data.chunks(m.block_size) {
        let d_adler = adler(block);
        let d_crc = crc32fast::hash(block);
        let mut filtered = block.to_vec();
        if m.flags & F_H_FILTER != 0 {
            let n = m.filter as usize;
            for i in (n..filtered.len()).rev() {
                filtered[i] = filtered[i].wrapping_sub(block[i - n]);
            }
        }
        let c = lzokay_native::compress(&filtered).expect("lzokay compresses");
        let stored = c.len() >= filtered.len();
        let payload = if stored { &filtered } else { &c };
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        if m.flags & F_ADLER32_D != 0 {
            out.extend_from_slice(&d_adler.to_be_bytes());
        }
        if m.flags & F_CRC32_D != 0 {
            out.extend_from_slice(&d_crc.to_be_bytes());
        }
        if !stored {
            if m.flags & F_ADLER32_C != 0 {
                out.extend_from_slice(&adler(payload).to_be_bytes());
            }
            if m.flags & F_CRC32_C != 0 {
                out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

/// The berserkr binary built for these tests.
pub fn berserkr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berserkr"))
}

/// The repository root.
/// Runs `berserkr --lake LAKE ARGS...`: the exit code, standard output and standard error.
pub fn run_cli(lake: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = berserkr()
        .arg("--lake")
        .arg(lake)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real drops shipped in the repo (`examples/data/online-retail/drops`), in date order.
pub fn real_drops() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(repo().join("examples/data/online-retail/drops"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".csv.lzo"))
        .collect();
    all.sort();
    all
}

/// Writes `text` compressed by Debian's lzop to `dir/name`.
pub fn write_drop(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lzop_compress(&[], text)).unwrap();
    p
}

/// The CSV header of the Online Retail drops.
pub const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

/// A table id.
pub fn id(s: &str) -> berserkr::TableId {
    s.parse().unwrap()
}

/// A new lake in `dir/lake`, initialised.
pub async fn lake(dir: &Path) -> berserkr::Lakehouse {
    let lake = berserkr::Lakehouse::open(dir.join("lake").to_str().unwrap()).unwrap();
    lake.init().await.unwrap();
    lake
}

/// A table's latest version.
pub async fn version(lake: &berserkr::Lakehouse, t: &str) -> u64 {
    lake.table(&id(t)).await.unwrap().version().unwrap()
}

/// The rows of a table (as `t`) as text, through DataFusion's SQL over the Delta snapshot, with
/// identifier case kept as berserkr's own SQL has it.
pub async fn query(lake: &berserkr::Lakehouse, t: &str, sql: &str) -> String {
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
    let table = lake.table(&id(t)).await.unwrap();
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    deltalake::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

/// The Python with duckdb, its Delta extension, numpy, pyarrow and polars (`make py-deps`).
pub fn python() -> String {
    std::env::var("BERSERKR_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `python ARGS` and returns its standard output; panics with its standard error.
pub fn run_python(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("python3 with duckdb, numpy, pyarrow, polars (make py-deps)");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
