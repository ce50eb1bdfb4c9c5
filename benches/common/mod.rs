//! Shared by the bench programs: the CPU kernel every backend runs, and where a program that
//! measures outside criterion (interleaved A/B rounds, wall time and memory) writes its figures
//! for `scripts/bench.sh`.
//!
//! Each bench binary includes this file with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

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

/// Opens the "speedup over serial" group `name` on the kernel's 16 chunks, and measures the
/// serial baseline (`serial`) in it. The caller adds its contenders ([`bench_map`] for polyexec)
/// and finishes the group.
pub(crate) fn cpu_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> (BenchmarkGroup<'a, WallTime>, Vec<(u64, u64)>) {
    let chunks = kernel_chunks(if quick() { 400_000 } else { 1_000_000 }, 16);
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.bench_function("serial", |b| {
        b.iter(|| {
            chunks
                .iter()
                .map(|&c| count_primes(black_box(c)))
                .sum::<u64>()
        })
    });
    (group, chunks)
}

/// Measures `executor` running the kernel's chunks as `map`ped blocking tasks, one chunk per
/// task, in a [`cpu_group`].
pub(crate) fn bench_map(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    executor: &impl polyexec::Executor,
    chunks: &[(u64, u64)],
) {
    group.bench_function(id, |b| {
        b.iter(|| {
            let options = polyexec::MapOptions::new().chunk_size(1);
            executor
                .map_with(chunks.iter().copied(), count_primes, options)
                .map(|r| r.expect("task"))
                .sum::<u64>()
        })
    });
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
