//! `compare`: measures coroutines, threads and processes side by side on this machine.
//!
//! The same portable tasks run on every backend compiled in (or on those named with `--backend`),
//! and a table shows, one column per backend: start-up and per-task overhead, memory per pending
//! task, an I/O-bound and a blocking workload against their ideal wall time, a CPU-bound speedup
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

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use polyexec::{Backend, Executor, TaskError};
use serde::Serialize;
use serde_bytes::ByteBuf;

mod common;

use common::{Common, Res, thousands};

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
  --blocking-tasks N tasks that block their worker (thread::sleep) for the blocking row
  --blocking-ms W    how long each of them blocks
  --cpu-work N       count the primes below N for the CPU-bound row
  --cpu-chunks N     split into this many tasks
  --panic-tasks N    tasks in the panic test (one panics)
  --crash-tasks N    tasks in the crash test (one aborts)
  --stuck-ms W       how long the cancelled tasks would block their workers
  --payload-kib N    payload size for the data row
  --reps N           repetitions of the timed rows (the best is kept)
  --json             print the results as JSON instead of the table
  --svg PATH         also draw the ratio rows as a bar chart (SVG)";

/// A panic message marker: panics that carry it are the ones this program causes on purpose,
/// and are not printed.
const EXPECTED_PANIC: &str = "(a panic on purpose)";

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
        return crash_probe_child(Backend::from_name(&name)?, args.workers, tasks);
    }

    let settings = Settings::from_args(&mut args)?;
    let json = args.flag("--json");
    let svg: Option<String> = args.value("--svg")?;
    args.finish()?;
    let backends: Vec<Backend> = if args.backends.is_empty() {
        Backend::all().to_vec()
    } else {
        args.backends.clone()
    };

    let progress = common::progress_bar(
        1 + backends.len() as u64 * PHASES_PER_BACKEND,
        "{spinner} [{bar:30}] {pos}/{len} {msg}",
    );
    progress.set_message("serial CPU baseline");
    let mut serial = serial_baseline(&settings);
    progress.inc(1);

    let mut reports = Vec::new();
    for &backend in &backends {
        reports.push(measure_backend(
            backend,
            args.workers,
            &settings,
            &mut serial,
            &progress,
        ));
    }
    progress.finish_and_clear();

    let report = Report {
        machine: Machine::here(),
        settings,
        serial,
        backends: reports.iter().map(|r| r.backend.clone()).collect(),
        verdict: verdict(&reports),
        results: reports,
    };

    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    if let Some(path) = svg {
        chart::draw(&report, &path)?;
        if !json {
            println!("\nchart written to {path}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// Sizes of each measurement; `--quick` picks small ones.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    quick: bool,
    tasks: u64,
    mem_tasks: u64,
    io_tasks: u64,
    io_ms: u64,
    blocking_tasks: u64,
    blocking_ms: u64,
    cpu_work: u64,
    cpu_chunks: u64,
    panic_tasks: u32,
    crash_tasks: u32,
    stuck_ms: u64,
    payload_bytes: usize,
    reps: u32,
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
                .unwrap_or(if q { 1 } else { 3 })
                .max(1),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    settings: Settings,
    serial: Serial,
    /// The backends measured, in column order.
    backends: Vec<String>,
    results: Vec<BackendReport>,
    verdict: Vec<Verdict>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    os: &'static str,
    arch: &'static str,
    optimized: bool,
    /// The 1-minute load average when the run ended (Linux): above the core count, other
    /// programs were competing for the CPU and the timings are noisy.
    load_average: Option<f64>,
}

impl Machine {
    fn here() -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            optimized: !cfg!(debug_assertions),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok()),
        }
    }
}

/// A measurement, or why there is none.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Measured<T> {
    Ok(T),
    Failed { error: String },
}

impl<T> Measured<T> {
    fn from_result(result: Result<T, String>) -> Self {
        match result {
            Ok(value) => Measured::Ok(value),
            Err(error) => Measured::Failed { error },
        }
    }

    fn ok(&self) -> Option<&T> {
        match self {
            Measured::Ok(value) => Some(value),
            Measured::Failed { .. } => None,
        }
    }
}

#[derive(Debug, Serialize)]
struct BackendReport {
    backend: String,
    workers: usize,
    /// Building the executor and running its first task.
    start_ms: Measured<f64>,
    overhead: Measured<Overhead>,
    memory: Measured<Memory>,
    io: Measured<Waiting>,
    blocking: Measured<Waiting>,
    cpu: Measured<Cpu>,
    panic: Measured<Panic>,
    cancel: Measured<CancelStuck>,
    crash: Measured<Crash>,
    data: Measured<Data>,
}

