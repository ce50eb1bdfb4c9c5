#!/usr/bin/env bash
# Runs every example once, briefly, on every backend compiled in with all features.
set -euo pipefail
cd "$(dirname "$0")/.."
backends=(thread coroutine)
cargo build --release --all-features --examples
for backend in "${backends[@]}"; do
  echo "-- seed on $backend"
  timeout 60 cargo run --release --all-features --quiet --example seed -- --backend "$backend"
done
