#!/bin/sh
# Builds the Workers adapter (adapters/workers/build/worker/shim.mjs + the .wasm) with the config
# named by PORTCULLIS_CONFIG (default examples/gateway.toml), installing the pieces it needs first.
# wrangler runs this as its [build] command.
# Everything is offline: worker-build is pointed at local wasm-bindgen, wasm-opt and esbuild.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# toolchain pieces (each is skipped when already present)
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
have() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -q "$2"; }
have worker-build 0.8.7 || cargo install worker-build --version 0.8.7 --locked
# must equal the wasm-bindgen version in Cargo.lock
have wasm-bindgen 0.2.129 || cargo install wasm-bindgen-cli --version =0.2.129 --locked
[ -x node_modules/.bin/wasm-opt ] || npm ci --no-audit --no-fund

export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$root/node_modules/@esbuild/linux-x64/bin/esbuild"
# keep the wasm custom sections: wasm-bindgen reads `target_features` to use reference types,
# and fails ("externref table required") when `strip = true` removed it. It drops debug info and
# names itself, and wasm-opt shrinks the rest.
export CARGO_PROFILE_RELEASE_STRIP=debuginfo
# Release code always. The wasm-opt pass shrinks the wasm ~15% but takes minutes on 2 cores, so it
# runs only with WORKER_OPT=1 (`npm run deploy`, `npm run pack`, the benchmark); `--dev` or
# wrangler's own runs skip it.
mode="--release --no-opt"
[ "${WORKER_OPT:-0}" = 1 ] && [ "${1:-}" != "--dev" ] && mode=--release
# WORKER_OUT_DIR: where the worker goes, relative to the crate (default build);
# WORKER_CRATE: which worker crate (default adapters/workers; the benchmark builds its baseline)
crate="${WORKER_CRATE:-adapters/workers}"
out="${WORKER_OUT_DIR:-build}"

# JSON Schema validation (the jsonschema crate and its two regex engines) is most of the wasm, so
# it is compiled in only when the embedded config mentions `body_schema` outside a comment line.
# The match is on the text, so it errs towards including it; if it ever missed, the build
# script would still reject the config with a clear error rather than build a broken worker.
# The asymmetric JWT algorithms (RSA big integers, P-256, Ed25519) are treated the same way: in
# only when the config has a `jwks_url` or names one of those algorithms or an inline `jwk`; and
# so are HS384/HS512 (SHA-512), in when the config names them or has a `jwks_url`, and the
# response cache (`http-cache-semantics`), in only when a route sets `cache`.
features=
config="${PORTCULLIS_CONFIG:-examples/gateway.toml}"
if [ "$crate" = adapters/workers ]; then
  text=$(grep -v '^[[:space:]]*#' "$config" || true)
  printf '%s\n' "$text" | grep -q body_schema && features="$features,json-schema"
  printf '%s\n' "$text" | grep -Eq 'jwks_url|jwk[[:space:]]*=|RS256|RS384|RS512|PS256|ES256|EdDSA' &&
    features="$features,asymmetric-jwt"
  # SHA-512 for HS384/HS512: when the config names them, or has a JWKS (which may hold such keys)
  printf '%s\n' "$text" | grep -Eq 'jwks_url|HS384|HS512' && features="$features,hs384-hs512"
  # response caching (RFC 9111 rules and date parsing): only when a route sets `cache` or
  # purges it
  printf '%s\n' "$text" | grep -Eq '(^|[^a-z_])cache[[:space:]]*[=.]|\.cache[[:space:]]*\]|purge_cache' &&
    features="$features,response-cache"
fi

worker-build $mode --out-dir "$out" "$crate" ${features:+--features "${features#,}"}

# worker-build keeps the wasm names section (function names in stack traces; about a tenth of
# the gzip size). Optimized builds drop it unless WORKER_KEEP_NAMES=1.
case "$out" in
  /*) wasm="$out/index_bg.wasm" ;; # worker-build takes a relative --out-dir from the crate
  *) wasm="$crate/$out/index_bg.wasm" ;;
esac
if [ "$mode" = --release ] && [ "${WORKER_KEEP_NAMES:-0}" != 1 ]; then
  # (and, wasm-bindgen being done with it, the `target_features` section)
  "$WASM_OPT_BIN" "$wasm" -o "$wasm" --strip-debug --strip-producers --strip-target-features \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
fi