#[derive(Debug, Serialize)]
struct Overhead {
    tasks: u64,
    us_per_task: f64,
    tasks_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Memory {
    pending_tasks: u64,
    /// Bytes this process allocated and had not freed while the tasks were pending, per task
    /// (the task's handle included).
    bytes_per_task: f64,
    /// Worker processes (children of this process) seen while the tasks were pending.
    worker_processes: usize,
    /// Growth of the worker processes' resident memory per pending task, if there are any.
    worker_rss_bytes_per_task: Option<f64>,
}

impl Memory {
    /// This process's bytes plus the workers' growth: the whole cost of a pending task.
    fn total_per_task(&self) -> f64 {
        self.bytes_per_task + self.worker_rss_bytes_per_task.unwrap_or(0.0)
    }
}

#[derive(Debug, Serialize)]
struct Waiting {
    tasks: u64,
    wait_ms: u64,
    wall_ms: f64,
    /// Wall time ÷ the wait of one task: 1.0 if every wait overlapped perfectly.
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Serial {
    primes_below: u64,
    primes: u64,
    /// The best serial time of the whole run.
    wall_ms: f64,
}

#[derive(Debug, Serialize)]
struct Cpu {
    chunks: u64,
    wall_ms: f64,
    /// The serial run timed alongside (best of the repetitions).
    serial_ms: f64,
    /// Serial wall time ÷ this backend's wall time.
    speedup: f64,
}

#[derive(Debug, Serialize)]
struct Panic {
    tasks: u32,
    /// Of the tasks that did not panic, how many returned their value.
    others_ok: u32,
    /// What the panicking task's handle said.
    error: String,
    /// Whether the executor still ran a task afterwards.
    executor_ok_after: bool,
}

#[derive(Debug, Serialize)]
struct Crash {
    tasks: u32,
    /// Did the program that ran the tasks survive the crash?
    contained: bool,
    /// How the probe program ended ("exited with code 0", "killed by signal 6 (SIGABRT)").
    program_exit: String,
    /// Of the other tasks, how many returned their value...
    others_ok: u32,
    /// ... and how many failed (for example lost with the same worker process).
    others_failed: u32,
    /// What the crashing task's handle said, if the program lived to tell.
    error: Option<String>,
    /// Whether the executor still ran a task afterwards.
    executor_ok_after: bool,
}

#[derive(Debug, Serialize)]
struct CancelStuck {
    /// How long each stuck task would block its worker.
    stuck_ms: u64,
    /// After cancelling one stuck task per worker, how long the next task took to finish.
    next_task_ms: f64,
    /// The cancel freed the workers (the next task finished in under half the stuck time).
    stopped: bool,
}

#[derive(Debug, Serialize)]
struct Data {
    payload_bytes: usize,
    round_trip_us: f64,
    /// Bytes allocated in this process for one round trip, ÷ the payload size.
    copies_in_this_process: f64,
    /// The output came back in the very buffer that was sent.
    same_buffer: bool,
    /// Worker processes exist, so the payload left this process.
    crosses_processes: bool,
}

#[derive(Debug, Serialize)]
struct Verdict {
    /// The kind of work.
    when: String,
    /// The backends that measured best for it (more than one when within 15 %).
    pick: Vec<String>,
    /// The numbers behind the pick.
    why: String,
}

// ---------------------------------------------------------------------------------------------
// Measuring one backend
// ---------------------------------------------------------------------------------------------

/// Progress steps per backend, for the progress bar.
const PHASES_PER_BACKEND: u64 = 10;

fn measure_backend(
    backend: Backend,
    workers: Option<usize>,
    s: &Settings,
    serial: &mut Serial,
    progress: &indicatif::ProgressBar,
) -> BackendReport {
    progress.set_message(format!("{backend}: start"));
    let started = Instant::now();
    let exec = match backend.build_with_workers(workers) {
        Ok(exec) => exec,
        Err(e) => {
            progress.inc(PHASES_PER_BACKEND);
            return BackendReport::failed(backend, &e.to_string());
        }
    };
    let start_ms = exec
        .spawn(1u8, |x: u8| x + 1)
        .join()
        .map(|_| ms(started.elapsed()))
        .map_err(|e| e.to_string());

    // Each call marks the previous phase done: nine calls and one final `inc`.
    let phase = |what: &str| {
        progress.inc(1);
        progress.set_message(format!("{backend}: {what}"));
    };
    phase("overhead");
    let overhead = measure_overhead(&exec, s.tasks, s.reps);
    phase("memory per pending task");
    let memory = measure_memory(&exec, s.mem_tasks, s.quick);
    phase("I/O-bound");
    let io = measure_io(&exec, s.io_tasks, s.io_ms);
    phase("blocking waits");
    let blocking = measure_blocking(&exec, s.blocking_tasks, s.blocking_ms);
    phase("CPU-bound");
    let cpu = measure_cpu(&exec, s, serial);
    phase("panic");
    let panic = measure_panic(&exec, s.panic_tasks);
    phase("cancelling stuck tasks");
    let cancel = measure_cancel(&exec, s.stuck_ms);
    phase("data round trip");
    let data = measure_data(&exec, s.payload_bytes, s.reps * 5);
    let workers = exec.workers();
    // Stop this backend's workers before the next one is measured.
    exec.shutdown();
    drop(exec);
    phase("crash (in a child process)");
    let crash = measure_crash(backend, workers, s.crash_tasks);
    progress.inc(1);

    BackendReport {
        backend: backend.name().to_owned(),
        workers,
        start_ms: Measured::from_result(start_ms),
        overhead: Measured::from_result(overhead),
        memory: Measured::from_result(memory),
        io: Measured::from_result(io),
        blocking: Measured::from_result(blocking),
        cpu: Measured::from_result(cpu),
        panic: Measured::from_result(panic),
        cancel: Measured::from_result(cancel),
        crash: Measured::from_result(crash),
        data: Measured::from_result(data),
    }
}

impl BackendReport {
    fn failed(backend: Backend, error: &str) -> BackendReport {
        fn f<T>(error: &str) -> Measured<T> {
            Measured::Failed {
                error: format!("could not start: {error}"),
            }
        }
        BackendReport {
            backend: backend.name().to_owned(),
            workers: 0,
            start_ms: f(error),
            overhead: f(error),
            memory: f(error),
            io: f(error),
            blocking: f(error),
            cpu: f(error),
            panic: f(error),
            cancel: f(error),
            crash: f(error),
            data: f(error),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Joins every handle, failing on the first error.
fn join_ok<T>(handles: Vec<polyexec::TaskHandle<T>>) -> Result<Vec<T>, String> {
    handles
        .into_iter()
        .map(|h| h.join().map_err(|e| e.to_string()))
        .collect()
}

/// Overhead: submit `n` trivial tasks, then join them all; the best of `reps` runs.
fn measure_overhead<E: Executor>(exec: &E, n: u64, reps: u32) -> Result<Overhead, String> {
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let start = Instant::now();
        let handles = exec.spawn_all(0..n, |x: u64| x + 1);
        let results = join_ok(handles)?;
        best = best.min(start.elapsed());
        if results.len() as u64 != n {
            return Err("lost results".into());
        }
    }
    let secs = best.as_secs_f64();
    Ok(Overhead {
        tasks: n,
        us_per_task: secs * 1e6 / n as f64,
        tasks_per_sec: n as f64 / secs,
    })
}

/// Memory: bytes this process allocated and had not freed while `n` async tasks sleep, ÷ `n`.
fn measure_memory<E: Executor>(exec: &E, n: u64, quick: bool) -> Result<Memory, String> {
    // The tasks sleep long enough for every one to be started (its timer registered) before
    // the sample is taken, and then some.
    let settle = Duration::from_millis(if quick { 150 } else { 400 });
    let hold_ms = ms(settle) as u64 + if quick { 250 } else { 600 };
    let rss_before = workers_rss::total();

    let before = counting::start();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            exec.spawn_async(hold_ms, |ms: u64| async move {
                polyexec::sleep(Duration::from_millis(ms)).await;
            })
        })
        .collect();
    std::thread::sleep(settle);
    let live = counting::live_since(&before);
    counting::stop();
    let rss_during = workers_rss::total();
    let all_pending = handles.iter().all(|h| !h.is_finished());
    join_ok(handles)?;
    if !all_pending {
        return Err(
            "some tasks finished before the sample was taken: the machine is too busy \
                    to start them all in time"
                .into(),
        );
    }

