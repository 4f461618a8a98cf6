#!/usr/bin/env bash
# Gold in Trino (Delta Lake connector, catalog `delta`) on the compose stack (docker/compose.yml):
# register every lake table with `CALL delta.system.register_table(...)` as
# `berserkr lake register --engine trino` prints them, then query gold.
# Needs: `docker compose -f docker/compose.yml up -d minio minio-init trino` and the demo run.
set -euo pipefail
cd "$(dirname "$0")/../.."
compose() { docker compose -f docker/compose.yml "$@"; }
{
  compose run --rm -T berserkr lake register --engine trino
  sed 's/\${T}/delta.gold.customer_item_features/g' examples/engines/gold_queries.sql
} | grep -v '^--' > /tmp/berserkr-trino.sql
compose cp /tmp/berserkr-trino.sql trino:/tmp/berserkr-trino.sql
compose exec -T trino trino --file /tmp/berserkr-trino.sql
