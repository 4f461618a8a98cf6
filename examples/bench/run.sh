#!/usr/bin/env bash
# `make bench`: berserkr's bronze append against `lzop -d` + DuckDB / polars CSV ingest, on data
# from ../shared/peers/gen_online_retail.py, all measured in the same run on this machine.
# A benchmark, not a test: it prints figures and ratios (and writes them to $OUT/results.jsonl).
#
# Env: ROWS (default "500000 5000000"), ROUNDS (default 3), PEERS (default ../shared/peers),
#      OUT (default bench-out),
#      TRAIN=0 skips the training comparison, ONLY_TRAIN=1 runs only it (reusing an earlier run's
#      training lake), TRAIN_ROUNDS (default 3), LINFA=0 skips the linfa peers,
#      PEERS_VENV (default ~/.cache/berserkr-peers/venv; created by the peers' setup.sh),
#      BIN (default target/dist/berserkr: the binary we ship; `make bench` builds it),
#      FLOOR (default: examples/parquet-floor beside BIN, which `make bench` builds with it; the
#      Parquet writing floor of each build is measured at sizes up to FLOOR_MAX_ROWS, default
#      20000000, when it is there),
#      SPARK_MAX_ROWS (default 5000000: PySpark runs at sizes up to it; SPARK=0 never),
#      EQUAL_MAX_ROWS (default 20000000: the full-size equality with DuckDB at sizes up to it),
#      BERSERKR_MEMORY_LIMIT (berserkr's memory limit, default 2GiB).
# Each size's data is generated once and kept in OUT (online_retail_N.csv and .csv.lzo).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
PEERS=$(cd "${PEERS:-$REPO/../shared/peers}" && pwd)
OUT=$(mkdir -p "${OUT:-$REPO/bench-out}" && cd "${OUT:-$REPO/bench-out}" && pwd)
VENV=${PEERS_VENV:-$HOME/.cache/berserkr-peers/venv}
PY=$VENV/bin/python
BIN=$(realpath -m "${BIN:-$REPO/target/dist/berserkr}")
ROWS=${ROWS:-"500000 5000000"}
ROUNDS=${ROUNDS:-3}
[ -x "$PY" ] || PEERS_VENV=$VENV bash "$PEERS/setup.sh"
[ -x "$BIN" ] || { echo "build first: cargo build --profile dist (or set BIN)" >&2; exit 2; }
FLOOR=$(realpath -m "${FLOOR:-$(dirname "$BIN")/examples/parquet-floor}")
# This run's measurements and figures only (figures of earlier runs would read as this one's).
RES=$OUT/results.jsonl; : > "$RES"; : > "$OUT/ratios.txt"

measure() { # LABEL CMD... -> one JSON line (wall_s, tree_peak_rss_mb, tree_cpu_s, other_cpu_s)
  local label=$1; shift
  "$PEERS/wait_quiet.sh" "${QUIET_MAX:-60}" 25 > /dev/null || true
  "$PY" "$PEERS/measure.py" "$label" -- "$@" | grep '^{' | tee -a "$RES"
}
# Wall seconds of each run of LABEL, in run order: /usr/bin/time's elapsed (10 ms resolution;
# measure.py's wall_s polls the process every 0.2 s, too coarse for runs of a few seconds).
WALLS='
import sys, json
label = sys.argv[1]
for line in open(sys.argv[2]):
    d = json.loads(line)
    if d.get("label") == label:
        h, m, s = (["0", "0"] + d["time_v_elapsed"].split(":"))[-3:]
        # A run shorter than the resolution reads 0.00: count it as one tick, not as no time.
        print(max(int(h) * 3600 + int(m) * 60 + float(s), 0.01))
