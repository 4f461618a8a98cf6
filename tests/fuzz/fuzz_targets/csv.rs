//! CSV drops, through the drop reader `lake append` uses (`berserkr::ingest::read_drop`): byte 0
//! picks the lzop block size, the rest is the drop's text.
//!
//! Checks: no panic; the only error is a drop without a usable header (`BadDrop`); otherwise every
//! row and reject is on its own line, in order, within the drop, and the totals are the text's.
//! A drop read without a reject (so strict RFC 4180) and without a carriage return (csv-core
//! takes a lone `\r` as a line end, berserkr as data) gives the rows csv-core, an independent
//! parser, reads: as many, each header-named column holding csv-core's field.
#![no_main]

use berserkr::ingest::DropFormat;
use berserkr_fuzz::{check_lines, column_values, csv_core_records, read_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((text, read)) = read_text(data, DropFormat::Csv) else {
        return;
    };
    match &read.result {
        Ok(stats) => {
            check_lines(&text, &read, stats);
            if stats.rejects == 0 && !text.contains(&b'\r') {
                same_as_csv_core(&text, &read.rows);
            }
        }
        Err(berserkr::Error::BadDrop { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
});

fn same_as_csv_core(text: &[u8], rows: &[berserkr_fuzz::RecordBatch]) {
    let records = csv_core_records(text);
    let Some((header, data)) = records.split_first() else {
        return;
    };
    let n: usize = rows.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, data.len(), "rows: berserkr {n}, csv-core {}", data.len());
    let layout = berserkr_fuzz::layout();
    for (i, name) in header.iter().enumerate() {
        let name = std::str::from_utf8(name)
            .expect("a header berserkr accepted")
            .trim();
        if layout.source_index(name).is_none() {
            continue;
        }
        let ours = column_values(rows, name);
        for (r, (ours, theirs)) in ours.iter().zip(data).enumerate() {
            let theirs = std::str::from_utf8(&theirs[i]).expect("a field berserkr accepted");
            assert_eq!(ours.as_deref(), Some(theirs), "row {r}, column {name}");
        }
    }
}
