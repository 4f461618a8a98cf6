//! `berserkr.toml` parsing (`Config::parse`) of any UTF-8 text.
//!
//! Checks: no panic; an error names the file.
#![no_main]

use berserkr::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, "fuzz/berserkr.toml") {
        assert!(e.to_string().contains("fuzz/berserkr.toml"), "{e}");
    }
});
