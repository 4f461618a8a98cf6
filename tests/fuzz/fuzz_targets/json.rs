//! JSON-lines drops, through the drop reader `lake append` uses (`berserkr::ingest::read_drop`):
//! byte 0 picks the lzop block size, the rest is the drop's text.
//!
//! Checks: no panic, no error (a bad line is a reject, never a failed drop); every line holding
//! anything but whitespace is exactly one row or one reject, on that line.
#![no_main]

use berserkr::ingest::DropFormat;
use berserkr_fuzz::{check_lines, read_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((text, read)) = read_text(data, DropFormat::JsonLines) else {
        return;
    };
    let stats = match &read.result {
        Ok(stats) => stats,
        Err(e) => panic!("a JSON-lines drop failed: {e}"),
    };
    check_lines(&text, &read, stats);
    let expected: Vec<i64> = (1i64..)
        .zip(text.split(|&c| c == b'\n'))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(n, _)| n)
        .collect();
    let mut got: Vec<i64> = read
        .row_lines
        .iter()
        .chain(&read.reject_lines)
        .copied()
        .collect();
    got.sort_unstable();
    assert_eq!(got, expected, "lines read as rows or rejects");
});
