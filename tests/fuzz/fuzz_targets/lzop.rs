//! The lzop container and its blocks: any bytes, read as an lzop file.
//!
//! Checks: no panic; the sequential and the parallel reader hand out the same blocks and the same
//! error; nothing is handed out after an error; the byte counters agree with what was handed out.
#![no_main]

use berserkr::lzo::LzopDecoder;
use libfuzzer_sys::fuzz_target;

/// Blocks handed out, then the error that ended the read (as text), if any.
fn read(data: &[u8], parallel: bool) -> (Vec<Vec<u8>>, Option<String>) {
    let mut dec = LzopDecoder::new(data, "fuzz.lzo").with_parallel(parallel);
    let mut blocks = Vec::new();
    let mut error = None;
    for b in &mut dec {
        match b {
            Ok(b) => {
                assert!(!b.is_empty(), "an empty block");
                blocks.push(b);
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    if error.is_some() {
        assert!(dec.next().is_none(), "a block after an error");
    }
    let total: usize = blocks.iter().map(Vec::len).sum();
    assert_eq!(dec.uncompressed_bytes(), total as u64);
    assert!(dec.compressed_position() <= data.len() as u64);
    (blocks, error)
}

fuzz_target!(|data: &[u8]| {
    let sequential = read(data, false);
    let parallel = read(data, true);
    assert_eq!(sequential, parallel, "sequential and parallel reads differ");
});