    let (worker_processes, worker_rss_bytes_per_task) = match (rss_before, rss_during) {
        (Some((_, before)), Some((count, during))) if count > 0 => {
            (count, Some(during.saturating_sub(before) as f64 / n as f64))
        }
        (_, Some((count, _))) => (count, None),
        _ => (0, None),
    };
    Ok(Memory {
        pending_tasks: n,
        bytes_per_task: live as f64 / n as f64,
        worker_processes,
        worker_rss_bytes_per_task,
    })
}

/// I/O-bound: `n` async tasks each waiting `wait_ms`; ideally all waits overlap.
fn measure_io<E: Executor>(exec: &E, n: u64, wait_ms: u64) -> Result<Waiting, String> {
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            exec.spawn_async(wait_ms, |ms: u64| async move {
                polyexec::sleep(Duration::from_millis(ms)).await;
            })
        })
        .collect();
    join_ok(handles)?;
    Ok(Waiting::new(n, wait_ms, start.elapsed()))
}

/// Blocking waits: `n` blocking tasks each holding their worker for `wait_ms` (a stand-in for a
/// blocking library call); at most `workers()` of them overlap.
fn measure_blocking<E: Executor>(exec: &E, n: u64, wait_ms: u64) -> Result<Waiting, String> {
    let start = Instant::now();
    let handles = exec.spawn_all((0..n).map(|_| wait_ms), |ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
    });
    join_ok(handles)?;
    Ok(Waiting::new(n, wait_ms, start.elapsed()))
}

impl Waiting {
    fn new(tasks: u64, wait_ms: u64, wall: Duration) -> Waiting {
        Waiting {
            tasks,
            wait_ms,
            wall_ms: ms(wall),
            ratio: ms(wall) / wait_ms.max(1) as f64,
        }
    }
}

/// The chunks one after another on this thread: (primes, wall time).
fn run_serial(ranges: &[(u64, u64)]) -> (u64, Duration) {
    let start = Instant::now();
    let primes = ranges.iter().map(|&r| common::count_primes(r)).sum();
    (primes, start.elapsed())
}

/// The serial baseline: the primes to expect, and a first timing (warming the CPU up).
fn serial_baseline(s: &Settings) -> Serial {
    let ranges = common::ranges(s.cpu_work, s.cpu_chunks);
    let (primes, first) = run_serial(&ranges);
    let (_, second) = run_serial(&ranges);
    Serial {
        primes_below: s.cpu_work,
        primes,
        wall_ms: ms(first.min(second)),
    }
}

/// CPU-bound: the chunks as tasks, against the same chunks run serially on this thread. The
/// machine may be busy with other work, so each repetition runs the two back to back and the
/// best of each is kept.
fn measure_cpu<E: Executor>(exec: &E, s: &Settings, serial: &mut Serial) -> Result<Cpu, String> {
    let ranges = common::ranges(s.cpu_work, s.cpu_chunks);
    let mut best = Duration::MAX;
    let mut best_serial = Duration::MAX;
    // Two more pairs than the other rows repeat: CPU timings suffer most from a busy machine,
    // and the best of several short runs is likelier to find a quiet moment.
    for _ in 0..s.reps + 2 {
        best_serial = best_serial.min(run_serial(&ranges).1);
        let start = Instant::now();
        let primes: u64 = join_ok(exec.spawn_all(ranges.iter().copied(), common::count_primes))?
            .into_iter()
            .sum();
        best = best.min(start.elapsed());
        if primes != serial.primes {
            return Err(format!("counted {primes} primes, serial {}", serial.primes));
        }
    }
    serial.wall_ms = serial.wall_ms.min(ms(best_serial));
    Ok(Cpu {
        chunks: ranges.len() as u64,
        wall_ms: ms(best),
        serial_ms: ms(best_serial),
        speedup: ms(best_serial) / ms(best),
    })
}

