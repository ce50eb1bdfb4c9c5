#!/usr/bin/env bash
# The project's test command: every crate, every feature, unit, integration and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-features
