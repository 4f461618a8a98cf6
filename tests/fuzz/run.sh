#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets of berserkr's parsers and runs each for FUZZ_SECONDS.
#
#   FUZZ_SECONDS  time per target (default 600)
#   FUZZ_TARGETS  targets to run (default: all of them)
#   FUZZ_JOBS     targets run at once (default 1; each is single-threaded)
#
# libFuzzer comes from libfuzzer-sys (built from its C++ sources with the system's g++); the
# coverage instrumentation is stable rustc's SanitizerCoverage pass, added by rustc-wrapper.sh to
# berserkr and the targets only. Corpora grow in out/corpus/TARGET (seeded from corpus/TARGET),
# crashes and hangs are kept in out/artifacts/TARGET, logs in out/logs, the table in out/summary.txt. Exits 1 when any target
# found a crash or a hang, printing the inputs (each becomes a regression test in berserkr).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
seconds="${FUZZ_SECONDS:-600}"
jobs="${FUZZ_JOBS:-1}"
targets="${FUZZ_TARGETS:-lzop lzo1x csv json config}"
out="$here/out"

# libFuzzer is C++: g++ builds it (no clang needed).
if ! command -v g++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq g++
fi

# The main build's target directory and lock file: the dependencies are the ones `make test` built.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
cp "$repo/Cargo.lock" "$here/Cargo.lock"
export RUSTC_WRAPPER="$here/rustc-wrapper.sh"
echo "fuzz: building the targets (instrumented: berserkr and the targets)"
(cd "$here" && cargo build --release --bins \
  --config 'profile.release.package.berserkr.debug-assertions=true' \
  --config 'profile.release.package.berserkr.overflow-checks=true' \
  --config 'profile.release.package.berserkr-fuzz.debug-assertions=true' \
  --config 'profile.release.package.berserkr-fuzz.overflow-checks=true')
bin="$CARGO_TARGET_DIR/release"

run_one() {
  local t="$1"
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t" "$out/logs"
  local dict=()
  [ -f "$here/dict/$t.dict" ] && dict=("-dict=$here/dict/$t.dict")
  # New inputs go to out/corpus (the first directory); the seeds in the repo are only read.
  "$bin/fuzz_$t" "$out/corpus/$t" "$here/corpus/$t" "${dict[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" \
    >"$out/logs/$t.log" 2>&1
}

mkdir -p "$out"
stamp="$out/.started"
touch "$stamp"
pids=()
names=()
status=0
for t in $targets; do
  echo "fuzz: $t for ${seconds}s (log: $out/logs/$t.log)"
  run_one "$t" &
  pids+=($!)
  names+=("$t")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
done
failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done

{
printf '%-8s %12s %10s %8s %8s %8s  %s\n' target executions exec/s edges features corpus result
for t in $targets; do
  log="$out/logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' | tail -1 || true)
  read -r _ cov _ ft _ corp <<<"${last:-- - - - - -}"
  result=ok
  if [[ " ${failed[*]} " == *" $t "* ]]; then
    found=$(find "$out/artifacts/$t" -type f -newer "$stamp" -printf '%f ')
    result="FOUND: ${found:-see the log}"
    status=1
  fi
  printf '%-8s %12s %10s %8s %8s %8s  %s\n' "$t" "${execs:--}" "${rate:--}" "$cov" "$ft" "$corp" "$result"
done
} >"$out/summary.txt"
echo
cat "$out/summary.txt"
if [ "$status" != 0 ]; then
  echo "fuzz: crashes or hangs found; inputs in $out/artifacts (reproduce: $bin/fuzz_TARGET FILE)" >&2
fi
exit "$status"
