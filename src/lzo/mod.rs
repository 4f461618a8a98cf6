//! A streaming, parallel reader of the lzop file format.
//!
//! An lzop file is one or more *members*, each a header followed by blocks of at most
//! [`MAX_BLOCK_SIZE`] uncompressed bytes and a zero end marker. [`LzopDecoder`] frames the blocks
//! on the calling thread, decodes and verifies them on the rayon pool, and hands them back in file
//! order. At most a bounded number of blocks (and bytes) are in flight, so memory depends on the
//! block size, never on the file size.
//!
//! Supported: header versions from lzop 0.90 on (the short pre-0.94 header too), methods 1 to 3
//! (LZO1X-1, LZO1X-1(15), LZO1X-999), stored (incompressible) blocks, adler32 and crc32 checksums
//! of uncompressed and of compressed data, adler32 and crc32 header checksums, the extra field,
//! the delta filters 1 to 16, multi-member files and trailing zero padding. Everything else, and
//! every inconsistency, is an [`LzoError`] naming the file, the byte offset and the block.

mod header;
pub mod lzo1x;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};

use crossbeam_channel::{Receiver, bounded};

pub use header::{Header, Method};

/// The nine bytes every lzop member starts with.
pub const MAGIC: [u8; 9] = [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a];
/// Largest uncompressed block lzop allows (its `MAX_BLOCK_SIZE`): a header claiming more is corrupt.
pub const MAX_BLOCK_SIZE: u32 = 64 * 1024 * 1024;
/// Most uncompressed bytes decoded ahead of the consumer (at least one block is always allowed).
const MAX_BYTES_IN_FLIGHT: u64 = 64 * 1024 * 1024;

pub(crate) const F_ADLER32_D: u32 = 0x0000_0001;
pub(crate) const F_ADLER32_C: u32 = 0x0000_0002;
pub(crate) const F_H_EXTRA_FIELD: u32 = 0x0000_0040;
pub(crate) const F_CRC32_D: u32 = 0x0000_0100;
pub(crate) const F_CRC32_C: u32 = 0x0000_0200;
pub(crate) const F_H_FILTER: u32 = 0x0000_0800;
pub(crate) const F_H_CRC32: u32 = 0x0000_1000;
/// Bits lzop requires to be zero (`F_RESERVED` in lzop's conf.h).
pub(crate) const F_RESERVED: u32 = !(0x0000_3fff | 0xff00_0000 | 0x00f0_0000);

/// Which checksum disagreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// adler32 of the uncompressed block.
    Adler32Uncompressed,
    /// crc32 of the uncompressed block.
    Crc32Uncompressed,
    /// adler32 of the compressed block.
    Adler32Compressed,
    /// crc32 of the compressed block.
    Crc32Compressed,
    /// Checksum of the member header.
    Header,
    /// Checksum of the header's extra field.
    ExtraField,
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Adler32Uncompressed => "adler32 of uncompressed data",
            Self::Crc32Uncompressed => "crc32 of uncompressed data",
            Self::Adler32Compressed => "adler32 of compressed data",
            Self::Crc32Compressed => "crc32 of compressed data",
            Self::Header => "header checksum",
            Self::ExtraField => "extra field checksum",
        })
    }
}

