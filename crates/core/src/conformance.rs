//! The backend conformance suite: one test body per behaviour, run against every backend.
//!
//! A backend's test file instantiates all of it with one line:
//!
//! ```ignore
//! polyexec_core::conformance_suite!(|| MyExecutor::builder().workers(2).build().unwrap());
//! ```
//!
//! Each function here is one behaviour every [`Executor`] must show. They synchronise through
//! [`Gate`]s, loopback sockets that a task connects to and then blocks on until the test releases
//! it, so they are deterministic on a loaded machine and work when the task runs in another
//! process. Timeouts here only turn a hang into a failure; they never stand in for
//! synchronisation.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use futures::StreamExt;

use crate::{Executor, MapOptions, TaskError, TaskHandle};

mod abort;
mod maps;
mod metrics;

mod options;
mod task_set;

pub use abort::abort_from_another_thread;
pub use maps::{map_stream_in_order_without_blocking, map_unordered_completion_order};
pub use metrics::{
    metrics_count_cancel_and_shutdown, metrics_count_outcomes, metrics_count_timeouts,
};

pub use options::{shutdown_timeout_is_bounded, spawn_with_timeout, unblock_keeps_the_worker_free};
pub use task_set::{task_set_abort_all_and_drop, task_set_completion_order};

/// Generates one `#[test]` per conformance behaviour, each building its executor with `$make`.
///
/// `$make` is an expression of type `impl Fn() -> E` where `E: Executor + 'static`.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            values,
            async_tasks,
            map_order,
            map_element_panic,
            panic_then_still_works,
            cancel_queued,
            cancel_finished_keeps_value,
            drop_detaches,
            graceful_shutdown_drains,
            shutdown_now_cancels_queued,
            refuses_after_shutdown,
            exactly_once_from_four_threads,
            async_and_sync_waiting,
            join_timeout_then_join,
            exactly_once_random_mix,
            abort_from_another_thread,
            task_set_completion_order,
            task_set_abort_all_and_drop,
            map_unordered_completion_order,
            map_stream_in_order_without_blocking,

            spawn_with_timeout,
            unblock_keeps_the_worker_free,
            shutdown_timeout_is_bounded,
            metrics_count_outcomes,
            metrics_count_cancel_and_shutdown,
            metrics_count_timeouts,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::$name(&$make);
            }
        )*
    };
}

/// Longest a conformance test waits for something that must happen; only a broken backend hits it.
const HANG: Duration = Duration::from_secs(120);

/// A rendezvous point for tasks, reachable from any thread or process on this machine.
///
/// A gated task connects, says it has started, and blocks until [`Gate::release`]. While `n`
/// gated tasks hold `n` workers, anything submitted next is guaranteed to wait in the queue.
#[derive(Debug)]
pub struct Gate {
    port: u16,
    accepted: mpsc::Receiver<TcpStream>,
    held: Vec<TcpStream>,
}

impl Gate {
    /// Opens a gate on a loopback port.
    pub fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let (tx, accepted) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut byte = [0u8];
                if stream.read_exact(&mut byte).is_ok() && tx.send(stream).is_err() {
                    return;
                }
            }
        });
        Gate {
            port,
            accepted,
            held: Vec::new(),
        }
    }

    /// The port a gated task connects to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until `n` more gated tasks have started (and are now blocked).
    pub fn wait_started(&mut self, n: usize) {
        for _ in 0..n {
            let stream = self
                .accepted
                .recv_timeout(HANG)
                .expect("a gated task did not start: the executor is not running it");
            self.held.push(stream);
        }
    }

    /// Lets every started gated task finish.
    pub fn release(&mut self) {
        for mut stream in self.held.drain(..) {
            // The task may be gone already (killed by an immediate shutdown).
            let _ = stream.write_all(b"r");
        }
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

/// The body of a gated task: connect to the gate on `port`, report, and block until released.
/// Returns the port, so callers can tell gated results apart.
pub fn gated(port: u16) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gate");
    stream.write_all(b"s").expect("report start");
    let mut byte = [0u8];
    // EOF (the test dropped the gate) releases too.
    let _ = stream.read(&mut byte);
    port
}

