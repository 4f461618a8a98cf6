//! Helpers shared by the fuzz targets: an lzop writer of stored blocks (to feed text to the drop
//! reader through its real entry point) and the checks on what the drop reader returns.

use std::sync::{Arc, OnceLock};

use berserkr::Catalog;
use berserkr::ingest::{DropFormat, DropLayout, DropMeta, DropStats, read_drop};
use deltalake::arrow::array::{Array, Int64Array};
pub use deltalake::arrow::record_batch::RecordBatch;

/// `data` as an lzop member of stored (uncompressed) blocks of `block` bytes, without checksums:
/// the container lzop itself writes for incompressible data.
pub fn lzop_stored(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = berserkr::lzo::MAGIC.to_vec();
    let mut h = Vec::new();
    h.extend_from_slice(&0x1040u16.to_be_bytes()); // version
    h.extend_from_slice(&0x2080u16.to_be_bytes()); // LZO library version
    h.extend_from_slice(&0x0940u16.to_be_bytes()); // version needed to extract
    h.push(1); // method LZO1X-1
    h.push(5); // level
    h.extend_from_slice(&0x0300_0000u32.to_be_bytes()); // flags: Unix, no checksums
    h.extend_from_slice(&0o100644u32.to_be_bytes()); // mode
    h.extend_from_slice(&0u32.to_be_bytes()); // mtime low
    h.extend_from_slice(&0u32.to_be_bytes()); // mtime high
    h.push(0); // no name
    let mut a = adler2::Adler32::new();
    a.write_slice(&h);
    out.extend_from_slice(&h);
    out.extend_from_slice(&a.checksum().to_be_bytes());
    for b in data.chunks(block.max(1)) {
        let n = (b.len() as u32).to_be_bytes();
        out.extend_from_slice(&n);
        out.extend_from_slice(&n);
        out.extend_from_slice(b);
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

/// The layout of the shipped bronze table, `bronze.online_retail`.
pub fn layout() -> &'static Arc<DropLayout> {
    static LAYOUT: OnceLock<Arc<DropLayout>> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let bronze = catalog
            .table(&"bronze.online_retail".parse().unwrap())
            .expect("bronze table");
        let rejects = catalog
            .table(&bronze.rejects.as_deref().unwrap().parse().unwrap())
            .expect("rejects table");
        Arc::new(DropLayout::new(bronze, rejects).expect("layout"))
    })
}

/// What a drop read gave: its totals and the source line of every row and every reject.
pub struct DropRead {
    /// Totals, or the error that ended the read.
    pub result: berserkr::Result<DropStats>,
    /// `_source_line` of each bronze row, in order.
    pub row_lines: Vec<i64>,
    /// `_source_line` of each reject, in order.
    pub reject_lines: Vec<i64>,
    /// The bronze rows, chunk by chunk.
    pub rows: Vec<RecordBatch>,
}

fn source_lines(batch: &RecordBatch, into: &mut Vec<i64>) {
    let col = batch
        .column_by_name("_source_line")
        .expect("a _source_line column");
    let col = col
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("_source_line is a long");
    assert_eq!(col.null_count(), 0, "a row without source line");
    into.extend(col.values().iter().copied());
}

/// Size of the text of a "big" input (byte 0 = 0xff): past the drop reader's 2 MiB chunk.
const BIG_TEXT: usize = 2 * 1024 * 1024 + 256 * 1024;

