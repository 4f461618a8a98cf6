//! Turning a drop (an lzop file of CSV or JSON lines) into bronze rows and rejects.
//!
//! [`read_drop`] runs on a blocking thread: the lzop blocks decode on the rayon pool, the decoded
//! text is cut into chunks at record boundaries on the calling thread, and the chunks are parsed
//! into Arrow batches on the rayon pool again. Chunks come back in file order through `emit`, so
//! memory is bounded by the chunks in flight, never by the drop.
//!
//! Bronze keeps every field as the string written in the drop. A line that cannot be parsed
//! (wrong field count, broken quoting, invalid UTF-8, invalid JSON) becomes a reject row with the
//! reason and its raw bytes: nothing is dropped silently.
//!
//! Drops are UTF-8 unless another [`TextEncoding`] is declared: then each field (CSV) or line
//! (JSON lines) is transcoded to UTF-8 as it is parsed (records are found in the raw bytes, whose
//! separators, quotes and line ends are ASCII in every encoding accepted), and a rejected line
//! keeps its original bytes. A UTF-8 byte order mark is skipped (and wins over a declared
//! encoding, as in browsers); a UTF-16 one makes the drop unusable. A CSV header is matched to
//! the table's columns by name or alias, and must name every required column.

mod csv;
mod json;
mod layout;
mod source;

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use crossbeam_channel::{Receiver, bounded};
use deltalake::arrow::array::ArrayRef;
use deltalake::arrow::record_batch::RecordBatch;

pub use layout::DropLayout;
pub use source::{DropSource, resolve_sources, sha256};

use crate::config::TextEncoding;
use crate::error::{Error, Result};
use crate::lzo::LzopDecoder;

/// Target size of the decoded text parsed as one chunk (one Arrow batch).
const CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Longest record looked for before the boundary scan gives up and resynchronises on a newline.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The text format of a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropFormat {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl DropFormat {
    /// The format a file name announces (`.csv.lzo`, `.json.lzo`, `.jsonl.lzo`, `.ndjson.lzo`).
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        let n = n.strip_suffix(".lzo").unwrap_or(&n);
        if n.ends_with(".csv") {
            Some(Self::Csv)
        } else if n.ends_with(".json") || n.ends_with(".jsonl") || n.ends_with(".ndjson") {
            Some(Self::JsonLines)
        } else {
            None
        }
    }

    fn sniff(text: &[u8]) -> Self {
        match text.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Self::JsonLines,
            _ => Self::Csv,
        }
    }
}

/// The identity of one drop being ingested.
#[derive(Debug, Clone)]
pub struct DropMeta {
    /// URL of the drop, written to every row's source-file column.
    pub file: String,
    /// sha256 of the drop's bytes.
    pub sha256: String,
    /// Ingest time, microseconds since the epoch (UTC).
    pub ingested_at_us: i64,
}

/// One parsed chunk of a drop.
#[derive(Debug)]
pub struct Chunk {
    /// Rows for the bronze table (possibly empty).
    pub rows: RecordBatch,
    /// Rows for the rejects table, when the chunk had unparseable lines.
    pub rejects: Option<RecordBatch>,
    /// Decoded bytes this chunk covered.
    pub bytes: u64,
}

/// Totals of one drop, and how it was read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DropStats {
    /// Rows parsed.
    pub rows: u64,
    /// Lines rejected.
    pub rejects: u64,
    /// Physical lines, the header included.
    pub lines: u64,
    /// Decoded bytes.
    pub uncompressed_bytes: u64,
    /// The text encoding the drop was read in (a UTF-8 byte order mark makes it UTF-8).
    pub encoding: TextEncoding,
    /// Whether the drop started with a UTF-8 byte order mark (skipped).
    pub bom: bool,
    /// CSV: the header's names, as the drop wrote them (trimmed, transcoded).
    pub header: Option<Vec<String>>,
    /// CSV: the columns filled through an alias, and the header name that did it (for example
    /// `UnitPrice` ← `Price`).
    pub aliased: std::collections::BTreeMap<String, String>,
}