/// The body of a marker task: writes `path`, proving it ran.
pub fn mark(path: String) -> String {
    std::fs::write(&path, b"ran").expect("write the marker file");
    path
}

fn marker(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 temp path").to_owned()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temp dir")
}

/// Fills every worker with a gated task; returns their handles.
fn occupy_all<E: Executor>(exec: &E, gate: &mut Gate) -> Vec<TaskHandle<u16>> {
    let n = exec.workers();
    let handles: Vec<_> = (0..n).map(|_| exec.spawn(gate.port(), gated)).collect();
    gate.wait_started(n);
    handles
}

/// Blocking and async tasks return their values, for several input and output types.
pub fn values<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    assert_eq!(exec.spawn(21u32, |x: u32| x * 2).join(), Ok(42));
    let greeting = exec.spawn(("Task".to_string(), 7u8), |(name, n): (String, u8)| {
        format!("{name} {n}")
    });
    assert_eq!(greeting.join().as_deref(), Ok("Task 7"));
    let nested = exec.spawn(vec![vec![1u8, 2], vec![3]], |v: Vec<Vec<u8>>| {
        v.into_iter().flatten().map(u32::from).sum::<u32>()
    });
    assert_eq!(nested.join(), Ok(6));
    assert_eq!(exec.spawn((), |()| ()).join(), Ok(()));
    let option = exec.spawn(Some(5i64), |x: Option<i64>| x.map(|v| -v));
    assert_eq!(option.join(), Ok(Some(-5)));
    fn named(x: u16) -> u16 {
        x + 1
    }
    assert_eq!(exec.spawn(1u16, named).join(), Ok(2));
    let handles = exec.spawn_all(0..100u32, |x: u32| x + 1);
    let results: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results, (1..=100).collect::<Vec<u32>>());
    exec.shutdown();
}

/// Async tasks run, can sleep with [`crate::sleep`], and many wait at once without holding a
/// worker each.
pub fn async_tasks<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let h = exec.spawn_async(3u64, |x: u64| async move {
        crate::sleep(Duration::from_millis(1)).await;
        x * 3
    });
    assert_eq!(h.join(), Ok(9));
    // More sleeping tasks than workers.
    let n = exec.workers() * 8 + 8;
    let handles: Vec<_> = (0..n as u64)
        .map(|i| {
            exec.spawn_async(i, |i: u64| async move {
                crate::sleep(Duration::from_millis(20)).await;
                i
            })
        })
        .collect();
    let results = crate::join_all(handles);
    assert_eq!(
        results,
        (0..n as u64)
            .map(Ok)
            .collect::<Vec<Result<u64, TaskError>>>()
    );
    let panicked: TaskHandle<()> = exec.spawn_async((), |()| async move {
        crate::sleep(Duration::from_millis(1)).await;
        panic!("async boom");
    });
    let err = panicked.join().unwrap_err();
    assert_eq!(err.panic_message(), Some("async boom"));
    // A panic in the closure itself, before it returns its future, is the task's panic too.
    let unmade: TaskHandle<u64> = exec.spawn_async(5u64, |x: u64| -> std::future::Ready<u64> {
        panic!("no future for {x}")
    });
    assert_eq!(
        unmade.join().unwrap_err().panic_message(),
        Some("no future for 5")
    );
    let after = exec.spawn_async(6u64, |x: u64| async move { x + 1 });
    assert_eq!(after.join(), Ok(7));
    exec.shutdown();
}

/// `map` yields results in input order, for every chunk size and in-flight bound.
pub fn map_order<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let expected: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
    let got: Vec<u64> = exec
        .map(0..1000u64, |x: u64| x * x)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, expected);
    for (chunk, in_flight) in [(1, 1), (1, 3), (7, 7), (7, 100), (100, 1000), (3000, 1)] {
        let options = MapOptions::new().chunk_size(chunk).max_in_flight(in_flight);
        let got: Vec<u64> = exec
            .map_with(0..1000u64, |x: u64| x * x, options)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, expected, "chunk {chunk}, in flight {in_flight}");
    }
    assert_eq!(exec.map(Vec::<u8>::new(), |x: u8| x).count(), 0);
    // Lazy: an endless input is fine when only a prefix is consumed.
    let first: Vec<u64> = exec
        .map(0u64.., |x: u64| x + 1)
        .take(10)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(first, (1..=10).collect::<Vec<u64>>());
    exec.shutdown();
}

