#!/usr/bin/env bash
# One day of the berserkr pipeline, for cron: `berserkr lake run <the day's drop> --json`, under a
# lock, logged with timestamps, retried with backoff on exit 2 only (I/O, store unreachable, a lost
# or failed commit: retrying may help), never on exit 1 (a corrupt or refused drop: it will not).
# `lake run` is idempotent: a rerun of a day that landed does nothing and exits 0.
#
# Usage: berserkr-daily.sh [DAY]          DAY is YYYY-MM-DD, default yesterday (UTC)
# Settings (environment; a crontab sets them on the line or above it):
#   BERSERKR_LAKE   the lake URL (berserkr reads it itself), e.g. s3://retail/lake or /srv/lake
#   DROPS_URL       folder or s3:// prefix of the drops (required)
#   DROP_NAME       printf pattern of a day's drop name under DROPS_URL (default %s.csv.lzo)
#   BERSERKR        the binary (default: berserkr on PATH)
#   LOG_DIR         where the log and the day's JSON summary go (default /var/log/berserkr)
#   LOCK_FILE       the lock that keeps one run at a time (default $LOG_DIR/berserkr-daily.lock)
#   LOCK_WAIT       seconds to wait for a run still holding the lock (default 3600; then exit 2)
#   ATTEMPTS        tries in all on exit 2 (default 4)
#   RETRY_DELAY     seconds before the first retry, doubled each time (default 300)
#   RUN_TIMEOUT     seconds one attempt may take before it is stopped (TERM, then KILL a minute
#                   later) and retried like exit 2 (default 7200, as the Airflow DAG's
#                   execution_timeout; empty: no limit). A stopped run commits nothing half-way:
#                   each table's commit is atomic, and the rerun continues from the last step
#                   that committed
#   DROP_WAIT       seconds to wait for a local drop that has not arrived (default 0)
#   TRAIN_WEEKDAY   ISO weekday (1 = Monday .. 7 = Sunday) of DAY on which to retrain and score
#                   (default 7; empty: never); the model goes to $MODELS_DIR/<DAY>
#   MODELS_DIR      default $LOG_DIR/models
#   EXTRA_ARGS      more arguments for `lake run` (e.g. "--cutoffs monthly")
# Exit status: berserkr's last (0 ok or nothing to do, 1 bad input, 2 other error); 2 when the
# lock or the drop did not come in time; 1 for a bad DAY or missing setting.
set -uo pipefail

BERSERKR="${BERSERKR:-berserkr}"
LOG_DIR="${LOG_DIR:-/var/log/berserkr}"
LOCK_FILE="${LOCK_FILE:-$LOG_DIR/berserkr-daily.lock}"
LOCK_WAIT="${LOCK_WAIT:-3600}"
ATTEMPTS="${ATTEMPTS:-4}"
RETRY_DELAY="${RETRY_DELAY:-300}"
RUN_TIMEOUT="${RUN_TIMEOUT-7200}"
DROP_WAIT="${DROP_WAIT:-0}"
DROP_NAME="${DROP_NAME:-%s.csv.lzo}"
TRAIN_WEEKDAY="${TRAIN_WEEKDAY-7}"
MODELS_DIR="${MODELS_DIR:-$LOG_DIR/models}"
DAY="${1:-$(date -u -d yesterday +%F)}"

mkdir -p "$LOG_DIR" || exit 2
LOG="$LOG_DIR/berserkr-daily.log"

# Every line, ours and berserkr's stderr, goes to the log as "<UTC time> [DAY] line".
stamp() { while IFS= read -r line; do printf '%s [%s] %s\n' "$(date -u +%FT%TZ)" "$DAY" "$line"; done >>"$LOG"; }
log() { printf '%s\n' "$*" | stamp; }

if ! [[ "$DAY" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || ! date -u -d "$DAY" >/dev/null 2>&1; then
  log "bad day '$DAY' (want YYYY-MM-DD)"; exit 1
fi
if [ -z "${DROPS_URL:-}" ]; then log "DROPS_URL is not set"; exit 1; fi

# One run at a time: the fd stays open (and the lock held) until this script exits.
exec 9>>"$LOCK_FILE" || { log "cannot open lock $LOCK_FILE"; exit 2; }
if ! flock -w "$LOCK_WAIT" 9; then
  log "another run still holds $LOCK_FILE after ${LOCK_WAIT}s; giving up (exit 2)"; exit 2
fi

# printf '%s' fills the pattern with the day; %% in it stays a literal %.
# shellcheck disable=SC2059
DROP="${DROPS_URL%/}/$(printf "$DROP_NAME" "$DAY")"
case "$DROP" in
  *://*) ;;  # on an object store: berserkr resolves it (a missing key is its error)
  *)
    waited=0
    until [ -e "$DROP" ]; do
      if [ "$waited" -ge "$DROP_WAIT" ]; then
        log "drop $DROP has not arrived (waited ${waited}s; exit 2, a later run may find it)"; exit 2
      fi
      sleep 60; waited=$((waited + 60))
    done ;;
esac

args=(lake run "$DROP" --json)
if [ -n "$TRAIN_WEEKDAY" ] && [ "$(date -u -d "$DAY" +%u)" = "$TRAIN_WEEKDAY" ]; then
  args+=(--train --out "$MODELS_DIR/$DAY" --score)
fi
# shellcheck disable=SC2206
[ -n "${EXTRA_ARGS:-}" ] && args+=($EXTRA_ARGS)

SUMMARY="$LOG_DIR/summary-$DAY.json"
attempt=1; delay="$RETRY_DELAY"
while :; do
  log "attempt $attempt/$ATTEMPTS: $BERSERKR ${args[*]}"
  # stdout (the JSON summary) to a file, stderr (the logs) through the time stamps.
  limit=()
  [ -n "$RUN_TIMEOUT" ] && limit=(timeout --kill-after=60 "$RUN_TIMEOUT")
  started=$SECONDS
  "${limit[@]}" "$BERSERKR" "${args[@]}" 2>&1 >"$SUMMARY.tmp" | stamp
  rc=${PIPESTATUS[0]}
  # timeout exits 124 after its TERM, 137 after its KILL; a 137 before the limit is another
  # kill (the kernel's OOM killer, an operator) and is logged as such below.
  if [ -n "$RUN_TIMEOUT" ] && { [ "$rc" = 124 ] ||
       { [ "$rc" = 137 ] && [ $((SECONDS - started)) -ge "$RUN_TIMEOUT" ]; }; }; then
    log "attempt $attempt stopped after ${RUN_TIMEOUT}s (RUN_TIMEOUT; exit $rc)"
  fi
  if [ -s "$SUMMARY.tmp" ]; then
    mv "$SUMMARY.tmp" "$SUMMARY"; log "summary: $(tr -d '\n' <"$SUMMARY")"
  else
    rm -f "$SUMMARY.tmp"
  fi
  case "$rc" in
    0) log "done (exit 0)"; exit 0 ;;
    1) log "bad input (exit 1): not retried; fix or remove the drop, then rerun this day"; exit 1 ;;
  esac
  # 2, and anything else (killed, not found): retrying may help.
  if [ "$attempt" -ge "$ATTEMPTS" ]; then
    log "failed (exit $rc) after $attempt attempts"; exit 2
  fi
  log "exit $rc: retrying in ${delay}s"
  sleep "$delay"
  attempt=$((attempt + 1)); delay=$((delay * 2))
done