impl DropStats {
    fn new(encoding: TextEncoding) -> Self {
        Self {
            rows: 0,
            rejects: 0,
            lines: 0,
            uncompressed_bytes: 0,
            encoding,
            bom: false,
            header: None,
            aliased: Default::default(),
        }
    }
}

/// What a parse job needs besides its bytes.
struct ParseCtx {
    layout: Arc<DropLayout>,
    /// CSV: for each header field, the source column it fills (None: goes to rescued data).
    header: Vec<(String, Option<usize>)>,
    /// The drop's text encoding.
    encoding: TextEncoding,
}

/// Byte order marks at the start of a drop: the UTF-8 one is skipped, UTF-16's are refused.
fn byte_order_mark(buf: &[u8]) -> Option<(usize, Option<&'static str>)> {
    if buf.starts_with(b"\xEF\xBB\xBF") {
        Some((3, None))
    } else if buf.starts_with(b"\xFF\xFE") || buf.starts_with(b"\xFE\xFF") {
        Some((2, Some("UTF-16")))
    } else {
        None
    }
}

/// A parse job's output: a chunk whose line numbers are relative to its first line.
type JobResult = Result<Parsed>;

/// A parsed chunk before its line numbers are known: parse jobs run ahead of each other, so a
/// chunk's first line is only known once the chunks before it are done.
struct Parsed {
    values: Vec<ArrayRef>,
    rescued: ArrayRef,
    /// 0-based line of each row, relative to the chunk's first line.
    lines: Vec<i64>,
    reject_lines: Vec<i64>,
    reject_reasons: Vec<String>,
    reject_raw: Vec<Vec<u8>>,
    /// Newlines in the chunk: how far the next chunk's first line is.
    newlines: u64,
    bytes: u64,
}