/// A panic in one `map` element fails that element only, whatever the chunk size.
pub fn map_element_panic<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    for chunk in [1, 10] {
        let results: Vec<Result<u32, TaskError>> = exec
            .map_with(
                0..30u32,
                |x: u32| {
                    assert!(x != 13, "unlucky {x}");
                    x
                },
                MapOptions::new().chunk_size(chunk),
            )
            .collect();
        for (i, r) in results.iter().enumerate() {
            if i == 13 {
                let err = r.as_ref().unwrap_err();
                assert_eq!(err.panic_message(), Some("unlucky 13"), "chunk {chunk}");
            } else {
                assert_eq!(r, &Ok(i as u32), "chunk {chunk}");
            }
        }
    }
    exec.shutdown();
}

/// A panic becomes `Panicked` with its message, and every worker keeps serving.
pub fn panic_then_still_works<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let h = exec.spawn(42u32, |x: u32| -> u32 { panic!("boom {x}") });
    let err = h.join().unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    assert_eq!(err.panic_message(), Some("boom 42"));
    assert!(err.to_string().contains("boom 42"), "{err}");
    // More panics than workers, then more tasks than workers: all still served.
    let n = exec.workers() * 3;
    let panics = exec.spawn_all(0..n as u32, |x: u32| -> u32 { panic!("p{x}") });
    for (i, h) in panics.into_iter().enumerate() {
        assert_eq!(
            h.join().unwrap_err().panic_message(),
            Some(&*format!("p{i}"))
        );
    }
    let ok = exec.spawn_all(0..n as u32, |x: u32| x);
    for (i, h) in ok.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i as u32));
    }
    exec.shutdown();
}

/// Cancelling a queued task resolves it with `Cancelled`, and it never runs.
pub fn cancel_queued<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let dir = temp_dir();
    let mut gate = Gate::new();
    let blockers = occupy_all(&exec, &mut gate);
    let path = marker(dir.path(), "cancelled");
    let victim = exec.spawn(path.clone(), mark);
    assert!(!victim.is_finished());
    assert!(victim.cancel());
    assert!(victim.is_finished());
    assert_eq!(victim.join(), Err(TaskError::Cancelled));
    // A task queued behind the victim still runs.
    let after_path = marker(dir.path(), "after");
    let after = exec.spawn(after_path.clone(), mark);
    gate.release();
    for b in blockers {
        assert_eq!(b.join(), Ok(gate.port()));
    }
    assert_eq!(after.join(), Ok(after_path.clone()));
    exec.shutdown();
    assert!(Path::new(&after_path).exists());
    assert!(
        !Path::new(&path).exists(),
        "a cancelled queued task ran anyway"
    );
}

/// Cancelling a finished task keeps its value; `is_finished` reports completion.
pub fn cancel_finished_keeps_value<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let h = exec.spawn(5u8, |x: u8| x + 1);
    // Condition wait: the task completes on its own; we only need to observe it.
    while !h.is_finished() {
        std::thread::yield_now();
    }
    assert!(!h.cancel());
    assert_eq!(h.join(), Ok(6));
    exec.shutdown();
}

/// Dropping a handle detaches its task: the task still runs.
pub fn drop_detaches<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let dir = temp_dir();
    let path = marker(dir.path(), "detached");
    drop(exec.spawn(path.clone(), mark));
    let async_path = marker(dir.path(), "detached-async");
    exec.spawn_async(async_path.clone(), |path: String| async move {
        crate::sleep(Duration::from_millis(5)).await;
        mark(path)
    })
    .detach();
    exec.shutdown();
    assert!(Path::new(&path).exists(), "a detached task did not run");
    assert!(
        Path::new(&async_path).exists(),
        "a detached async task did not run"
    );
}

