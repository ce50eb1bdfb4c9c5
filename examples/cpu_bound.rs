//! `cpu_bound`: counting the primes below N, split into chunks, against the same work done serially.
//!
//! The kernel is a plain `fn` (a portable task like a non-capturing closure) that counts primes
//! in a range by trial division. `Executor::map` hands the ranges to the workers and returns
//! the counts in order. In Rust, threads run CPU work in parallel (there is no GIL), so the
//! thread pool and the process pool both approach one times the number of cores; the
//! coroutine backend runs blocking tasks on its loop thread, one at a time, as asyncio would.
//!
//! ```text
//! cargo run --release --example cpu_bound
//! cargo run --release --all-features --example cpu_bound -- --backend subprocess
//! cargo run --release --example cpu_bound --no-default-features --features thread -- --quick
//! cargo run --release --example cpu_bound -- --below 20000000 --chunks 64
//! ```

use std::time::Instant;

use std::time::Duration;

use polyexec::{Executor, MapOptions, TaskError};

mod common;

const USAGE: &str = "\
usage: cpu_bound [options]

Counts the primes below N in chunks, serially and on the backend.

options:
  --below N    count the primes below N (default 5,000,000, --quick 1,000,000)
  --chunks N   split the range into N tasks (default 8 per worker)";

fn main() -> common::Res {
    polyexec::init();
    let mut args = common::Common::parse(USAGE)?;
    let below: u64 = args
        .value("--below")?
        .unwrap_or(args.size(5_000_000, 1_000_000));
    let chunks: Option<u64> = args.value("--chunks")?;
    args.finish()?;
    let exec = args.build()?;
    let workers = exec.workers();
    // Several chunks per worker balance the load: higher ranges cost more per number.
    let chunks = chunks.unwrap_or(8 * workers as u64).max(1);
    let ranges = common::ranges(below, chunks);
    println!(
        "backend: {} (workers: {workers}); primes below {}, {} chunks",
        exec.backend_name(),
        common::thousands(below),
        ranges.len()
    );

    // Best of two runs each: the first may meet a cold CPU or a busy machine.
    let (serial, serial_time) =
        best_of_two(|| Ok(ranges.iter().map(|&r| common::count_primes(r)).sum()))?;
    println!(
        "serial, on this thread: {} primes in {:.0} ms",
        common::thousands(serial),
        serial_time.as_secs_f64() * 1e3
    );

    // Each range is a big task: hand them out one at a time (chunk size 1), or a backend whose
    // preferred chunk is large would send them all to one worker.
    let one_by_one = MapOptions::new().chunk_size(1);
    let (parallel, parallel_time) = best_of_two(|| {
        exec.map_with(ranges.iter().copied(), common::count_primes, one_by_one)
            .sum::<Result<u64, TaskError>>()
    })?;
    assert_eq!(parallel, serial, "the backend counted differently");
    let speedup = serial_time.as_secs_f64() / parallel_time.as_secs_f64();
    println!(
        "{}: {} primes in {:.0} ms, {speedup:.2}x the serial speed",
        exec.backend_name(),
        common::thousands(parallel),
        parallel_time.as_secs_f64() * 1e3
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "at most {} at once here ({workers} workers, {cores} cores)",
        workers.min(cores)
    );
    if exec.backend_name() == "coroutine" {
        println!(
            "note: the event loop runs blocking tasks on its loop thread(s), stalling every \
             other task there; use --backend thread or subprocess for CPU work"
        );
    }
    Ok(())
}

/// Runs `work` twice; its result and the shorter time.
fn best_of_two(mut work: impl FnMut() -> Result<u64, TaskError>) -> common::Res<(u64, Duration)> {
    let mut best = Duration::MAX;
    let mut result = 0;
    for _ in 0..2 {
        let start = Instant::now();
        result = work()?;
        best = best.min(start.elapsed());
    }
    Ok((result, best))
}
