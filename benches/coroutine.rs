//! Coroutine backend: spawn + await of trivial tasks on the `EventLoop`, beside raw
//! async-executor and tokio's current-thread runtime doing the same, in the same run.
//!
//! ```text
//! cargo bench --bench coroutine --features coroutine
//! ```
//!
//! Every contender has one executor thread, driven the same way (the thread blocks on the
//! executor until the bench ends); the bench thread submits all tasks, then waits for each
//! result with the same blocking `block_on`. Tasks are trivial (`x + 1`), so this measures the
//! executor's own cost per task.
//!
//! Also: lockstep (spawn one task, wait for it, repeat, from the bench thread), batch
//! submission and `map` with chunking, and a CPU kernel's speedup over serial on a loop of two
//! threads (blocking tasks; the coroutine model is not for CPU work, this shows what it costs).

mod common;

use std::future::Future;
use std::hint::black_box;
use std::thread::JoinHandle;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::channel::oneshot;
use polyexec::Executor;
use polyexec::coroutine::EventLoop;
use polyexec_core::block_on;

const TASKS: u64 = 10_000;

/// An executor thread that runs until dropped.
struct Driver {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(run: impl FnOnce(oneshot::Receiver<()>) + Send + 'static) -> Self {
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || run(stopped));
        Driver {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().expect("driver thread");
        }
    }
}

fn raw_async_executor() -> (&'static async_executor::Executor<'static>, Driver) {
    // Leaked: the executor must outlive the driver thread; one per bench run.
    let ex: &'static async_executor::Executor<'static> =
        Box::leak(Box::new(async_executor::Executor::new()));
    let driver = Driver::start(move |stopped| {
        async_io::block_on(ex.run(async {
            let _ = stopped.await;
        }));
    });
    (ex, driver)
}

fn tokio_current_thread() -> (tokio::runtime::Handle, Driver) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let handle = rt.handle().clone();
    let driver = Driver::start(move |stopped| {
        rt.block_on(async {
            let _ = stopped.await;
        });
    });
    (handle, driver)
}

fn wait_all<F: Future>(tasks: Vec<F>) {
    for t in tasks {
        black_box(block_on(t));
    }
}

fn submit_all_then_await_all(c: &mut Criterion) {
    let event_loop = EventLoop::builder().threads(1).build().expect("event loop");
    let (ex, _raw_driver) = raw_async_executor();
    let (tokio, _tokio_driver) = tokio_current_thread();
    let mut group = c.benchmark_group("coroutine/submit_all_await_all");
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function(BenchmarkId::new("async_executor_raw", TASKS), |b| {
        b.iter(|| {
            let tasks: Vec<_> = (0..TASKS)
                .map(|i| ex.spawn(async move { black_box(i) + 1 }))
                .collect();
            wait_all(tasks);
        })
    });
    group.bench_function(BenchmarkId::new("polyexec_spawn_async", TASKS), |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| event_loop.spawn_async(i, |x: u64| async move { x + 1 }))
                .collect();
            wait_all(handles);
        })
    });
    group.bench_function(BenchmarkId::new("polyexec_spawn", TASKS), |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| event_loop.spawn(i, |x: u64| x + 1))
                .collect();
            wait_all(handles);
        })
    });
    group.bench_function(BenchmarkId::new("tokio_current_thread", TASKS), |b| {
        b.iter(|| {
            let tasks: Vec<_> = (0..TASKS)
                .map(|i| tokio.spawn(async move { black_box(i) + 1 }))
                .collect();
            wait_all(tasks);
        })
    });
    group.finish();
}

fn batch(c: &mut Criterion) {
    let event_loop = EventLoop::builder().threads(1).build().expect("event loop");
    let (ex, _raw_driver) = raw_async_executor();
    let mut group = c.benchmark_group("coroutine/batch");
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function(BenchmarkId::new("async_executor_spawn_many", TASKS), |b| {
        b.iter(|| {
            let mut tasks = Vec::with_capacity(TASKS as usize);
            ex.spawn_many(
                (0..TASKS).map(|i| async move { black_box(i) + 1 }),
                &mut tasks,
            );
            wait_all(tasks);
        })
    });
    group.bench_function(BenchmarkId::new("polyexec_spawn_all", TASKS), |b| {
        b.iter(|| wait_all(event_loop.spawn_all(0..TASKS, |x: u64| x + 1)))
    });
    group.bench_function(BenchmarkId::new("polyexec_map", TASKS), |b| {
        b.iter(|| {
            event_loop
                .map(0..TASKS, |x: u64| x + 1)
                .map(|r| r.expect("task"))
                .sum::<u64>()
        })
    });
    for chunk in [1usize, 16, 64] {
        group.bench_function(BenchmarkId::new("polyexec_map_chunk", chunk), |b| {
            b.iter(|| {
                let options = polyexec::MapOptions::new().chunk_size(chunk);
                event_loop
                    .map_with(0..TASKS, |x: u64| x + 1, options)
                    .map(|r| r.expect("task"))
                    .sum::<u64>()
            })
        });
    }
    group.finish();
}

