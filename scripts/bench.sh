#!/usr/bin/env bash
# Runs every benchmark (criterion benches of the three backends with their baselines and peers,
# the interleaved ratio and sleep programs, and Python's concurrent.futures/asyncio), then writes
# docs/benchmarks.md and docs/benchmarks.svg from the results.
#
#   scripts/bench.sh           # full run, about 15 minutes on 2 cores
#   scripts/bench.sh --quick   # shorter measurements, about 5 minutes; same page, wider spreads
#
# Not run by CI: numbers from a shared machine are for people to read. Everything is reported as
# ratios to a baseline measured in the same run. Results: target/criterion (criterion's own),
# target/polyexec-bench (everything else, and the logs).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help)
      sed -n '2,11p' "$0"
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

out=target/polyexec-bench
rm -rf "$out" target/criterion
mkdir -p "$out"
export POLYEXEC_BENCH_OUT="$PWD/$out"
export POLYEXEC_BENCH_QUICK="$quick"
export CARGO_TERM_COLOR=never

if [ "$quick" = 1 ]; then
  criterion_args=(--warm-up-time 0.5 --measurement-time 1.5)
  peers_args=(--quick)
else
  criterion_args=(--warm-up-time 1 --measurement-time 4)
  peers_args=()
fi

{
  echo "started: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "uptime before: $(uptime)"
  echo "cpus: $(nproc)"
  echo "kernel: $(uname -sr)"
  echo "rustc: $(rustc --version)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo ' (with local changes)')"
  echo "quick: $quick"
} >"$out/machine.txt"

step() { printf '\n==== %s ====\n' "$*"; }

step "build"
cargo bench --all-features --no-run

for bench in thread_pool coroutine subprocess; do
  step "criterion: $bench"
  cargo bench --all-features --bench "$bench" -- "${criterion_args[@]}" 2>&1 | tee "$out/$bench.log"
done

for bench in coroutine_ratio coroutine_sleep; do
  step "$bench"
  cargo bench --all-features --bench "$bench" 2>&1 | tee "$out/$bench.log"
done

step "python peers"
python3 benches/peers.py "${peers_args[@]}" | tee "$out/python.json"

echo "uptime after: $(uptime)" >>"$out/machine.txt"

step "report"
python3 scripts/bench_report.py --results "$out" --criterion target/criterion \
  --notes docs/benchmarks-notes.md --out docs/benchmarks.md --svg docs/benchmarks.svg
echo "wrote docs/benchmarks.md and docs/benchmarks.svg"