/// Graceful shutdown finishes every task submitted before it, then returns.
pub fn graceful_shutdown_drains<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = Arc::new(make());
    let dir = temp_dir();
    let mut gate = Gate::new();
    let blockers = occupy_all(&*exec, &mut gate);
    let paths: Vec<String> = (0..20)
        .map(|i| marker(dir.path(), &format!("q{i}")))
        .collect();
    let queued: Vec<_> = paths.iter().map(|p| exec.spawn(p.clone(), mark)).collect();
    let sleeper = exec.spawn_async(9u8, |x: u8| async move {
        crate::sleep(Duration::from_millis(30)).await;
        x
    });
    let shutdown = {
        let exec = Arc::clone(&exec);
        std::thread::spawn(move || exec.shutdown())
    };
    // Wait until the shutdown has begun: a new task is then refused at once, with a handle that
    // is already resolved. Probes accepted before that are queued work like any other.
    let mut accepted_probes = Vec::new();
    loop {
        let probe = exec.spawn(0u8, |x: u8| x);
        if probe.is_finished() {
            match probe.join() {
                Err(TaskError::ShutDown) => break,
                other => assert_eq!(other, Ok(0)),
            }
        } else {
            accepted_probes.push(probe);
            std::thread::yield_now();
        }
    }
    gate.release();
    shutdown.join().expect("shutdown panicked");
    for b in blockers {
        assert_eq!(b.join(), Ok(gate.port()));
    }
    for (path, h) in paths.iter().zip(queued) {
        assert_eq!(h.join().as_ref(), Ok(path));
        assert!(Path::new(path).exists());
    }
    assert_eq!(sleeper.join(), Ok(9));
    for probe in accepted_probes {
        assert_eq!(probe.join(), Ok(0));
    }
}

/// Immediate shutdown resolves queued tasks with `ShutDown` (they never run), and every handle
/// resolves.
pub fn shutdown_now_cancels_queued<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = Arc::new(make());
    let dir = temp_dir();
    let mut gate = Gate::new();
    let blockers = occupy_all(&*exec, &mut gate);
    let paths: Vec<String> = (0..20)
        .map(|i| marker(dir.path(), &format!("q{i}")))
        .collect();
    let queued: Vec<_> = paths.iter().map(|p| exec.spawn(p.clone(), mark)).collect();
    let waiting = exec.spawn_async(marker(dir.path(), "waiting"), |path: String| async move {
        crate::sleep(Duration::from_secs(3600)).await;
        mark(path)
    });
    let shutdown = {
        let exec = Arc::clone(&exec);
        std::thread::spawn(move || exec.shutdown_now())
    };
    // Queued work resolves while the workers are still busy: the shutdown did not wait for it.
    for h in queued {
        assert_eq!(h.join(), Err(TaskError::ShutDown));
    }
    assert_eq!(waiting.join(), Err(TaskError::ShutDown));
    gate.release();
    shutdown.join().expect("shutdown_now panicked");
    for b in blockers {
        match b.join() {
            // Threads cannot be interrupted and finish; processes and coroutines can be stopped.
            Ok(port) => assert_eq!(port, gate.port()),
            Err(err) => assert!(err.is_shutdown() || err.is_worker_lost(), "{err:?}"),
        }
    }
    for path in &paths {
        assert!(
            !Path::new(path).exists(),
            "a task cancelled by shutdown_now ran"
        );
    }
    assert!(!dir.path().join("waiting").exists());
}

/// After shutdown, every kind of submission resolves with `ShutDown`.
pub fn refuses_after_shutdown<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    assert_eq!(exec.spawn(1u8, |x: u8| x).join(), Ok(1));
    exec.shutdown();
    exec.shutdown(); // idempotent
    assert_eq!(exec.spawn(1u8, |x: u8| x).join(), Err(TaskError::ShutDown));
    let h = exec.spawn_async(1u8, |x: u8| async move { x });
    assert_eq!(h.join(), Err(TaskError::ShutDown));
    let mapped: Vec<_> = exec.map(0..3u8, |x: u8| x).collect();
    assert_eq!(mapped, vec![Err(TaskError::ShutDown); 3]);
    exec.shutdown_now();
}