/// Panic containment: `n` tasks, the middle one panics; do the others still return?
fn measure_panic<E: Executor>(exec: &E, n: u32) -> Result<Panic, String> {
    let bad = n / 2;
    let handles = exec.spawn_all((0..n).map(|i| (i, bad)), |(i, bad): (u32, u32)| {
        if i == bad {
            panic!("task {i} failed {EXPECTED_PANIC}");
        }
        i
    });
    let mut others_ok = 0;
    let mut error = String::from("(no error: the panic was lost)");
    for (i, result) in (0u32..).zip(polyexec::join_all(handles)) {
        match result {
            Ok(_) if i != bad => others_ok += 1,
            Ok(_) => {}
            Err(e) if i == bad => error = short_error(&e),
            Err(_) => {}
        }
    }
    let executor_ok_after = exec.spawn(2u8, |x: u8| x + 1).join() == Ok(3);
    Ok(Panic {
        tasks: n,
        others_ok,
        error,
        executor_ok_after,
    })
}

/// Cancelling stuck work: one blocking task per worker that would block for `stuck_ms`, each
/// cancelled once it runs; how soon does the executor run the next task? Only a backend that can
/// stop a running task (by killing its process) answers in less than `stuck_ms`: a thread cannot
/// be killed, so a cancelled blocking task there runs on, and its worker with it.
fn measure_cancel<E: Executor>(exec: &E, stuck_ms: u64) -> Result<CancelStuck, String> {
    let mut stuck = exec.spawn_all((0..exec.workers()).map(|_| stuck_ms), |ms: u64| {
        std::thread::sleep(Duration::from_millis(ms)); // stands in for a call that hangs
    });
    std::thread::sleep(Duration::from_millis(50).min(Duration::from_millis(stuck_ms / 4)));
    for handle in &mut stuck {
        handle.cancel();
    }
    let start = Instant::now();
    let mut next = exec.spawn(1u8, |x: u8| x + 1).join();
    if next.as_ref().is_err_and(TaskError::is_worker_lost) {
        // Sent to a worker that was being killed for the cancel: the pool replaces it; again.
        next = exec.spawn(1u8, |x: u8| x + 1).join();
    }
    next.map_err(|e| e.to_string())?;
    let waited = start.elapsed();
    Ok(CancelStuck {
        stuck_ms,
        next_task_ms: ms(waited),
        stopped: ms(waited) < stuck_ms as f64 / 2.0,
    })
}

/// The variant of a task error, without the details: `Panicked`, `WorkerLost(...)`, ...
fn short_error(e: &TaskError) -> String {
    match e {
        TaskError::Panicked(_) => "Panicked".into(),
        TaskError::WorkerLost(exit) => format!("WorkerLost ({exit})"),
        TaskError::TimedOut(_) => "TimedOut".into(),
        TaskError::Cancelled => "Cancelled".into(),
        TaskError::ShutDown => "ShutDown".into(),
        other => other.to_string(),
    }
}

/// Data: round trips of a `payload`-byte buffer (`serde_bytes::ByteBuf`) through an identity task; the median time, the
/// bytes this process allocated for it, and whether the same buffer came back.
fn measure_data<E: Executor>(exec: &E, payload: usize, reps: u32) -> Result<Data, String> {
    let mut times = Vec::new();
    let mut copies = f64::MAX;
    let mut same_buffer = true;
    // One round trip first, to warm caches and buffers; then the measured ones.
    for rep in 0..=reps {
        // `ByteBuf` rather than a bare `Vec<u8>`: serialized as one block of bytes (a
        // `Vec<u8>` is serialized element by element), as docs/subprocess.md advises for byte
        // payloads; in process it is moved like the `Vec` it wraps.
        let data = ByteBuf::from((0..payload).map(|i| i as u8).collect::<Vec<u8>>());
        let sent = data.as_ptr() as usize;
        let before = counting::start();
        let start = Instant::now();
        let back = exec
            .spawn(data, |buffer: ByteBuf| buffer)
            .join()
            .map_err(|e| e.to_string())?;
        let elapsed = start.elapsed();
        let allocated = counting::allocated_since(&before);
        counting::stop();
        if back.len() != payload || back.iter().enumerate().any(|(i, &b)| b != i as u8) {
            return Err("the payload came back changed".into());
        }
        if rep > 0 {
            times.push(elapsed);
            copies = copies.min(allocated as f64 / payload.max(1) as f64);
            same_buffer &= back.as_ptr() as usize == sent;
        }
    }
    times.sort();
    let crosses_processes = workers_rss::total().is_some_and(|(count, _)| count > 0);
    Ok(Data {
        payload_bytes: payload,
        round_trip_us: times[times.len() / 2].as_secs_f64() * 1e6,
        copies_in_this_process: copies,
        // The address of a fresh allocation can repeat by chance; only count it as the same
        // buffer when nothing was copied either.
        same_buffer: same_buffer && copies < 0.5,
        crosses_processes,
    })
}

/// Keeps the default panic message for every panic but the ones this program causes on purpose.
fn silence_expected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !message.contains(EXPECTED_PANIC) {
            default(info);
        }
    }));
}

// ---------------------------------------------------------------------------------------------
// Crashes, watched from outside
// ---------------------------------------------------------------------------------------------

/// The crash test's task: the task `crash` aborts after 20 ms, while the others are still
/// waiting; the others return after 300 ms. An `async fn` item is a portable task too.
async fn probe_task((i, crash): (u32, u32)) -> u32 {
    if i == crash {
        polyexec::sleep(Duration::from_millis(20)).await;
        std::process::abort();
    }
    polyexec::sleep(Duration::from_millis(300)).await;
    i
}