/// The same shape with everything on the executor thread: one task submits all the tasks and
/// then awaits them. No cross-thread wake-ups, so this isolates the executor's own per-task
/// cost (and is less sensitive to a noisy machine).
fn on_the_loop(c: &mut Criterion) {
    let event_loop =
        std::sync::Arc::new(EventLoop::builder().threads(1).build().expect("event loop"));
    let (ex, _raw_driver) = raw_async_executor();
    let (tokio, _tokio_driver) = tokio_current_thread();
    let mut group = c.benchmark_group("coroutine/on_the_loop");
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function(BenchmarkId::new("async_executor_raw", TASKS), |b| {
        b.iter(|| {
            block_on(ex.spawn(async move {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|i| ex.spawn(async move { black_box(i) + 1 }))
                    .collect();
                for t in tasks {
                    black_box(t.await);
                }
            }))
        })
    });
    group.bench_function(BenchmarkId::new("polyexec_spawn_async", TASKS), |b| {
        b.iter(|| {
            let inner = std::sync::Arc::clone(&event_loop);
            block_on(event_loop.spawn_capturing(async move {
                let handles: Vec<_> = (0..TASKS)
                    .map(|i| inner.spawn_async(i, |x: u64| async move { x + 1 }))
                    .collect();
                for h in handles {
                    black_box(h.await.expect("task"));
                }
            }))
            .expect("driver task")
        })
    });
    group.bench_function(BenchmarkId::new("polyexec_spawn", TASKS), |b| {
        b.iter(|| {
            let inner = std::sync::Arc::clone(&event_loop);
            block_on(event_loop.spawn_capturing(async move {
                let handles: Vec<_> = (0..TASKS).map(|i| inner.spawn(i, |x: u64| x + 1)).collect();
                for h in handles {
                    black_box(h.await.expect("task"));
                }
            }))
            .expect("driver task")
        })
    });
    group.bench_function(BenchmarkId::new("tokio_current_thread", TASKS), |b| {
        b.iter(|| {
            block_on(tokio.spawn(async move {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|i| tokio::spawn(async move { black_box(i) + 1 }))
                    .collect();
                for t in tasks {
                    black_box(t.await.expect("task"));
                }
            }))
            .expect("driver task")
        })
    });
    group.finish();
}

/// Spawn one task from the bench thread, wait for it, repeat: a cross-thread wake-up each way
/// per task.
fn lockstep(c: &mut Criterion) {
    let event_loop = EventLoop::builder().threads(1).build().expect("event loop");
    let (ex, _raw_driver) = raw_async_executor();
    let (tokio, _tokio_driver) = tokio_current_thread();
    let mut group = c.benchmark_group("coroutine/lockstep");
    group.bench_function("async_executor_raw", |b| {
        b.iter(|| block_on(ex.spawn(async move { black_box(1u64) + 1 })))
    });
    group.bench_function("polyexec_spawn_async", |b| {
        b.iter(|| {
            block_on(event_loop.spawn_async(black_box(1u64), |x: u64| async move { x + 1 }))
                .expect("task")
        })
    });
    group.bench_function("polyexec_spawn", |b| {
        b.iter(|| block_on(event_loop.spawn(black_box(1u64), |x: u64| x + 1)).expect("task"))
    });
    group.bench_function("tokio_current_thread", |b| {
        b.iter(|| block_on(tokio.spawn(async move { black_box(1u64) + 1 })).expect("task"))
    });
    group.finish();
}

/// The CPU kernel over 16 chunks: serially on the bench thread, and as blocking tasks (`map`,
/// one chunk per task) on a loop of two threads.
fn cpu(c: &mut Criterion) {
    let event_loop = EventLoop::builder().threads(2).build().expect("event loop");
    let (mut group, chunks) = common::cpu_group(c, "coroutine/cpu");
    common::bench_map(&mut group, "polyexec_2_threads", &event_loop, &chunks);
    group.finish();
}

criterion_group!(
    benches,
    submit_all_then_await_all,
    on_the_loop,
    lockstep,
    batch,
    cpu
);
criterion_main!(benches);
