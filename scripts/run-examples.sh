#!/usr/bin/env bash
# Runs every example once, briefly (--quick), on every backend compiled in with all features, then
# `compare` once over all of them (table, --json and --svg). The backend list comes from the
# programs themselves (`--list-backends`), so a new backend needs no change here.
set -euo pipefail
cd "$(dirname "$0")/.."

run() {
  local example=$1
  shift
  timeout 120 cargo run --release --all-features --quiet --example "$example" -- "$@"
}

cargo build --release --all-features --examples
mapfile -t backends < <(run seed --list-backends)
# The cluster backend needs a NATS server: `source scripts/nats.sh && nats_start` exports its URL.
if [[ -z ${POLYEXEC_CLUSTER_URL:-} ]]; then
  filtered=()
  for backend in "${backends[@]}"; do
    if [[ $backend == cluster ]]; then
      echo "cluster: skipped (POLYEXEC_CLUSTER_URL is not set)"
    else
      filtered+=("$backend")
    fi
  done
  backends=("${filtered[@]}")
fi
echo "backends compiled in: ${backends[*]}"

examples=(seed io_bound http cpu_bound errors map_progress soak tracing)
for backend in "${backends[@]}"; do
  for example in "${examples[@]}"; do
    echo
    echo "-- $example on $backend"
    run "$example" --backend "$backend" --quick
  done
done

echo
echo "-- compare (all backends)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run compare --quick --svg "$out/compare.svg"
run compare --quick --json >"$out/compare.json"
# The JSON names every backend measured (all but cluster, which compare runs only when named).
for backend in "${backends[@]}"; do
  [[ $backend == cluster ]] && continue
  grep -q "\"backend\": \"$backend\"" "$out/compare.json" || {
    echo "compare --json does not mention $backend" >&2
    exit 1
  }
done
grep -q '<svg' "$out/compare.svg" || {
  echo "compare --svg wrote no SVG" >&2
  exit 1
}
echo "compare --json and --svg: ok"
