//! One task definition, three models of concurrency.
//!
//! polyexec runs the same task under coroutines (an async event loop), a thread pool, or a pool of
//! worker processes, behind one [`Executor`] trait. Pick the model with a cargo feature, or at run
//! time by name with [`Backend`], and measure which fits, without rewriting the tasks.
//!
//! ```
//! use std::time::Duration;
//! use polyexec::{Backend, Executor};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     polyexec::init(); // returns at once, unless this process was started as a worker
//!     let exec = Backend::default().build()?;
//!
//!     // A portable task captures nothing: its data travels in the input.
//!     let task = |(name, ms): (String, u64)| async move {
//!         polyexec::sleep(Duration::from_millis(ms)).await;
//!         name
//!     };
//!     let a = exec.spawn_async(("Task 1".to_string(), 20), task);
//!     let b = exec.spawn_async(("Task 2".to_string(), 10), task);
//!     assert_eq!(polyexec::join_all([a, b]), vec![Ok("Task 1".into()), Ok("Task 2".into())]);
//!
//!     let squares: Vec<u64> = exec.map(1..=1_000u64, |x: u64| x * x).collect::<Result<_, _>>()?;
//!     assert_eq!(squares[999], 1_000_000);
//!     Ok(())
//! }
//! ```
//!
//! # Portable tasks
//!
//! A task is a closure or `fn` item that **captures nothing**, plus an input value; it returns an
//! output value. Input and output are [`Portable`] (`serde` serializable, `Send`, `'static`),
//! because one backend runs tasks in another process. Blocking tasks are `Fn(In) -> Out`
//! ([`Executor::spawn`], [`Executor::map`]); async tasks are `Fn(In) -> impl Future`
//! ([`Executor::spawn_async`]). A capturing closure is a compile error:
//!
//! ```compile_fail,E0080
//! use polyexec::Executor;
//! let exec = polyexec::Backend::default().build().unwrap();
//! let offset = 1u32;
//! let _ = exec.spawn(1u32, move |x: u32| x + offset);
//! ```
//!
//! Every [`TaskHandle`] resolves exactly once, with the value or a [`TaskError`] that says what
//! happened: a panic (with its message), a lost worker process, a cancellation, a timeout, a
//! shutdown, or a failure to move the data.
//!
//! # Features
//!
//! Each backend is a cargo feature; they are additive, and at least one must be enabled.
//!
//! | feature | backend | module | default |
//! |---|---|---|---|
//! | `thread` | a pool of OS threads | [`thread`] | yes |
//! | `coroutine` | an event loop on one thread (or a few), the asyncio model | [`coroutine`] | no |
//! | `subprocess` | a pool of worker processes (this program, started again); **Linux ≥ 5.3 only** | [`subprocess`] | no |
//! | `cluster` | worker hosts on many machines through NATS JetStream (turns on `tokio`); see `docs/cluster.md` | [`cluster`] | no |
//! | `tokio` | with any backend: portable async tasks run in a tokio runtime context, so tokio-based libraries work in them (docs/tokio.md) | — | no |
//!
//! # Choosing at run time
//!
//! [`Backend`] lists the backends compiled in; [`Backend::from_name`] picks one by name (for a
//! `--backend` flag) and [`Backend::from_env`] from the `POLYEXEC_BACKEND` environment variable.
//! [`Backend::build`] returns an [`AnyExecutor`], which implements [`Executor`] by delegating to
//! the chosen backend. When none is named, [`Backend::default`] takes the first compiled in of:
//! `thread` (runs blocking and async tasks well, no serialization cost), then `coroutine`, then
//! `subprocess`, then `cluster` (which needs a NATS server, so it is chosen only when it is the
//! one compiled in or named).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(not(any(
    feature = "thread",
    feature = "coroutine",
    feature = "subprocess",
    feature = "cluster"
)))]
compile_error!(
    "polyexec needs at least one backend feature: `thread`, `coroutine`, `subprocess` or `cluster`"
);

mod backend;

pub use backend::{AnyExecutor, Backend, UnknownBackend};
pub use polyexec_core::{
    AbortHandle, AsCompleted, AsyncTask, BlockingTask, BuildError, CodecError, CodecStage,
    Executor, FirstResolved, JoinAll, Map, MapOptions, MapStream, MapUnordered, Metrics, Panic,
    Portable, SpawnOptions, TaskError, TaskHandle, TaskSet, WorkerExit, as_completed, block_on,
    join_all, join_all_async, select_any, sleep, unblock, wait_any,
};

/// The thread-pool backend: [`ThreadPool`](thread::ThreadPool).
#[cfg(feature = "thread")]
#[cfg_attr(docsrs, doc(cfg(feature = "thread")))]
pub mod thread {
    pub use polyexec_thread::{ThreadPool, ThreadPoolBuilder};
}

