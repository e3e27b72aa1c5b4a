#!/bin/sh
# The Spin benchmark: builds Portcullis (benches/gateway.toml, and the same with 1,000 more routes
# and 10,000 more deny-list CIDRs) and the pass-through component for wasm32-wasip2 (release),
# then runs them in the wasmtime test host (spin-bench), and on real Spin when SPIN_BIN names a
# Spin CLI. Results: target/bench/spin.{md,json}. Bounded: ROUNDS (default 3) x SECONDS
# (default 5) per target; CONCURRENCY (default 1) connections, BENCH_PATH the request.
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR_BENCH="$PWD/target/bench-spin"
PORTCULLIS_CONFIG=benches/gateway.toml SPIN_MANIFEST=benches/spin/portcullis.toml \
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR_BENCH" cargo build -p portcullis-spin --target wasm32-wasip2 --release --locked
CARGO_TARGET_DIR="$CARGO_TARGET_DIR_BENCH" cargo build -p passthrough-spin --target wasm32-wasip2 --release --locked
# the large config: the benchmark's, with 1,000 more routes and 10,000 more deny-list CIDRs
node benches/large-config.mjs
PORTCULLIS_CONFIG=target/bench/large-gateway.toml SPIN_MANIFEST=benches/spin/portcullis-large.toml \
  CARGO_TARGET_DIR="$PWD/target/bench-spin-large" cargo build -p portcullis-spin --target wasm32-wasip2 --release --locked
for f in portcullis_spin passthrough_spin; do
  w="$CARGO_TARGET_DIR_BENCH/wasm32-wasip2/release/$f.wasm"
  echo "$f.wasm: $(wc -c < "$w") bytes raw, $(gzip -9 -c "$w" | wc -c) bytes gzip -9"
done
# an HS256 token for benches/gateway.toml's provider, valid for an hour
BENCH_TOKEN=$(node -e '
const c = require("crypto"), b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const h = b({ alg: "HS256", typ: "JWT", kid: "bench" });
const p = b({ iss: "https://bench.portcullis.local/", aud: "bench", sub: "bench-user", scope: "items:read", exp: Math.floor(Date.now() / 1000) + 3600 });
console.log(`${h}.${p}.${c.createHmac("sha256", "portcullis-bench-secret-0123456789abcdef").update(`${h}.${p}`).digest("base64url")}`);')
export BENCH_TOKEN
exec cargo run -q -p spin-test-host --bin spin-bench --locked
