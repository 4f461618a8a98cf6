//! The lzop reader against real lzop files: the corpus of another project, files made here by
//! Debian's lzop, hand-built header variants, and damaged copies of all of them.

mod common;

use berserkr::lzo::{Checksum, LzoErrorKind, LzopDecoder};
use common::*;
use proptest::prelude::*;

const CORPUS: &str = "tests/fixtures/lzop-corpus";

#[test]
fn corpus_decodes_to_its_plain_text() {
    let dir = repo().join(CORPUS);
    let plain = std::fs::read(dir.join("test")).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "lzo") {
            let got = decode(&std::fs::read(&p).unwrap()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, plain, "{}", p.display());
            n += 1;
        }
    }
    assert_eq!(n, 5);
}

#[test]
fn debian_lzop_variants_decode_exactly() {
    // 700 kB: three blocks of lzop's 256 KiB.
    let data = sample(700_000, 7);
    let cases: &[&[&str]] = &[
        &[],
        &["-1"],
        &["-3"],
        &["-7"],
        &["-9"],
        &["-F"],
        &["-CC"],
        &["--crc32"],
        &["--crc32", "-CC"],
        &["--filter=1"],
        &["--filter=4"],
        &["--filter=16"],
        &["-9", "--filter=7", "-CC"],
    ];
    for args in cases {
        let z = lzop_compress(args, &data);
        let got = decode(&z).unwrap_or_else(|e| panic!("lzop {args:?}: {e}"));
        assert!(got == data, "lzop {args:?}: output differs");
    }
}

#[test]
fn empty_input_and_stored_blocks() {
    assert_eq!(decode(&lzop_compress(&[], b"")).unwrap(), b"");
    // Incompressible data is stored, not compressed.
    let mut noise = vec![0u8; 300_000];
    let mut s = 99u64;
    for b in &mut noise {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (s >> 56) as u8;
    }
    for args in [&[][..], &["-CC"][..], &["--crc32", "-CC"][..]] {
        assert_eq!(decode(&lzop_compress(args, &noise)).unwrap(), noise);
    }
}

#[test]
fn file_input_and_concatenated_members_and_zero_padding() {
    let dir = tempfile::tempdir().unwrap();
    let a = sample(10_000, 1);
    let b = sample(20_000, 2);
    std::fs::write(dir.path().join("a.csv"), &a).unwrap();
    // Compressed from a named file (not stdin): the header carries the name and mode.
    let za = lzop(&["-c", dir.path().join("a.csv").to_str().unwrap()], b"");
    let zb = lzop_compress(&["-9"], &b);
    let mut both = za.clone();
    both.extend_from_slice(&zb);
    let mut expect = a.clone();
    expect.extend_from_slice(&b);
    assert_eq!(decode(&both).unwrap(), expect);
    let mut padded = both.clone();
    padded.extend_from_slice(&[0u8; 1000]);
    assert_eq!(decode(&padded).unwrap(), expect);
    let mut garbage = both;
    garbage.extend_from_slice(b"\0\0junk");
    let err = decode(&garbage).unwrap_err();
    assert!(matches!(err.kind, LzoErrorKind::TrailingGarbage), "{err}");
}

#[test]
fn hand_built_header_variants() {
    let data = sample(600_000, 3);
    let variants = [
        Member::default(),
        Member {
            version: 0x0930,
            level: 0,
            ..Member::default()
        }, // pre-0.94 short header
        Member {
            method: 2,
            level: 1,
            ..Member::default()
        },
        Member {
            method: 3,
            level: 9,
            ..Member::default()
        },
        Member {
            flags: 0x0300_0000 | F_CRC32_D | F_CRC32_C | F_H_CRC32,
            ..Member::default()
        },
        Member {
            flags: 0x0300_0000 | F_ADLER32_D | F_ADLER32_C | F_CRC32_D | F_CRC32_C,
            ..Member::default()
        },
        Member {
            flags: 0x0300_0000 | F_ADLER32_D | F_H_EXTRA_FIELD,
            extra: Some(b"extra!".to_vec()),
            ..Member::default()
        },
        Member {
            flags: 0x0300_0000 | F_CRC32_D | F_H_EXTRA_FIELD | F_H_CRC32,
            extra: Some(vec![]),
            ..Member::default()
        },
        Member {
            flags: 0x0300_0000 | F_ADLER32_D | F_H_FILTER,
            filter: 5,
            ..Member::default()
        },
        Member {
            block_size: 1 << 20,
            ..Member::default()
        },
        Member {
            block_size: 1000,
            ..Member::default()
        },
    ];
    for (i, m) in variants.iter().enumerate() {
        let z = write_member(m, &data);
        assert_eq!(
            decode(&z).unwrap_or_else(|e| panic!("variant {i}: {e}")),
            data,
            "variant {i}"
        );
    }
}

