#!/usr/bin/env bash
# RUSTC_WRAPPER of the fuzz build: adds libFuzzer's coverage instrumentation (SanitizerCoverage:
# inline 8-bit edge counters, the PC table and comparison tracing, the flags cargo-fuzz passes with
# `--sanitizer none`) to berserkr and the fuzz targets only. Every other crate builds exactly as in
# the main build, so its artifacts are reused instead of rebuilding deltalake/arrow/datafusion.
rustc="$1"
shift
instrument=
prev=
for a in "$@"; do
  if [ "$prev" = --crate-name ]; then
    case "$a" in
      berserkr | fuzz_*) instrument=1 ;;
    esac
  fi
  prev="$a"
done
if [ -n "$instrument" ]; then
  exec "$rustc" "$@" \
    -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares
fi
exec "$rustc" "$@"
