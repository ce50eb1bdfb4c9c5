//! Thread pool: spawn + join of trivial tasks, beside a minimal hand-written crossbeam-channel pool
//! (the baseline), a two-thread rayon pool and tokio's `spawn_blocking`, in the same run.
//!
//! ```text
//! cargo bench --bench thread_pool
//! ```
//!
//! The hand-written pool is the least a user would write: boxed jobs on an unbounded
//! crossbeam-channel, results through a `oneshot` channel (two allocations per task). The rayon
//! peer uses `ThreadPool::spawn` with the same `oneshot` for results (rayon's own `join`/`scope`
//! are fork-join, not submit-and-wait); the tokio peer is `spawn_blocking` on a runtime limited
//! to two blocking threads, joined with `block_on`.
//!
//! Also `map` with chunking (beside rayon's `par_iter` on a two-thread pool) and a CPU kernel's
//! speedup over serial (the kernel of `benches/common`, also run by every other backend's bench
//! and by `benches/peers.py`).

mod common;

use std::hint::black_box;
use std::thread::JoinHandle;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use crossbeam_channel::{Sender, unbounded};
use polyexec::Executor;
use polyexec::thread::ThreadPool;

const WORKERS: usize = 2;
const TASKS: u64 = 10_000;

type Job = Box<dyn FnOnce() + Send>;

/// The baseline: a minimal pool over crossbeam-channel.
struct RawPool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl RawPool {
    fn new(workers: usize) -> Self {
        let (tx, rx) = unbounded::<Job>();
        let threads = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
            })
            .collect();
        RawPool {
            tx: Some(tx),
            threads,
        }
    }

    fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.tx
            .as_ref()
            .expect("open")
            .send(job)
            .expect("workers alive");
        rx
    }
}

impl Drop for RawPool {
    fn drop(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            t.join().expect("worker");
        }
    }
}

fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .expect("rayon pool")
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(WORKERS)
        .build()
        .expect("tokio runtime")
}

fn rayon_spawn<T: Send + 'static>(
    pool: &rayon::ThreadPool,
    f: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    pool.spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn submit_all_then_join_all(c: &mut Criterion) {
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .build()
        .expect("pool");
    let raw = RawPool::new(WORKERS);
    let rayon = rayon_pool();
    let tokio = tokio_runtime();
    let mut group = c.benchmark_group("thread/submit_all_join_all");
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function(BenchmarkId::new("polyexec", TASKS), |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..TASKS).map(|i| pool.spawn(i, |x: u64| x + 1)).collect();
            for h in handles {
                black_box(h.join().expect("task"));
            }
        })
    });
    group.bench_function(BenchmarkId::new("crossbeam_raw", TASKS), |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| raw.spawn(move || black_box(i) + 1))
                .collect();
            for h in handles {
                black_box(h.recv().expect("task"));
            }
        })
    });
    group.bench_function(BenchmarkId::new("rayon_spawn", TASKS), |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| rayon_spawn(&rayon, move || black_box(i) + 1))
                .collect();
            for h in handles {
                black_box(h.recv().expect("task"));
            }
        })
    });
    group.bench_function(BenchmarkId::new("tokio_spawn_blocking", TASKS), |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| tokio.spawn_blocking(move || black_box(i) + 1))
                .collect();
            tokio.block_on(async {
                for h in handles {
                    black_box(h.await.expect("task"));
                }
            })
        })
    });
    group.finish();
}

fn lockstep(c: &mut Criterion) {
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .build()
        .expect("pool");
    let raw = RawPool::new(WORKERS);
    let rayon = rayon_pool();
    let tokio = tokio_runtime();
    let mut group = c.benchmark_group("thread/lockstep");
    group.bench_function("polyexec", |b| {
        b.iter(|| {
            pool.spawn(black_box(1u64), |x: u64| x + 1)
                .join()
                .expect("task")
        })
    });
    group.bench_function("crossbeam_raw", |b| {
        b.iter(|| {
            let x = black_box(1u64);
            raw.spawn(move || x + 1).recv().expect("task")
        })
    });
    group.bench_function("rayon_spawn", |b| {
        b.iter(|| {
            let x = black_box(1u64);
            rayon_spawn(&rayon, move || x + 1).recv().expect("task")
        })
    });
    group.bench_function("tokio_spawn_blocking", |b| {
        b.iter(|| {
            let x = black_box(1u64);
            tokio
                .block_on(tokio.spawn_blocking(move || x + 1))
                .expect("task")
        })
    });
    group.finish();
}