#[test]
fn damaged_headers_are_named_errors() {
    let z = lzop_compress(&[], &sample(5000, 4));
    // Bad magic.
    let mut bad = z.clone();
    bad[1] = b'X';
    assert!(matches!(
        decode(&bad).unwrap_err().kind,
        LzoErrorKind::BadMagic
    ));
    // A flipped bit in the header: its checksum catches it.
    let mut bad = z.clone();
    bad[20] ^= 0x10;
    let e = decode(&bad).unwrap_err();
    assert!(
        matches!(
            e.kind,
            LzoErrorKind::ChecksumMismatch {
                which: Checksum::Header,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.offset, 0);
    // Not lzop at all, and empty.
    assert!(matches!(
        decode(b"hello").unwrap_err().kind,
        LzoErrorKind::BadMagic
    ));
    assert!(matches!(
        decode(b"").unwrap_err().kind,
        LzoErrorKind::BadMagic
    ));
    // Unknown method, reserved flags, bad filter: hand-built so the header checksum is right.
    let data = sample(1000, 5);
    let e = decode(&write_member(
        &Member {
            method: 9,
            ..Member::default()
        },
        &data,
    ))
    .unwrap_err();
    assert!(matches!(e.kind, LzoErrorKind::UnsupportedMethod(9)), "{e}");
    let e = decode(&write_member(
        &Member {
            flags: 0x0300_0001 | 0x4000,
            ..Member::default()
        },
        &data,
    ))
    .unwrap_err();
    assert!(matches!(e.kind, LzoErrorKind::UnsupportedFlags(_)), "{e}");
    let e = decode(&write_member(
        &Member {
            flags: 0x0300_0001 | F_H_FILTER,
            filter: 99,
            ..Member::default()
        },
        &data,
    ))
    .unwrap_err();
    assert!(matches!(e.kind, LzoErrorKind::UnsupportedFilter(99)), "{e}");
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let z = lzop_compress(&["-CC"], &sample(30_000, 6));
    for cut in 0..z.len() - 1 {
        // Cutting exactly after the last block leaves only the end marker missing.
        let r = decode(&z[..cut]);
        assert!(r.is_err(), "truncated at {cut} of {} decoded", z.len());
    }
    let e = decode(&z[..z.len() - 2]).unwrap_err();
    assert!(matches!(e.kind, LzoErrorKind::Truncated(_)), "{e}");
    assert!(e.to_string().contains("test.lzo"), "{e}");
}

#[test]
fn corrupted_blocks_are_caught_by_checksums_with_offset_and_block() {
    let data = sample(600_000, 8);
    for (args, which) in [
        (&["-CC"][..], Checksum::Adler32Compressed),
        (&["--crc32", "-CC"][..], Checksum::Crc32Compressed),
    ] {
        let z = lzop_compress(args, &data);
        let mut bad = z.clone();
        let at = z.len() - 500; // inside the last block's data
        bad[at] ^= 0xff;
        let e = decode(&bad).unwrap_err();
        match e.kind {
            LzoErrorKind::ChecksumMismatch { which: w, .. } => assert_eq!(w, which, "{e}"),
            _ => panic!("{args:?}: {e}"),
        }
        assert_eq!(e.block, Some(2), "{e}");
        assert!(e.offset > 0 && (e.offset as usize) < at);
    }
    // Only an uncompressed-data checksum: corrupt LZO data or a data checksum mismatch.
    let z = lzop_compress(&[], &data);
    for at in (100..z.len() - 8).step_by(997) {
        let mut bad = z.clone();
        bad[at] ^= 0x5a;
        assert!(decode(&bad).is_err(), "flip at {at} went unnoticed");
    }
}

#[test]
fn hostile_block_sizes_do_not_allocate() {
    let text = b"hello world hello world hello world";
    let mut z = lzop_compress(&["-F"], text);
    // From stdin the header has no name: magic 9 + fields 29 = 38 bytes, then the first block.
    let hdr = 38;
    assert_eq!(
        u32::from_be_bytes(z[hdr..hdr + 4].try_into().unwrap()) as usize,
        text.len()
    );
    z[hdr..hdr + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    let e = decode(&z).unwrap_err();
    assert!(matches!(e.kind, LzoErrorKind::BadBlockSize { .. }), "{e}");
    // A size within bounds but beyond the end of the file: truncated, not a 64 MiB allocation.
    let mut z2 = lzop_compress(&["-F"], b"hello world hello world hello world");
    z2[hdr..hdr + 4].copy_from_slice(&(60u32 << 20).to_be_bytes());
    z2[hdr + 4..hdr + 8].copy_from_slice(&(50u32 << 20).to_be_bytes());
    let e = decode(&z2).unwrap_err();
    assert!(matches!(e.kind, LzoErrorKind::Truncated(_)), "{e}");
}

#[test]
fn sequential_and_parallel_decoding_agree() {
    let data = sample(3_000_000, 9);
    let z = lzop_compress(&[], &data);
    let seq: Vec<u8> = LzopDecoder::new(&z[..], "x")
        .with_parallel(false)
        .map(|b| b.unwrap())
        .collect::<Vec<_>>()
        .concat();
    let par: Vec<u8> = LzopDecoder::new(&z[..], "x")
        .with_parallel(true)
        .map(|b| b.unwrap())
        .collect::<Vec<_>>()
        .concat();
    assert!(seq == data && par == data);
}

#[test]
fn cli_cat_and_test_match_lzop() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample(400_000, 10);
    let p = dir.path().join("d.csv.lzo");
    std::fs::write(&p, lzop_compress(&["-CC"], &data)).unwrap();
    let out = berserkr().args(["lzo", "cat"]).arg(&p).output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout == data);
    let st = berserkr().args(["lzo", "test"]).arg(&p).status().unwrap();
    assert_eq!(st.code(), Some(0));
    let mut bad = std::fs::read(&p).unwrap();
    let n = bad.len();
    bad[n - 100] ^= 1;
    std::fs::write(&p, &bad).unwrap();
    let out = berserkr().args(["lzo", "test"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("d.csv.lzo") && err.contains("block 1") && err.contains("mismatch"),
        "{err}"
    );
}

#[test]
fn lzokay_native_agrees_with_our_decoder_on_lzop_blocks() {
    // lzokay-native's own decoder reads the raw LZO1X stream of each of our blocks.
    let data = sample(200_000, 11);
    let c = lzokay_native::compress(&data).unwrap();
    let mut ours = vec![0u8; data.len()];
    berserkr::lzo::lzo1x::decompress(&c, &mut ours).unwrap();
    assert!(ours == data);
    let theirs = lzokay_native::decompress_all(&c, Some(data.len())).unwrap();
    assert!(theirs == data);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_data_compressed_by_lzop_decodes_back(
        data in proptest::collection::vec(any::<u8>(), 0..300_000),
        level in prop_oneof![Just("-1"), Just("-5"), Just("-9")],
        repeat in 0usize..4,
    ) {
        // Repeating makes some inputs compressible, so both compressed and stored blocks occur.
        let mut input = data.clone();
        for _ in 0..repeat { input.extend_from_slice(&data); }
        let z = lzop_compress(&[level, "-CC"], &input);
        prop_assert_eq!(decode(&z).unwrap(), input);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut z = lzop_compress(&[], b"");
        z.truncate(z.len() - 4); // drop the end marker
        z.extend_from_slice(&tail);
        let _ = decode(&z);
    }
}