/// 100,000 tasks submitted from four threads each resolve exactly once, with their own value.
pub fn exactly_once_from_four_threads<E: Executor + 'static>(make: &dyn Fn() -> E) {
    const PER_THREAD: u64 = 25_000;
    let exec = Arc::new(make());
    let submitters: Vec<_> = (0..4u64)
        .map(|t| {
            let exec = Arc::clone(&exec);
            std::thread::spawn(move || {
                let handles: Vec<_> = (t * PER_THREAD..(t + 1) * PER_THREAD)
                    .map(|id| exec.spawn(id, |id: u64| id))
                    .collect();
                handles
                    .into_iter()
                    .map(TaskHandle::join)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut resolutions = 0u64;
    for s in submitters {
        for result in s.join().expect("submitter panicked") {
            resolutions += 1;
            let id = result.expect("a task failed");
            assert!(seen.insert(id), "task {id} resolved twice");
        }
    }
    assert_eq!(resolutions, 4 * PER_THREAD);
    assert_eq!(seen.len() as u64, 4 * PER_THREAD);
    exec.shutdown();
}

/// Handles can be awaited from async code (on different runtimes) and joined from sync code,
/// one at a time or through the helpers.
pub fn async_and_sync_waiting<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let h = exec.spawn(1u8, |x: u8| x + 1);
    assert_eq!(futures::executor::block_on(h), Ok(2));
    let h = exec.spawn_async(2u8, |x: u8| async move { x + 1 });
    // Awaited inside an async block, as user code would, on a second runtime.
    let awaited = async move { h.await.map(|x| x * 10) };
    assert_eq!(async_io::block_on(awaited), Ok(30));
    assert_eq!(exec.spawn(3u8, |x: u8| x + 1).join(), Ok(4));

    let handles = exec.spawn_all(0..10u8, |x: u8| x);
    let all = futures::executor::block_on(crate::join_all_async(handles));
    assert_eq!(all, (0..10u8).map(Ok).collect::<Vec<_>>());

    // A waiting async task does not hold a worker, so the blocking task finishes first.
    let slow = exec.spawn_async(3600u64, |secs: u64| async move {
        crate::sleep(Duration::from_secs(secs)).await;
        0u16
    });
    let fast = exec.spawn(7u16, |x: u16| x);
    let first = crate::wait_any(vec![slow, fast]);
    assert_eq!((first.index, first.result), (1, Ok(7)));
    let rest = first.rest;
    assert!(rest[0].cancel());
    assert_eq!(crate::join_all(rest), vec![Err(TaskError::Cancelled)]);

    let completed = crate::as_completed(exec.spawn_all(0..20u8, |x: u8| x));
    let mut order: Vec<usize> = Iterator::map(completed, |(i, r)| {
        assert_eq!(r, Ok(i as u8));
        i
    })
    .collect();
    order.sort_unstable();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
    let streamed = futures::executor::block_on(StreamExt::count(crate::as_completed(
        exec.spawn_all(0..5u8, |x: u8| x),
    )));
    assert_eq!(streamed, 5);
    exec.shutdown();
}

/// `join_timeout` on an unfinished task returns `None` and leaves the handle usable.
pub fn join_timeout_then_join<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let mut gate = Gate::new();
    let mut h = exec.spawn(gate.port(), gated);
    gate.wait_started(1);
    // The task is blocked on the gate, so it cannot have finished.
    assert_eq!(h.join_timeout(Duration::from_millis(10)), None);
    assert_eq!(h.join_timeout(Duration::ZERO), None);
    assert!(!h.is_finished());
    gate.release();
    assert_eq!(h.join_timeout(HANG), Some(Ok(gate.port())));
    let h = exec.spawn(1u8, |x: u8| x);
    assert_eq!(h.join(), Ok(1));
    exec.shutdown();
}

/// The open descriptors of this process, each as `number -> target`, sorted: compared before
/// and after a backend's lifetime, by the leak tests of every backend. Linux only (it reads
/// `/proc/self/fd`).
#[cfg(target_os = "linux")]
#[cfg_attr(docsrs, doc(cfg(target_os = "linux")))]
pub fn open_fds() -> Vec<String> {
    // The listing's own descriptor is left out: it takes the lowest free number, which a thread
    // blocked in `accept` holds reserved without showing it in `/proc/self/fd` (the kernel
    // reserves the number before waiting), so its number says nothing about a leak.
    let listing = format!("/proc/{}/fd", std::process::id());
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            (target != listing).then(|| format!("{} -> {target}", e.file_name().to_string_lossy()))
        })
        .collect();
    fds.sort();
    fds
}

