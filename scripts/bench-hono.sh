#!/bin/sh
# Portcullis against Hono doing the same policy on one local workerd (issue 19): builds
# Portcullis with benches/gateway.toml plus 10,000 deny-list CIDRs (and again logging 1% of the
# successes) and the Rust pass-through worker (release, wasm-opt), then runs
# benches/workers/hono.mjs, which bundles the Hono worker with wrangler and measures at 1 and 8
# connections. Results: target/bench/workers-hono.{md,json}.
# Bounded: ROUNDS (default 3) x SECONDS (default 8) per target and concurrency, loopback only.
set -eu
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/wrangler ] && [ -d node_modules/hono ] || npm ci --no-audit --no-fund
node benches/large-config.mjs
export WORKER_OPT=1
PORTCULLIS_CONFIG=target/bench/cidr-gateway.toml WORKER_OUT_DIR=build-cidr sh scripts/build-worker.sh
PORTCULLIS_CONFIG=target/bench/cidr-sampled-gateway.toml WORKER_OUT_DIR=build-cidr-sampled sh scripts/build-worker.sh
WORKER_CRATE=benches/passthrough-worker sh scripts/build-worker.sh
exec node benches/workers/hono.mjs
