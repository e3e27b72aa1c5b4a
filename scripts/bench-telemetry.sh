#!/bin/sh
# What telemetry costs a request on Workers: Portcullis built from benches/gateway.toml as it is
# (build-bench); with a [telemetry] section that counts every request, as OTLP metrics sent to
# the bench upstream and as an Analytics Engine data point (build-metered); and with one that
# also traces every request (build-traced); side by side on one workerd (benches/workers/ab.mjs,
# rounds interleaved, one connection by default). The bench upstream answers 200 on any path.
# Loopback only; bounded by ROUNDS x SECONDS per target. Results: target/bench/telemetry.txt
set -eu
cd "$(dirname "$0")/.."
export WORKER_OPT=1 # release builds with wasm-opt, as deployed
mkdir -p target/bench
with_telemetry() { # $1: the [telemetry] keys after `upstream`
  cat benches/gateway.toml
  cat <<TOML

[upstreams.collector]
targets = [{ url = "http://127.0.0.1:18190" }]
timeout_ms = 2000
allow_private = true

[telemetry]
upstream = "collector"
analytics_engine = "PORTCULLIS_ANALYTICS"
$1
TOML
}
metered=target/bench/metered-gateway.toml
traced=target/bench/traced-gateway.toml
with_telemetry "traces = false" > "$metered"
with_telemetry "sample = 1.0" > "$traced"
PORTCULLIS_CONFIG=benches/gateway.toml WORKER_OUT_DIR=build-bench sh scripts/build-worker.sh
PORTCULLIS_CONFIG="$metered" WORKER_OUT_DIR=build-metered sh scripts/build-worker.sh
PORTCULLIS_CONFIG="$traced" WORKER_OUT_DIR=build-traced sh scripts/build-worker.sh
WORKER_CRATE=benches/passthrough-worker sh scripts/build-worker.sh
BUILDS=build-bench,build-metered,build-traced ROUNDS="${ROUNDS:-7}" SECONDS="${SECONDS:-3}" \
  node benches/workers/ab.mjs | tee target/bench/telemetry.txt