/// Runs in the child: the crash test, one line per result on stdout as it arrives.
///
/// On a backend whose tasks run in this process, the abort ends this process, and the parent
/// sees how it died and which lines made it out before.
fn crash_probe_child(backend: Backend, workers: Option<usize>, tasks: u32) -> Res {
    let exec = backend.build_with_workers(workers)?;
    exec.spawn(0u8, |x: u8| x).join()?; // the workers are up
    let crash = tasks / 2;
    println!("crash {crash}");
    let handles: Vec<_> = (0..tasks)
        .map(|i| exec.spawn_async((i, crash), probe_task))
        .collect();
    // `println!` flushes each line, so the parent gets every line written before a crash.
    for (i, result) in polyexec::as_completed(handles) {
        match result {
            Ok(_) => println!("ok {i}"),
            Err(e) => println!("err {i} {}", short_error(&e)),
        }
    }
    let after = exec.spawn(1u8, |x: u8| x + 1).join() == Ok(2);
    println!("after {}", if after { "ok" } else { "failed" });
    Ok(())
}

/// Runs the crash test in a child process (this program, re-run with `--crash-probe`), so that
/// a crash that takes its whole process down is observed rather than suffered.
fn measure_crash(backend: Backend, workers: usize, tasks: u32) -> Result<Crash, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Through `sh`, to switch core dumps off first: the crash is on purpose, and a core file
    // left in the current directory would be litter.
    let mut command = if cfg!(unix) {
        let mut sh = Command::new("sh");
        sh.args(["-c", "ulimit -c 0 2>/dev/null; exec \"$0\" \"$@\""])
            .arg(exe);
        sh
    } else {
        Command::new(exe)
    };
    let mut child = command
        .args(["--crash-probe", backend.name()])
        .args(["--crash-tasks", &tasks.to_string()])
        .args(["--workers", &workers.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not re-run this program: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the crash probe did not finish in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let lines = reader.join().map_err(|_| "reader thread panicked")?;

    let mut crash_index = None;
    let (mut others_ok, mut others_failed, mut error, mut after) = (0, 0, None, false);
    for line in &lines {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("crash"), Some(i), _) => crash_index = i.parse::<u32>().ok(),
            (Some("ok"), Some(_), _) => others_ok += 1,
            (Some("err"), Some(i), rest) if i.parse::<u32>().ok() == crash_index => {
                error = rest.map(str::to_owned);
            }
            (Some("err"), Some(_), _) => others_failed += 1,
            (Some("after"), Some(word), _) => after = word == "ok",
            _ => {}
        }
    }
    if crash_index.is_none() {
        return Err(format!(
            "the crash probe failed to start ({})",
            exit_text(&status)
        ));
    }
    Ok(Crash {
        tasks,
        contained: status.success() && error.is_some(),
        program_exit: exit_text(&status),
        others_ok,
        others_failed,
        error,
        executor_ok_after: after,
    })
}

