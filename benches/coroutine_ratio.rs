//! Coroutine backend: spawn + await ratios against raw async-executor (and tokio's
//! current-thread runtime), measured interleaved so that a noisy machine blurs them less.
//!
//! Contenders: `raw` (async-executor, `Task<u64>`), `raw+result` (async-executor's own
//! `Task<Result<u64, TaskError>>`: polyexec's output type without its handle), `raw+handle` (async-executor with
//! polyexec's handle and output type, `TaskHandle<u64>` over `Result<u64, TaskError>`: what the
//! portable handle costs by itself), `async` and `blocking` (the `EventLoop`'s `spawn_async` and
//! `spawn`), `tokio` (current-thread runtime).
//!
//! Criterion (`benches/coroutine.rs`) measures each contender for seconds, one after the other;
//! on a shared 2-core machine the load changes between them by more than the differences we
//! look for. Here every round runs each contender once, back to back (10,000 trivial tasks
//! each). Two figures: the ratio of each contender's best round to raw's best round (the
//! rounds least disturbed by other load), and the median over the rounds of the per-round
//! ratio.
//!
//! ```text
//! cargo bench --bench coroutine_ratio --features coroutine            # ratios
//! ```
//!
//! Instruction counts, which no load can blur (one task on the executor thread spawns 1,000
//! tasks and awaits them, `ROUNDS` times):
//!
//! ```text
//! cargo bench --bench coroutine_ratio --features coroutine --no-run
//! BIN=$(ls target/release/deps/coroutine_ratio-* | grep -v '\.d$')
//! for w in raw async blocking; do for rounds in 0 50; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null $BIN count $w $rounds 2>&1 | grep Collected
//! done; done
//! ```
//!
//! Instructions per task = (count at 50 rounds − count at 0 rounds) / 50,000.
//!
//! The ratios are also written to `target/polyexec-bench/coroutine_ratio.json` for
//! `scripts/bench.sh`.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use polyexec::Executor;
use polyexec::coroutine::EventLoop;
use polyexec_core::{TaskError, TaskHandle, block_on};

const TASKS: u64 = 10_000;

type RawExecutor = &'static async_executor::Executor<'static>;

/// Runs `run` on a new thread until the returned sender is dropped.
fn driver(
    run: impl FnOnce(oneshot::Receiver<()>) + Send + 'static,
) -> (oneshot::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel();
    (stop, std::thread::spawn(move || run(stopped)))
}

fn raw_executor() -> (
    RawExecutor,
    oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let ex: RawExecutor = Box::leak(Box::new(async_executor::Executor::new()));
    let (stop, thread) = driver(move |stopped| {
        async_io::block_on(ex.run(async {
            let _ = stopped.await;
        }))
    });
    (ex, stop, thread)
}

fn wait_all<F: Future>(tasks: Vec<F>) {
    for t in tasks {
        black_box(block_on(t));
    }
}

/// The contenders of one shape: each runs one round of `n` tasks.
struct Contenders {
    event_loop: Arc<EventLoop>,
    raw: RawExecutor,
    tokio: tokio::runtime::Handle,
}

impl Contenders {
    /// Submit all from this thread, then wait for each from this thread.
    fn cross(&self, which: &str, n: u64) {
        match which {
            "raw" => wait_all(
                (0..n)
                    .map(|i| self.raw.spawn(async move { black_box(i) + 1 }))
                    .collect(),
            ),
            "raw+handle" => wait_all(
                (0..n)
                    .map(|i| TaskHandle::from_task(self.raw.spawn(async move { ok(i) })))
                    .collect(),
            ),
            "async" => wait_all(
                (0..n)
                    .map(|i| {
                        self.event_loop
                            .spawn_async(i, |x: u64| async move { x + 1 })
                    })
                    .collect(),
            ),
            "blocking" => wait_all(
                (0..n)
                    .map(|i| self.event_loop.spawn(i, |x: u64| x + 1))
                    .collect(),
            ),
            "tokio" => wait_all(
                (0..n)
                    .map(|i| self.tokio.spawn(async move { black_box(i) + 1 }))
                    .collect(),
            ),
            other => panic!("unknown contender {other}"),
        }
    }

    /// Batch submission from this thread: async-executor's `spawn_many`, the loop's
    /// `spawn_all`, and `map` (which sends chunks of inputs as single loop tasks).
    fn batch(&self, which: &str, n: u64) {
        match which {
            "raw" => {
                let mut tasks = Vec::with_capacity(n as usize);
                self.raw
                    .spawn_many((0..n).map(|i| async move { black_box(i) + 1 }), &mut tasks);
                wait_all(tasks);
            }
            "spawn_all" => wait_all(self.event_loop.spawn_all(0..n, |x: u64| x + 1)),
            "map" => {
                black_box(
                    self.event_loop
                        .map(0..n, |x: u64| x + 1)
                        .map(|r| r.expect("task"))
                        .sum::<u64>(),
                );
            }
            other => panic!("unknown contender {other}"),
        }
    }

