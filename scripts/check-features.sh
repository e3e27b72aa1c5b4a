#!/bin/sh
# Checks every combination of the core's optional parts that a worker build can pick
# (`portcullis-build features` chooses any subset of these five from the config), for the
# worker's target. Usage: sh scripts/check-features.sh
set -eu
cd "$(dirname "$0")/.."
for schema in "" json-schema; do
  for asym in "" asymmetric-jwt; do
    for hs in "" hs384-hs512; do
      for cache in "" response-cache; do
        for traces in "" telemetry; do
          features=$(echo "$schema $asym $hs $cache $traces" | xargs | tr ' ' ',')
          echo "portcullis-core --features '${features}'"
          cargo check --quiet --locked -p portcullis-core --no-default-features \
            --target wasm32-unknown-unknown ${features:+--features "$features"}
        done
      done
    done
  done
done
