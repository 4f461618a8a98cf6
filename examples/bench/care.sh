#!/usr/bin/env bash
# Table care on S3 and locally (part of `make bench`; `bash examples/bench/care.sh` alone):
#  - append throughput of 1,000 small drops (1,000 commits) to a local lake and to S3 (moto's
#    server on 127.0.0.1: an in-process Python S3, so its figure is a floor, not AWS);
#  - opening version N of that 1,000-commit table, with its checkpoints and without them;
#  - optimize of the 1,000 small files (time, peak memory);
#  - a customer-filtered query (DuckDB's delta_scan, an independent reader) before and after
#    Z-ordering silver by CustomerID, on the largest bench lake when there is one.
# Env: BIN (default target/dist/berserkr, as in run.sh), OUT (default bench-out), PY (python with duckdb), PEERS_PY (python with psutil for measure.py).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
PEERS=$(cd "${PEERS:-$REPO/../shared/peers}" && pwd)
OUT=$(mkdir -p "${OUT:-$REPO/bench-out}" && cd "${OUT:-$REPO/bench-out}" && pwd)
BIN=$(realpath -m "${BIN:-$REPO/target/dist/berserkr}")
[ -x "$BIN" ] || { echo "build first: cargo build --profile dist (or set BIN)" >&2; exit 2; }
TPY=${TEST_PY:-$HOME/.cache/berserkr-ci-venv/bin/python}      # duckdb + moto (make py-deps)
MPY=${PEERS_PY:-$TPY}                                           # measure.py, the generator
RES=$OUT/care.jsonl; [ "${ZORDER_ONLY:-0}" = 1 ] || : > "$RES"
DIR=$OUT/care; [ "${ZORDER_ONLY:-0}" = 1 ] || rm -rf "$DIR"; mkdir -p "$DIR/drops"
measure() { "$MPY" "$PEERS/measure.py" "$1" -- "${@:2}" | grep '^{' | tee -a "$RES"; }
field() { # LABEL KEY: smallest value; wall_s from /usr/bin/time's elapsed (10 ms resolution)
  grep "\"label\": \"$1\"" "$RES" | "$MPY" -c "
import sys, json
def v(d):
    if '$2' != 'wall_s': return d['$2']
    m, s = d['time_v_elapsed'].split(':')[-2:]
    return int(m) * 60 + float(s)
print(min(v(json.loads(l)) for l in sys.stdin))"; }

if [ "${ZORDER_ONLY:-0}" != 1 ]; then
# 1,000 drops of 50 rows from the generator.
csv=$DIR/rows.csv; "$MPY" "$PEERS/gen_online_retail.py" 50000 "$csv" >&2
"$TPY" - "$csv" "$DIR/drops" <<'PY'
import sys
src, out = sys.argv[1], sys.argv[2]
lines = open(src, encoding="utf-8").read().splitlines(keepends=True)
head, body = lines[0], lines[1:]
for k in range(1000):
    with open(f"{out}/d{k:04d}.csv", "w", encoding="utf-8") as f:
        f.write(head); f.writelines(body[k * 50:(k + 1) * 50])
PY
(cd "$DIR/drops" && lzop -U -q ./*.csv)

# The S3 server.
coproc SRV { "$TPY" "$REPO/tests/tools/s3_server.py" berserkr-lake 2>/dev/null; }
read -r PORT <&"${SRV[0]}"
trap 'exec {SRV[1]}>&-; wait' EXIT
export AWS_ENDPOINT=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
       AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
LOCAL=$DIR/lake; S3=s3://berserkr-lake/care
for lake in "$LOCAL" "$S3"; do "$BIN" --lake "$lake" lake init > /dev/null; done
measure append-local-1000 "$BIN" --lake "$LOCAL" lake append "$DIR/drops" > /dev/null
measure append-s3-1000 "$BIN" --lake "$S3" lake append "$DIR/drops" > /dev/null
latest=$("$BIN" --lake "$LOCAL" lake status --table bronze.online_retail --json | "$TPY" -c 'import sys,json; print(json.load(sys.stdin)[0]["version"])')
for r in 1 2 3; do
  measure open-local-v$latest "$BIN" --lake "$LOCAL" lake status --table bronze.online_retail --version "$latest" > /dev/null
  measure open-local-v500 "$BIN" --lake "$LOCAL" lake status --table bronze.online_retail --version 500 > /dev/null
  measure open-s3-v$latest "$BIN" --lake "$S3" lake status --table bronze.online_retail --version "$latest" > /dev/null
done
# The same table without its checkpoints: every commit replayed.
cp -r "$LOCAL" "$DIR/lake-nocp"; rm -f "$DIR/lake-nocp/bronze/online_retail/_delta_log/"*.checkpoint.parquet "$DIR/lake-nocp/bronze/online_retail/_delta_log/_last_checkpoint"
for r in 1 2 3; do
  measure open-nocp-v$latest "$BIN" --lake "$DIR/lake-nocp" lake status --table bronze.online_retail --version "$latest" > /dev/null
done
measure optimize-local-1000 "$BIN" --lake "$LOCAL" lake optimize --table bronze.online_retail
measure optimize-s3-1000 "$BIN" --lake "$S3" lake optimize --table bronze.online_retail
"$BIN" --lake "$LOCAL" lake status --table bronze.online_retail
fi

big=$(ls -d "$OUT"/lake-*-eq 2>/dev/null | sort -t- -k2 -n | tail -1 || true)
if [ -z "$big" ] || [ ! -d "$big/silver/transactions" ]; then
  # No lake from the main bench: one of ZROWS generated rows.
  big=$DIR/zsource
  if [ ! -d "$big/silver/transactions" ]; then
    "$MPY" "$PEERS/gen_online_retail.py" "${ZROWS:-2000000}" "$DIR/z.csv" >&2
    lzop -fc "$DIR/z.csv" > "$DIR/z.csv.lzo"
    "$BIN" --lake "$big" lake init > /dev/null
    "$BIN" --lake "$big" lake append "$DIR/z.csv.lzo" > /dev/null
    "$BIN" --lake "$big" lake refresh silver > /dev/null
  fi
fi
if [ -d "$big/silver/transactions" ]; then
  zl=$DIR/zorder-lake; rm -rf "$zl"; cp -r "$big" "$zl"
  q() { "$TPY" - "$zl/silver/transactions" <<'PY'
import sys, time, duckdb, importlib.resources as ir
ext = ir.files("duckdb_extension_delta") / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension"
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"LOAD '{ext}'")
t = "file://" + sys.argv[1]
customers = [r[0] for r in con.sql(f"SELECT DISTINCT CustomerID FROM delta_scan('{t}') ORDER BY 1 LIMIT 20").fetchall()]
best = float("inf")
for _ in range(3):
    s = time.perf_counter()
    for c in customers:
        con.sql(f"SELECT sum(Revenue), count(*) FROM delta_scan('{t}') WHERE CustomerID = {c}").fetchall()
    best = min(best, (time.perf_counter() - s) / len(customers))
print(f"{best:.4f}")
PY
  }
  before=$(q); files_before=$("$BIN" --lake "$zl" lake status --table silver.transactions --json | "$TPY" -c 'import sys,json; print(json.load(sys.stdin)[0]["files"]["files"])')
  measure zorder-silver "$BIN" --lake "$zl" lake optimize --table silver.transactions --zorder CustomerID --target-size ${ZTARGET:-2MiB}
  after=$(q); files_after=$("$BIN" --lake "$zl" lake status --table silver.transactions --json | "$TPY" -c 'import sys,json; print(json.load(sys.stdin)[0]["files"]["files"])')
  echo "customer-filtered query (DuckDB delta_scan, mean of 20 customers): $before s on $files_before files before Z-order, $after s on $files_after files after" | tee -a "$OUT/ratios.txt"
fi

[ "${ZORDER_ONLY:-0}" = 1 ] && exit 0
echo
printf 'append 1,000 drops (1,000 commits): local %.2f s (%s MiB), S3/moto %.2f s (%s MiB)\n' \
  "$(field append-local-1000 wall_s)" "$(field append-local-1000 tree_peak_rss_mb)" "$(field append-s3-1000 wall_s)" "$(field append-s3-1000 tree_peak_rss_mb)" | tee -a "$OUT/ratios.txt"
printf 'open version %s of the 1,000-commit table: local %.3f s, S3/moto %.3f s, local without checkpoints %.3f s; version 500: %.3f s\n' \
  "$latest" "$(field open-local-v$latest wall_s)" "$(field open-s3-v$latest wall_s)" "$(field open-nocp-v$latest wall_s)" "$(field open-local-v500 wall_s)" | tee -a "$OUT/ratios.txt"
printf 'optimize 1,000 small files: local %.2f s (%s MiB), S3/moto %.2f s (%s MiB)\n' \
  "$(field optimize-local-1000 wall_s)" "$(field optimize-local-1000 tree_peak_rss_mb)" "$(field optimize-s3-1000 wall_s)" "$(field optimize-s3-1000 tree_peak_rss_mb)" | tee -a "$OUT/ratios.txt"