/// Feeds text to the drop reader (the path `lake append` takes): byte 0 of `data` chooses the
/// lzop block size, 1 + 9 × byte (so records and the header straddle blocks), the rest is the
/// text; byte 0 = 0xff repeats the text to 2.25 MiB in 64 KiB blocks. Returns the text read.
// The closure returns berserkr's own `Result`, whose error type is the library's to size.
#[allow(clippy::result_large_err)]
pub fn read_text(data: &[u8], format: DropFormat) -> Option<(Vec<u8>, DropRead)> {
    let (&b, text) = data.split_first()?;
    let (text, block) = if b == 0xff && !text.is_empty() {
        // The text repeated past the drop reader's 2 MiB chunk, so the chunk cut (quote parity,
        // resynchronisation on an unterminated quote) and the line numbering across chunks run.
        let mut big = Vec::with_capacity(BIG_TEXT + text.len());
        while big.len() < BIG_TEXT {
            big.extend_from_slice(text);
        }
        (big, 64 * 1024)
    } else {
        (text.to_vec(), 1 + usize::from(b) * 9)
    };
    let lzop = lzop_stored(&text, block);
    let meta = DropMeta {
        file: "fuzz.lzo".into(),
        sha256: "0".repeat(64),
        ingested_at_us: 0,
    };
    let mut row_lines = Vec::new();
    let mut reject_lines = Vec::new();
    let mut rows = Vec::new();
    let result = read_drop(&lzop[..], &meta, layout(), Some(format), |chunk| {
        source_lines(&chunk.rows, &mut row_lines);
        rows.push(chunk.rows);
        if let Some(r) = &chunk.rejects {
            source_lines(r, &mut reject_lines);
        }
        Ok(())
    });
    Some((
        text,
        DropRead {
            result,
            row_lines,
            reject_lines,
            rows,
        },
    ))
}

/// Checks shared by both formats: rows and rejects start on distinct physical lines, in order,
/// all within the drop, and the byte and line totals are the text's.
pub fn check_lines(text: &[u8], read: &DropRead, stats: &DropStats) {
    assert_eq!(stats.uncompressed_bytes, text.len() as u64, "decoded bytes");
    let newlines = text.iter().filter(|&&c| c == b'\n').count() as u64;
    let lines = newlines + u64::from(text.last().is_some_and(|&c| c != b'\n'));
    assert_eq!(stats.lines, lines, "physical lines");
    assert_eq!(stats.rows, read.row_lines.len() as u64, "row count");
    assert_eq!(
        stats.rejects,
        read.reject_lines.len() as u64,
        "reject count"
    );
    for w in read.row_lines.windows(2) {
        assert!(w[0] < w[1], "row lines not increasing: {w:?}");
    }
    for w in read.reject_lines.windows(2) {
        assert!(w[0] < w[1], "reject lines not increasing: {w:?}");
    }
    let mut all: Vec<i64> = read
        .row_lines
        .iter()
        .chain(&read.reject_lines)
        .copied()
        .collect();
    all.sort_unstable();
    for w in all.windows(2) {
        assert!(w[0] < w[1], "a row and a reject on line {}", w[0]);
    }
    if let (Some(&first), Some(&last)) = (all.first(), all.last()) {
        assert!(
            first >= 1 && last as u64 <= lines,
            "line {first}..{last} of {lines}"
        );
    }
}

/// The records of `text` as csv-core (the `csv` crate's parser, independent of berserkr's) reads
/// them, header first: each a list of fields.
pub fn csv_core_records(text: &[u8]) -> Vec<Vec<Vec<u8>>> {
    use csv_core::{ReadRecordResult, Reader};
    let mut reader = Reader::new();
    let mut out = vec![0u8; text.len() + 1];
    let mut ends = vec![0usize; text.len() + 2];
    let mut input = text;
    let mut records = Vec::new();
    // A record may take several calls (the last one ends at end of input): each call writes
    // after what the previous ones wrote; field ends count from the record's start.
    let (mut outlen, mut endlen) = (0, 0);
    loop {
        let (res, nin, nout, nend) =
            reader.read_record(input, &mut out[outlen..], &mut ends[endlen..]);
        input = &input[nin..];
        outlen += nout;
        endlen += nend;
        match res {
            ReadRecordResult::InputEmpty => {}
            ReadRecordResult::Record => {
                let mut start = 0;
                let fields = ends[..std::mem::take(&mut endlen)]
                    .iter()
                    .map(|&end| {
                        let f = out[start..end].to_vec();
                        start = end;
                        f
                    })
                    .collect();
                records.push(fields);
                outlen = 0;
            }
            ReadRecordResult::End => return records,
            r => panic!("csv-core output buffers too small: {r:?}"),
        }
    }
}

/// The values of column `name` over all `rows`, in order (None for null).
pub fn column_values(rows: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    use deltalake::arrow::array::StringArray;
    let mut values = Vec::new();
    for b in rows {
        let col = b.column_by_name(name).expect("a column of the table");
        let col = col
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("bronze source columns are strings");
        values.extend(col.iter().map(|v| v.map(str::to_string)));
    }
    values
}
