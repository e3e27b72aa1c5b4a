#!/bin/sh
# The Workers load benchmark: builds Portcullis (benches/gateway.toml) and the
# pass-through baseline worker as release builds with wasm-opt, then runs
# benches/workers/load.mjs, then benches/workers/stream.mjs (large bodies), on one local
# workerd. Results: target/bench/workers.{md,json} and target/bench/workers-stream.{md,json}.
# Bounded: ROUNDS (default 3) x SECONDS (default 5) per target and concurrency, loopback only.
set -eu
cd "$(dirname "$0")/.."
export WORKER_OPT=1
PORTCULLIS_CONFIG=benches/gateway.toml WORKER_OUT_DIR=build-bench sh scripts/build-worker.sh
WORKER_CRATE=benches/passthrough-worker sh scripts/build-worker.sh
node benches/workers/load.mjs
exec node benches/workers/stream.mjs
