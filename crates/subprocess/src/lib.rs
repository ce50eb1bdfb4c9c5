//! polyexec's subprocess backend: portable tasks in a warm pool of worker processes.
//!
//! [`ProcessPool`] implements [`polyexec_core::Executor`]. Its workers are this program's own
//! executable, started again in *worker mode* and kept warm: a task crosses the process boundary
//! as the address of its code relative to a known function (the worker runs the same build,
//! which the handshake checks) plus its serialized input, and its output comes back serialized.
//! The same closure literal that runs on the thread pool runs here unchanged.
//!
//! | task form | where it runs |
//! |---|---|
//! | blocking | in a worker process, on its executor thread, to completion |
//! | async | in a worker process, interleaved with the others on its local executor |
//!
//! What sets it apart is containment: a task that panics resolves with
//! [`TaskError::Panicked`](polyexec_core::TaskError) and its worker keeps serving; a task whose
//! worker dies (abort, segfault, `SIGKILL`, `exit`) resolves with
//! [`TaskError::WorkerLost`](polyexec_core::TaskError) and the worker is replaced; a task over
//! its time limit has its worker killed. Nothing else is affected.
//!
//! # The entry hook
//!
//! A worker is this program started again, so the program must hand over to the worker before
//! doing anything else: call [`init`] first thing in `main` (`polyexec::init()` through the
//! facade). In a program started normally it returns at once. Test files (libtest has its own
//! `main`) and benchmarks with a generated `main` use [`test_hook!`] instead, once per file.
//! Forgetting the hook is reported by [`ProcessPoolBuilder::build`], never a hang and never a
//! fork bomb.
//!
//! # Examples
//!
//! ```
//! use polyexec_core::Executor;
//! use polyexec_subprocess::ProcessPool;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     polyexec_subprocess::init();
//!     let pool = ProcessPool::builder().workers(2).build()?;
//!     let handle = pool.spawn(20u64, |n: u64| (1..=n).product::<u64>());
//!     assert_eq!(handle.join()?, 2_432_902_008_176_640_000);
//!
//!     // A crash takes down one worker, not the program.
//!     let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
//!     assert!(crash.join().unwrap_err().is_worker_lost());
//!     assert_eq!(pool.spawn(2u8, |x: u8| x + 1).join()?, 3);
//!     Ok(())
//! }
//! ```
//!
//! # Platform
//!
//! **Linux ≥ 5.3 only**: workers are watched through `pidfd_open` (Linux 5.3), talk over
//! `SOCK_SEQPACKET` socket pairs and are checked through `/proc`. Building this crate for any
//! other target fails with one `compile_error!` that says so; the thread and event-loop backends
//! of polyexec build wherever `std` does.
//!
//! See `docs/subprocess.md` in the repository for the protocol, the failure semantics and the
//! security model.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]

// One clear error on other targets, instead of many from deep inside the system-call crates
// (which are Linux-only dependencies, so they are not even built there).
#[cfg(not(target_os = "linux"))]
compile_error!(
    "polyexec-subprocess (the `subprocess` feature of polyexec) supports Linux ≥ 5.3 only; \
     use the `thread` or `coroutine` backend on this target"
);

#[cfg(target_os = "linux")]
mod entry;
#[cfg(target_os = "linux")]
mod error;
#[cfg(target_os = "linux")]
mod inherited;
#[cfg(target_os = "linux")]
mod payload;
#[cfg(target_os = "linux")]
mod pool;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod protocol;
#[cfg(all(test, target_os = "linux"))]
mod security_tests;
#[cfg(target_os = "linux")]
mod shm;
#[cfg(target_os = "linux")]
mod stop;
#[cfg(target_os = "linux")]
mod worker;

// The unit tests start pools of this very test binary: its workers must serve, not run tests.
#[cfg(all(test, target_os = "linux"))]
crate::test_hook!();

#[cfg(target_os = "linux")]
pub use pool::{ProcessPool, ProcessPoolBuilder};

/// The worker entry hook: call it first thing in `main`.
///
/// In a process started normally it returns at once (it reads one environment variable). In a
/// process that a [`ProcessPool`] started as its worker, it serves tasks and exits the process
/// when the pool is done with it: it never returns.
///
/// A worker is recognized by the environment variable `POLYEXEC_WORKER` holding the pid of the
/// process's parent; a process that a task starts inherits the variable but has another parent,
/// so it is not mistaken for a worker.
///
/// # Examples
///
/// ```
/// fn main() {
///     polyexec_subprocess::init();
///     // ... the program, which may build ProcessPools ...
/// }
/// # main();
/// ```
#[cfg(target_os = "linux")]
pub fn init() {
    if process::worker_parent().is_some() && !worker::is_serving() {
        worker::serve_current();
    }
}

/// Registers the worker entry hook to run before `main`: for test files and benchmark harnesses,
/// whose `main` is generated.
///
/// Put it once at the top level of every integration test file (and in the crate root for unit
/// tests) whose tests start a [`ProcessPool`]: a worker started from that test binary then
/// serves tasks instead of running the test harness. It is harmless in a process started
/// normally. Programs with a `main` of their own can call [`init`] there instead.
///
/// # Examples
///
/// ```no_run
/// // tests/pool.rs
/// polyexec_subprocess::test_hook!();
///
/// #[test]
/// fn runs_in_a_worker() {
///     use polyexec_core::Executor;
///     let pool = polyexec_subprocess::ProcessPool::builder().workers(1).build().unwrap();
///     assert_eq!(pool.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
/// }
/// ```
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

/// What [`test_hook!`] expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use ctor::declarative::ctor;
}