/// Reads a whole drop, handing parsed chunks to `emit` in file order.
///
/// `encoding` is the drop's declared text encoding (a UTF-8 byte order mark overrides it).
///
/// Errors: the lzop stream is corrupt or truncated ([`Error::Lzo`]), the drop as a whole is
/// unusable ([`Error::BadDrop`]: no usable header, a header without a required column, a UTF-16
/// byte order mark), or `emit` failed. Unparseable lines are not errors: they come back as
/// rejects.
pub fn read_drop<R: Read>(
    reader: R,
    meta: &DropMeta,
    layout: &Arc<DropLayout>,
    format: Option<DropFormat>,
    encoding: TextEncoding,
    mut emit: impl FnMut(Chunk) -> Result<()>,
) -> Result<DropStats> {
    let mut blocks = LzopDecoder::new(reader, meta.file.clone());
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 512 * 1024);
    let mut format = format;
    let mut ctx: Option<Arc<ParseCtx>> = None;
    let mut stats = DropStats::new(encoding);
    // Whether the drop's first bytes were looked at for a byte order mark.
    let mut started = false;
    let mut header_seen: Option<(Vec<String>, std::collections::BTreeMap<String, String>)> = None;
    // Physical line number of buf[0] (1-based).
    let mut line: u64 = 1;
    let mut in_flight: VecDeque<Receiver<JobResult>> = VecDeque::new();
    let max_in_flight = rayon::current_num_threads() + 1;
    let mut eof = false;

    // Line of the first chunk not yet drained (1-based).
    let mut next_line: u64 = 0;
    let mut drain = |in_flight: &mut VecDeque<Receiver<JobResult>>,
                     stats: &mut DropStats,
                     next_line: &mut u64,
                     keep: usize|
     -> Result<()> {
        while in_flight.len() > keep {
            let rx = in_flight.pop_front().expect("non-empty");
            let parsed = rx
                .recv()
                .map_err(|_| Error::Task("chunk parser vanished".into()))??;
            let base = *next_line as i64;
            *next_line += parsed.newlines;
            let chunk = parsed.into_chunk(layout, meta, base)?;
            stats.rows += chunk.rows.num_rows() as u64;
            stats.rejects += chunk.rejects.as_ref().map_or(0, |r| r.num_rows() as u64);
            emit(chunk)?;
        }
        Ok(())
    };

    let mut last_byte: Option<u8> = None;
    while !eof {
        match blocks.next() {
            Some(block) => {
                let block = block?;
                last_byte = block.last().copied().or(last_byte);
                buf.extend_from_slice(&block);
            }
            None => eof = true,
        }
        if !started {
            // The first bytes: a byte order mark (the first block is whole, unless the drop is
            // shorter than a mark).
            if buf.len() < 3 && !eof {
                continue;
            }
            match byte_order_mark(&buf) {
                Some((_, Some(other))) => {
                    return Err(Error::BadDrop {
                        file: meta.file.clone(),
                        message: format!(
                            "starts with a {other} byte order mark: drops must be in an ASCII-compatible encoding (UTF-8, windows-1252, ...); re-encode it as UTF-8"
                        ),
                    });
                }
                Some((len, None)) => {
                    buf.drain(..len);
                    stats.bom = true;
                    stats.encoding = TextEncoding::UTF_8;
                }
                None => {}
            }
            started = true;
        }
        let fmt = *format.get_or_insert_with(|| DropFormat::sniff(&buf));
        if ctx.is_none() {
            let (header, consumed) = match fmt {
                DropFormat::JsonLines => (Vec::new(), 0),
                DropFormat::Csv => match csv::record_end(&buf, eof) {
                    Some(end) => {
                        let h = csv::parse_header(&buf[..end], layout, stats.encoding).map_err(
                            |message| Error::BadDrop {
                                file: meta.file.clone(),
                                message,
                            },
                        )?;
                        header_seen =
                            Some((h.fields.iter().map(|(n, _)| n.clone()).collect(), h.aliased));
                        (h.fields, end)
                    }
                    None if eof => (Vec::new(), buf.len()),
                    None if buf.len() > MAX_RECORD_BYTES => {
                        return Err(Error::BadDrop {
                            file: meta.file.clone(),
                            message: format!(
                                "no end of the header line in the first {MAX_RECORD_BYTES} bytes"
                            ),
                        });
                    }
                    None => continue,
                },
            };
            line += memchr::memchr_iter(b'\n', &buf[..consumed]).count() as u64;
            next_line = line;
            buf.drain(..consumed);
            ctx = Some(Arc::new(ParseCtx {
                layout: layout.clone(),
                header,
                encoding: stats.encoding,
            }));
        }
        let ctx = ctx.as_ref().expect("set above");
        // Cut off complete records, a chunk at a time.
        while buf.len() >= CHUNK_BYTES || (eof && !buf.is_empty()) {
            let mut cut = if eof && buf.len() <= CHUNK_BYTES {
                buf.len()
            } else {
                let window = &buf[..CHUNK_BYTES.min(buf.len())];
                match fmt {
                    DropFormat::Csv => csv::last_boundary(window),
                    DropFormat::JsonLines => memchr::memrchr(b'\n', window).map(|i| i + 1),
                }
                // No boundary in a whole chunk: an unterminated quote. Resynchronise at the next
                // newline; the parser rejects the line holding the quote.
                .or_else(|| memchr::memchr(b'\n', &buf).map(|i| i + 1))
                .unwrap_or(if eof { buf.len() } else { 0 })
            };
            if cut == 0 {
                if buf.len() <= CHUNK_BYTES + MAX_RECORD_BYTES {
                    break; // wait for the rest of the line
                }
                // A line longer than any record accepted: hand it over whole, it is rejected.
                cut = buf.len();
            }
            // Hand the chunk over and keep only the tail (at most a block) in a new buffer.
            let mut rest = Vec::with_capacity(CHUNK_BYTES + 512 * 1024);
            rest.extend_from_slice(&buf[cut..]);
            let text = std::mem::replace(&mut buf, rest);
            let text = truncate(text, cut);
            submit(&mut in_flight, ctx, text, fmt);
            drain(&mut in_flight, &mut stats, &mut next_line, max_in_flight)?;
        }
    }
    drain(&mut in_flight, &mut stats, &mut next_line, 0)?;
    stats.lines = next_line.max(1) - 1 + u64::from(last_byte.is_some_and(|b| b != b'\n'));
    stats.uncompressed_bytes = blocks.uncompressed_bytes();
    if let Some((names, aliased)) = header_seen {
        stats.header = Some(names);
        stats.aliased = aliased;
    }
    Ok(stats)
}

