#!/usr/bin/env bash
# Gold in Spark SQL (delta-spark) on the compose stack (docker/compose.yml): register every lake
# table with the statements `berserkr lake register --engine spark` prints, then query gold.
# Needs: `docker compose -f docker/compose.yml up -d minio minio-init spark` and the demo run
# (`docker compose -f docker/compose.yml --profile demo run --rm berserkr-demo`).
set -euo pipefail
cd "$(dirname "$0")/../.."
compose() { docker compose -f docker/compose.yml "$@"; }
{
  compose run --rm -T berserkr lake register --engine spark --lake-url s3a://lake/retail
  sed 's/\${T}/gold.customer_item_features/g' examples/engines/gold_queries.sql
} > /tmp/berserkr-spark.sql
compose cp /tmp/berserkr-spark.sql spark:/tmp/berserkr-spark.sql
compose exec -T spark /opt/spark/bin/spark-sql -f /tmp/berserkr-spark.sql
