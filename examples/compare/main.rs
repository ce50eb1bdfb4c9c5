//! `compare`: measures coroutines, threads and processes side by side on this machine.
//!
//! The same portable tasks run on every backend compiled in (or on those named with `--backend`),
//! and a table shows, one column per backend: start-up and per-task overhead, memory per pending
//! task, an I/O-bound workload (timers, and real HTTP with the `tokio` feature) and a blocking workload against their ideal wall time, a CPU-bound speedup
//! over serial, what a panic and what a crash (`abort`) do to the other tasks, and how a 1 MiB
//! payload travels. It ends with a "use X when ..." verdict computed from those numbers.
//!
//! ```text
//! cargo run --release --all-features --example compare             # every backend
//! cargo run --release --example compare -- --backend thread,coroutine
//! cargo run --release --all-features --example compare -- --quick  # a few seconds, for CI
//! cargo run --release --all-features --example compare -- --json   # machine-readable
//! cargo run --release --all-features --example compare -- --svg compare.svg
//! ```
//!
//! Everything printed is measured in this run; a row that cannot be measured on a backend says
//! `n/a` and why. Memory is counted by a counting global allocator in this program (bytes
//! allocated and not yet freed), so it covers this process only; worker processes are measured
//! by the growth of their resident memory, read from `/proc`.

//!
//! The program is split by job: `measure` runs the rows, `crash` watches a crash from a child
//! process, `gauge` reads how busy the machine is, `verdict` turns numbers into picks, `render`
//! prints the table, `chart` draws the SVG, and `counting`/`workers_rss` account for memory.

use polyexec::Backend;
use serde::Serialize;

#[path = "../common/mod.rs"]
mod common;

mod chart;
mod counting;
mod crash;
mod gauge;
mod measure;
mod render;
mod report;
mod summary;
mod verdict;
mod workers_rss;

use common::{Common, Res};
use measure::{PHASES_PER_BACKEND, measure_backend, silence_expected_panics, timed_rounds};
use report::{Machine, Report};

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

const USAGE: &str = "\
usage: compare [options]

Runs the same portable tasks on each backend and prints a table and a verdict.

options:
  --backend A,B      the backends to compare (repeatable; default: every one compiled in)
  --tasks N          trivial tasks for the overhead row
  --mem-tasks N      pending async tasks for the memory row
  --io-tasks N       async tasks for the I/O-bound row
  --io-ms W          how long each of them waits
  --http-requests N  HTTP GETs to a local server for the HTTP row (feature `tokio`)
  --http-limit N     at most this many of them in flight
  --http-ms W        how long the server takes to answer each
  --blocking-tasks N tasks that block their worker (thread::sleep) for the blocking row
  --blocking-ms W    how long each of them blocks
  --cpu-work N       count the primes below N for the CPU-bound row
  --cpu-chunks N     split into this many tasks
  --panic-tasks N    tasks in the panic test (one panics)
  --crash-tasks N    tasks in the crash test (one aborts)
  --stuck-ms W       how long the cancelled tasks would block their workers
  --payload-kib N    payload size for the data row
  --reps N           rounds of the timed rows (overhead, CPU, data); the median is kept
  --json             print the results as JSON instead of the table
  --svg PATH         also draw the ratio rows as a bar chart (SVG)";

/// A panic message marker: panics that carry it are the ones this program causes on purpose,
/// and are not printed.
pub(crate) const EXPECTED_PANIC: &str = "(a panic on purpose)";