/// The number of threads of this process. Linux only (it reads `/proc/self/task`).
#[cfg(target_os = "linux")]
#[cfg_attr(docsrs, doc(cfg(target_os = "linux")))]
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// A path inside a fresh temp directory; the directory lives as long as the returned guard.
pub fn scratch_file(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = temp_dir();
    let path = dir.path().join(name);
    (dir, path)
}

/// What a backend adds to the random mix of [`exactly_once_stress`], beyond what every backend
/// runs in [`exactly_once_random_mix`]: the failure modes only some backends have.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use polyexec_core::conformance::StressOptions;
///
/// // An executor with a per-task time limit that stops async tasks over it.
/// let options = StressOptions {
///     cancel_running: true,
///     timeout: Some(Duration::from_millis(300)),
///     ..StressOptions::default()
/// };
/// assert!(!options.crashes);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StressOptions {
    /// Include tasks cancelled once their thread has submitted everything else, so they may be
    /// queued, running or finished when cancelled (resolving `Cancelled`, or with their value if
    /// they finished first).
    pub cancel_running: bool,
    /// The executor's per-task time limit, if it was built with one: the mix then includes async
    /// tasks that wait past it and must resolve [`TaskError::TimedOut`] with this limit.
    pub timeout: Option<Duration>,
    /// With `timeout`: the executor also stops *blocking* tasks over the limit (the subprocess
    /// backend kills their worker), so the mix includes blocking tasks that run past it.
    pub blocking_timeout: bool,
    /// Include tasks that `abort` their worker, which must resolve [`TaskError::WorkerLost`].
    /// Only for executors that contain crashes (the subprocess backend): elsewhere an abort ends
    /// the test process.
    pub crashes: bool,
    /// A worker can be lost with everything it runs (a crash, or a kill to stop a blocking task
    /// over its limit or cancelled while running): async tasks running beside such a task may
    /// then resolve `WorkerLost`. Blocking tasks never share that fate: a worker runs one at a
    /// time and hands back its result before it starts the next.
    pub shared_fate: bool,
}

/// One submission in [`exactly_once_random_mix`] and [`exactly_once_stress`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    /// Returns its id.
    Value,
    /// Panics with a message naming its id.
    Panic,
    /// An async task that sleeps this many milliseconds, then returns its id.
    Slow(u8),
    /// Cancelled right after submission.
    Cancel,
    /// Waited for with a zero `join_timeout` first, then joined.
    PollThenJoin,
    /// Cancelled after its thread submitted all its tasks: queued, running or finished by then.
    CancelLater,
    /// An async task that waits an hour: only the time limit (or a shutdown) ends it.
    Hang,
    /// A blocking task that sleeps an hour: only the time limit (or a shutdown) ends it.
    HangBlocking,
    /// Aborts its worker process.
    Crash,
}

/// At most this many tasks of each of the expensive kinds per case: a task over the time limit
/// holds a worker for the whole limit, a crash costs a worker.
const MAX_HANGS: usize = 3;
const MAX_CRASHES: usize = 12;

fn op_strategy(options: StressOptions) -> proptest::strategy::BoxedStrategy<Op> {
    use proptest::prelude::*;
    let mut ops: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (4, Just(Op::Value).boxed()),
        (1, Just(Op::Panic).boxed()),
        (2, (0u8..4).prop_map(Op::Slow).boxed()),
        (1, Just(Op::Cancel).boxed()),
        (1, Just(Op::PollThenJoin).boxed()),
    ];
    if options.cancel_running {
        ops.push((1, Just(Op::CancelLater).boxed()));
    }
    if options.timeout.is_some() {
        ops.push((1, Just(Op::Hang).boxed()));
        if options.blocking_timeout {
            ops.push((1, Just(Op::HangBlocking).boxed()));
        }
    }
    if options.crashes {
        ops.push((1, Just(Op::Crash).boxed()));
    }
    proptest::strategy::Union::new_weighted(ops).boxed()
}