fn truncate(mut v: Vec<u8>, len: usize) -> Vec<u8> {
    v.truncate(len);
    v
}

fn submit(
    in_flight: &mut VecDeque<Receiver<JobResult>>,
    ctx: &Arc<ParseCtx>,
    text: Vec<u8>,
    fmt: DropFormat,
) {
    let (tx, rx) = bounded(1);
    let ctx = ctx.clone();
    rayon::spawn(move || {
        let result = match fmt {
            DropFormat::Csv => csv::parse_chunk(&ctx, &text),
            DropFormat::JsonLines => json::parse_chunk(&ctx, &text),
        };
        let _ = tx.send(result);
    });
    in_flight.push_back(rx);
}

/// Collects one chunk's rows and rejects, then builds its batches.
struct ChunkBuilder {
    /// One builder per source column of the table, in layout order.
    values: Vec<deltalake::arrow::array::StringBuilder>,
    rescued: deltalake::arrow::array::StringBuilder,
    lines: Vec<i64>,
    reject_lines: Vec<i64>,
    reject_reasons: Vec<String>,
    reject_raw: Vec<Vec<u8>>,
}

impl ChunkBuilder {
    fn new(ctx: &ParseCtx, bytes: usize) -> Self {
        let rows_guess = bytes / 64 + 16;
        let n = ctx.layout.source_columns.len();
        Self {
            values: (0..n)
                .map(|_| {
                    deltalake::arrow::array::StringBuilder::with_capacity(
                        rows_guess,
                        bytes / n.max(1),
                    )
                })
                .collect(),
            rescued: deltalake::arrow::array::StringBuilder::new(),
            lines: Vec::with_capacity(rows_guess),
            reject_lines: Vec::new(),
            reject_reasons: Vec::new(),
            reject_raw: Vec::new(),
        }
    }

    fn reject(&mut self, line: u64, reason: String, raw: &[u8]) {
        self.reject_lines.push(line as i64);
        self.reject_reasons.push(reason);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        self.reject_raw.push(raw.to_vec());
    }

    fn finish(mut self, bytes: usize, newlines: u64) -> Result<Parsed> {
        Ok(Parsed {
            values: self
                .values
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect(),
            rescued: Arc::new(self.rescued.finish()),
            lines: self.lines,
            reject_lines: self.reject_lines,
            reject_reasons: self.reject_reasons,
            reject_raw: self.reject_raw,
            newlines,
            bytes: bytes as u64,
        })
    }
}

impl Parsed {
    /// Builds the batches, now that the chunk's first line (`base`, 1-based) is known.
    fn into_chunk(mut self, layout: &DropLayout, meta: &DropMeta, base: i64) -> Result<Chunk> {
        self.lines.iter_mut().for_each(|l| *l += base);
        self.reject_lines.iter_mut().for_each(|l| *l += base);
        let rows = layout.bronze_batch(self.values, self.rescued, &self.lines, meta)?;
        let rejects = if self.reject_lines.is_empty() {
            None
        } else {
            Some(layout.rejects_batch(
                &self.reject_lines,
                &self.reject_reasons,
                &self.reject_raw,
                meta,
            )?)
        };
        Ok(Chunk {
            rows,
            rejects,
            bytes: self.bytes,
        })
    }
}
