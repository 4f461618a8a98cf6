//! A bounds-checked LZO1X decompressor (the format of lzop methods 1, 2 and 3).
//!
//! This is the algorithm of `lzo1x_decompress_safe` from the LZO library, written over slice
//! indices: every read of the input, every write of the output and every look-behind is checked,
//! so hostile input yields a [`Lzo1xError`], never a panic or an out-of-bounds access. The output
//! buffer is sized by the caller from the lzop block header (itself bounded), so a block can never
//! make this allocate more than the header promised.
//!
//! `lzokay-native` implements the same format, but indexes its output unchecked after a wrapping
//! subtraction (a corrupt distance panics) and copies literals through a temporary `Vec` per run;
//! the test suite uses it as an independent encoder and decoder to cross-check this one.

use std::fmt;

/// Why an LZO1X stream could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lzo1xError {
    /// The compressed data ended before the end-of-stream marker.
    InputOverrun,
    /// The stream would write past the size the block header declared.
    OutputOverrun,
    /// A match refers to data before the start of the block.
    LookbehindOverrun,
    /// The end-of-stream marker came before the end of the compressed data.
    InputNotConsumed,
    /// The stream ended cleanly but produced fewer bytes than declared.
    OutputUnderrun {
        /// Bytes the stream produced.
        produced: usize,
    },
}

impl fmt::Display for Lzo1xError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InputOverrun => f.write_str("compressed data ends inside the LZO stream"),
            Self::OutputOverrun => f.write_str("LZO stream decodes to more than the declared size"),
            Self::LookbehindOverrun => {
                f.write_str("LZO match points before the start of the block")
            }
            Self::InputNotConsumed => {
                f.write_str("LZO end-of-stream marker before the end of the compressed data")
            }
            Self::OutputUnderrun { produced } => {
                write!(f, "LZO stream decodes to only {produced} bytes")
            }
        }
    }
}

impl std::error::Error for Lzo1xError {}

/// Decodes `input` into `out`, which must have exactly the declared uncompressed size.
///
/// Succeeds only when the stream ends with its end-of-stream marker, consumed all of `input`, and
/// filled all of `out`.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<(), Lzo1xError> {
    let mut d = Decoder {
        inp: input,
        ip: 0,
        out,
        op: 0,
    };
    d.run()?;
    if d.ip < d.inp.len() {
        return Err(Lzo1xError::InputNotConsumed);
    }
    if d.op != d.out.len() {
        return Err(Lzo1xError::OutputUnderrun { produced: d.op });
    }
    Ok(())
}

struct Decoder<'a, 'b> {
    inp: &'a [u8],
    ip: usize,
    out: &'b mut [u8],
    op: usize,
}

/// What the decoder does next; mirrors the labels of the reference implementation.
enum Next {
    /// Read an instruction byte that may start a literal run.
    Instruction,
    /// Read the instruction byte right after a literal run.
    AfterLiteralRun,
    /// Decode a match instruction `t` (t >= 16).
    Match(usize),
    /// Copy `t` (1..=3) trailing literals, then decode the following match.
    TrailingLiterals(usize),
}

impl Decoder<'_, '_> {
    #[inline(always)]
    fn byte(&mut self) -> Result<usize, Lzo1xError> {
        let b = *self.inp.get(self.ip).ok_or(Lzo1xError::InputOverrun)?;
        self.ip += 1;
        Ok(b as usize)
    }

    #[inline(always)]
    fn le16(&mut self) -> Result<usize, Lzo1xError> {
        let s = self
            .inp
            .get(self.ip..self.ip + 2)
            .ok_or(Lzo1xError::InputOverrun)?;
        self.ip += 2;
        Ok(s[0] as usize | (s[1] as usize) << 8)
    }

    /// Reads the zero-run extension of a length: each 0 byte adds 255, the first non-zero byte ends it.
    #[inline(always)]
    fn long_length(&mut self, base: usize) -> Result<usize, Lzo1xError> {
        let start = self.ip;
        let rest = self.inp.get(start..).ok_or(Lzo1xError::InputOverrun)?;
        let zeros = rest
            .iter()
            .position(|&b| b != 0)
            .ok_or(Lzo1xError::InputOverrun)?;
        self.ip += zeros;
        let last = self.byte()?;
        Ok(zeros * 255 + base + last)
    }

    #[inline(always)]
    fn literals(&mut self, n: usize) -> Result<(), Lzo1xError> {
        let src = self
            .inp
            .get(self.ip..self.ip + n)
            .ok_or(Lzo1xError::InputOverrun)?;
        let dst = self
            .out
            .get_mut(self.op..self.op + n)
            .ok_or(Lzo1xError::OutputOverrun)?;
        dst.copy_from_slice(src);
        self.ip += n;
        self.op += n;
        Ok(())
    }

    /// Copies `len` bytes from `dist` bytes behind the output position (overlap allowed).
    #[inline(always)]
    fn copy_match(&mut self, dist: usize, len: usize) -> Result<(), Lzo1xError> {
        if dist == 0 || dist > self.op {
            return Err(Lzo1xError::LookbehindOverrun);
        }
        let end = self.op + len;
        if end > self.out.len() {
            return Err(Lzo1xError::OutputOverrun);
        }
        let from = self.op - dist;
        if dist >= len {
            self.out.copy_within(from..from + len, self.op);
        } else {
            // Overlapping copy: repeats the last `dist` bytes, byte by byte as the format defines.
            for i in 0..len {
                self.out[self.op + i] = self.out[from + i];
            }
        }
        self.op = end;
        Ok(())
    }

