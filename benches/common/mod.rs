//! Shared by the bench programs: the CPU kernel every backend runs, and where a program that
//! measures outside criterion (interleaved A/B rounds, wall time and memory) writes its figures
//! for `scripts/bench.sh`.
//!
//! Each bench binary includes this file with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// The CPU kernel of the "speedup over serial" shape, the same as `benches/peers.py`'s: count
/// the primes in `lo..hi` by trial division. Deliberately naive: all arithmetic, no memory.
pub(crate) fn count_primes((lo, hi): (u64, u64)) -> u64 {
    let mut count = 0;
    for n in lo.max(2)..hi {
        let mut d = 2;
        let mut prime = true;
        while d * d <= n {
            if n % d == 0 {
                prime = false;
                break;
            }
            d += 1;
        }
        count += u64::from(prime);
    }
    count
}

/// The kernel's inputs: `0..limit` cut into `chunks` equal ranges.
pub(crate) fn kernel_chunks(limit: u64, chunks: u64) -> Vec<(u64, u64)> {
    let step = limit / chunks;
    (0..chunks).map(|i| (i * step, (i + 1) * step)).collect()
}

/// `true` when `scripts/bench.sh --quick` (or a user) asked for a short run.
pub(crate) fn quick() -> bool {
    std::env::var_os("POLYEXEC_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty())
}

/// Where `scripts/bench.sh` collects the figures measured outside criterion:
/// `$POLYEXEC_BENCH_OUT`, or `target/polyexec-bench` (benches run in the package root).
pub(crate) fn out_dir() -> PathBuf {
    std::env::var_os("POLYEXEC_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/polyexec-bench"))
}

/// Writes `value` as `<out_dir>/<name>.json` (and says where on stderr).
pub(crate) fn write_json(name: &str, value: &serde_json::Value) {
    let dir = out_dir();
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("JSON");
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(err) => eprintln!("could not write {}: {err}", path.display()),
    }
}

/// Median and quartiles of `values` (sorted in place).
pub(crate) fn median_quartiles(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[n / 2], values[n / 4], values[(n * 3) / 4])
}
