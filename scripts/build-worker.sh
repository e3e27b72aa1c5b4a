#!/bin/sh
# Builds the Workers adapter (adapters/workers/build/: shim.mjs, index.js, index_bg.wasm) with the
# config named by PORTCULLIS_CONFIG (default examples/gateway.toml). wrangler runs this as its
# [build] command. Nothing is installed with cargo: `portcullis-build` (adapters/build) drives
# cargo and links wasm-bindgen as a library; wasm-opt comes from `npm ci` (binaryen), and wrangler
# bundles the result with its own esbuild.
#   WORKER_OPT=1        the wasm-opt pass (~15% smaller, minutes on 2 cores): `npm run deploy`,
#                       `npm run pack` and the benchmarks set it; `--dev` (the test suites) skips it
#   WORKER_KEEP_NAMES=1 keep function names in an optimized build (for profiles)
#   WORKER_PROFILE      the cargo profile: release with WORKER_OPT=1, else wasm-dev (no LTO; what
#                       `wrangler dev` and the end-to-end suites run)
#   WORKER_OUT_DIR      where the worker goes, relative to the crate (default build)
#   WORKER_CRATE        which worker crate (default adapters/workers; the benchmark builds its
#                       pass-through baseline)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

opt=
[ "${WORKER_OPT:-0}" = 1 ] && [ "${1:-}" != "--dev" ] && opt=--opt
profile=${WORKER_PROFILE:-$([ -n "$opt" ] && echo release || echo wasm-dev)}
set -- worker --profile "$profile" --crate "${WORKER_CRATE:-adapters/workers}" \
  --out-dir "${WORKER_OUT_DIR:-build}" $opt $([ "${WORKER_KEEP_NAMES:-0}" = 1 ] && echo --keep-names)
[ -z "$opt" ] || [ -x node_modules/.bin/wasm-opt ] || npm ci --no-audit --no-fund
# the tool builds in its own profile (about a minute the first time); its target directory is
# the workspace's, whatever CARGO_TARGET_DIR the worker builds in
CARGO_TARGET_DIR="$root/target" cargo build --quiet --locked -p portcullis-build --profile tool
exec "$root/target/tool/portcullis-build" "$@"