'
walls() { "$PY" -c "$WALLS" "$1" "$RES"; }
best_wall() { walls "$1" | sort -g | head -1; } # LABEL: the smallest
# Per round, A's wall over B's (the r-th run of each), then the median and how many are <= 1.
paired() { # A B
  "$PY" - "$(walls "$1" | tr '\n' ' ')" "$(walls "$2" | tr '\n' ' ')" <<'PY'
import sys, statistics
a, b = ([float(x) for x in s.split()] for s in sys.argv[1:3])
r = [x / y for x, y in zip(a, b)]
print(" ".join(f"{x:.2f}" for x in r), f"(median {statistics.median(r):.2f}, {sum(x <= 1 for x in r)} of {len(r)} <= 1)")
PY
}
# Highest peak RSS of LABEL's runs: the larger of the process tree's, polled every 0.2 s (sums
# processes alive at once, misses runs shorter than a poll), and time -v's (the largest process).
peak() { grep "\"label\": \"$1\"" "$RES" | "$PY" -c 'import sys,json; print(max(max(d["tree_peak_rss_mb"], d.get("time_v_maxrss_mb") or 0) for d in map(json.loads, sys.stdin)))'; }

if [ "${ONLY_TRAIN:-0}" != 1 ]; then
for n in $ROWS; do
  csv=$OUT/online_retail_$n.csv; lzo=$csv.lzo
  [ -s "$csv" ] || "$PY" "$PEERS/gen_online_retail.py" "$n" "$csv" >&2
  [ -s "$lzo" ] || lzop -c "$csv" > "$lzo"
  cat "$csv" "$lzo" > /dev/null   # page cache
  echo "== $n rows: $(stat -c %s "$csv") bytes CSV, $(stat -c %s "$lzo") bytes lzop" >&2
  for r in $(seq "$ROUNDS"); do
    measure "lzop-d-$n" sh -c "lzop -dc '$lzo' > /dev/null"
    measure "lzo-cat-1t-$n" sh -c "'$BIN' lzo cat --single-thread '$lzo' > /dev/null"
    measure "lzo-cat-$n" sh -c "'$BIN' lzo cat '$lzo' > /dev/null"
    rm -rf "$OUT/lake-$n"; "$BIN" --lake "$OUT/lake-$n" lake init > /dev/null
    measure "append-$n" "$BIN" --lake "$OUT/lake-$n" lake append "$lzo"
    measure "silver-$n" "$BIN" --lake "$OUT/lake-$n" lake refresh silver
    measure "gold-$n" "$BIN" --lake "$OUT/lake-$n" lake refresh gold
    rm -rf "$OUT/lake-$n-e2e"; "$BIN" --lake "$OUT/lake-$n-e2e" lake init > /dev/null
    measure "e2e-$n" sh -c "'$BIN' --lake '$OUT/lake-$n-e2e' lake append '$lzo' > /dev/null && '$BIN' --lake '$OUT/lake-$n-e2e' lake refresh all > /dev/null"
    # The floor under that time: arrow-rs writing the same rows again, and nothing else.
    if [ "$r" = "$ROUNDS" ] && [ -x "$FLOOR" ] && [ "$n" -le "${FLOOR_MAX_ROWS:-20000000}" ]; then
      "$PEERS/wait_quiet.sh" "${QUIET_MAX:-60}" 25 > /dev/null || true
      "$FLOOR" "$OUT/lake-$n-e2e" | tee "$OUT/floor-$n.txt" >&2
    fi
    # The daily job on the lake just built: the generator's last whole day (its last day is cut
    # short) again as the next day's drop (dated the day after its last, invoice numbers
    # suffixed D), through `lake run`.
    dayd=$OUT/next-day-$n.csv
    if [ ! -s "$dayd.lzo" ]; then
      days=$(tail -200000 "$csv" | grep -o ',[0-9]\{1,2\}/[0-9]\{1,2\}/[0-9]\{4\} ' | tr -d ', ' | uniq)
      full=$(echo "$days" | tail -2 | head -1); last=$(echo "$days" | tail -1)
      next=$(date -d "$last + 1 day" +%-m/%-d/%Y)
      { head -1 "$csv"; grep ",$full " "$csv" | sed -e "s#,$full #,$next #" -e 's#^\([^,]*\),#\1D,#'; } > "$dayd"
      [ "$(wc -l < "$dayd")" -gt 1 ] || { echo "no rows of the last day ($last) in $csv" >&2; exit 1; }
      lzop -fc "$dayd" > "$dayd.lzo"
    fi
    measure "daily-$n" sh -c "'$BIN' --lake '$OUT/lake-$n-e2e' lake run --json '$dayd.lzo' > '$OUT/daily-$n-$r.json'"
    # Incremental: one more daily-sized drop (2,000 rows under new invoice numbers), then silver.
    day=$OUT/day-$n-$r.csv; { head -1 "$csv"; sed -n '2,2001p' "$csv" | sed 's#^\([^,]*\),#\1-'$r',#'; } > "$day"; lzop -fc "$day" > "$day.lzo"
    "$BIN" --lake "$OUT/lake-$n" lake append "$day.lzo" > /dev/null
    measure "incremental-$n" "$BIN" --lake "$OUT/lake-$n" lake refresh silver
    rm -rf "$OUT/duckdb-$n"; measure "duckdb-ingest-$n" "$PY" "$PEERS/pipe_duckdb.py" ingest "$csv" "$OUT/duckdb-$n"
    rm -rf "$OUT/polars-$n"; measure "polars-ingest-$n" "$PY" "$PEERS/pipe_polars.py" ingest "$csv" "$OUT/polars-$n"
    rm -rf "$OUT/duckdb-$n"; measure "duckdb-all-$n" "$PY" "$PEERS/pipe_duckdb.py" all "$csv" "$OUT/duckdb-$n"
    rm -rf "$OUT/polars-$n"; measure "polars-all-$n" "$PY" "$PEERS/pipe_polars.py" all "$csv" "$OUT/polars-$n"
  done
  # PySpark local[2], once (about a minute at 5M rows; SPARK=0 skips it).
  if [ "${SPARK:-1}" = 1 ] && [ "$n" -le "${SPARK_MAX_ROWS:-5000000}" ]; then
    rm -rf "$OUT/spark-$n"; measure "spark-all-$n" "$PY" "$PEERS/pipe_spark.py" all "$csv" "$OUT/spark-$n"
  fi
  # Full-size equality with the DuckDB peer (gold's default cutoff = the SPEC's).
  if [ "$n" -le "${EQUAL_MAX_ROWS:-20000000}" ]; then
  rm -rf "$OUT/lake-$n-eq"; "$BIN" --lake "$OUT/lake-$n-eq" lake init > /dev/null
  "$BIN" --lake "$OUT/lake-$n-eq" lake append "$lzo" > /dev/null
  cutoff=$("$BIN" --lake "$OUT/lake-$n-eq" lake refresh all --json | "$PY" -c 'import sys,json; print(json.load(sys.stdin)["gold"]["cutoffs"][0])')
  echo "$n rows, silver vs duckdb: $("$PY" "$REPO/tests/tools/compare_silver.py" "$OUT/lake-$n-eq/silver/transactions" "$OUT/duckdb-$n/silver.parquet")" | tee -a "$OUT/ratios.txt"
  echo "$n rows, gold vs duckdb:   $("$PY" "$REPO/tests/tools/compare_gold.py" "$OUT/lake-$n-eq/gold/customer_item_features" "$OUT/duckdb-$n/gold.parquet" "$cutoff")" | tee -a "$OUT/ratios.txt"
  rm -rf "$OUT/lake-$n-eq"
  fi
  rows=$("$BIN" --lake "$OUT/lake-$n" lake append --json "$lzo" | "$PY" -c 'import sys,json; print(json.load(sys.stdin)["skipped"])')
  [ "$rows" = 1 ] || { echo "re-append of the bench drop did not skip it" >&2; exit 1; }