fn map_chunked(c: &mut Criterion) {
    use rayon::prelude::*;
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .build()
        .expect("pool");
    let rayon = rayon_pool();
    let inputs: Vec<u64> = (0..TASKS).collect();
    let mut group = c.benchmark_group("thread/map");
    group.throughput(Throughput::Elements(TASKS));
    for chunk in [1usize, 64, 1024] {
        group.bench_function(BenchmarkId::new("chunk", chunk), |b| {
            b.iter(|| {
                let options = polyexec::MapOptions::new().chunk_size(chunk);
                pool.map_with(0..TASKS, |x: u64| x + 1, options)
                    .map(|r| r.expect("task"))
                    .sum::<u64>()
            })
        });
    }
    group.bench_function("default", |b| {
        b.iter(|| {
            pool.map(0..TASKS, |x: u64| x + 1)
                .map(|r| r.expect("task"))
                .sum::<u64>()
        })
    });
    group.bench_function("rayon_par_iter", |b| {
        b.iter(|| {
            rayon.install(|| {
                inputs
                    .par_iter()
                    .map(|&x| black_box(x) + 1)
                    .collect::<Vec<u64>>()
                    .into_iter()
                    .sum::<u64>()
            })
        })
    });
    group.finish();
}

/// `map`'s own chunk choice beside fixed chunks, on the shapes it must adapt to: many trivial
/// inputs from an iterator that does not know its length (so the first chunk is 1 and only the
/// rate can grow it), and inputs slow enough that one per chunk is best.
fn map_default_chunk(c: &mut Criterion) {
    const MANY: u64 = 1_000_000;
    const SLOW: u64 = 2_000;
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .build()
        .expect("pool");
    // A filter hides the length: `size_hint` is `(0, Some(n))`, not exact.
    let unsized_inputs = || (0..MANY).filter(|x| black_box(*x) != u64::MAX);

    let mut group = c.benchmark_group("thread/map_many_unsized");
    group.throughput(Throughput::Elements(MANY));
    group.sample_size(20);
    for chunk in [64usize, 1024, 16384] {
        group.bench_function(BenchmarkId::new("chunk", chunk), |b| {
            b.iter(|| {
                let options = polyexec::MapOptions::new().chunk_size(chunk);
                pool.map_with(unsized_inputs(), |x: u64| x + 1, options)
                    .map(|r| r.expect("task"))
                    .sum::<u64>()
            })
        });
    }
    group.bench_function("default", |b| {
        b.iter(|| {
            pool.map(unsized_inputs(), |x: u64| x + 1)
                .map(|r| r.expect("task"))
                .sum::<u64>()
        })
    });
    group.finish();

    // Tens of microseconds of work per input: chunks only delay the tail.
    let slow = |x: u64| common::count_primes((x % 8, 3_000 + x % 8));
    let mut group = c.benchmark_group("thread/map_slow");
    group.throughput(Throughput::Elements(SLOW));
    group.sample_size(20);
    for chunk in [1usize, 64] {
        group.bench_function(BenchmarkId::new("chunk", chunk), |b| {
            b.iter(|| {
                let options = polyexec::MapOptions::new().chunk_size(chunk);
                pool.map_with(0..SLOW, slow, options)
                    .map(|r| r.expect("task"))
                    .fold(0u64, u64::wrapping_add)
            })
        });
    }
    group.bench_function("default", |b| {
        b.iter(|| {
            pool.map(0..SLOW, slow)
                .map(|r| r.expect("task"))
                .fold(0u64, u64::wrapping_add)
        })
    });
    group.finish();
}

fn cpu(c: &mut Criterion) {
    use rayon::prelude::*;
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .build()
        .expect("pool");
    let rayon = rayon_pool();
    let tokio = tokio_runtime();
    let (mut group, chunks) = common::cpu_group(c, "thread/cpu");
    common::bench_map(&mut group, "polyexec", &pool, &chunks);
    group.bench_function("rayon_par_iter", |b| {
        b.iter(|| {
            rayon.install(|| {
                chunks
                    .par_iter()
                    .map(|&c| common::count_primes(c))
                    .sum::<u64>()
            })
        })
    });
    group.bench_function("tokio_spawn_blocking", |b| {
        b.iter(|| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|&c| tokio.spawn_blocking(move || common::count_primes(c)))
                .collect();
            tokio.block_on(async {
                let mut sum = 0;
                for h in handles {
                    sum += h.await.expect("task");
                }
                sum
            })
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    submit_all_then_join_all,
    lockstep,
    map_chunked,
    map_default_chunk,
    cpu
);
/// `thread_pool count ROUNDS`: instead of criterion, ROUNDS rounds of 1,000 tasks submitted
/// then joined on a two-worker pool, and exit; for instruction counts, which no load blurs
/// (callgrind runs one thread at a time):
///
/// ```text
/// cargo bench --bench thread_pool --no-run
/// BIN=$(ls target/release/deps/thread_pool-* | grep -v '\.d$')
/// for rounds in 0 50; do
///   valgrind --tool=callgrind --callgrind-out-file=/dev/null $BIN count $rounds 2>&1 | grep Collected
/// done
/// ```
///
/// Instructions per task = (count at 50 rounds − count at 0 rounds) / 50,000.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, rounds] = args.as_slice() {
        if mode == "count" {
            let pool = ThreadPool::builder()
                .workers(WORKERS)
                .build()
                .expect("pool");
            for _ in 0..rounds.parse::<usize>().expect("rounds: a number") {
                let handles: Vec<_> = (0..1_000u64)
                    .map(|i| pool.spawn(i, |x: u64| x + 1))
                    .collect();
                for h in handles {
                    black_box(h.join().expect("task"));
                }
            }
            return;
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
