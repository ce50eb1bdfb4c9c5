//! `io_bound`: many simulated network requests, at most `--limit` of them in flight at once.
//!
//! Each request is a portable async task that "waits on the network" with `polyexec::sleep` for an
//! uneven but deterministic time (10 to 100 ms), then returns a small serde `Response`. A window
//! of requests in a `polyexec::TaskSet` bounds the concurrency, as a connection pool or a rate
//! limit would: when a request finishes (`join_next`, O(1) per completion), the next one is sent. The waits overlap, so the run takes
//! about `sum of latencies / limit`, not the sum; that holds on every backend, because async tasks
//! interleave on the event loop, on the pool threads and inside each worker process alike.
//!
//! ```text
//! cargo run --release --example io_bound                                  # default backend
//! cargo run --release --all-features --example io_bound -- --backend coroutine
//! cargo run --release --example io_bound --no-default-features --features thread -- --quick
//! cargo run --release --all-features --example io_bound -- --requests 2000 --limit 200
//! ```

use std::time::{Duration, Instant};

use polyexec::{Executor, TaskSet};
use serde::{Deserialize, Serialize};

mod common;

const USAGE: &str = "\
usage: io_bound [options]

Sends many simulated requests with a bounded number in flight.

options:
  --requests N   how many requests (default 500, --quick 100)
  --limit N      at most this many in flight (default 50, --quick 20)";

/// What a request carries to the task: all its data, since a portable task captures nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    id: u32,
    /// How long the simulated server takes to answer.
    latency_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Response {
    id: u32,
    status: u16,
    bytes: usize,
}

/// The request itself: an `async fn` is a portable task like a non-capturing async closure.
async fn fetch(request: Request) -> Response {
    // Stands in for a network round trip: the task waits without holding a thread.
    polyexec::sleep(Duration::from_millis(request.latency_ms)).await;
    Response {
        id: request.id,
        // Every 50th request fails, as real servers sometimes do.
        status: if request.id % 50 == 49 { 503 } else { 200 },
        bytes: 512 + (request.id as usize * 977) % 4096,
    }
}

fn main() -> common::Res {
    polyexec::init();
    let mut args = common::Common::parse(USAGE)?;
    let requests: u32 = args.value("--requests")?.unwrap_or(args.size(500, 100));
    let limit: usize = args.value("--limit")?.unwrap_or(args.size(50, 20)).max(1);
    args.finish()?;
    let exec = args.build()?;
    println!(
        "backend: {} (workers: {}); {requests} requests, at most {limit} in flight",
        exec.backend_name(),
        exec.workers()
    );

    // Deterministic, uneven latencies: 10..=100 ms.
    let mut pending = (0..requests).map(|id| Request {
        id,
        latency_ms: 10 + (u64::from(id) * 37) % 91,
    });
    let total_latency: u64 = (0..requests).map(|id| 10 + (u64::from(id) * 37) % 91).sum();

    let start = Instant::now();
    let mut in_flight: TaskSet<Response> = TaskSet::new();
    let (mut ok, mut failed, mut bytes, mut most_in_flight) = (0u32, 0u32, 0usize, 0usize);
    let mut first_done = Vec::new();
    loop {
        // Top the window up to the limit...
        while in_flight.len() < limit {
            let Some(request) = pending.next() else { break };
            in_flight.push(exec.spawn_async(request, fetch));
        }
        most_in_flight = most_in_flight.max(in_flight.len());
        if in_flight.is_empty() {
            break;
        }
        // ...and wait for whichever request finishes first.
        let Some(result) = in_flight.join_next() else {
            break;
        };
        let response = result?;
        if first_done.len() < 5 {
            first_done.push(format!("#{}", response.id));
        }
        if response.status == 200 {
            ok += 1;
            bytes += response.bytes;
        } else {
            failed += 1;
        }
    }
    let wall = start.elapsed();

    // With `limit` in flight, the waits can at best be spread evenly over `limit` lanes.
    let ideal_ms = (total_latency as f64 / limit as f64).max(100.0);
    println!(
        "first to finish: {} (the shortest waits, not the first sent)",
        first_done.join(", ")
    );
    println!("responses: {ok} ok ({bytes} bytes), {failed} failed with 503");
    println!("most in flight at once: {most_in_flight} (limit {limit})");
    println!(
        "wall time: {:.0} ms; one request at a time: {} ms; ideal with {limit} in flight: ~{:.0} ms",
        wall.as_secs_f64() * 1e3,
        total_latency,
        ideal_ms
    );
    Ok(())
}
