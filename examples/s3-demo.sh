#!/usr/bin/env bash
# `make demo-s3`: the whole demo with the lake, and the drops, in S3: an S3-compatible server
# (moto's, the one the tests use) on 127.0.0.1, the drops uploaded to a bucket, then exactly
# `make demo` with one flag changed (LAKE=s3://...) and the drops read from s3:// URLs.
# With MinIO instead (docker/compose.yml), export its AWS_* settings and run
# `make demo LAKE=s3://lake/retail` directly.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON_ENV:-$HOME/.cache/berserkr-ci-venv}/bin/python
coproc SRV { "$PY" tests/tools/s3_server.py berserkr-lake berserkr-drops 2>/dev/null; }
read -r PORT <&"${SRV[0]}"
trap 'exec {SRV[1]}>&-; wait' EXIT
export AWS_ENDPOINT=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
       AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret-not-shown
echo "S3 server on $AWS_ENDPOINT; uploading the drops to s3://berserkr-drops/online-retail/" >&2
"$PY" - <<'PY'
import glob, os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"])
for p in sorted(glob.glob("examples/data/online-retail/drops/*.lzo")):
    s3.upload_file(p, "berserkr-drops", "online-retail/" + os.path.basename(p))
PY
make demo LAKE=s3://berserkr-lake/demo DROPS='s3://berserkr-drops/online-retail/*.csv.lzo' \
     MODEL=${MODEL:-./model-s3}