done

echo
echo "best of $ROUNDS, wall seconds (peak RSS MiB)"
for n in $ROWS; do
  lz=$(best_wall lzop-d-$n); c1=$(best_wall lzo-cat-1t-$n); cp=$(best_wall lzo-cat-$n)
  ap=$(best_wall append-$n); dk=$(best_wall duckdb-ingest-$n); pl=$(best_wall polars-ingest-$n)
  printf '%9s rows: lzop -d %.2f | lzo cat 1 thread %.2f, 2 threads %.2f | append %.2f (%s MiB) | duckdb ingest %.2f (%s MiB) | polars ingest %.2f (%s MiB)\n' \
    "$n" "$lz" "$c1" "$cp" "$ap" "$(peak append-$n)" "$dk" "$(peak duckdb-ingest-$n)" "$pl" "$(peak polars-ingest-$n)"
  sv=$(best_wall silver-$n); gd=$(best_wall gold-$n); e2e=$(best_wall e2e-$n); inc=$(best_wall incremental-$n)
  dka=$(best_wall duckdb-all-$n); pla=$(best_wall polars-all-$n)
  printf '%9s rows: refresh silver %.2f (%s MiB) | gold %.2f (%s MiB) | end to end %.2f (%s MiB) | incremental silver (+1 drop) %.2f | duckdb all %.2f (%s MiB) | polars all %.2f (%s MiB)\n' \
    "$n" "$sv" "$(peak silver-$n)" "$gd" "$(peak gold-$n)" "$e2e" "$(peak e2e-$n)" "$inc" "$dka" "$(peak duckdb-all-$n)" "$pla" "$(peak polars-all-$n)"
  echo "$n rows, peak RSS per step (MiB, highest of $ROUNDS): append $(peak append-$n), refresh silver $(peak silver-$n), refresh gold $(peak gold-$n), daily lake run $(peak daily-$n), refresh all after the append (end to end) $(peak e2e-$n); polars all $(peak polars-all-$n), duckdb all $(peak duckdb-all-$n) (berserkr's memory limit: ${BERSERKR_MEMORY_LIMIT:-2GiB})" | tee -a "$OUT/ratios.txt"
  "$PY" -c "import sys; e,d,p,i=map(float,sys.argv[1:5]); print(f'{sys.argv[5]:>9} rows: end to end / duckdb all = {e/d:.2f}   end to end / polars all = {e/p:.2f}   incremental silver / end to end = {i/e:.3f}')" "$e2e" "$dka" "$pla" "$inc" "$n" | tee -a "$OUT/ratios.txt"
  echo "$n rows, per round: end to end / polars all = $(paired e2e-$n polars-all-$n)" | tee -a "$OUT/ratios.txt"
  # The daily drop's cost as a share of the full build, per round (steps timed by `lake run`).
  "$PY" - "$OUT" "$n" "$(walls e2e-$n | tr '\n' ' ')" "$(walls daily-$n | tr '\n' ' ')" <<'PY' | tee -a "$OUT/ratios.txt"
