//! The LZO1X decoder alone.
//!
//! Two uses of each input: (1) bytes 0..2 (little-endian) declare the output size and the rest is
//! decoded as an LZO1X stream: any result but a panic is fine, and a success must fill the output
//! exactly; (2) the whole input is compressed by lzokay-native, an independent encoder, and
//! berserkr must decode it back to the input (non-empty inputs).
#![no_main]

use berserkr::lzo::lzo1x::decompress;
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// lzokay-native's match tables, allocated once (a fresh one per input would dominate the run).
    static DICT: std::cell::RefCell<lzokay_native::Dict> =
        std::cell::RefCell::new(lzokay_native::Dict::new());
}

fuzz_target!(|data: &[u8]| {
    if let [a, b, stream @ ..] = data {
        let mut out = vec![0u8; usize::from(u16::from_le_bytes([*a, *b]))];
        let _ = decompress(stream, &mut out);
    }
    // lzokay-native encodes an empty input as no bytes at all (not even the end marker), which is
    // no LZO1X stream; lzop never writes an empty block (a zero size ends the member).
    if data.is_empty() {
        return;
    }
    let packed = DICT
        .with_borrow_mut(|dict| lzokay_native::compress_with_dict(data, dict))
        .expect("lzokay-native compresses any input");
    let mut back = vec![0u8; data.len()];
    decompress(&packed, &mut back).expect("decoding lzokay-native's stream");
    assert!(back == data, "round trip changed the data");
});
