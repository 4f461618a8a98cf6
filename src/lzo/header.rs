//! The lzop member header.

use std::io::Read;

use super::{
    Checksum, Counting, F_ADLER32_C, F_ADLER32_D, F_CRC32_C, F_CRC32_D, F_H_CRC32, F_H_EXTRA_FIELD,
    F_H_FILTER, F_RESERVED, LzoError, LzoErrorKind,
};

/// The lzop format version this reader implements (lzop 1.04).
const LZOP_VERSION: u16 = 0x1040;
/// Largest extra field read (lzop itself writes none; its reader skips any length).
const MAX_EXTRA_FIELD: u32 = 16 * 1024 * 1024;

/// Compression method of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `lzop -1` .. `-6` (LZO1X-1).
    Lzo1x1,
    /// LZO1X-1(15).
    Lzo1x1_15,
    /// `lzop -7` .. `-9` (LZO1X-999).
    Lzo1x999,
}

/// A parsed member header.
#[derive(Debug, Clone)]
pub struct Header {
    /// lzop version that wrote the member.
    pub version: u16,
    /// LZO library version that wrote it.
    pub lib_version: u16,
    /// Oldest lzop version able to extract it.
    pub version_needed: u16,
    /// Compression method.
    pub method: Method,
    /// Compression level (1..=9).
    pub level: u8,
    /// Flag bits.
    pub flags: u32,
    /// Delta filter (0 = none).
    pub filter: u32,
    /// Unix mode of the original file.
    pub mode: u32,
    /// Modification time of the original file (seconds since the epoch).
    pub mtime: u64,
    /// Original file name, as stored.
    pub name: Vec<u8>,
}

/// Reads the fields after the magic, checking the header checksum and every field's range.
pub(super) fn read<R: Read>(
    src: &mut Counting<R>,
    file: &str,
    start: u64,
) -> Result<Header, LzoError> {
    let mut r = HeaderReader {
        src,
        file,
        start,
        adler: adler2::Adler32::new(),
        crc: crc32fast::Hasher::new(),
    };
    let version = r.u16()?;
    if version < 0x0900 {
        return Err(r.bad(format!("version {version:#06x} predates lzop 0.90")));
    }
    let lib_version = r.u16()?;
    let mut version_needed = 0x0900;
    if version >= 0x0940 {
        version_needed = r.u16()?;
        if version_needed > LZOP_VERSION {
            return Err(r.fail(LzoErrorKind::UnsupportedVersion(version_needed)));
        }
        if version_needed < 0x0900 {
            return Err(r.bad(format!("version needed {version_needed:#06x}")));
        }
    }
    let method_byte = r.u8()?;
    let mut level = if version >= 0x0940 { r.u8()? } else { 0 };
    let flags = r.u32()?;
    let filter = if flags & F_H_FILTER != 0 { r.u32()? } else { 0 };
    let mode = r.u32()?;
    let mtime_low = r.u32()?;
    let mtime_high = if version >= 0x0940 { r.u32()? } else { 0 };
    let name_len = r.u8()?;
    let name = r.bytes(usize::from(name_len))?;
    let computed = if flags & F_H_CRC32 != 0 {
        r.crc.clone().finalize()
    } else {
        r.adler.checksum()
    };
    let stored = r.raw_u32()?;
    if stored != computed {
        return Err(r.fail(LzoErrorKind::ChecksumMismatch {
            which: Checksum::Header,
            stored,
            computed,
        }));
    }
    let method = match method_byte {
        1 => Method::Lzo1x1,
        2 => Method::Lzo1x1_15,
        3 => Method::Lzo1x999,
        m => return Err(r.fail(LzoErrorKind::UnsupportedMethod(m))),
    };
    if level == 0 {
        level = match method {
            Method::Lzo1x1 => 3,
            Method::Lzo1x1_15 => 1,
            Method::Lzo1x999 => 9,
        };
    }
    if !(1..=9).contains(&level) {
        return Err(r.bad(format!("compression level {level}")));
    }
    if flags & F_RESERVED != 0 {
        return Err(r.fail(LzoErrorKind::UnsupportedFlags(flags)));
    }
    // lzop refuses a compressed-data checksum without the matching uncompressed one.
    if (flags & F_ADLER32_C != 0 && flags & F_ADLER32_D == 0)
        || (flags & F_CRC32_C != 0 && flags & F_CRC32_D == 0)
    {
        return Err(r.fail(LzoErrorKind::UnsupportedFlags(flags)));
    }
    if flags & F_H_FILTER != 0 && !(1..=16).contains(&filter) {
        return Err(r.fail(LzoErrorKind::UnsupportedFilter(filter)));
    }
    if flags & F_H_EXTRA_FIELD != 0 {
        // The extra field's checksum covers its length and its bytes.
        r.adler = adler2::Adler32::new();
        r.crc = crc32fast::Hasher::new();
        let len = r.u32()?;
        if len > MAX_EXTRA_FIELD {
            return Err(r.bad(format!("extra field of {len} bytes")));
        }
        r.bytes(len as usize)?;
        let computed = if flags & F_H_CRC32 != 0 {
            r.crc.clone().finalize()
        } else {
            r.adler.checksum()
        };
        let stored = r.raw_u32()?;
        if stored != computed {
            return Err(r.fail(LzoErrorKind::ChecksumMismatch {
                which: Checksum::ExtraField,
                stored,
                computed,
            }));
        }
    }
    let mut mtime = u64::from(mtime_low) | u64::from(mtime_high) << 32;
    if version < 0x0120 && mtime_low == u32::MAX {
        mtime = 0;
    }
    Ok(Header {
        version,
        lib_version,
        version_needed,
        method,
        level,
        flags,
        filter,
        mode,
        mtime,
        name,
    })
}

struct HeaderReader<'a, R> {
    src: &'a mut Counting<R>,
    file: &'a str,
    start: u64,
    adler: adler2::Adler32,
    crc: crc32fast::Hasher,
}

impl<R: Read> HeaderReader<'_, R> {
    fn fail(&self, kind: LzoErrorKind) -> LzoError {
        LzoError {
            file: self.file.to_string(),
            offset: self.start,
            block: None,
            kind,
        }
    }

    fn bad(&self, what: String) -> LzoError {
        self.fail(LzoErrorKind::BadHeader(what))
    }

    fn raw(&mut self, buf: &mut [u8]) -> Result<(), LzoError> {
        let n = self
            .src
            .fill(buf)
            .map_err(|e| self.fail(LzoErrorKind::Io(e)))?;
        if n < buf.len() {
            return Err(self.fail(LzoErrorKind::Truncated("the header")));
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, LzoError> {
        let mut v = vec![0u8; n];
        self.raw(&mut v)?;
        self.adler.write_slice(&v);
        self.crc.update(&v);
        Ok(v)
    }

    fn u8(&mut self) -> Result<u8, LzoError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, LzoError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, LzoError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A field outside the checksum (the checksums themselves).
    fn raw_u32(&mut self) -> Result<u32, LzoError> {
        let mut b = [0u8; 4];
        self.raw(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }
}