/// Ops for one case, with the expensive kinds capped (extra ones become plain values).
fn ops_strategy(options: StressOptions) -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
    use proptest::prelude::*;
    proptest::collection::vec(op_strategy(options), 1..120).prop_map(|mut ops| {
        let (mut hangs, mut crashes) = (0, 0);
        for op in &mut ops {
            let (count, max) = match op {
                Op::Hang | Op::HangBlocking => (&mut hangs, MAX_HANGS),
                Op::Crash => (&mut crashes, MAX_CRASHES),
                _ => continue,
            };
            *count += 1;
            if *count > max {
                *op = Op::Value;
            }
        }
        ops
    })
}

fn stress_cases(default: u32) -> u32 {
    std::env::var("POLYEXEC_STRESS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Property: for random mixes of succeeding, panicking, slow, cancelled and polled tasks submitted
/// from up to four threads, with a graceful or immediate shutdown at a random point, every handle
/// resolves exactly once with an outcome its task allows, and outcomes add up to submissions.
///
/// Cases: `POLYEXEC_STRESS_CASES` (default 24). Backends with more failure modes extend the mix
/// with [`exactly_once_stress`].
pub fn exactly_once_random_mix<E: Executor + 'static>(make: &dyn Fn() -> E) {
    run_stress(make, StressOptions::default(), 24);
}

/// [`exactly_once_random_mix`] with the failure modes a backend adds (see [`StressOptions`]):
/// tasks cancelled while they may be running, tasks over the executor's time limit, tasks that
/// crash their worker. `make` must build the executor these options describe (for example with
/// the same `timeout`).
///
/// Cases: `POLYEXEC_STRESS_CASES` (default 12).
pub fn exactly_once_stress<E: Executor + 'static>(make: &dyn Fn() -> E, options: StressOptions) {
    run_stress(make, options, 12);
}

fn run_stress<E: Executor + 'static>(
    make: &dyn Fn() -> E,
    options: StressOptions,
    default_cases: u32,
) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let mut runner = TestRunner::new(Config {
        cases: stress_cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        ops_strategy(options),
        1usize..=4,
        proptest::option::of(0usize..120),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(ops, threads, shutdown_at, now)| {
            run_mix(make, &options, &ops, threads, shutdown_at, now);
            Ok(())
        })
        .unwrap();
}

/// Submits one op; the task's value, when it has one, is its id.
fn submit_op<E: Executor>(exec: &E, id: u32, op: Op) -> TaskHandle<u32> {
    match op {
        Op::Value | Op::Cancel | Op::PollThenJoin | Op::CancelLater => exec.spawn(id, |id: u32| id),
        Op::Panic => exec.spawn(id, |id: u32| -> u32 { panic!("mix {id}") }),
        Op::Slow(ms) => exec.spawn_async((id, ms), |(id, ms): (u32, u8)| async move {
            crate::sleep(Duration::from_millis(u64::from(ms))).await;
            id
        }),
        Op::Hang => exec.spawn_async(id, |id: u32| async move {
            crate::sleep(Duration::from_secs(3600)).await;
            id
        }),
        Op::HangBlocking => exec.spawn(id, |id: u32| {
            // The task's own work, not synchronisation: it runs past any time limit.
            std::thread::sleep(Duration::from_secs(3600));
            id
        }),
        Op::Crash => exec.spawn(id, |_: u32| -> u32 { std::process::abort() }),
    }
}

