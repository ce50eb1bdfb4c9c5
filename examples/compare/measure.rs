//! Measuring one backend, row by row.

use std::time::{Duration, Instant};

use polyexec::{Backend, Executor, TaskError};
use serde_bytes::ByteBuf;

use crate::report::*;
use crate::{EXPECTED_PANIC, Settings, common, counting, workers_rss};

/// Progress steps per backend, for the progress bar.
pub(crate) const PHASES_PER_BACKEND: u64 = 10;

pub(crate) fn measure_backend(
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
    let crash = crate::crash::measure(backend, workers, s.crash_tasks);
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

/// Overhead: submit `n` trivial tasks, then join them all; the best of `reps` runs.
pub(crate) fn measure_overhead<E: Executor>(
    exec: &E,
    n: u64,
    reps: u32,
) -> Result<Overhead, String> {
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

/// The chunks one after another on this thread: (primes, wall time).
pub(crate) fn run_serial(ranges: &[(u64, u64)]) -> (u64, Duration) {
    let start = Instant::now();
    let primes = ranges.iter().map(|&r| common::count_primes(r)).sum();
    (primes, start.elapsed())
}

/// The serial baseline: the primes to expect, and a first timing (warming the CPU up).
pub(crate) fn serial_baseline(s: &Settings) -> Serial {
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
pub(crate) fn measure_cpu<E: Executor>(
    exec: &E,
    s: &Settings,
    serial: &mut Serial,
) -> Result<Cpu, String> {
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

/// Data: round trips of a `payload`-byte buffer (`serde_bytes::ByteBuf`) through an identity task; the median time, the
/// bytes this process allocated for it, and whether the same buffer came back.
pub(crate) fn measure_data<E: Executor>(
    exec: &E,
    payload: usize,
    reps: u32,
) -> Result<Data, String> {
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