import json, statistics, sys
out, n = sys.argv[1], sys.argv[2]
e2e, daily = ([float(x) for x in s.split()] for s in sys.argv[3:5])
rows, parts = 0, []
for r, (e, d) in enumerate(zip(e2e, daily), 1):
    j = json.load(open(f"{out}/daily-{n}-{r}.json"))
    sec = {s["step"]: s["seconds"] for s in j["steps"]}
    rows = next(s for s in j["steps"] if s["step"] == "append")["detail"]["rows"]
    parts.append((d / e, (sec["append"] + sec["silver"]) / e, sec["gold"] / e, sec["gold"]))
med = lambda i: statistics.median(p[i] for p in parts)
print(f"{n:>9} rows: daily drop ({rows} rows) through `lake run` / full build: {med(0):.3f} "
      f"(append + silver {med(1):.3f}, gold {med(2):.3f} = {med(3):.2f} s; median of {len(parts)})")
PY
  echo "$n rows, per round: end to end / duckdb all = $(paired e2e-$n duckdb-all-$n)" | tee -a "$OUT/ratios.txt"
  if [ -s "$OUT/floor-$n.txt" ]; then
    "$PY" -c "import sys; f,e,p=map(float,sys.argv[1:4]); print(f'{sys.argv[4]:>9} rows: Parquet writing floor (the rows of the build written again by arrow-rs, nothing else) {f:.2f} s = {f/p:.2f} of polars all, {f/e:.2f} of end to end; 0.67 of polars all is {0.67*p:.2f} s')" \
      "$(tail -1 "$OUT/floor-$n.txt" | awk '{print $(NF-1)}')" "$e2e" "$pla" "$n" | tee -a "$OUT/ratios.txt"
  fi
  if grep -q "\"label\": \"spark-all-$n\"" "$RES"; then
    sp=$(best_wall spark-all-$n)
    printf '%9s rows: pyspark local[2] all %.2f (%s MiB)   end to end / pyspark = %.3f\n' "$n" "$sp" "$(peak spark-all-$n)" "$("$PY" -c "import sys; print(float(sys.argv[1])/float(sys.argv[2]))" "$e2e" "$sp")" | tee -a "$OUT/ratios.txt"
  fi
  "$PY" - "$lz" "$c1" "$cp" "$ap" "$dk" "$pl" "$n" <<'PY' | tee -a "$OUT/ratios.txt"
