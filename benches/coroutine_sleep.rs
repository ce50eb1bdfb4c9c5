//! 10,000 tasks that each sleep 100 ms, all submitted at once. The coroutine backend on one loop
//! thread, beside raw async-executor and tokio's current-thread runtime doing the same (the
//! goal is about this one), and for reference the other backends' async tasks: the thread pool
//! (two workers, which interleave async tasks) and the subprocess pool (two worker processes,
//! each running async tasks on its own local executor). Reports the wall time and the heap
//! bytes held per pending task, in the same run, and writes them to
//! `target/polyexec-bench/sleep.json` for `scripts/bench.sh`.
//!
//! ```text
//! cargo bench --bench coroutine_sleep --all-features
//! ```
//!
//! For the subprocess pool the tasks run in the workers, so "started" cannot be counted in this
//! process: its bytes are this process's heap growth 50 ms after submission (the handles and the
//! pool's task table), plus the growth of the workers' resident memory (`VmRSS`) then.
//!
//! Bytes are counted by a global allocator that tracks live heap bytes: the figure is the heap
//! growth between "nothing submitted" and "every task submitted, started and sleeping", divided
//! by the number of tasks. It includes everything a task costs while it waits: its task cell,
//! its timer's entry in the reactor, its handle in the caller's `Vec`, the executor's
//! bookkeeping, and the capacity slack of those collections.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use polyexec::Executor;
use polyexec::coroutine::EventLoop;
use polyexec::subprocess::ProcessPool;
use polyexec::thread::ThreadPool;
use polyexec_core::block_on;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TASKS: usize = 10_000;
const SLEEP: Duration = Duration::from_millis(100);
const ROUNDS: usize = 5;

/// Tasks that have started sleeping, in the current round.
static STARTED: AtomicUsize = AtomicUsize::new(0);

struct Sample {
    wall: Duration,
    bytes_per_task: f64,
}

/// Runs one round: `spawn_all` submits every task (each must count itself in `STARTED` and
/// then sleep `SLEEP`), `join` waits for one.
fn round<H, F: Future>(spawn_all: impl FnOnce() -> Vec<H>, join: impl Fn(H) -> F) -> Sample {
    STARTED.store(0, Ordering::SeqCst);
    let before = LIVE.load(Ordering::SeqCst);
    let start = Instant::now();
    let handles = spawn_all();
    // Condition wait: every task has been polled once and is now sleeping on its timer.
    while STARTED.load(Ordering::SeqCst) < TASKS {
        std::thread::yield_now();
    }
    let pending = LIVE.load(Ordering::SeqCst);
    for h in handles {
        block_on(join(h));
    }
    let wall = start.elapsed();
    Sample {
        wall,
        bytes_per_task: (pending - before) as f64 / TASKS as f64,
    }
}

/// Like [`round`], for tasks that run in other processes: bytes are this process's heap growth
/// plus the workers' resident-memory growth, 50 ms after the last submission.
fn remote_round<H, F: Future>(
    pids: &[u32],
    spawn_all: impl FnOnce() -> Vec<H>,
    join: impl Fn(H) -> F,
) -> Sample {
    let rss = || pids.iter().map(|&pid| vm_rss(pid)).sum::<f64>();
    let before = LIVE.load(Ordering::SeqCst);
    let rss_before = rss();
    let start = Instant::now();
    let handles = spawn_all();
    std::thread::sleep(Duration::from_millis(50));
    let pending = LIVE.load(Ordering::SeqCst);
    let rss_pending = rss();
    for h in handles {
        block_on(join(h));
    }
    let wall = start.elapsed();
    Sample {
        wall,
        bytes_per_task: ((pending - before) as f64 + (rss_pending - rss_before).max(0.0))
            / TASKS as f64,
    }
}

/// Resident memory of process `pid`, in bytes (0 if unreadable).
fn vm_rss(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0)
}

fn summary(samples: &[Sample]) -> serde_json::Value {
    let mut walls: Vec<f64> = samples.iter().map(|s| s.wall.as_secs_f64()).collect();
    let mut bytes: Vec<f64> = samples.iter().map(|s| s.bytes_per_task).collect();
    let (wall, wall_q1, wall_q3) = common::median_quartiles(&mut walls);
    let (b, b_q1, b_q3) = common::median_quartiles(&mut bytes);
    serde_json::json!({
        "wall_s": wall, "wall_min_s": walls[0], "wall_max_s": walls[walls.len() - 1],
        "wall_q1_s": wall_q1, "wall_q3_s": wall_q3,
        "bytes_per_task": b, "bytes_q1": b_q1, "bytes_q3": b_q3,
    })
}

