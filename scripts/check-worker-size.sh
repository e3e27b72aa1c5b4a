#!/bin/sh
# Fails when the packed worker's wasm passes its gzip budget. Usage: check-worker-size.sh DIR
# (a `wrangler deploy --dry-run --outdir DIR` output). The budget and why it is what it is are in
# BENCHMARKS.md ("Workers: size"); raise it only with a measurement there.
set -eu
BUDGET_GZIP_BYTES=300000
dir=${1:?usage: check-worker-size.sh DIR}
# the newest, in case an earlier pack into the same directory left its wasm there
wasm=$(ls -t "$dir"/*.wasm 2>/dev/null | head -n 1)
[ -n "$wasm" ] || { echo "no .wasm under $dir" >&2; exit 1; }
raw=$(wc -c < "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "worker wasm: $raw bytes raw, $gz bytes gzip -9 (budget $BUDGET_GZIP_BYTES gzip)"
if [ "$gz" -gt "$BUDGET_GZIP_BYTES" ]; then
  echo "the worker is over its size budget by $((gz - BUDGET_GZIP_BYTES)) bytes gzip" >&2
  exit 1
fi
