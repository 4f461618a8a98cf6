"""berserkr's daily job on Airflow 3: one DAG run per day (its data interval), in day order.

    wait_for_drop -> lake_run -> is_training_day -> retrain

- wait_for_drop: a sensor (reschedule mode: it frees its worker slot between pokes) that waits
  for the day's drop. Local folders are checked here; for `s3://` drops it succeeds at once and
  leaves the check to berserkr (a drop that is still missing fails `lake run` with exit 2, which
  is retried), unless the Amazon provider is installed, when it asks S3 for the key.
- lake_run: `berserkr lake run <drop> --json`: append (already-landed drops are skipped),
  refresh silver, refresh gold. Exit 0 (also "nothing to do"): the JSON summary is logged and
  returned, so it is pushed to XCom. Exit 1 (bad input: a corrupt or refused drop): the task
  fails at once without retrying (AirflowFailException); retrying will not help. Exit 2 or
  anything else (I/O, store unreachable, a failed commit): the task fails and Airflow retries it
  with exponential backoff; `lake run` resumes after the steps that committed.
- is_training_day / retrain: on one weekday (TRAIN_WEEKDAY, ISO 1..7, default Sunday) the same
  command with `--train --out <models>/<day> --score` (drops already landed: it only trains and
  scores); other days it is skipped.

Settings are Airflow Variables (or their environment form, AIRFLOW_VAR_<NAME>), read when a task
runs, never when the file is parsed:
  berserkr_lake        the lake URL (required), e.g. s3://retail/lake
  berserkr_drops_url   folder or s3:// prefix of the drops (required)
  berserkr_drop_name   a day's drop name, Python format with {day} (default {day}.csv.lzo)
  berserkr_bin         the berserkr binary (default berserkr on the worker's PATH)
  berserkr_models_dir  where weekly models go (default <lake>/../models for a local lake)
  berserkr_extra_args  more `lake run` arguments, split like a shell would (e.g. --cutoffs monthly)

catchup=True backfills every day since start_date in order, and max_active_runs=1 keeps days in
order: several writers could share the lake safely (commits are conditional), but gold's cutoffs
follow silver, so a later day running first would only do work the earlier day redoes.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from datetime import date, datetime, timedelta, timezone

from airflow.sdk import Variable, dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

log = logging.getLogger(__name__)

#: Exit codes of the berserkr CLI.
EXIT_OK, EXIT_BAD_INPUT = 0, 1

DEFAULT_ARGS = {
    "owner": "berserkr",
    "retries": 4,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(hours=1),
    "execution_timeout": timedelta(hours=2),
}

#: ISO weekday (1 = Monday .. 7 = Sunday) of the day whose run also retrains and scores.
TRAIN_WEEKDAY = int(os.environ.get("BERSERKR_TRAIN_WEEKDAY", "7"))


def setting(name: str, default: str | None = None) -> str:
    """An Airflow Variable (or AIRFLOW_VAR_<NAME>); a missing required one is bad input."""
    value = Variable.get(name, default=default)
    if value is None or value == "":
        raise AirflowFailException(f"Airflow Variable {name} is not set")
    return value


def drop_url(day: str) -> str:
    """The day's drop: berserkr_drops_url / berserkr_drop_name with the day filled in."""
    name = setting("berserkr_drop_name", "{day}.csv.lzo").format(day=day)
    return f"{setting('berserkr_drops_url').rstrip('/')}/{name}"


def drop_arrived(url: str) -> bool:
    """Whether the drop is there: a local file, or an S3 key when the Amazon provider is
    installed; any other store is left to berserkr (True)."""
    if "://" not in url or url.startswith("file://"):
        return os.path.exists(url.removeprefix("file://"))
    if url.startswith(("s3://", "s3a://")):
        try:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        except ImportError:
            return True
        bucket, _, key = url.split("://", 1)[1].partition("/")
        return S3Hook().check_for_key(key, bucket_name=bucket)
    return True


def run_berserkr(args: list[str]) -> dict:
    """Runs `berserkr --lake <lake> ARGS --json`; its summary on exit 0, AirflowFailException on
    exit 1 (not retried), RuntimeError on anything else (retried with backoff)."""
    extra = shlex.split(Variable.get("berserkr_extra_args", default=None) or "")
    cmd = [setting("berserkr_bin", "berserkr"), "--lake", setting("berserkr_lake"), *args, *extra, "--json"]
    log.info("running %s", shlex.join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stderr.splitlines():
        log.info("berserkr: %s", line)
    try:
        summary = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        summary = None
        log.warning("stdout is not the JSON summary: %s", proc.stdout[:2000])
    if summary is not None:
        log.info("summary: %s", json.dumps(summary))
        for step in summary.get("steps", []):
            log.info("step %-6s %-10s %.2fs %s", step.get("step"), step.get("status"),
                     step.get("seconds") or 0.0, json.dumps(step.get("detail")))
    error = (summary or {}).get("error") or proc.stderr.strip()[-2000:]
    if proc.returncode == EXIT_OK:
        if summary is None:
            raise RuntimeError("berserkr exited 0 without its JSON summary")
        if not summary.get("did_work"):
            log.info("nothing to do: the lake already reflects this day")
        return summary
    if proc.returncode == EXIT_BAD_INPUT:
        raise AirflowFailException(f"berserkr: bad input (exit 1), not retried: {error}")
    raise RuntimeError(f"berserkr exited {proc.returncode} (will be retried): {error}")


def models_dir(day: str) -> str:
    base = Variable.get("berserkr_models_dir", default=None)
    if not base:
        lake = setting("berserkr_lake")
        if "://" in lake and not lake.startswith("file://"):
            raise AirflowFailException("set the Airflow Variable berserkr_models_dir for a remote lake")
        base = os.path.join(os.path.dirname(lake.removeprefix("file://").rstrip("/")), "models")
    return os.path.join(base, day)


@dag(
    dag_id="berserkr_daily",
    description="berserkr lake run: the day's drop into bronze, silver and gold; weekly retrain",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["berserkr"],
    doc_md=__doc__,
)
def berserkr_daily():
    # The day is the run's data interval start: the run for day D starts after D ends.
    day = "{{ data_interval_start | ds }}"

    @task.sensor(mode="reschedule", poke_interval=600, timeout=12 * 3600, retries=0)
    def wait_for_drop(day: str) -> bool:
        url = drop_url(day)
        arrived = drop_arrived(url)
        log.info("drop %s %s", url, "is there" if arrived else "has not arrived")
        return arrived

    @task
    def lake_run(day: str) -> dict:
        return run_berserkr(["lake", "run", drop_url(day)])

    @task.short_circuit
    def is_training_day(day: str) -> bool:
        return date.fromisoformat(day).isoweekday() == TRAIN_WEEKDAY

    @task
    def retrain(day: str) -> dict:
        return run_berserkr(["lake", "run", "--train", "--out", models_dir(day), "--score"])

    wait_for_drop(day) >> lake_run(day) >> is_training_day(day) >> retrain(day)


berserkr_daily()
