# berserkr: every set-up step is here, so a fresh machine needs only `make demo` and `make test`.
#
# One cargo profile (release) serves the demo and the tests: the dependencies build once. The bench
# measures the binary we ship, built with the `dist` profile (fat LTO, one codegen unit: a second,
# separate build of the dependencies); `make bench BENCH_PROFILE=release` reuses the test build.

CARGO      ?= cargo
LAKE       ?= ./lake
MODEL      ?= ./model
DROPS      ?= examples/data/online-retail/drops
PYTHON_ENV ?= $(HOME)/.cache/berserkr-ci-venv
AIRFLOW_ENV ?= $(HOME)/.cache/berserkr-airflow-venv
BERSERKR    = ./target/release/berserkr
BENCH_PROFILE ?= dist
export CARGO_TERM_COLOR ?= never

.PHONY: demo demo-s3 test crash bench fuzz build deps py-deps airflow-venv lint fmt clean

## System packages the tests and the demo need (Debian): lzop, to make and check drops; a Java
## runtime for JPMML, the independent PMML evaluator the export is checked against (and for
## PySpark); docker-compose, to validate docker/compose.yml (no Docker engine is needed for that).
deps:
	@{ command -v lzop && command -v java && command -v docker-compose; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq lzop openjdk-17-jre-headless docker-compose; }

## Python tools of the tests: DuckDB and its Delta extension (an independent Delta reader, and the
## reference pipeline of SPEC.md), numpy and pyarrow for the data generator, JPMML's evaluator
## (through JPype) to check the PMML export; moto's S3 server, the S3-compatible store the
## S3 tests run against on 127.0.0.1 (it implements conditional writes, which safe commits need);
## PySpark, which runs the SQL of tables/ unchanged to check it stays portable and reads gold
## through its symlink manifests; deltalake (delta-rs's Python binding, which polars' read_delta
## uses) and pytz (DuckDB's timestamps with time zone); dockerfile (BuildKit's Dockerfile parser).
py-deps:
	@[ -x $(PYTHON_ENV)/bin/python ] || python3 -m venv $(PYTHON_ENV)
	@$(PYTHON_ENV)/bin/python -c 'import duckdb, duckdb_extension_delta, numpy, pyarrow, polars, deltalake, pytz, jpmml_evaluator, jpype, moto, flask_cors, pyspark, dockerfile' 2>/dev/null || \
	  $(PYTHON_ENV)/bin/pip install -q duckdb==1.5.5 duckdb-extension-delta==1.5.5 numpy==2.4.6 pyarrow==26.0.1 polars==2.1.0 deltalake==1.6.6 pytz==2025.2 \
	    jpmml_evaluator==0.16.0 jpype1==1.7.1 'moto[server]==5.2.5' pyspark==4.3.0 dockerfile==3.4.0

## Airflow in a venv of its own (its many pins must not move the test venv's): tests/examples.rs
## loads examples/airflow/ with Airflow's DagBag. Its constraints file is on GitHub, which CI cannot
## reach, so only Airflow itself is pinned (a plain install took 20 s here).
airflow-venv:
	@[ -x $(AIRFLOW_ENV)/bin/python ] || python3 -m venv $(AIRFLOW_ENV)
	@$(AIRFLOW_ENV)/bin/python -c 'import airflow.sdk' 2>/dev/null || \
	  $(AIRFLOW_ENV)/bin/pip install -q apache-airflow==3.3.2

build:
	$(CARGO) build --release --locked

## The whole job on the real data shipped in the repo, into a local lake ($(LAKE)).
demo: deps build
	$(BERSERKR) --lake $(LAKE) lake init
	$(BERSERKR) --lake $(LAKE) lake settings --cutoffs monthly,latest
	$(BERSERKR) --lake $(LAKE) lake run --keep-going '$(DROPS)' --train --out $(MODEL) --score
	@echo "the same daily run again: nothing new, nothing done"
	$(BERSERKR) --lake $(LAKE) lake run --keep-going '$(DROPS)' --train --out $(MODEL) --score
	$(BERSERKR) --lake $(LAKE) score --model $(MODEL) --customer 17850 --top 10
	$(BERSERKR) model export --model $(MODEL) --format pmml
	$(BERSERKR) --lake $(LAKE) lake optimize
	$(BERSERKR) --lake $(LAKE) lake status
	$(BERSERKR) --lake $(LAKE) lake check
	@echo "report: $(MODEL)/report.html"
	@echo "serve:  $(BERSERKR) --lake $(LAKE) serve --model $(MODEL)   # would listen on http://127.0.0.1:8080"

## The same demo with the lake and the drops in S3: a local S3 server (moto's), then
## `make demo LAKE=s3://... DROPS='s3://...'` (see examples/s3-demo.sh; docker/ has MinIO).
demo-s3: py-deps
	bash examples/s3-demo.sh

## Formatting, lints and every test (unit, integration, doc).
test: deps py-deps airflow-venv
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	BERSERKR_TEST_PYTHON=$(PYTHON_ENV)/bin/python BERSERKR_TEST_AIRFLOW_PYTHON=$(AIRFLOW_ENV)/bin/python \
	  $(CARGO) test --release --locked

## Long crash runs: tests/crash.rs (SIGKILL at seeded moments, file:// and S3) with TRIALS kills per
## command and store, and tests/faults.rs (S3 faults). `make test` runs both with 30 trials (about
## 5 minutes on 2 cores).
## BERSERKR_CRASH_SEED=N replays a failing run (every failure prints its seed).
TRIALS ?= 300
crash: deps py-deps
	BERSERKR_CRASH_TRIALS=$(TRIALS) BERSERKR_TEST_PYTHON=$(PYTHON_ENV)/bin/python \
	  $(CARGO) test --release --locked --test crash --test faults -- --nocapture

fmt:
	$(CARGO) fmt --all

## The benchmark against the peer pipelines in ../shared/peers (not a test: it prints figures).
bench: deps
	$(CARGO) build --profile $(BENCH_PROFILE) --locked --bin berserkr --example parquet-floor
	BIN=./target/$(BENCH_PROFILE)/berserkr bash examples/bench/run.sh

## libFuzzer on the parsers (lzop container, LZO1X, CSV and JSON-lines drops, berserkr.toml),
## FUZZ_SECONDS per target; fails when a target finds a crash or a hang (tests/fuzz/README.md).
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

clean:
	rm -rf $(LAKE) $(MODEL) bench-out