    /// One task on the executor thread submits all, then awaits each: no cross-thread wake-up.
    fn on_loop(&self, which: &str, n: u64) {
        match which {
            "raw+result" => {
                let ex = self.raw;
                block_on(ex.spawn(async move {
                    let tasks: Vec<_> = (0..n).map(|i| ex.spawn(async move { ok(i) })).collect();
                    for t in tasks {
                        black_box(t.await.expect("task"));
                    }
                }));
            }
            "raw+handle" => {
                let ex = self.raw;
                block_on(ex.spawn(async move {
                    let tasks: Vec<_> = (0..n)
                        .map(|i| TaskHandle::from_task(ex.spawn(async move { ok(i) })))
                        .collect();
                    for t in tasks {
                        black_box(t.await.expect("task"));
                    }
                }));
            }
            "raw" => {
                let ex = self.raw;
                block_on(ex.spawn(async move {
                    let tasks: Vec<_> = (0..n)
                        .map(|i| ex.spawn(async move { black_box(i) + 1 }))
                        .collect();
                    for t in tasks {
                        black_box(t.await);
                    }
                }));
            }
            "async" | "blocking" => {
                let inner = Arc::clone(&self.event_loop);
                let blocking = which == "blocking";
                block_on(self.event_loop.spawn_capturing(async move {
                    let handles: Vec<_> = (0..n)
                        .map(|i| {
                            if blocking {
                                inner.spawn(i, |x: u64| x + 1)
                            } else {
                                inner.spawn_async(i, |x: u64| async move { x + 1 })
                            }
                        })
                        .collect();
                    for h in handles {
                        black_box(h.await.expect("task"));
                    }
                }))
                .expect("driver task");
            }
            "tokio" => {
                block_on(self.tokio.spawn(async move {
                    let tasks: Vec<_> = (0..n)
                        .map(|i| tokio::spawn(async move { black_box(i) + 1 }))
                        .collect();
                    for t in tasks {
                        black_box(t.await.expect("task"));
                    }
                }))
                .expect("driver task");
            }
            other => panic!("unknown contender {other}"),
        }
    }
}

/// The trivial task with polyexec's output type, for `raw+handle`.
fn ok(i: u64) -> Result<u64, TaskError> {
    Ok(black_box(i) + 1)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn quartiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 4], values[values.len() * 3 / 4])
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (raw, stop_raw, raw_thread) = raw_executor();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let tokio = rt.handle().clone();
    let (stop_tokio, tokio_thread) = driver(move |stopped| {
        rt.block_on(async {
            let _ = stopped.await;
        })
    });
    let contenders = Contenders {
        event_loop: Arc::new(EventLoop::builder().threads(1).build().expect("event loop")),
        raw,
        tokio,
    };

    if let [mode, which, rounds] = args.as_slice() {
        assert_eq!(
            mode, "count",
            "usage: coroutine_ratio [count raw|async|blocking ROUNDS]"
        );
        for _ in 0..rounds.parse::<usize>().expect("rounds: a number") {
            contenders.on_loop(which, 1_000);
        }
    } else {
        let rounds = if common::quick() { 40 } else { 150 };
        let mut json = serde_json::Map::new();
        let names: &[&str] = &["raw", "raw+handle", "async", "blocking", "tokio"];
        let loop_names: &[&str] = &[
            "raw",
            "raw+result",
            "raw+handle",
            "async",
            "blocking",
            "tokio",
        ];
        let batch_names: &[&str] = &["raw", "spawn_all", "map"];
        for (shape, key, label, names) in [
            (0, "on_the_loop", "on the loop", loop_names),
            (1, "cross_thread", "submit from another thread", names),
            (
                2,
                "batch",
                "batch from another thread (raw = spawn_many)",
                batch_names,
            ),
        ] {
            let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
            for round in 0..=rounds {
                for (k, which) in names.iter().enumerate() {
                    let start = Instant::now();
                    match shape {
                        0 => contenders.on_loop(which, TASKS),
                        1 => contenders.cross(which, TASKS),
                        _ => contenders.batch(which, TASKS),
                    }
                    let took = start.elapsed();
                    if round > 0 {
                        times[k].push(took.as_secs_f64());
                    }
                }
            }
            println!("{label}: {TASKS} tasks per round, {rounds} rounds, contenders interleaved");
            let mut shape_json = serde_json::Map::new();
            for (k, which) in names.iter().enumerate() {
                let mut ratios: Vec<f64> = times[k]
                    .iter()
                    .zip(&times[0])
                    .map(|(t, raw)| t / raw)
                    .collect();
                let (q1, q3) = quartiles(&mut ratios);
                let best = times[k].iter().copied().fold(f64::INFINITY, f64::min);
                let best_raw = times[0].iter().copied().fold(f64::INFINITY, f64::min);
                let per_task = Duration::from_secs_f64(best / TASKS as f64);
                let ratio_median = median(&mut ratios);
                shape_json.insert(
                    (*which).into(),
                    serde_json::json!({
                        "best_s_per_task": best / TASKS as f64,
                        "ratio_of_bests": best / best_raw,
                        "ratio_median": ratio_median,
                        "ratio_q1": q1,
                        "ratio_q3": q3,
                    }),
                );
                println!(
                    "  {which:<10} best {:>5.0} ns/task, ratio of bests {:.2}x; per-round ratio median {:.2}x (quartiles {:.2}-{:.2})",
                    per_task.as_nanos(),
                    best / best_raw,
                    ratio_median,
                    q1,
                    q3
                );
            }
            json.insert(key.into(), shape_json.into());
        }
        json.insert("tasks_per_round".into(), TASKS.into());
        json.insert("rounds".into(), rounds.into());
        common::write_json("coroutine_ratio", &json.into());
    }
    drop(stop_raw);
    drop(stop_tokio);
    raw_thread.join().expect("raw executor thread");
    tokio_thread.join().expect("tokio thread");
}