fn run_mix<E: Executor + 'static>(
    make: &dyn Fn() -> E,
    options: &StressOptions,
    ops: &[Op],
    threads: usize,
    shutdown_at: Option<usize>,
    now: bool,
) {
    let exec = Arc::new(make());
    let ops: Arc<Vec<Op>> = Arc::new(ops.to_vec());
    let shutdown_at = shutdown_at.filter(|&i| i < ops.len());
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let exec = Arc::clone(&exec);
            let ops = Arc::clone(&ops);
            std::thread::spawn(move || {
                // Submit everything first, so tasks overlap each other and the shutdown.
                let mut submitted = Vec::new();
                let mut shut_by_me = false;
                for (id, op) in ops.iter().enumerate().skip(t).step_by(threads) {
                    if Some(id) == shutdown_at {
                        if now {
                            exec.shutdown_now();
                        } else {
                            exec.shutdown();
                        }
                        shut_by_me = true;
                    }
                    let handle = submit_op(&*exec, id as u32, *op);
                    let cancelled = matches!(op, Op::Cancel) && handle.cancel();
                    // Submitted by this thread before it began a graceful shutdown: such a task
                    // must not be refused.
                    let before_my_shutdown = shutdown_at.is_some() && !shut_by_me && {
                        ops.iter()
                            .enumerate()
                            .skip(t)
                            .step_by(threads)
                            .any(|(i, _)| Some(i) == shutdown_at)
                    };
                    submitted.push((id, *op, cancelled, before_my_shutdown, handle));
                }
                // Cancelled late: queued, running or finished by now.
                for (_, op, cancelled, _, handle) in &mut submitted {
                    if *op == Op::CancelLater {
                        *cancelled = handle.cancel();
                    }
                }
                submitted
                    .into_iter()
                    .map(|(id, op, cancelled, before, mut handle)| {
                        let result = if matches!(op, Op::PollThenJoin) {
                            match handle.join_timeout(Duration::ZERO) {
                                Some(result) => result,
                                None => handle.join_timeout(HANG).expect("task hung"),
                            }
                        } else {
                            handle.join_timeout(HANG).expect("task hung")
                        };
                        (id, op, cancelled, before, result)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut resolved = 0usize;
    let mut seen = HashSet::new();
    for worker in workers {
        for (id, op, cancelled, before_my_shutdown, result) in
            worker.join().expect("submitter panicked")
        {
            resolved += 1;
            assert!(seen.insert(id), "task {id} reported twice");
            check_outcome(
                options,
                id,
                op,
                cancelled,
                before_my_shutdown,
                shutdown_at,
                now,
                &result,
            );
        }
    }
    assert_eq!(
        resolved,
        ops.len(),
        "successes plus errors equal submissions"
    );
    exec.shutdown();
}

/// Checks that `result` is an outcome task `id` allows.
#[allow(clippy::too_many_arguments)]
fn check_outcome(
    options: &StressOptions,
    id: usize,
    op: Op,
    cancelled: bool,
    before_my_shutdown: bool,
    shutdown_at: Option<usize>,
    now: bool,
    result: &Result<u32, TaskError>,
) {
    let shut = shutdown_at.is_some();
    let is_async = matches!(op, Op::Slow(_) | Op::Hang);
    match (op, result) {
        (_, Ok(v)) => {
            assert_eq!(*v as usize, id, "task {id} got another task's value");
            assert!(!cancelled, "task {id} was cancelled but returned a value");
            assert!(
                !matches!(op, Op::Panic | Op::Hang | Op::HangBlocking | Op::Crash),
                "task {id} ({op:?}) returned"
            );
        }
        (Op::Panic, Err(err)) if err.is_panic() => {
            assert_eq!(err.panic_message(), Some(&*format!("mix {id}")));
        }
        (_, Err(TaskError::Cancelled)) => assert!(cancelled, "task {id}: {result:?}"),
        (Op::Hang | Op::HangBlocking, Err(TaskError::TimedOut(limit))) => {
            assert_eq!(Some(*limit), options.timeout, "task {id}");
        }
        (Op::Crash, Err(err)) if err.is_worker_lost() => {}
        // Refused or dropped: only once a shutdown has begun, and a graceful shutdown never
        // drops what was submitted before it.
        (_, Err(TaskError::ShutDown)) => {
            assert!(shut, "task {id}: {result:?} without a shutdown");
            assert!(
                now || !before_my_shutdown,
                "task {id} submitted before a graceful shutdown was dropped"
            );
        }
        // An async task beside a task whose worker was lost, on backends where that happens.
        (_, Err(err)) if err.is_worker_lost() && is_async && options.shared_fate => {}
        // An immediate shutdown may stop a running task by stopping its worker.
        (_, Err(err)) if err.is_worker_lost() => {
            assert!(shut && now, "task {id} ({op:?}): {result:?}")
        }
        _ => panic!("task {id} ({op:?}): unexpected {result:?}"),
    }
}