/// What went wrong in an lzop file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LzoErrorKind {
    /// The file does not start with the lzop magic.
    #[error("not an lzop file (bad magic)")]
    BadMagic,
    /// A header field holds a value no lzop writes.
    #[error("header corrupted: {0}")]
    BadHeader(String),
    /// The member needs a newer lzop than the 1.04 format this reader implements.
    #[error("needs lzop version {0:#06x} to extract")]
    UnsupportedVersion(u16),
    /// The compression method is not LZO1X (1, 2 or 3).
    #[error("unsupported compression method {0}")]
    UnsupportedMethod(u8),
    /// Flags outside the ones lzop defines are set.
    #[error("unsupported header flags {0:#010x}")]
    UnsupportedFlags(u32),
    /// A filter other than the delta filters 1 to 16.
    #[error("unsupported filter {0}")]
    UnsupportedFilter(u32),
    /// The file ends in the middle of a header or a block.
    #[error("truncated: file ends inside {0}")]
    Truncated(&'static str),
    /// A block header declares sizes lzop never writes.
    #[error("corrupt block sizes: {uncompressed} uncompressed, {compressed} compressed")]
    BadBlockSize {
        /// Declared uncompressed size.
        uncompressed: u32,
        /// Declared compressed size.
        compressed: u32,
    },
    /// A block marked as a split-file continuation (never written by lzop 1.x).
    #[error("split lzop files are not supported")]
    SplitFile,
    /// A checksum does not match the data.
    #[error("{which} mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum that failed.
        which: Checksum,
        /// The value in the file.
        stored: u32,
        /// The value of the data.
        computed: u32,
    },
    /// The LZO1X stream of a block is invalid.
    #[error("corrupt LZO data: {0}")]
    Corrupt(#[from] lzo1x::Lzo1xError),
    /// Bytes after the last member that are neither a member nor zero padding.
    #[error("trailing garbage after the last member")]
    TrailingGarbage,
    /// Reading the file failed.
    #[error("read error: {0}")]
    Io(#[source] io::Error),
}

/// An lzop decoding failure, with where it happened.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {kind} (byte offset {offset}{})", block.map(|b| format!(", block {b}")).unwrap_or_default())]
pub struct LzoError {
    /// The file (or URL) being read.
    pub file: String,
    /// Byte offset in the compressed file where the faulty structure starts.
    pub offset: u64,
    /// Block number (0-based, counted across members) when the fault is in a block.
    pub block: Option<u64>,
    /// What went wrong.
    pub kind: LzoErrorKind,
}

/// Counts bytes read, so errors can name offsets.
struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Counting<R> {
    /// Reads exactly `buf.len()` bytes; `Ok(n < len)` only at end of file.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A decoded block, or why it could not be.
type BlockResult = Result<Vec<u8>, LzoError>;

/// One framed block, ready to decode on any thread.
struct Frame {
    index: u64,
    offset: u64,
    uncompressed: u32,
    data: Vec<u8>,
    flags: u32,
    filter: u32,
    d_adler: u32,
    d_crc: u32,
    c_adler: u32,
    c_crc: u32,
}

/// Streaming lzop decoder: an iterator over the uncompressed blocks of a file, in order.
///
/// ```no_run
/// # fn main() -> Result<(), berserkr::lzo::LzoError> {
/// let file = std::fs::File::open("drop.csv.lzo").unwrap();
/// let mut out = Vec::new();
/// for block in berserkr::lzo::LzopDecoder::new(file, "drop.csv.lzo") {
///     out.extend_from_slice(&block?);
/// }
/// # Ok(()) }
/// ```
pub struct LzopDecoder<R> {
    src: Counting<R>,
    file: String,
    header: Option<Header>,
    next_block: u64,
    parallel: bool,
    max_in_flight: usize,
    in_flight: VecDeque<(u64, Receiver<BlockResult>)>,
    bytes_in_flight: u64,
    /// Framing is over: end of file reached, or an error was queued.
    done: bool,
    /// An error from framing, returned after the blocks before it.
    pending_error: Option<LzoError>,
    members: u64,
    uncompressed_bytes: u64,
}

impl<R: Read> LzopDecoder<R> {
    /// Decodes `reader`; `file` names it in errors.
    pub fn new(reader: R, file: impl Into<String>) -> Self {
        let threads = rayon::current_num_threads();
        Self {
            src: Counting {
                inner: reader,
                pos: 0,
            },
            file: file.into(),
            header: None,
            next_block: 0,
            parallel: threads > 1,
            max_in_flight: 2 * threads + 2,
            in_flight: VecDeque::new(),
            bytes_in_flight: 0,
            done: false,
            pending_error: None,
            members: 0,
            uncompressed_bytes: 0,
        }
    }

    /// Decode on the calling thread only (`false`), or on the rayon pool (`true`, the default when
    /// the pool has more than one thread).
    pub fn with_parallel(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
    }

    /// The header of the member being read (after the first block was requested).
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Compressed bytes consumed so far.
    pub fn compressed_position(&self) -> u64 {
        self.src.pos
    }

    /// Members (concatenated lzop streams) seen so far.
    pub fn members(&self) -> u64 {
        self.members
    }

    /// Uncompressed bytes handed out so far.
    pub fn uncompressed_bytes(&self) -> u64 {
        self.uncompressed_bytes
    }

    fn err(&self, offset: u64, block: Option<u64>, kind: LzoErrorKind) -> LzoError {
        LzoError {
            file: self.file.clone(),
            offset,
            block,
            kind,
        }
    }

    fn io_err(&self, offset: u64, e: io::Error) -> LzoError {
        self.err(offset, None, LzoErrorKind::Io(e))
    }

    fn read_u32(&mut self, what: &'static str, block: Option<u64>) -> Result<u32, LzoError> {
        let at = self.src.pos;
        let mut b = [0u8; 4];
        let n = self.src.fill(&mut b).map_err(|e| self.io_err(at, e))?;
        if n < 4 {
            return Err(self.err(at, block, LzoErrorKind::Truncated(what)));
        }
        Ok(u32::from_be_bytes(b))
    }

    /// Reads the next member's magic and header. `Ok(false)` at a clean end of file.
    fn next_member(&mut self) -> Result<bool, LzoError> {
        let at = self.src.pos;
        let mut magic = [0u8; 9];
        let n = self.src.fill(&mut magic).map_err(|e| self.io_err(at, e))?;
        if self.members > 0 {
            if n == 0 {
                return Ok(false);
            }
            if n < magic.len() || magic != MAGIC {
                // After a member only zero padding may follow.
                if magic[..n].iter().any(|&b| b != 0) {
                    return Err(self.err(at, None, LzoErrorKind::TrailingGarbage));
                }
                let mut buf = [0u8; 8192];
                loop {
                    let pos = self.src.pos;
                    let k = self.src.fill(&mut buf).map_err(|e| self.io_err(pos, e))?;
                    if let Some(i) = buf[..k].iter().position(|&b| b != 0) {
                        return Err(self.err(pos + i as u64, None, LzoErrorKind::TrailingGarbage));
                    }
                    if k < buf.len() {
                        return Ok(false);
                    }
                }
            }
        } else if n < magic.len() || magic != MAGIC {
            return Err(self.err(at, None, LzoErrorKind::BadMagic));
        }
        let file = self.file.clone();
        let header = header::read(&mut self.src, &file, at)?;
        self.header = Some(header);
        self.members += 1;
        Ok(true)
    }

    /// Frames the next block; `Ok(None)` at the end of the file.
    fn next_frame(&mut self) -> Result<Option<Frame>, LzoError> {
        loop {
            if self.header.is_none() && !self.next_member()? {
                return Ok(None);
            }
            let index = self.next_block;
            let offset = self.src.pos;
            let uncompressed = self.read_u32("a block header", Some(index))?;
            if uncompressed == 0 {
                // End of this member; another may follow.
                self.header = None;
                continue;
            }
            if uncompressed == u32::MAX {
                return Err(self.err(offset, Some(index), LzoErrorKind::SplitFile));
            }
            let compressed = self.read_u32("a block header", Some(index))?;
            if uncompressed > MAX_BLOCK_SIZE || compressed == 0 || compressed > uncompressed {
                return Err(self.err(
                    offset,
                    Some(index),
                    LzoErrorKind::BadBlockSize {
                        uncompressed,
                        compressed,
                    },
                ));
            }
            let h = self.header.as_ref().expect("member header read above");
            let (flags, filter) = (h.flags, h.filter);
            let mut f = Frame {
                index,
                offset,
                uncompressed,
                data: Vec::new(),
                flags,
                filter,
                d_adler: 1,
                d_crc: 0,
                c_adler: 1,
                c_crc: 0,
            };
            if flags & F_ADLER32_D != 0 {
                f.d_adler = self.read_u32("a block header", Some(index))?;
            }
            if flags & F_CRC32_D != 0 {
                f.d_crc = self.read_u32("a block header", Some(index))?;
            }
            if compressed < uncompressed {
                if flags & F_ADLER32_C != 0 {
                    f.c_adler = self.read_u32("a block header", Some(index))?;
                }
                if flags & F_CRC32_C != 0 {
                    f.c_crc = self.read_u32("a block header", Some(index))?;
                }
            } else {
                // A stored block: its compressed checksums are those of the data itself.
                f.c_adler = f.d_adler;
                f.c_crc = f.d_crc;
            }
            // Read through `take`, so a lying size on a short file allocates only what is there.
            let at = self.src.pos;
            let mut data = Vec::with_capacity((compressed as usize).min(1 << 20));
            let got = (&mut self.src.inner)
                .take(u64::from(compressed))
                .read_to_end(&mut data)
                .map_err(|e| self.io_err(at, e))?;
            self.src.pos += got as u64;
            if got < compressed as usize {
                return Err(self.err(offset, Some(index), LzoErrorKind::Truncated("a block")));
            }
            f.data = data;
            self.next_block += 1;
            return Ok(Some(f));
        }
    }

    /// Frames blocks and starts decoding them until the in-flight budget is used.
    fn fill(&mut self) {
        while !self.done
            && self.in_flight.len() < self.max_in_flight
            && (self.in_flight.is_empty() || self.bytes_in_flight < MAX_BYTES_IN_FLIGHT)
        {
            match self.next_frame() {
                Ok(Some(frame)) => {
                    let size = u64::from(frame.uncompressed);
                    let (tx, rx) = bounded(1);
                    let file = self.file.clone();
                    if self.parallel {
                        rayon::spawn(move || {
                            let _ = tx.send(decode_frame(frame, &file));
                        });
                    } else {
                        let _ = tx.send(decode_frame(frame, &file));
                    }
                    self.bytes_in_flight += size;
                    self.in_flight.push_back((size, rx));
                }
                Ok(None) => self.done = true,
                Err(e) => {
                    self.pending_error = Some(e);
                    self.done = true;
                }
            }
        }
    }
}

impl<R: Read> Iterator for LzopDecoder<R> {
    type Item = Result<Vec<u8>, LzoError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.fill();
        match self.in_flight.pop_front() {
            Some((size, rx)) => {
                self.bytes_in_flight -= size;
                let result = rx.recv().unwrap_or_else(|_| {
                    Err(self.err(
                        self.src.pos,
                        None,
                        LzoErrorKind::Io(io::Error::other("decoder thread vanished")),
                    ))
                });
                match result {
                    Ok(block) => {
                        self.uncompressed_bytes += block.len() as u64;
                        Some(Ok(block))
                    }
                    Err(e) => {
                        // Stop at the first bad block: nothing after it is handed out.
                        self.in_flight.clear();
                        self.done = true;
                        self.pending_error = None;
                        Some(Err(e))
                    }
                }
            }
            None => self.pending_error.take().map(Err),
        }
    }
}

/// Verifies and decodes one block (runs on any thread).
fn decode_frame(f: Frame, file: &str) -> Result<Vec<u8>, LzoError> {
    let err = |kind| LzoError {
        file: file.to_string(),
        offset: f.offset,
        block: Some(f.index),
        kind,
    };
    let mismatch = |which, stored, computed| {
        err(LzoErrorKind::ChecksumMismatch {
            which,
            stored,
            computed,
        })
    };
    let stored = f.data.len() == f.uncompressed as usize;
    if !stored {
        if f.flags & F_ADLER32_C != 0 {
            let c = adler32(&f.data);
            if c != f.c_adler {
                return Err(mismatch(Checksum::Adler32Compressed, f.c_adler, c));
            }
        }
        if f.flags & F_CRC32_C != 0 {
            let c = crc32fast::hash(&f.data);
            if c != f.c_crc {
                return Err(mismatch(Checksum::Crc32Compressed, f.c_crc, c));
            }
        }
    }
    let mut out = if stored {
        f.data
    } else {
        let mut out = vec![0u8; f.uncompressed as usize];
        lzo1x::decompress(&f.data, &mut out).map_err(|e| err(LzoErrorKind::Corrupt(e)))?;
        out
    };
    if f.flags & F_H_FILTER != 0 {
        unfilter(&mut out, f.filter);
    }
    if f.flags & F_ADLER32_D != 0 {
        let c = adler32(&out);
        if c != f.d_adler {
            return Err(mismatch(Checksum::Adler32Uncompressed, f.d_adler, c));
        }
    }
    if f.flags & F_CRC32_D != 0 {
        let c = crc32fast::hash(&out);
        if c != f.d_crc {
            return Err(mismatch(Checksum::Crc32Uncompressed, f.d_crc, c));
        }
    }
    Ok(out)
}

/// adler32 as lzop computes it (initial value 1).
pub(crate) fn adler32(data: &[u8]) -> u32 {
    let mut a = adler2::Adler32::new();
    a.write_slice(data);
    a.checksum()
}

/// Undoes lzop's delta filter `n` (1..=16): each byte was stored minus the byte `n` before it.
fn unfilter(buf: &mut [u8], n: u32) {
    let n = n as usize;
    for i in n..buf.len() {
        buf[i] = buf[i].wrapping_add(buf[i - n]);
    }
}

/// Decodes a whole lzop stream into `out`, returning the uncompressed byte count.
pub fn decode_to<R: Read, W: io::Write>(
    reader: R,
    file: &str,
    out: &mut W,
) -> Result<u64, DecodeToError> {
    let mut total = 0u64;
    for block in LzopDecoder::new(reader, file) {
        let block = block?;
        out.write_all(&block).map_err(DecodeToError::Write)?;
        total += block.len() as u64;
    }
    Ok(total)
}

/// Failure of [`decode_to`]: reading the lzop stream, or writing its output.
#[derive(Debug, thiserror::Error)]
pub enum DecodeToError {
    /// The lzop stream is bad.
    #[error(transparent)]
    Lzo(#[from] LzoError),
    /// Writing the uncompressed data failed.
    #[error("write error: {0}")]
    Write(#[source] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfilter_inverts_delta() {
        let orig: Vec<u8> = (0..100u32).map(|i| (i * 37 % 251) as u8).collect();
        for n in 1..=16usize {
            let mut f = orig.clone();
            for i in (n..f.len()).rev() {
                f[i] = f[i].wrapping_sub(orig[i - n]);
            }
            unfilter(&mut f, n as u32);
            assert_eq!(f, orig, "filter {n}");
        }
    }

    #[test]
    fn reserved_flags_mask_matches_lzop() {
        assert_eq!(F_RESERVED, 0x000f_c000);
    }
}
