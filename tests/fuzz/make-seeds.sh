#!/usr/bin/env bash
# Remakes the seed corpora in corpus/ (committed; run by hand, not by `make fuzz`). Needs Debian's
# lzop (1.04) and python3. Sources: the first rows of the real drop
# examples/data/online-retail/drops/2010-12-01.csv.lzo, two files of tests/fixtures/lzop-corpus,
# and a few hand-written edge cases (quoting, CRLF, BOM, bad JSON, an S3 berserkr.toml).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
c="$here/corpus"
rm -rf "$c"
mkdir -p "$c/lzop" "$c/lzo1x" "$c/csv" "$c/json" "$c/config"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

lzop -dc "$repo/examples/data/online-retail/drops/2010-12-01.csv.lzo" >"$tmp/all.csv"
head -n 9 "$tmp/all.csv" >"$tmp/rows.csv"
python3 - "$tmp/rows.csv" "$tmp/rows.jsonl" <<'PY'
import csv, json, sys
with open(sys.argv[1], newline="") as f, open(sys.argv[2], "w") as out:
    for r in csv.DictReader(f):
        out.write(json.dumps(r, separators=(",", ":")) + "\n")
PY

# lzop: real lzop output of the rows with each checksum and a filter, two members, an empty file,
# and two files of the lzop corpus (lzop 1.04 output of a longer text, both checksum kinds).
lzop -c -1 <"$tmp/rows.csv" >"$c/lzop/rows-1.lzo"
lzop -c -9 --crc32 <"$tmp/rows.jsonl" >"$c/lzop/rows-9-crc32.lzo"
lzop -c -CC <"$tmp/rows.csv" >"$c/lzop/rows-checksum-compressed.lzo"
lzop -c -F --filter=4 <"$tmp/rows.csv" >"$c/lzop/rows-nochecksum-filter4.lzo"
cat "$c/lzop/rows-1.lzo" "$c/lzop/rows-9-crc32.lzo" >"$c/lzop/two-members.lzo"
lzop -c </dev/null >"$c/lzop/empty.lzo"
cp "$repo/tests/fixtures/lzop-corpus/test-adler32-both.lzo" "$repo/tests/fixtures/lzop-corpus/test-crc32-both.lzo" "$c/lzop/"

# lzo1x: the LZO1X stream of the first block of lzop -1 / -9 output, after its size (2 bytes LE).
python3 - "$c/lzop/rows-1.lzo" "$c/lzop/rows-9-crc32.lzo" "$c/lzo1x" <<'PY'
import struct, sys, os
def first_block(data):
    p = 9
    version, = struct.unpack(">H", data[p:p+2]); p += 4           # version, lib version
    if version >= 0x0940: p += 2                                   # version needed
    p += 1                                                         # method
    if version >= 0x0940: p += 1                                   # level
    flags, = struct.unpack(">I", data[p:p+4]); p += 4
    if flags & 0x800: p += 4                                       # filter
    p += 4 + 4 + (4 if version >= 0x0940 else 0)                   # mode, mtime
    p += 1 + data[p] + 4                                           # name, header checksum
    u, c = struct.unpack(">II", data[p:p+8]); p += 8
    p += 4 * bool(flags & 1) + 4 * bool(flags & 0x100)
    if c < u: p += 4 * bool(flags & 2) + 4 * bool(flags & 0x200)
    return u, data[p:p+c]
for i, name in enumerate(sys.argv[1:3]):
    u, block = first_block(open(name, "rb").read())
    open(os.path.join(sys.argv[3], f"block-{i}"), "wb").write(struct.pack("<H", u) + block)
PY
printf '\x14\x00\x16hello\x11\x00\x00' >"$c/lzo1x/literals-only"

# csv and json: byte 0 picks the lzop block size (1 + 9 * byte), the rest is the drop's text.
seed() { { printf "\\x$1"; cat; } >"$2"; }
seed 07 "$c/csv/rows.csv" <"$tmp/rows.csv"
seed 00 "$c/csv/rows-1-byte-blocks.csv" < <(head -n 3 "$tmp/rows.csv")
seed 30 "$c/csv/quoting-crlf-bom.csv" < <(printf '\xef\xbb\xbfInvoiceNo,Description,Quantity,Extra\r\n1,"A, ""B""",2,x\r\n2,"multi\nline",3,\r\n3,bad"quote,4,y\n4,"open,5\n\n5,"x"y,6,z\n6,short\n')
# Byte 0 = 0xff: the text repeated past the reader's 2 MiB chunk (a quoted newline and an
# unterminated quote in the repeated text, so chunk cuts meet both).
seed ff "$c/csv/big-repeated.csv" < <(head -n 4 "$tmp/rows.csv"; printf '536366,22633,"HAND WARMER\nUNION JACK",6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom\n536367,"open\n')
seed 07 "$c/json/rows.jsonl" <"$tmp/rows.jsonl"
seed ff "$c/json/big-repeated.jsonl" < <(head -n 3 "$tmp/rows.jsonl"; printf '{"InvoiceNo":"x\n')
seed 02 "$c/json/edge-cases.jsonl" < <(printf '{"InvoiceNo":"1","Quantity":2.50,"Extra":[1,{"a":null}]}\r\n\n  \n[1,2]\n{"InvoiceNo":"\\u00e9\\ud83d\\ude00","CustomerID":null}\n{"InvoiceNo":1,"InvoiceNo":2}\n{"bad": \n\xff\xfe\n{"Quantity":"\\ud800"}\n')

# config: the documented S3 example, a minimal one and a broken one.
cat >"$c/config/s3.toml" <<'TOML'
lake = "s3://retail/lake"

[storage]
aws_endpoint = "http://127.0.0.1:9000"
aws_allow_http = true
aws_region = "us-east-1"
AWS_ACCESS_KEY_ID = "minio"
aws_secret_access_key = "minio123"
aws_s3_locking_provider = 1
TOML
printf 'lake = "./lake"\n' >"$c/config/local.toml"
printf 'lake = "./l\xc3\xa9"\n[storage]\naws_region = [1]\n[storage.x]\ny = 1979-05-27T07:32:00Z\n' >"$c/config/errors.toml"
du -sh "$c"/*
