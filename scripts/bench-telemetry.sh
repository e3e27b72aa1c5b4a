#!/bin/sh
# What tracing costs a request on Workers: Portcullis built from benches/gateway.toml as it is
# (build-bench) and with a [telemetry] section that traces every request and sends its spans to
# the bench upstream, which answers 200 (build-traced), side by side on one workerd
# (benches/workers/ab.mjs, rounds interleaved, one connection by default).
# Loopback only; bounded by ROUNDS x SECONDS per target. Results: target/bench/telemetry.txt
set -eu
cd "$(dirname "$0")/.."
export WORKER_OPT=1 # release builds with wasm-opt, as deployed
mkdir -p target/bench
traced=target/bench/traced-gateway.toml
{
  cat benches/gateway.toml
  cat <<'TOML'

# every request traced; the spans go to the bench upstream (any path answers 200)
[upstreams.collector]
targets = [{ url = "http://127.0.0.1:18190" }]
timeout_ms = 2000
allow_private = true

[telemetry]
upstream = "collector"
sample = 1.0
TOML
} > "$traced"
PORTCULLIS_CONFIG=benches/gateway.toml WORKER_OUT_DIR=build-bench sh scripts/build-worker.sh
PORTCULLIS_CONFIG="$traced" WORKER_OUT_DIR=build-traced sh scripts/build-worker.sh
WORKER_CRATE=benches/passthrough-worker sh scripts/build-worker.sh
BUILDS=build-bench,build-traced ROUNDS="${ROUNDS:-7}" SECONDS="${SECONDS:-3}" \
  node benches/workers/ab.mjs | tee target/bench/telemetry.txt
