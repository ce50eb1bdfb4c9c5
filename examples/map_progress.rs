//! `map_progress`: `Executor::map` over many inputs, with a progress bar.
//!
//! For every start value below N, a portable task computes the length of its Collatz sequence
//! (a cheap, uneven CPU task). `map` is lazy and bounded: it submits inputs only as results are
//! consumed, in chunks (`--chunk`, default: the backend's preferred size, larger where each
//! hand-over is a message to another process), and yields the results in input order, so the
//! loop below can advance an indicatif progress bar as it goes. Beside the bar, a live line from
//! `Executor::metrics()`: tasks running and queued, finished, workers alive and restarted. The
//! bar is hidden when stdout is not a terminal; the final metrics are printed at the end.
//!
//! ```text
//! cargo run --release --example map_progress
//! cargo run --release --all-features --example map_progress -- --backend subprocess --chunk 1024
//! cargo run --release --example map_progress --no-default-features --features thread -- --quick
//! ```

use std::time::Instant;

use polyexec::{Executor, MapOptions};

mod common;

const USAGE: &str = "\
usage: map_progress [options]

Maps a task over many inputs with a progress bar.

options:
  --inputs N   how many inputs (default 2,000,000, --quick 100,000)
  --chunk N    inputs per task hand-over (default: the backend's preferred chunk size)";

/// Steps until the Collatz sequence from `n` reaches 1.
fn collatz_steps(n: u64) -> u32 {
    let (mut n, mut steps) = (n.max(1), 0);
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// One line from the executor's counters. (`map` sends its inputs in chunks: a task here is a
/// chunk.)
fn live_line(m: &polyexec::Metrics) -> String {
    format!(
        "tasks: {} running, {} queued, {} done ({} failed); workers {} (restarted {})",
        m.running(),
        m.queued(),
        common::thousands(m.finished()),
        m.finished() - m.succeeded(),
        m.workers(),
        m.worker_restarts()
    )
}

fn main() -> common::Res {
    polyexec::init();
    let mut args = common::Common::parse(USAGE)?;
    let inputs: u64 = args
        .value("--inputs")?
        .unwrap_or(args.size(2_000_000, 100_000));
    let chunk: Option<usize> = args.value("--chunk")?;
    args.finish()?;
    let exec = args.build()?;
    let mut options = MapOptions::new();
    if let Some(chunk) = chunk {
        options = options.chunk_size(chunk);
    }
    println!(
        "backend: {} (workers: {}); {} inputs, chunk size {}",
        exec.backend_name(),
        exec.workers(),
        common::thousands(inputs),
        chunk.unwrap_or_else(|| exec.preferred_chunk_size())
    );

    let bar = common::progress_bar(
        inputs,
        "{spinner} [{bar:40}] {human_pos}/{human_len} {per_sec:0} eta {eta}  {msg}",
    );
    let start = Instant::now();
    let (mut longest, mut longest_at) = (0, 0);
    for (n, steps) in (1..).zip(exec.map_with(1..=inputs, collatz_steps, options)) {
        let steps = steps?;
        if steps > longest {
            (longest, longest_at) = (steps, n);
        }
        // Advancing the bar is cheap: indicatif redraws at most a few times per second.
        bar.inc(1);
        // Reading the metrics is cheap too (a few dozen relaxed loads), but not per input.
        if n % 4096 == 0 {
            bar.set_message(live_line(&exec.metrics()));
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();

    println!("metrics: {}", live_line(&exec.metrics()));
    println!(
        "longest: {longest_at} takes {longest} steps to reach 1 (of the start values 1..={inputs})"
    );
    println!(
        "{} results in {:.0} ms, {} per second",
        common::thousands(inputs),
        secs * 1e3,
        common::thousands((inputs as f64 / secs) as u64)
    );
    Ok(())
}
