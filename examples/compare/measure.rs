//! Measuring: each backend on its own for the rows that need it alone (memory, waits,
//! panics, cancels, crashes), then every backend at once for the timed rows (overhead, CPU,
//! data), in rounds that interleave the backends so that a change of load during the run
//! falls on all of them alike.

use std::time::{Duration, Instant};

use polyexec::{Backend, Executor, TaskError};
use serde_bytes::ByteBuf;

use crate::report::*;
use crate::verdict::{self, Spread};
use crate::{EXPECTED_PANIC, Settings, common, counting, workers_rss};

/// Progress steps per backend, for the progress bar.
pub(crate) const PHASES_PER_BACKEND: u64 = 9;

/// The timed rows' placeholder until [`timed_rounds`] fills them in.
const NOT_YET: &str = "not measured";

pub(crate) fn measure_backend(
    backend: Backend,
    workers: Option<usize>,
    s: &Settings,
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

    // Each call marks the previous phase done: eight calls and one final `inc`.
    let phase = |what: &str| {
        progress.inc(1);
        progress.set_message(format!("{backend}: {what}"));
    };
    phase("memory per pending task");
    let memory = measure_memory(&exec, s.mem_tasks, s.quick);
    phase("I/O-bound");
    let io = measure_io(&exec, s.io_tasks, s.io_ms);
    phase("HTTP requests");
    let http = measure_http(&exec, s.http_requests, s.http_limit, s.http_ms);
    phase("blocking waits");
    let blocking = measure_blocking(&exec, s.blocking_tasks, s.blocking_ms);
    phase("panic");
    let panic = measure_panic(&exec, s.panic_tasks);
    phase("cancelling stuck tasks");
    let cancel = measure_cancel(&exec, s.stuck_ms);
    phase("data round trip");
    let data = measure_data(&exec, s.payload_bytes);
    let workers = exec.workers();
    // Stop this backend's workers before the next one is measured.
    exec.shutdown();
    drop(exec);
    phase("crash (in a child process)");
    let crash = crate::crash::measure(backend, workers, s.crash_tasks);
    progress.inc(1);

    BackendReport {
        backend: backend.name().to_owned(),
        workers,
        start_ms: Measured::from_result(start_ms),
        overhead: Measured::Failed {
            error: NOT_YET.into(),
        },
        memory: Measured::from_result(memory),
        io: Measured::from_result(io),
        http: Measured::from_result(http),
        blocking: Measured::from_result(blocking),
        cpu: Measured::Failed {
            error: NOT_YET.into(),
        },
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
            http: f(error),
            blocking: f(error),
            cpu: f(error),
            panic: f(error),
            cancel: f(error),
            crash: f(error),
            data: f(error),
        }
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Joins every handle, failing on the first error.
pub(crate) fn join_ok<T>(handles: Vec<polyexec::TaskHandle<T>>) -> Result<Vec<T>, String> {
    handles
        .into_iter()
        .map(|h| h.join().map_err(|e| e.to_string()))
        .collect()
}

/// Memory: bytes this process allocated and had not freed while `n` async tasks sleep, ÷ `n`.
pub(crate) fn measure_memory<E: Executor>(exec: &E, n: u64, quick: bool) -> Result<Memory, String> {
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
pub(crate) fn measure_io<E: Executor>(exec: &E, n: u64, wait_ms: u64) -> Result<Waiting, String> {
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

/// Real I/O: `requests` HTTP GETs from portable tasks (hyper's client on `tokio::net`) to a
/// local server that answers after `latency_ms`, at most `limit` in flight.
#[cfg(feature = "tokio")]
pub(crate) fn measure_http<E: Executor>(
    exec: &E,
    requests: u64,
    limit: usize,
    latency_ms: u64,
) -> Result<Http, String> {
    let latency = Duration::from_millis(latency_ms);
    let server = common::http::Server::start(latency).map_err(|e| format!("server: {e}"))?;
    let outcome = common::http::run_on(exec, server.addr(), requests, limit)?;
    Ok(Http {
        requests,
        limit,
        latency_ms,
        wall_ms: ms(outcome.wall),
        ratio: outcome.ratio_to_ideal(requests, limit, latency),
        requests_per_sec: outcome.per_sec(),
        failed: outcome.failed,
    })
}

/// Without polyexec's `tokio` feature, tokio-based clients cannot run in portable tasks.
#[cfg(not(feature = "tokio"))]
pub(crate) fn measure_http<E: Executor>(
    _exec: &E,
    _requests: u64,
    _limit: usize,
    _latency_ms: u64,
) -> Result<Http, String> {
    Err("needs polyexec's `tokio` feature".into())
}

/// Blocking waits: `n` blocking tasks each holding their worker for `wait_ms` (a stand-in for a
/// blocking library call); at most `workers()` of them overlap.
pub(crate) fn measure_blocking<E: Executor>(
    exec: &E,
    n: u64,
    wait_ms: u64,
) -> Result<Waiting, String> {
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

/// Panic containment: `n` tasks, the middle one panics; do the others still return?
pub(crate) fn measure_panic<E: Executor>(exec: &E, n: u32) -> Result<Panic, String> {
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
pub(crate) fn measure_cancel<E: Executor>(exec: &E, stuck_ms: u64) -> Result<CancelStuck, String> {
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
pub(crate) fn short_error(e: &TaskError) -> String {
    match e {
        TaskError::Panicked(_) => "Panicked".into(),
        TaskError::WorkerLost(exit) => format!("WorkerLost ({exit})"),
        TaskError::TimedOut(_) => "TimedOut".into(),
        TaskError::Cancelled => "Cancelled".into(),
        TaskError::ShutDown => "ShutDown".into(),
        other => other.to_string(),
    }
}

/// Data: what a round trip of a `payload`-byte buffer (`serde_bytes::ByteBuf`) through an
/// identity task costs this process: copies, and whether the same buffer came back. Its time is
/// measured in [`timed_rounds`], interleaved with the other backends.
pub(crate) fn measure_data<E: Executor>(exec: &E, payload: usize) -> Result<Data, String> {
    let mut copies = f64::MAX;
    let mut same_buffer = true;
    let mut times = Vec::new();
    // One round trip first, to warm caches and buffers; then the counted ones.
    for rep in 0..4 {
        let (sent, back, elapsed, allocated) = data_round_trip(exec, payload)?;
        if rep > 0 {
            times.push(elapsed);
            copies = copies.min(allocated as f64 / payload.max(1) as f64);
            same_buffer &= back == sent;
        }
    }
    let crosses_processes = workers_rss::total().is_some_and(|(count, _)| count > 0);
    Ok(Data {
        payload_bytes: payload,
        round_trip_us: Spread::of(&times).ok_or("no round trip")?,
        copies_in_this_process: copies,
        // The address of a fresh allocation can repeat by chance; only count it as the same
        // buffer when nothing was copied either.
        same_buffer: same_buffer && copies < 0.5,
        crosses_processes,
        impossible: None,
    })
}

/// One round trip: (address sent, address back, µs, bytes allocated here meanwhile).
fn data_round_trip<E: Executor>(
    exec: &E,
    payload: usize,
) -> Result<(usize, usize, f64, usize), String> {
    // `ByteBuf` rather than a bare `Vec<u8>`: serialized as one block of bytes (a `Vec<u8>` is
    // serialized element by element), as docs/subprocess.md advises for byte payloads; in
    // process it is moved like the `Vec` it wraps.
    let data = ByteBuf::from((0..payload).map(|i| i as u8).collect::<Vec<u8>>());
    let sent = data.as_ptr() as usize;
    let before = counting::start();
    let start = Instant::now();
    let back = exec
        .spawn(data, |buffer: ByteBuf| buffer)
        .join()
        .map_err(|e| e.to_string())?;
    let elapsed = start.elapsed().as_secs_f64() * 1e6;
    let allocated = counting::allocated_since(&before);
    counting::stop();
    if back.len() != payload || back.iter().enumerate().any(|(i, &b)| b != i as u8) {
        return Err("the payload came back changed".into());
    }
    Ok((sent, back.as_ptr() as usize, elapsed, allocated))
}

/// The chunks one after another on this thread: (primes, wall time).
fn run_serial(ranges: &[(u64, u64)]) -> (u64, Duration) {
    let start = Instant::now();
    let primes = ranges.iter().map(|&r| common::count_primes(r)).sum();
    (primes, start.elapsed())
}

/// The chunks as tasks on `exec`: (primes, wall time).
fn run_parallel<E: Executor>(exec: &E, ranges: &[(u64, u64)]) -> Result<(u64, Duration), String> {
    let start = Instant::now();
    let primes = join_ok(exec.spawn_all(ranges.iter().copied(), common::count_primes))?
        .into_iter()
        .sum();
    Ok((primes, start.elapsed()))
}

/// What one backend's timed rounds collected.
#[derive(Debug, Default)]
struct Rounds {
    serial_ms: Vec<f64>,
    parallel_ms: Vec<f64>,
    /// Serial ÷ parallel, per pair.
    ratios: Vec<f64>,
    overhead_us: Vec<f64>,
    data_us: Vec<f64>,
    error: Option<String>,
    /// Why the data row failed (a payload over the cluster's message limit, say), which
    /// leaves the other timed rows standing.
    data_error: Option<String>,
}

/// The timed rows, every backend at once: `s.reps` rounds, each running, per backend (in an
/// order that rotates from round to round), a CPU pair (serial and parallel back to back,
/// which one first alternating), the overhead batch and data round trips. The per-pair ratio
/// cancels a load that changes slowly; the spread over rounds shows what is left.
///
/// Fills in `overhead`, `cpu` and the data row's time of `reports`; returns the serial
/// baseline.
pub(crate) fn timed_rounds(
    reports: &mut [BackendReport],
    workers: Option<usize>,
    s: &Settings,
    cpus: f64,
    progress: &indicatif::ProgressBar,
) -> Serial {
    let ranges = common::ranges(s.cpu_work, s.cpu_chunks);
    // Warm the CPU up, and learn the answer every backend must find.
    let (primes, _) = run_serial(&ranges);
    let execs: Vec<Option<polyexec::AnyExecutor>> = reports
        .iter()
        .map(|r| {
            let backend = Backend::from_name(&r.backend).ok()?;
            let exec = backend.build_with_workers(workers).ok()?;
            // The workers are up before the first round.
            exec.spawn(0u8, |x: u8| x).join().ok()?;
            Some(exec)
        })
        .collect();
    let mut rounds: Vec<Rounds> = execs.iter().map(|_| Rounds::default()).collect();
    let n = execs.len().max(1);
    for round in 0..s.reps as usize {
        progress.set_message(format!("timed rows: round {} of {}", round + 1, s.reps));
        for k in 0..n {
            let i = (k + round) % n;
            let (Some(exec), got) = (&execs[i], &mut rounds[i]) else {
                continue;
            };
            if got.error.is_some() {
                continue;
            }
            if let Err(e) = one_round(exec, &ranges, primes, round % 2 == 0, s, got) {
                got.error = Some(e);
            }
        }
        progress.inc(1);
    }
    for exec in execs.into_iter().flatten() {
        exec.shutdown();
    }

    let mut all_serial = Vec::new();
    for (report, got) in reports.iter_mut().zip(rounds) {
        all_serial.extend_from_slice(&got.serial_ms);
        if let Some(error) = &got.error {
            report.overhead = failed(error);
            report.cpu = failed(error);
            report.data = failed(error);
            continue;
        }
        let Some(overhead) = Spread::of(&got.overhead_us) else {
            report.overhead = failed("could not start");
            report.cpu = failed("could not start");
            continue;
        };
        report.overhead = Measured::Ok(Overhead {
            tasks: s.tasks,
            us_per_task: overhead,
            tasks_per_sec: 1e6 / overhead.median,
        });
        report.cpu = cpu_row(&got, ranges.len(), report.workers, cpus);
        if let Some(error) = &got.data_error {
            report.data = failed(error);
        } else if let (Measured::Ok(data), Some(times)) =
            (&mut report.data, Spread::of(&got.data_us))
        {
            data.round_trip_us = times;
        }
    }
    Serial {
        primes_below: s.cpu_work,
        primes,
        wall_ms: Spread::of(&all_serial).map_or(f64::NAN, |s| s.median),
    }
}

fn failed<T>(error: &str) -> Measured<T> {
    Measured::Failed {
        error: error.into(),
    }
}

/// One backend's share of one round.
fn one_round<E: Executor>(
    exec: &E,
    ranges: &[(u64, u64)],
    primes: u64,
    serial_first: bool,
    s: &Settings,
    got: &mut Rounds,
) -> Result<(), String> {
    let serial = |got: &mut Rounds| got.serial_ms.push(ms(run_serial(ranges).1));
    if serial_first {
        serial(got);
    }
    let (counted, wall) = run_parallel(exec, ranges)?;
    if counted != primes {
        return Err(format!("counted {counted} primes, serial {primes}"));
    }
    got.parallel_ms.push(ms(wall));
    if !serial_first {
        serial(got);
    }
    let last = got.serial_ms.len() - 1;
    got.ratios.push(got.serial_ms[last] / ms(wall));

    let start = Instant::now();
    let results = join_ok(exec.spawn_all(0..s.tasks, |x: u64| x + 1))?;
    if results.len() as u64 != s.tasks {
        return Err("lost results".into());
    }
    got.overhead_us
        .push(start.elapsed().as_secs_f64() * 1e6 / s.tasks.max(1) as f64);

    for _ in 0..3 {
        if got.data_error.is_some() {
            break;
        }
        match data_round_trip(exec, s.payload_bytes) {
            Ok((_, _, us, _)) => got.data_us.push(us),
            Err(e) => got.data_error = Some(e),
        }
    }
    Ok(())
}

/// The CPU row from the pairs: pairs above the physical bound are left out and counted; the
/// speedup is flagged when it is out of bounds or when most pairs were.
fn cpu_row(got: &Rounds, chunks: usize, workers: usize, cpus: f64) -> Measured<Cpu> {
    let (possible, impossible): (Vec<f64>, Vec<f64>) = got
        .ratios
        .iter()
        .partition(|&&r| verdict::impossible_speedup(r, workers, cpus).is_none());
    let all = Spread::of(&got.ratios);
    let kept = Spread::of(&possible);
    let (speedup, flag) = match (kept, all) {
        (Some(kept), _) if impossible.len() * 2 <= got.ratios.len() => (
            kept,
            verdict::impossible_speedup(kept.median, workers, cpus),
        ),
        (_, Some(all)) => (
            all,
            Some(format!(
                "{} of {} pairs gave a speedup above what {workers} worker(s) on {cpus:.0} CPUs allow",
                impossible.len(),
                got.ratios.len()
            )),
        ),
        (_, None) => {
            return Measured::Failed {
                error: "no CPU pair finished".into(),
            };
        }
    };
    let median = |v: &[f64]| Spread::of(v).map_or(f64::NAN, |s| s.median);
    Measured::Ok(Cpu {
        chunks: chunks as u64,
        wall_ms: median(&got.parallel_ms),
        serial_ms: median(&got.serial_ms),
        speedup,
        impossible_pairs: impossible.len(),
        impossible: flag,
    })
}

/// Keeps the default panic message for every panic but the ones this program causes on purpose.
pub(crate) fn silence_expected_panics() {
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
