//! CSV drops, through the drop reader `lake append` uses (`berserkr::ingest::read_drop`): byte 0
//! picks the lzop block size, the rest is the drop's text.
//!
//! Checks: no panic; the only error is a drop without a usable header (`BadDrop`); otherwise every
//! row and reject is on its own line, in order, within the drop, and the totals are the text's.
#![no_main]

use berserkr::ingest::DropFormat;
use berserkr_fuzz::{check_lines, read_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((text, read)) = read_text(data, DropFormat::Csv) else {
        return;
    };
    match &read.result {
        Ok(stats) => check_lines(&text, &read, stats),
        Err(berserkr::Error::BadDrop { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
});