    fn run(&mut self) -> Result<(), Lzo1xError> {
        let mut next = Next::Instruction;
        // A first byte above 17 is a literal run of (byte - 17) bytes.
        if let Some(&first) = self.inp.first()
            && first > 17
        {
            self.ip = 1;
            let t = first as usize - 17;
            if t < 4 {
                next = Next::TrailingLiterals(t);
            } else {
                self.literals(t)?;
                next = Next::AfterLiteralRun;
            }
        }
        loop {
            match next {
                Next::Instruction => {
                    let t = self.byte()?;
                    if t >= 16 {
                        next = Next::Match(t);
                        continue;
                    }
                    let run = if t == 0 { self.long_length(15)? } else { t };
                    self.literals(run + 3)?;
                    next = Next::AfterLiteralRun;
                }
                Next::AfterLiteralRun => {
                    let t = self.byte()?;
                    if t >= 16 {
                        next = Next::Match(t);
                        continue;
                    }
                    // A 3-byte match 2..3 kB back, only possible right after a literal run.
                    let h = self.byte()?;
                    let dist = 1 + 0x0800 + (t >> 2) + (h << 2);
                    self.copy_match(dist, 3)?;
                    next = self.after_match(t)?;
                }
                Next::TrailingLiterals(n) => {
                    self.literals(n)?;
                    let t = self.byte()?;
                    next = Next::Match(t);
                }
                Next::Match(t) => {
                    if t >= 64 {
                        // M2: 3..8 bytes within 2 kB.
                        let h = self.byte()?;
                        let dist = 1 + ((t >> 2) & 7) + (h << 3);
                        let len = (t >> 5) + 1;
                        self.copy_match(dist, len)?;
                        next = self.after_match(t)?;
                    } else if t >= 32 {
                        // M3: within 16 kB.
                        let len = match t & 31 {
                            0 => self.long_length(31)?,
                            l => l,
                        } + 2;
                        let d = self.le16()?;
                        self.copy_match(1 + (d >> 2), len)?;
                        next = self.after_match(d)?;
                    } else if t >= 16 {
                        // M4: 16..48 kB back, or the end-of-stream marker.
                        let len = match t & 7 {
                            0 => self.long_length(7)?,
                            l => l,
                        } + 2;
                        let d = self.le16()?;
                        let dist = ((t & 8) << 11) + (d >> 2);
                        if dist == 0 {
                            return Ok(());
                        }
                        self.copy_match(dist + 0x4000, len)?;
                        next = self.after_match(d)?;
                    } else {
                        // M1: 2 bytes within 1 kB, after trailing literals.
                        let h = self.byte()?;
                        let dist = 1 + (t >> 2) + (h << 2);
                        self.copy_match(dist, 2)?;
                        next = self.after_match(t)?;
                    }
                }
            }
        }
    }

    /// After a match, the low two bits of its last instruction byte count trailing literals.
    #[inline(always)]
    fn after_match(&mut self, low: usize) -> Result<Next, Lzo1xError> {
        let n = low & 3;
        Ok(if n == 0 {
            Next::Instruction
        } else {
            Next::TrailingLiterals(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_only_stream() {
        // 0x11 + 5 = first byte 22 -> 5 literals; then M4 end marker 0x11 0x00 0x00.
        let input = [22u8, b'h', b'e', b'l', b'l', b'o', 0x11, 0, 0];
        let mut out = [0u8; 5];
        decompress(&input, &mut out).unwrap();
        assert_eq!(&out, b"hello");
    }

    #[test]
    fn truncated_and_garbage_inputs_are_errors() {
        let input = [22u8, b'h', b'e', b'l', b'l', b'o', 0x11, 0, 0];
        let mut out = [0u8; 5];
        for cut in 0..input.len() {
            assert!(decompress(&input[..cut], &mut out).is_err(), "cut at {cut}");
        }
        let mut longer = input.to_vec();
        longer.push(0);
        assert_eq!(
            decompress(&longer, &mut out),
            Err(Lzo1xError::InputNotConsumed)
        );
        let mut small = [0u8; 4];
        assert_eq!(
            decompress(&input, &mut small),
            Err(Lzo1xError::OutputOverrun)
        );
        let mut big = [0u8; 6];
        assert_eq!(
            decompress(&input, &mut big),
            Err(Lzo1xError::OutputUnderrun { produced: 5 })
        );
    }

    #[test]
    fn lookbehind_before_start_is_an_error() {
        // One literal, then an M2 match 2 bytes back (only 1 byte exists).
        let input = [18u8, b'a', 0b0100_0100, 0, 0x11, 0, 0];
        let mut out = [0u8; 4];
        assert_eq!(
            decompress(&input, &mut out),
            Err(Lzo1xError::LookbehindOverrun)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000usize {
            let input: Vec<u8> = (0..len % 97)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let mut out = vec![0u8; len % 301];
            let _ = decompress(&input, &mut out);
        }
    }
}