/// The coroutine backend: [`EventLoop`](coroutine::EventLoop), an event loop on async-executor.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use polyexec::Executor;
/// use polyexec::coroutine::EventLoop;
///
/// let event_loop = EventLoop::new()?; // one loop thread, like asyncio
/// let handle = event_loop.spawn_async(5u64, |ms: u64| async move {
///     polyexec::sleep(Duration::from_millis(ms)).await;
///     ms * 2
/// });
/// assert_eq!(handle.join()?, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "coroutine")]
#[cfg_attr(docsrs, doc(cfg(feature = "coroutine")))]
pub mod coroutine {
    pub use polyexec_coroutine::{EventLoop, EventLoopBuilder};
}

/// The subprocess backend: [`ProcessPool`](subprocess::ProcessPool), a pool of worker processes
/// that are this program started again.
///
/// **Linux ≥ 5.3 only** (it uses `pidfd_open`, `SOCK_SEQPACKET` and `/proc`); building the
/// `subprocess` feature for another target fails with one `compile_error!` that says so. The
/// `thread` and `coroutine` backends build wherever `std` does.
///
/// Programs using it call [`init`] first thing in `main`; test files contain
/// [`test_hook!`]. See the backend's crate documentation for what it contains
/// (crashes, time limits) and what it costs (serialization, a message per hand-over).
///
/// # Examples
///
/// ```
/// use polyexec::Executor;
/// use polyexec::subprocess::ProcessPool;
///
/// polyexec::init();
/// let pool = ProcessPool::builder().workers(1).build()?;
/// let crashed = pool.spawn((), |()| -> u8 { std::process::abort() }).join();
/// assert!(crashed.unwrap_err().is_worker_lost()); // the program lives on
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "subprocess")]
#[cfg_attr(docsrs, doc(cfg(feature = "subprocess")))]
pub mod subprocess {
    pub use polyexec_subprocess::{ProcessPool, ProcessPoolBuilder};
}

/// The cluster backend: [`ClusterPool`](cluster::ClusterPool), worker hosts on many machines
/// through NATS JetStream.
///
/// Every machine runs this same executable; a worker host is the program started with
/// `--polyexec-cluster-worker`, which [`init`] recognizes. Programs using it call [`init`]
/// first thing in `main`; test files contain [`test_hook!`]. See `docs/cluster.md`.
///
/// # Examples
///
/// ```no_run
/// use polyexec::Executor;
/// use polyexec::cluster::ClusterPool;
///
/// polyexec::init();
/// let pool = ClusterPool::builder().url("nats://127.0.0.1:4222").local_workers(2).build()?;
/// assert_eq!(pool.spawn(6u32, |x: u32| x * 7).join()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod cluster {
    pub use polyexec_cluster::{ClusterPool, ClusterPoolBuilder};
}

/// The entry hook: call it first thing in `main`.
///
/// In a program started normally it returns at once. In a process that the subprocess backend
/// started as a worker, or that was started as a cluster worker host (with
/// `--polyexec-cluster-worker`), it serves tasks and never returns. Without the `subprocess` and
/// `cluster` features it does nothing, so calling it always is harmless and keeps a program
/// ready for those backends.
///
/// Test files and benchmarks, whose `main` is generated, use [`test_hook!`] instead.
///
/// # Examples
///
/// ```
/// fn main() {
///     polyexec::init();
///     // ... the program ...
/// }
/// # main();
/// ```
pub fn init() {
    #[cfg(feature = "subprocess")]
    polyexec_subprocess::init();
    #[cfg(feature = "cluster")]
    polyexec_cluster::init();
}

/// The entry hook for test files and benchmark harnesses: registers [`init`] to run before the
/// generated `main`.
///
/// Put it once at the top level of every integration test file (and in the crate root for unit
/// tests) that may run tasks on the subprocess or cluster backend: a worker started from that
/// test binary then serves tasks instead of running the test harness. Without those features
/// it expands to nothing.
///
/// # Examples
///
/// ```no_run
/// // tests/tasks.rs
/// polyexec::test_hook!();
///
/// #[test]
/// fn squares() {
///     use polyexec::Executor;
///     let exec = polyexec::Backend::default().build().unwrap();
///     assert_eq!(exec.spawn(3u32, |x: u32| x * x).join(), Ok(9));
/// }
/// ```
#[cfg(any(feature = "subprocess", feature = "cluster"))]
#[macro_export]
macro_rules! test_hook {
    () => {
        $crate::__private::ctor! {
            #[ctor(unsafe, anonymous)]
            fn __polyexec_worker_hook() {
                $crate::init();
            }
        }
    };
}

/// The entry hook for test files and benchmark harnesses (a no-op: neither the `subprocess` nor
/// the `cluster` feature is on in this build).
///
/// # Examples
///
/// ```
/// polyexec::test_hook!();
/// ```
#[cfg(not(any(feature = "subprocess", feature = "cluster")))]
#[macro_export]
macro_rules! test_hook {
    () => {};
}

/// What [`test_hook!`] expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(all(feature = "cluster", not(feature = "subprocess")))]
    pub use polyexec_cluster::__private::ctor;
    #[cfg(feature = "subprocess")]
    pub use polyexec_subprocess::__private::ctor;
}
