//! `http`: real HTTP requests from portable tasks, on any backend (feature `tokio`).
//!
//! A hyper server on `127.0.0.1` answers every request after `--latency-ms`. Each request is a
//! portable async task that connects with `tokio::net::TcpStream` and speaks HTTP/1 with hyper's
//! client: tokio-based libraries, unchanged, on the thread pool, the event loop and inside worker
//! processes alike. At most `--limit` requests are in flight (a `TaskSet` window), so the ideal
//! wall time is `ceil(requests / limit) × latency`; the program prints requests/s and wall ÷
//! ideal. With `--vs-tokio` it also sends the same requests from a plain tokio program (the same
//! client code under `tokio::spawn`), alternating with polyexec round by round, and prints the
//! median ratio of the two.
//!
//! ```text
//! cargo run --release --features tokio --example http
//! cargo run --release --all-features --example http -- --backend coroutine
//! cargo run --release --all-features --example http -- --requests 10000 --limit 1000 --vs-tokio
//! ```

use std::time::Duration;

use polyexec::Executor;

mod common;

use common::http::{self, Outcome};

const USAGE: &str = "\
usage: http [options]

Sends real HTTP GETs to a local server from portable tasks, with a bounded number in flight.

options:
  --requests N     how many requests per round (default 2000, --quick 200)
  --limit N        at most this many in flight (default 200, --quick 50)
  --latency-ms N   how long the server takes to answer (default 100, --quick 20)
  --rounds N       rounds to run (default 1; the median is reported)
  --vs-tokio       also run each round as a plain tokio program, alternating";

fn main() -> common::Res {
    polyexec::init();
    let mut args = common::Common::parse(USAGE)?;
    let requests: u64 = args.value("--requests")?.unwrap_or(args.size(2000, 200));
    let limit: usize = args.value("--limit")?.unwrap_or(args.size(200, 50)).max(1);
    let latency = Duration::from_millis(args.value("--latency-ms")?.unwrap_or(args.size(100, 20)));
    let rounds: usize = args.value("--rounds")?.unwrap_or(1).max(1);
    let vs_tokio = args.flag("--vs-tokio")?;
    args.finish()?;

    let exec = args.build()?;
    let server = http::Server::start(latency)?;
    println!(
        "backend: {} (workers: {}); {requests} GETs to {} per round, at most {limit} in flight, \
         {} ms server latency",
        exec.backend_name(),
        exec.workers(),
        server.addr(),
        latency.as_millis()
    );
    let ideal = http::ideal(requests, limit, latency);

    let mut ours = Vec::with_capacity(rounds);
    let mut theirs = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Alternate which goes first, so a change of load falls on both alike.
        let tokio_first = vs_tokio && round % 2 == 1;
        if tokio_first {
            theirs.push(http::run_on_plain_tokio(server.addr(), requests, limit)?);
        }
        let outcome = http::run_on(&exec, server.addr(), requests, limit)?;
        report("polyexec", &outcome, requests, limit, latency);
        ours.push(outcome);
        if vs_tokio && !tokio_first {
            theirs.push(http::run_on_plain_tokio(server.addr(), requests, limit)?);
        }
        if let Some(plain) = theirs.last().filter(|_| vs_tokio) {
            report("plain tokio", plain, requests, limit, latency);
        }
    }

    let median_ours = median(ours.iter().map(|o| o.wall.as_secs_f64()));
    println!(
        "median wall: {:.0} ms; ideal {:.0} ms; wall ÷ ideal {:.2}×",
        median_ours * 1e3,
        ideal.as_secs_f64() * 1e3,
        median_ours / ideal.as_secs_f64()
    );
    if vs_tokio {
        let ratios = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64());
        let spread: Vec<f64> = ratios.clone().collect();
        let lo = spread.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = spread.iter().copied().fold(0.0, f64::max);
        let noise = if rounds < 3 {
            " (fewer than 3 rounds: the ratio may be noise)"
        } else {
            ""
        };
        println!(
            "polyexec ÷ plain tokio, per round: median {:.2}× [{lo:.2}–{hi:.2}]{noise}",
            median(ratios)
        );
    }
    exec.shutdown();
    let failed: u64 = ours.iter().chain(&theirs).map(|o| o.failed).sum();
    if failed > 0 {
        return Err(format!("{failed} requests failed").into());
    }
    Ok(())
}

fn report(who: &str, outcome: &Outcome, requests: u64, limit: usize, latency: Duration) {
    let failed = if outcome.failed > 0 {
        format!(", {} FAILED", outcome.failed)
    } else {
        String::new()
    };
    println!(
        "  {who:<12} {} ok{failed} in {:.0} ms: {:.0} requests/s, wall ÷ ideal {:.2}×",
        outcome.ok,
        outcome.wall.as_secs_f64() * 1e3,
        outcome.per_sec(),
        outcome.ratio_to_ideal(requests, limit, latency)
    );
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
