//! Coroutine backend: 10,000 tasks that each sleep 100 ms, all at once on one loop thread.
//! Reports the wall time and the heap bytes held per pending task, beside raw async-executor
//! and tokio's current-thread runtime doing the same, in the same run.
//!
//! ```text
//! cargo bench --bench coroutine_sleep --features coroutine
//! ```
//!
//! Bytes are counted by a global allocator that tracks live heap bytes: the figure is the heap
//! growth between "nothing submitted" and "every task submitted, started and sleeping", divided
//! by the number of tasks. It includes everything a task costs while it waits: its task cell,
//! its timer's entry in the reactor, its handle in the caller's `Vec`, the executor's
//! bookkeeping, and the capacity slack of those collections.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use polyexec::Executor;
use polyexec::coroutine::EventLoop;
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

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let event_loop = EventLoop::builder().threads(1).build().expect("event loop");
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
    // Interleaved rounds, so that machine noise hits every contender alike; the first round of
    // each warms up (thread start, reactor, allocator arenas) and is dropped.
    for r in 0..=ROUNDS {
        let p = round(
            || {
                (0..TASKS as u64)
                    .map(|i| {
                        event_loop.spawn_async(i, |i: u64| async move {
                            STARTED.fetch_add(1, Ordering::SeqCst);
                            polyexec::sleep(SLEEP).await;
                            i
                        })
                    })
                    .collect()
            },
            |h| h,
        );
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
        if r > 0 {
            polyexec.push(p);
            raw.push(a);
            tokio_samples.push(t);
        }
    }
    println!("{TASKS} tasks x {SLEEP:?} sleep, one executor thread, {ROUNDS} rounds:");
    report("polyexec EventLoop", &polyexec);
    report("async-executor (raw)", &raw);
    report("tokio current_thread", &tokio_samples);

    drop(stop_raw);
    drop(stop_tokio);
    raw_thread.join().expect("raw executor thread");
    tokio_thread.join().expect("tokio thread");
    event_loop.shutdown();
}