fn main() -> Res {
    // The one thing before `init()`: worker processes never return from `init()`, and the
    // panics this program causes on purpose happen there too.
    silence_expected_panics();
    polyexec::init();
    let mut args = Common::parse(USAGE)?;

    // Hidden: `compare --crash-probe NAME` is this program re-run as a child to watch a crash.
    if let Some(name) = args.value::<String>("--crash-probe")? {
        let tasks = args.value("--crash-tasks")?.unwrap_or(8);
        args.finish()?;
        return crash::probe_child(Backend::from_name(&name)?, args.workers, tasks);
    }

    let settings = Settings::from_args(&mut args)?;
    let json = args.flag("--json")?;
    let svg: Option<String> = args.value("--svg")?;
    args.finish()?;
    let backends: Vec<Backend> = if args.backends.is_empty() {
        // The cluster backend needs a NATS server: measured when one is named.
        Backend::all()
            .iter()
            .copied()
            .filter(|b| b.name() != "cluster" || std::env::var_os("POLYEXEC_CLUSTER_URL").is_some())
            .collect()
    } else {
        args.backends.clone()
    };

    // The gauge reads the machine while this program is still idle, and again at the end.
    let gauge_start = gauge::start();
    let progress = common::progress_bar(
        backends.len() as u64 * PHASES_PER_BACKEND + u64::from(settings.reps),
        "{spinner} [{bar:30}] {pos}/{len} {msg}",
    );
    let mut reports: Vec<_> = backends
        .iter()
        .map(|&backend| measure_backend(backend, args.workers, &settings, &progress))
        .collect();
    let serial = timed_rounds(
        &mut reports,
        args.workers,
        &settings,
        gauge_start.cpus,
        &progress,
    );
    progress.finish_and_clear();
    let gauge = gauge::finish(gauge_start);
    summary::flag_impossible_moves(&mut reports);
    let noisy = gauge.busy.is_some() || summary::any_impossible(&reports);

    let report = Report {
        machine: Machine::here(),
        verdict: summary::verdict(&reports, gauge.busy.as_deref(), noisy),
        gauge,
        noisy,
        settings,
        serial,
        backends: reports.iter().map(|r| r.backend.clone()).collect(),
        results: reports,
    };

    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::table(&report));
    }
    if let Some(path) = svg {
        chart::draw(&report, &path)?;
        if !json {
            println!("\nchart written to {path}");
        }
    }
    Ok(())
}

/// Sizes of each measurement; `--quick` picks small ones.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) quick: bool,
    pub(crate) tasks: u64,
    pub(crate) mem_tasks: u64,
    pub(crate) io_tasks: u64,
    pub(crate) io_ms: u64,
    pub(crate) http_requests: u64,
    pub(crate) http_limit: usize,
    pub(crate) http_ms: u64,
    pub(crate) blocking_tasks: u64,
    pub(crate) blocking_ms: u64,
    pub(crate) cpu_work: u64,
    pub(crate) cpu_chunks: u64,
    pub(crate) panic_tasks: u32,
    pub(crate) crash_tasks: u32,
    pub(crate) stuck_ms: u64,
    pub(crate) payload_bytes: usize,
    pub(crate) reps: u32,
}

impl Settings {
    fn from_args(args: &mut Common) -> Res<Settings> {
        let q = args.quick;
        let pick = |full: u64, quick: u64| if q { quick } else { full };
        Ok(Settings {
            quick: q,
            tasks: args.value("--tasks")?.unwrap_or(pick(20_000, 2_000)),
            mem_tasks: args.value("--mem-tasks")?.unwrap_or(pick(10_000, 1_000)),
            io_tasks: args.value("--io-tasks")?.unwrap_or(pick(10_000, 1_000)),
            io_ms: args.value("--io-ms")?.unwrap_or(pick(100, 50)),
            http_requests: args.value("--http-requests")?.unwrap_or(pick(2_000, 200)),
            http_limit: args
                .value("--http-limit")?
                .unwrap_or(if q { 50 } else { 200 })
                .max(1),
            http_ms: args.value("--http-ms")?.unwrap_or(pick(100, 20)),
            blocking_tasks: args.value("--blocking-tasks")?.unwrap_or(pick(16, 8)),
            blocking_ms: args.value("--blocking-ms")?.unwrap_or(pick(20, 10)),
            cpu_work: args
                .value("--cpu-work")?
                .unwrap_or(pick(2_000_000, 1_000_000)),
            cpu_chunks: args.value("--cpu-chunks")?.unwrap_or(pick(64, 16)).max(1),
            panic_tasks: args
                .value("--panic-tasks")?
                .unwrap_or(if q { 20 } else { 100 }),
            crash_tasks: args.value("--crash-tasks")?.unwrap_or(8).max(2),
            stuck_ms: args
                .value("--stuck-ms")?
                .unwrap_or(pick(1_000, 300))
                .max(20),
            payload_bytes: args.value::<usize>("--payload-kib")?.unwrap_or(1024) * 1024,
            reps: args
                .value("--reps")?
                .unwrap_or(if q { 5 } else { 9 })
                .max(1),
        })
    }
}
