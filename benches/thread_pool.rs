//! Thread pool: spawn + join of trivial tasks, beside a minimal hand-written crossbeam-channel pool
//! in the same run.
//!
//! ```text
//! cargo bench --bench thread_pool
//! ```
//!
//! The hand-written pool is the least a user would write: boxed jobs on an unbounded
//! crossbeam-channel, results through a `oneshot` channel (two allocations per task).

use std::hint::black_box;
use std::thread::JoinHandle;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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

fn submit_all_then_join_all(c: &mut Criterion) {
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .build()
        .expect("pool");
    let raw = RawPool::new(WORKERS);
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
    group.finish();
}

fn lockstep(c: &mut Criterion) {
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .build()
        .expect("pool");
    let raw = RawPool::new(WORKERS);
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
    group.finish();
}

fn map_chunked(c: &mut Criterion) {
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .build()
        .expect("pool");
    let mut group = c.benchmark_group("thread/map");
    group.throughput(Throughput::Elements(TASKS));
    for chunk in [1usize, 64] {
        group.bench_function(BenchmarkId::new("chunk", chunk), |b| {
            b.iter(|| {
                let options = polyexec::MapOptions::new().chunk_size(chunk);
                pool.map_with(0..TASKS, |x: u64| x + 1, options)
                    .map(|r| r.expect("task"))
                    .sum::<u64>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, submit_all_then_join_all, lockstep, map_chunked);
criterion_main!(benches);
