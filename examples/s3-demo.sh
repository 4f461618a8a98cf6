#!/usr/bin/env bash
# `make demo-s3`: the whole demo with the lake, and the drops, in S3, then exactly `make demo`
# with one flag changed (LAKE=s3://...) and the drops read from s3:// URLs.
#
# By default the S3 server is moto's (the one the tests use), started on 127.0.0.1 for the run.
# With S3_ENDPOINT set, it is that server instead, e.g. the compose stack's MinIO
# (docker compose -f docker/compose.yml up -d minio minio-init):
#   S3_ENDPOINT=http://127.0.0.1:9000 make demo-s3
# with its credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, default the stack's) and its
# buckets (lake, drops).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON_ENV:-$HOME/.cache/berserkr-ci-venv}/bin/python
if [ -n "${S3_ENDPOINT:-}" ]; then
  export AWS_ENDPOINT=$S3_ENDPOINT AWS_ALLOW_HTTP=true AWS_REGION=${AWS_REGION:-us-east-1} \
         AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-berserkr} \
         AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-berserkr-minio-secret}
  LAKE_BUCKET=lake DROPS_BUCKET=drops
else
  coproc SRV { "$PY" tests/tools/s3_server.py berserkr-lake berserkr-drops 2>/dev/null; }
  read -r PORT <&"${SRV[0]}"
  trap 'exec {SRV[1]}>&-; wait' EXIT
  export AWS_ENDPOINT=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
         AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret-not-shown
  LAKE_BUCKET=berserkr-lake DROPS_BUCKET=berserkr-drops
fi
echo "S3 server on $AWS_ENDPOINT; uploading the drops to s3://$DROPS_BUCKET/online-retail/" >&2
DROPS_BUCKET=$DROPS_BUCKET "$PY" - <<'PY'
import glob, os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"])
bucket = os.environ["DROPS_BUCKET"]
for p in sorted(glob.glob("examples/data/online-retail/drops/*.lzo")):
    s3.upload_file(p, bucket, "online-retail/" + os.path.basename(p))
PY
make demo LAKE=s3://$LAKE_BUCKET/demo DROPS="s3://$DROPS_BUCKET/online-retail/*.csv.lzo" \
     MODEL=${MODEL:-./model-s3}