fn exit_text(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "ended".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The verdict: computed from the numbers
// ---------------------------------------------------------------------------------------------

/// Timings within this factor of the best count as a tie: on a shared machine, smaller
/// differences are often noise.
const TIE: f64 = 1.15;

/// The backends whose `metric` is best, with the others within [`TIE`] of it.
fn best_by(
    reports: &[BackendReport],
    metric: impl Fn(&BackendReport) -> Option<f64>,
    higher_is_better: bool,
) -> Option<(Vec<String>, f64)> {
    let values: Vec<(&str, f64)> = reports
        .iter()
        .filter_map(|r| metric(r).map(|v| (r.backend.as_str(), v)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let best = values
        .iter()
        .map(|&(_, v)| v)
        .reduce(|a, b| if (b > a) == higher_is_better { b } else { a })?;
    let close = |v: f64| {
        if higher_is_better {
            v >= best / TIE
        } else {
            v <= best * TIE
        }
    };
    let picks = values
        .iter()
        .filter(|&&(_, v)| close(v))
        .map(|&(name, _)| name.to_owned())
        .collect();
    Some((picks, best))
}

/// "thread 0.25, subprocess 9.1": every backend's value, for the reasons line.
fn all_values(
    reports: &[BackendReport],
    metric: impl Fn(&BackendReport) -> Option<String>,
) -> String {
    reports
        .iter()
        .map(|r| {
            let value = metric(r).unwrap_or_else(|| "n/a".into());
            format!("{} {value}", r.backend)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every backend for which `has` holds; the verdict says so when none does.
fn all_with(
    reports: &[BackendReport],
    when: &str,
    has: impl Fn(&BackendReport) -> bool,
    numbers: String,
) -> Verdict {
    let pick: Vec<String> = reports
        .iter()
        .filter(|r| has(r))
        .map(|r| r.backend.clone())
        .collect();
    let why = if pick.is_empty() {
        format!("none of the backends measured can: {numbers}")
    } else {
        numbers
    };
    Verdict {
        when: when.to_owned(),
        pick,
        why,
    }
}

fn verdict(reports: &[BackendReport]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Verdict>, when: &str, pick: Option<(Vec<String>, f64)>, why| {
        if let Some((pick, _)) = pick {
            out.push(Verdict {
                when: when.to_owned(),
                pick,
                why,
            });
        }
    };

    push(
        &mut out,
        "many small tasks (lowest overhead per task)",
        best_by(reports, |r| r.overhead.ok().map(|o| o.us_per_task), false),
        format!(
            "µs per task: {}",
            all_values(reports, |r| r.overhead.ok().map(|o| fmt_num(o.us_per_task)))
        ),
    );
    push(
        &mut out,
        "thousands of tasks waiting at once (least memory per pending task)",
        best_by(
            reports,
            |r| r.memory.ok().map(Memory::total_per_task),
            false,
        ),
        format!(
            "bytes per pending task, workers included: {}",
            all_values(reports, |r| r
                .memory
                .ok()
                .map(|m| bytes(m.total_per_task())))
        ),
    );
    push(
        &mut out,
        "I/O-bound async work (wall time closest to one wait)",
        best_by(reports, |r| r.io.ok().map(|w| w.ratio), false),
        format!(
            "wall ÷ ideal: {}",
            all_values(reports, |r| r.io.ok().map(|w| format!("{:.2}×", w.ratio)))
        ),
    );
    push(
        &mut out,
        "blocking calls that cannot be made async",
        best_by(reports, |r| r.blocking.ok().map(|w| w.ratio), false),
        format!(
            "wall ÷ ideal: {}",
            all_values(reports, |r| r
                .blocking
                .ok()
                .map(|w| format!("{:.1}×", w.ratio)))
        ),
    );
    push(
        &mut out,
        "CPU-bound work (best speedup over serial)",
        best_by(reports, |r| r.cpu.ok().map(|c| c.speedup), true),
        format!(
            "speedup: {}",
            all_values(reports, |r| r
                .cpu
                .ok()
                .map(|c| format!("{:.2}×", c.speedup)))
        ),
    );
    // Yes-or-no properties: every backend that has it is picked, or none.
    let crash_why = all_values(reports, |r| {
        r.crash.ok().map(|c| {
            if c.contained {
                "survived".to_owned()
            } else {
                format!("program {}", c.program_exit)
            }
        })
    });
    out.push(all_with(
        reports,
        "tasks that may crash (abort, segfault in FFI code)",
        |r| r.crash.ok().is_some_and(|c| c.contained),
        format!("after an abort: {crash_why}"),
    ));
    let cancel_why = all_values(reports, |r| {
        r.cancel.ok().map(|c| {
            let verb = if c.stopped { "stopped" } else { "ran on" };
            format!("{verb} (next task after {:.0} ms)", c.next_task_ms)
        })
    });
    out.push(all_with(
        reports,
        "tasks that may hang (timeouts that stop the work)",
        |r| r.cancel.ok().is_some_and(|c| c.stopped),
        format!("cancelled stuck tasks: {cancel_why}"),
    ));
    push(
        &mut out,
        "large inputs and outputs (fewest copies of the data)",
        // Whole copies: a few hundred bytes of bookkeeping per round trip are not a copy.
        best_by(
            reports,
            |r| r.data.ok().map(|d| d.copies_in_this_process.round()),
            false,
        ),
        format!(
            "round trip: {}",
            all_values(reports, |r| {
                r.data.ok().map(|d| {
                    format!(
                        "{} ({:.0} copies)",
                        micros(d.round_trip_us),
                        d.copies_in_this_process
                    )
                })
            })
        ),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 10.0 * 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{} B", thousands(b.round().max(0.0) as u64))
    }
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{} µs", fmt_num(us))
    }
}

/// A cell: the value, or `failed` (the reason goes in the notes).
fn cell<T>(
    m: &Measured<T>,
    f: impl Fn(&T) -> String,
    notes: &mut Vec<String>,
    who: &str,
) -> String {
    match m {
        Measured::Ok(v) => f(v),
        Measured::Failed { error } => {
            let note = format!("{who}: {error}");
            if !notes.contains(&note) {
                notes.push(note);
            }
            "failed (see notes)".into()
        }
    }
}

fn render_table(report: &Report) -> String {
    let s = &report.settings;
    let r = &report.results;
    let mut notes = Vec::new();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: String, f: &dyn Fn(&BackendReport, &mut Vec<String>) -> String| {
        let cells = r.iter().map(|b| f(b, &mut notes)).collect();
        rows.push((label, cells));
    };

    row("workers".into(), &|b, _| b.workers.to_string());
    row("start: build + first task".into(), &|b, n| {
        cell(&b.start_ms, |v| format!("{v:.1} ms"), n, &b.backend)
    });
    row(
        format!("overhead: µs/task ({} trivial)", thousands(s.tasks)),
        &|b, n| cell(&b.overhead, |o| fmt_num(o.us_per_task), n, &b.backend),
    );
    row(
        format!("memory per pending task ({})", thousands(s.mem_tasks)),
        &|b, n| {
            cell(
                &b.memory,
                |m| {
                    if m.worker_processes > 0 {
                        format!("{} here", bytes(m.bytes_per_task))
                    } else {
                        bytes(m.bytes_per_task)
                    }
                },
                n,
                &b.backend,
            )
        },
    );
    row("  + in worker processes".into(), &|b, n| {
        cell(
            &b.memory,
            |m| match (m.worker_processes, m.worker_rss_bytes_per_task) {
                (0, _) => "none".into(),
                (_, Some(rss)) => format!("{} (RSS)", bytes(rss)),
                (_, None) => "n/a: no /proc".into(),
            },
            n,
            &b.backend,
        )
    });
    row(
        format!(
            "I/O: {} × {} ms async wait, wall ÷ ideal",
            thousands(s.io_tasks),
            s.io_ms
        ),
        &|b, n| {
            cell(
                &b.io,
                |w| format!("{:.2}× ({:.0} ms)", w.ratio, w.wall_ms),
                n,
                &b.backend,
            )
        },
    );
    row(
        format!(
            "blocking: {} × {} ms sleep, wall ÷ ideal",
            s.blocking_tasks, s.blocking_ms
        ),
        &|b, n| cell(&b.blocking, |w| format!("{:.1}×", w.ratio), n, &b.backend),
    );
    row(
        format!(
            "CPU: primes < {}, speedup",
            thousands(report.serial.primes_below)
        ),
        &|b, n| {
            cell(
                &b.cpu,
                |c| format!("{:.2}× ({:.0} ms)", c.speedup, c.wall_ms),
                n,
                &b.backend,
            )
        },
    );
    row(
        format!("panic in 1 of {} tasks: others ok", s.panic_tasks),
        &|b, n| {
            cell(
                &b.panic,
                |p| {
                    let after = if p.executor_ok_after {
                        ""
                    } else {
                        ", then broken"
                    };
                    format!("{}/{}{after}", p.others_ok, p.tasks - 1)
                },
                n,
                &b.backend,
            )
        },
    );
    row("  the panicking task got".into(), &|b, n| {
        cell(&b.panic, |p| p.error.clone(), n, &b.backend)
    });
    row(
        format!("crash (abort) in 1 of {} tasks", s.crash_tasks),
        &|b, n| {
            cell(
                &b.crash,
                |c| {
                    if c.contained {
                        "program survives".into()
                    } else {
                        "program dies".into()
                    }
                },
                n,
                &b.backend,
            )
        },
    );
    row("  the crashing task got".into(), &|b, n| {
        cell(
            &b.crash,
            |c| match &c.error {
                Some(e) => e.split(' ').next().unwrap_or(e).to_owned(),
                None => "nothing: all gone".into(),
            },
            n,
            &b.backend,
        )
    });
    row("  others ok (+ failed)".into(), &|b, n| {
        cell(
            &b.crash,
            |c| {
                let failed = if c.others_failed > 0 {
                    format!(" + {} lost", c.others_failed)
                } else {
                    String::new()
                };
                format!("{}/{}{failed}", c.others_ok, c.tasks - 1)
            },
            n,
            &b.backend,
        )
    });
    row(
        format!("cancel tasks stuck for {} ms: next task", s.stuck_ms),
        &|b, n| {
            cell(
                &b.cancel,
                |c| {
                    let verb = if c.stopped { "stopped" } else { "ran on" };
                    format!("{verb}, {:.0} ms", c.next_task_ms)
                },
                n,
                &b.backend,
            )
        },
    );
    row(
        format!(
            "data: {} round trip",
            bytes(s.payload_bytes as f64).replace(".0 ", " ")
        ),
        &|b, n| cell(&b.data, |d| micros(d.round_trip_us), n, &b.backend),
    );
    row("  how it travels".into(), &|b, n| {
        cell(
            &b.data,
            |d| {
                if d.same_buffer {
                    "moved, 0 copies".into()
                } else if d.crosses_processes {
                    format!("serialized, {:.1} copies", d.copies_in_this_process)
                } else {
                    format!("copied, {:.1} copies", d.copies_in_this_process)
                }
            },
            n,
            &b.backend,
        )
    });

    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..r.len())
        .map(|i| {
            rows.iter()
                .map(|(_, cells)| cells[i].chars().count())
                .chain([r[i].backend.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "polyexec compare: {} cores, {}/{}, {} build{}",
        m.cores,
        m.os,
        m.arch,
        if m.optimized {
            "release"
        } else {
            "debug (use --release for real numbers)"
        },
        if s.quick { ", --quick sizes" } else { "" }
    );
    if let Some(load) = m.load_average {
        let busy = if load > m.cores as f64 {
            ": busier than its cores, so timings are noisy"
        } else {
            ""
        };
        let _ = writeln!(out, "load average {load:.1}{busy}");
    }
    let _ = writeln!(
        out,
        "serial baseline: {} primes below {} in {:.0} ms on one thread\n",
        thousands(report.serial.primes),
        thousands(report.serial.primes_below),
        report.serial.wall_ms
    );
    let pad = |text: &str, width: usize| {
        let fill = width.saturating_sub(text.chars().count());
        format!("{text}{}", " ".repeat(fill))
    };
    let mut header = pad("", label_width);
    for (b, &w) in r.iter().zip(&widths) {
        header.push_str("  ");
        header.push_str(&pad(&b.backend, w));
    }
    let _ = writeln!(out, "{}", header.trim_end());
    let _ = writeln!(
        out,
        "{}",
        "-".repeat(label_width + widths.iter().map(|w| w + 2).sum::<usize>())
    );
    for (label, cells) in &rows {
        let mut line = pad(label, label_width);
        for (c, &w) in cells.iter().zip(&widths) {
            line.push_str("  ");
            line.push_str(&pad(c, w));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }

    let _ = write!(
        out,
        "
how to read it:
  memory   bytes allocated by this process and not yet freed while {n} async tasks
           sleep, / {n} (their handles included); worker processes: the growth of
           their resident memory (RSS, page-granular) over the same time
  crash    measured in a child process (this program re-run), so that a crash that
           takes a whole process down is observed, not suffered; \"lost\" tasks were
           in the same worker process as the crashing one
  cancel   one blocking task per worker that would block for the time shown, each
           cancelled once running; then the time until the next task is done
  data     copies = bytes allocated here per round trip / payload size;
           \"moved\" = the very buffer that was sent came back
",
        n = thousands(s.mem_tasks)
    );
    for note in &notes {
        let _ = writeln!(out, "  failed: {note}");
    }

    let _ = writeln!(out, "\nverdict (from the numbers above):");
    if let [only] = r.as_slice() {
        let _ = writeln!(
            out,
            "  only {} was measured, so there is nothing to compare it with: build with \
             --all-features\n  (or name several backends with --backend) to see the others.",
            only.backend
        );
        return out;
    }
    for v in &report.verdict {
        let pick = if v.pick.is_empty() {
            "none of these".to_owned()
        } else {
            v.pick.join(" or ")
        };
        let _ = writeln!(out, "  use {pick} for {}\n      {}", v.when, v.why);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------------------------

mod chart {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    use super::{BackendReport, Report, Res};

    /// One panel per ratio row, one bar per backend.
    pub(crate) fn draw(report: &Report, path: &str) -> Res {
        type Metric = (&'static str, fn(&BackendReport) -> Option<f64>);
        let metrics: [Metric; 4] = [
            ("I/O: wall ÷ ideal (lower is better)", |r| {
                r.io.ok().map(|w| w.ratio)
            }),
            ("blocking: wall ÷ ideal (lower is better)", |r| {
                r.blocking.ok().map(|w| w.ratio)
            }),
            ("CPU: speedup over serial (higher is better)", |r| {
                r.cpu.ok().map(|c| c.speedup)
            }),
            ("crash: others done, share (higher is better)", |r| {
                r.crash
                    .ok()
                    .map(|c| f64::from(c.others_ok) / f64::from(c.tasks - 1))
            }),
        ];
        // Light colours, so that the backend's name stays readable on its bar.
        const COLORS: [RGBColor; 4] = [
            RGBColor(0x9e, 0xc3, 0xe6),
            RGBColor(0xf6, 0xc1, 0x8f),
            RGBColor(0xa8, 0xd8, 0xa0),
            RGBColor(0xe8, 0xa3, 0xa6),
        ];
        let names: Vec<&str> = report.results.iter().map(|r| r.backend.as_str()).collect();

        let root = SVGBackend::new(path, (1200, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "polyexec compare: {} cores, {}",
            report.machine.cores,
            if report.settings.quick {
                "--quick sizes"
            } else {
                "default sizes"
            }
        );
        let root = root.titled(&title, ("sans-serif", 22))?;
        for (area, (caption, metric)) in root.split_evenly((1, metrics.len())).iter().zip(metrics) {
            let values: Vec<f64> = report
                .results
                .iter()
                .map(|r| metric(r).unwrap_or(0.0))
                .collect();
            let top = values.iter().copied().fold(1.0_f64, f64::max) * 1.2;
            // x: one unit per backend; bars are labelled in the plot, not on the axis.
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 14))
                .margin(12)
                .x_label_area_size(8)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..names.len() as f64, 0.0..top)?;
            chart.configure_mesh().disable_x_mesh().x_labels(0).draw()?;
            chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
                let x = i as f64;
                Rectangle::new(
                    [(x + 0.12, 0.0), (x + 0.88, v)],
                    COLORS[i % COLORS.len()].filled(),
                )
            }))?;
            let above = TextStyle::from(("sans-serif", 14).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            let base = TextStyle::from(("sans-serif", 13).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart.draw_series(values.iter().enumerate().flat_map(|(i, &v)| {
                let x = i as f64 + 0.5;
                [
                    Text::new(
                        format!("{v:.2}"),
                        (x, v.max(top * 0.07) + top * 0.01),
                        above.clone(),
                    ),
                    Text::new(names[i].to_owned(), (x, top * 0.01), base.clone()),
                ]
            }))?;
        }
        root.present()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Memory accounting
// ---------------------------------------------------------------------------------------------

/// A global allocator that counts bytes while counting is switched on.
///
/// Counting is off outside the memory and data rows, so the timed rows pay one relaxed load
/// per allocation and nothing else.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

    static ON: AtomicBool = AtomicBool::new(false);
    static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
    static FREED: AtomicUsize = AtomicUsize::new(0);

    /// The allocator: `System`, plus two counters.
    #[derive(Debug)]
    pub(crate) struct Counting;

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged and
    // returns what `System` returned; the counters never influence an allocation.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if ON.load(Relaxed) {
                ALLOCATED.fetch_add(layout.size(), Relaxed);
            }
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if ON.load(Relaxed) {
                ALLOCATED.fetch_add(layout.size(), Relaxed);
            }
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if ON.load(Relaxed) {
                FREED.fetch_add(layout.size(), Relaxed);
            }
            // SAFETY: `ptr` and `layout` come from this allocator, that is from `System`.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if ON.load(Relaxed) {
                ALLOCATED.fetch_add(new_size, Relaxed);
                FREED.fetch_add(layout.size(), Relaxed);
            }
            // SAFETY: `ptr` and `layout` come from `System`; the caller upholds the rest.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// The counters at one moment.
    #[derive(Debug)]
    pub(crate) struct Mark {
        allocated: usize,
        freed: usize,
    }

    /// Switches counting on and returns the counters now.
    pub(crate) fn start() -> Mark {
        ON.store(true, Relaxed);
        Mark {
            allocated: ALLOCATED.load(Relaxed),
            freed: FREED.load(Relaxed),
        }
    }

    /// Switches counting off.
    pub(crate) fn stop() {
        ON.store(false, Relaxed);
    }

    /// Bytes allocated since `mark`.
    pub(crate) fn allocated_since(mark: &Mark) -> usize {
        ALLOCATED.load(Relaxed) - mark.allocated
    }

    /// Bytes allocated and not freed since `mark` (frees of older blocks count against it).
    pub(crate) fn live_since(mark: &Mark) -> isize {
        let allocated = allocated_since(mark) as isize;
        let freed = (FREED.load(Relaxed) - mark.freed) as isize;
        allocated - freed
    }
}

/// The resident memory of this process's child processes, from `/proc` (Linux).
mod workers_rss {
    /// (number of child processes, their total resident bytes), or `None` without `/proc`.
    pub(crate) fn total() -> Option<(usize, u64)> {
        let me = std::process::id();
        let mut count = 0;
        let mut rss = 0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if parent_of(pid) == Some(me) {
                count += 1;
                rss += resident_bytes(pid).unwrap_or(0);
            }
        }
        Some((count, rss))
    }

    fn parent_of(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after
        // the last ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        after.split_whitespace().nth(1)?.parse().ok()
    }

    fn resident_bytes(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}