import sys
lz, c1, cp, ap, dk, pl = map(float, sys.argv[1:7]); n = sys.argv[7]
print(f"{n:>9} rows: append / (lzop -d + duckdb ingest) = {ap/(lz+dk):.2f}   append / (lzop -d + polars ingest) = {ap/(lz+pl):.2f}"
      f"   lzo decode 1 thread / lzop -d = {c1/lz:.2f}   2 threads / lzop -d = {cp/lz:.2f}")
PY
done
fi

# Training on the gold of the largest run, at four cutoffs (two trained on, one left out, the
# last evaluated: the time split `berserkr train` makes), against the peers on exactly the same
# rows, features and split (examples/bench/peer_models.py): LightGBM with our boosting's
# parameters, interleaved with our boosting TRAIN_ROUNDS times (default 3); linfa-trees' decision
# tree and linfa-logistic's logistic regression (examples/linfa-peer, a crate of its own built
# here only); and, for continuity, ../shared/peers/train.py on DuckDB's gold (13 features, a
# stratified split).
n=${ROWS##* }
if [ "${TRAIN:-1}" = 1 ] && [ -s "$OUT/online_retail_$n.csv.lzo" ]; then
  echo
  echo "== training on the gold of $n rows" >&2
  lt=$OUT/lake-$n-train
  if [ ! -d "$lt/gold/customer_item_features" ] || [ "${ONLY_TRAIN:-0}" != 1 ]; then
    rm -rf "$lt"; "$BIN" --lake "$lt" lake init > /dev/null
    "$BIN" --lake "$lt" lake append "$OUT/online_retail_$n.csv.lzo" > /dev/null
    "$BIN" --lake "$lt" lake refresh all --cutoff '2011-03-01 00:00:00' --cutoff '2011-05-01 00:00:00' \
      --cutoff '2011-07-01 00:00:00' --cutoff '2011-09-01 00:00:00' > /dev/null
  fi
  : > "$OUT/train-lightgbm.jsonl"
  for r in $(seq "${TRAIN_ROUNDS:-3}"); do
    "$PEERS/wait_quiet.sh" "${QUIET_MAX:-60}" 25 > /dev/null || true
    measure "train-gradient-boosting-$n" "$BIN" --lake "$lt" train --model gradient-boosting --out "$OUT/model-gradient-boosting" > /dev/null
    "$PEERS/wait_quiet.sh" "${QUIET_MAX:-60}" 25 > /dev/null || true
    "$PY" "$HERE/peer_models.py" lightgbm "$lt" "$OUT/model-gradient-boosting" | tee -a "$OUT/train-lightgbm.jsonl"
  done
  for m in decision-tree random-forest; do
    "$PEERS/wait_quiet.sh" "${QUIET_MAX:-60}" 25 > /dev/null || true
    measure "train-$m-$n" "$BIN" --lake "$lt" train --model "$m" --out "$OUT/model-$m" > /dev/null
  done
  if [ "${LINFA:-1}" = 1 ]; then
    CARGO_TARGET_DIR=${LINFA_TARGET_DIR:-$HOME/.cache/berserkr-linfa-target} \
      cargo build --release --locked --quiet --manifest-path "$REPO/examples/linfa-peer/Cargo.toml"
    linfa=${LINFA_TARGET_DIR:-$HOME/.cache/berserkr-linfa-target}/release/berserkr-linfa-peer
    "$PY" "$HERE/peer_models.py" export "$lt" "$OUT/model-gradient-boosting" "$OUT/linfa-rows"
    "$PEERS/wait_quiet.sh" "${QUIET_MAX:-60}" 25 > /dev/null || true
    measure "linfa-$n" sh -c "'$linfa' '$OUT/linfa-rows/train.csv' '$OUT/linfa-rows/eval.csv' '$OUT/linfa-scores.csv' > '$OUT/linfa-fit.json'" > /dev/null
    "$PY" "$HERE/peer_models.py" evaluate "$lt" "$OUT/model-gradient-boosting" "$OUT/linfa-scores.csv" > "$OUT/linfa-eval.json"
  fi
  if [ -s "$OUT/duckdb-$n/gold.parquet" ]; then
    "$PY" "$PEERS/train.py" "$OUT/duckdb-$n/gold.parquet" > "$OUT/train-peer.json"
  fi
  "$PY" - "$OUT" "$n" <<'PY' | tee -a "$OUT/ratios.txt"
import json, os, statistics, sys
out, n = sys.argv[1], sys.argv[2]
runs = [json.loads(l) for l in open(f"{out}/train-lightgbm.jsonl") if l.startswith("{")]
ours = {m: json.load(open(f"{out}/model-{m}/manifest.json")) for m in ("gradient-boosting", "decision-tree", "random-forest")}
peak = {}
for l in open(f"{out}/results.jsonl"):
    d = json.loads(l)
    peak[d["label"]] = max(peak.get(d["label"], 0), d["tree_peak_rss_mb"], d.get("time_v_maxrss_mb") or 0)
r0 = runs[-1]
print(f"training on {n} rows' gold: {r0['rows_train']} rows trained, {r0['rows_eval']} evaluated, {r0['features']} features, time split")
row = lambda name, x, fit, mem: print(f"  {name:<24} ROC AUC {x['roc_auc']:.4f}  p@5 {x['precision@5']:.4f}  p@10 {x['precision@10']:.4f}"
                                      f"  r@5 {x['recall@5']:.4f}  r@10 {x['recall@10']:.4f}  fit {fit}  {mem}")
b = r0["berserkr"]
row("berserkr boosting", b, f"{statistics.median(x['berserkr']['fit_s'] for x in runs):.2f} s", f"(peak {peak.get(f'train-gradient-boosting-{n}', 0):.0f} MiB, whole train)")
row("lightgbm", r0["lightgbm"], f"{statistics.median(x['lightgbm']['fit_s'] for x in runs):.2f} s", "")
for m in ("decision-tree", "random-forest"):
    e = ours[m]["evaluation"]["model"]
    row(f"berserkr {m}", {"roc_auc": e["roc_auc"], **{f"precision@{k}": v for k, v in e["precision_at"].items()},
                          **{f"recall@{k}": v for k, v in e["recall_at"].items()}},
        f"{ours[m]['fit_seconds']:.2f} s", f"(peak {peak.get(f'train-{m}-{n}', 0):.0f} MiB, whole train)")
if os.path.exists(f"{out}/linfa-eval.json"):
    ev, fit = json.load(open(f"{out}/linfa-eval.json")), json.load(open(f"{out}/linfa-fit.json"))
    for k, name in (("linfa_tree", "linfa-trees depth 8"), ("linfa_logistic", "linfa-logistic")):
        row(name, ev[k], f"{fit[k]['fit_s']:.2f} s", f"(peak {peak.get(f'linfa-{n}', 0):.0f} MiB, both fits)")
row("baseline popularity", b["popularity"], "-", "")
row("baseline recency", b["recency"], "-", "")
ratios = [x["fit_ratio"] for x in runs]
print(f"  boosting fit time / lightgbm per round: {' '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}); "
      f"AUC berserkr - lightgbm = {b['roc_auc'] - r0['lightgbm']['roc_auc']:+.4f}")
if os.path.exists(f"{out}/train-peer.json"):
    p = json.load(open(f"{out}/train-peer.json"))
    print(f"  ../shared/peers/train.py on DuckDB's gold (13 features, stratified): sklearn tree AUC {p['tree']['auc']:.4f} in {p['tree']['fit_s']:.2f} s, "
          f"lightgbm AUC {p['lightgbm']['auc']:.4f} in {p['lightgbm']['fit_s']:.2f} s")
PY
fi

# Table care: S3 vs local appends, opening old versions, optimize and Z-order (CARE=0 skips).
if [ "${CARE:-1}" = 1 ]; then
  echo; echo "== table care" >&2
  BIN=$BIN OUT=$OUT PEERS=$PEERS PEERS_PY=$PY bash "$HERE/care.sh"
fi