fn report(name: &str, samples: &[Sample]) {
    let mut walls: Vec<f64> = samples.iter().map(|s| s.wall.as_secs_f64() * 1e3).collect();
    walls.sort_by(f64::total_cmp);
    let mut bytes: Vec<f64> = samples.iter().map(|s| s.bytes_per_task).collect();
    bytes.sort_by(f64::total_cmp);
    println!(
        "{name:<24} wall median {:>7.1} ms (min {:>6.1}, max {:>6.1})   bytes/pending task median {:>6.0} (min {:>5.0}, max {:>5.0})",
        walls[walls.len() / 2],
        walls[0],
        walls[walls.len() - 1],
        bytes[bytes.len() / 2],
        bytes[0],
        bytes[bytes.len() - 1],
    );
}

async fn sleeper(i: u64) -> u64 {
    STARTED.fetch_add(1, Ordering::SeqCst);
    async_io::Timer::after(SLEEP).await;
    i
}

/// Submits the shape's tasks to an in-process polyexec executor: each counts itself as started,
/// then sleeps.
fn spawn_sleepers(executor: &impl Executor) -> Vec<polyexec::TaskHandle<u64>> {
    (0..TASKS as u64)
        .map(|i| {
            executor.spawn_async(i, |i: u64| async move {
                STARTED.fetch_add(1, Ordering::SeqCst);
                polyexec::sleep(SLEEP).await;
                i
            })
        })
        .collect()
}

fn main() {
    // The subprocess pool's workers are this binary started again.
    polyexec::init();
    // `cargo bench` passes `--bench`; nothing else is expected.
    let event_loop = EventLoop::builder().threads(1).build().expect("event loop");
    let thread_pool = ThreadPool::builder().workers(2).build().expect("pool");
    let process_pool = ProcessPool::builder().workers(2).build().expect("pool");
    let pids = process_pool.worker_pids();
    let ex: &'static async_executor::Executor<'static> =
        Box::leak(Box::new(async_executor::Executor::new()));
    let (stop_raw, raw_stopped) = oneshot::channel::<()>();
    let raw_thread = std::thread::spawn(move || {
        async_io::block_on(ex.run(async {
            let _ = raw_stopped.await;
        }))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let tokio = rt.handle().clone();
    let (stop_tokio, tokio_stopped) = oneshot::channel::<()>();
    let tokio_thread = std::thread::spawn(move || {
        rt.block_on(async {
            let _ = tokio_stopped.await;
        })
    });

    let mut polyexec = Vec::new();
    let mut raw = Vec::new();
    let mut tokio_samples = Vec::new();
    let mut threads = Vec::new();
    let mut processes = Vec::new();
    // Interleaved rounds, so that machine noise hits every contender alike; the first round of
    // each warms up (thread start, reactor, allocator arenas) and is dropped.
    for r in 0..=ROUNDS {
        let p = round(|| spawn_sleepers(&event_loop), |h| h);
        let a = round(
            || (0..TASKS as u64).map(|i| ex.spawn(sleeper(i))).collect(),
            |t| t,
        );
        let t = round(
            || {
                (0..TASKS as u64)
                    .map(|i| {
                        tokio.spawn(async move {
                            STARTED.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(SLEEP).await;
                            i
                        })
                    })
                    .collect()
            },
            |t| t,
        );
        let th = round(|| spawn_sleepers(&thread_pool), |h| h);
        let pr = remote_round(
            &pids,
            || {
                (0..TASKS as u64)
                    .map(|i| {
                        process_pool.spawn_async(i, |i: u64| async move {
                            polyexec::sleep(std::time::Duration::from_millis(100)).await;
                            i
                        })
                    })
                    .collect()
            },
            |h| h,
        );
        if r > 0 {
            polyexec.push(p);
            raw.push(a);
            tokio_samples.push(t);
            threads.push(th);
            processes.push(pr);
        }
    }
    println!("{TASKS} tasks x {SLEEP:?} sleep, one executor thread, {ROUNDS} rounds:");
    report("polyexec EventLoop", &polyexec);
    report("async-executor (raw)", &raw);
    report("tokio current_thread", &tokio_samples);
    report("polyexec ThreadPool (2)", &threads);
    report("polyexec ProcessPool (2)", &processes);
    common::write_json(
        "sleep",
        &serde_json::json!({
            "tasks": TASKS,
            "sleep_s": SLEEP.as_secs_f64(),
            "rounds": ROUNDS,
            "contenders": {
                "polyexec_event_loop": summary(&polyexec),
                "async_executor_raw": summary(&raw),
                "tokio_current_thread": summary(&tokio_samples),
                "polyexec_thread_pool_2": summary(&threads),
                "polyexec_process_pool_2": summary(&processes),
            },
        }),
    );

    drop(stop_raw);
    drop(stop_tokio);
    raw_thread.join().expect("raw executor thread");
    tokio_thread.join().expect("tokio thread");
    event_loop.shutdown();
    thread_pool.shutdown();
    process_pool.shutdown();
}
