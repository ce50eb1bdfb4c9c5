//! polyexec's cluster backend: the same portable tasks on worker processes on many machines,
//! through NATS JetStream.
//!
//! [`ClusterPool`] implements [`polyexec_core::Executor`]. A task is queued in a JetStream
//! work-queue stream, pulled by a *worker host* (this same executable, started in worker mode on
//! any machine that can reach the NATS server), run there, and its result published back to the
//! pool. The closure that runs on the thread pool runs here unchanged: a task crosses machines
//! as the address of its code relative to a known function, valid because every host runs the
//! same executable file, which a content fingerprint of the file checks.
//!
//! | | |
//! |---|---|
//! | execution | at least once: a task whose host is lost is delivered again, up to `max_deliver` times |
//! | resolution | exactly once per handle: a second result of the same task is dropped |
//! | panic | `TaskError::Panicked`, the host keeps serving |
//! | crash (abort, segfault, `exit`) in a blocking task | `TaskError::WorkerLost` with the signal or exit code, on the first delivery: the task ran in a worker process of its host, which lives on |
//! | host lost | redelivery to another host; after `max_deliver`, `TaskError::WorkerLost(WorkerExit::Deliveries(n))` |
//! | time limit | `TaskError::TimedOut`; the limit travels with the task and its host stops it: a blocking task's worker process is ended, an async task dropped |
//! | cancel | `TaskError::Cancelled` at once; a queued task is deleted, a running one stopped on its host as for a time limit |
//!
//! # Worker hosts
//!
//! A worker host is the program itself: call [`init`] (`polyexec::init()` through the facade)
//! first thing in `main`. Started with the flag `--polyexec-cluster-worker` (or the environment
//! variable `POLYEXEC_CLUSTER_WORKER=1`), the program serves tasks instead of running, until
//! SIGTERM. It runs blocking tasks in worker processes of its own (the subprocess backend's
//! `ProcessPool`, one per slot), which are the program started once more; [`init`] is their
//! entry hook too.
//!
//! ```text
//! POLYEXEC_CLUSTER_URL=nats://10.0.0.5:4222 POLYEXEC_CLUSTER_KEY=$(cat key.hex) ./app --polyexec-cluster-worker
//! ```
//!
//! [`ClusterPoolBuilder::local_workers`] starts such hosts on this machine, for development and
//! tests. Test files put [`test_hook!`] at their top level instead of calling `init`.
//!
//! # Examples
//!
//! ```no_run
//! use polyexec_core::Executor;
//! use polyexec_cluster::ClusterPool;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     polyexec_cluster::init();
//!     // POLYEXEC_CLUSTER_URL names the NATS server.
//!     let pool = ClusterPool::builder().local_workers(2).build()?;
//!     let squares: Vec<u64> = pool.map(1..=100u64, |x: u64| x * x).collect::<Result<_, _>>()?;
//!     assert_eq!(squares[9], 100);
//!     Ok(())
//! }
//! ```
//!
//! See `docs/cluster.md` in the repository for the architecture, deployment and security.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]

// Worker hosts run blocking tasks through the subprocess backend, local workers are watched
// through pidfds: both are Linux only.
#[cfg(not(target_os = "linux"))]
compile_error!("polyexec-cluster (the `cluster` feature of polyexec) supports Linux ≥ 5.3 only");

mod addr;
mod build_id;
mod frame;
mod pool;
mod settings;
mod worker;

pub use pool::{ClusterPool, ClusterPoolBuilder};

/// The worker entry hook: call it first thing in `main`.
///
/// In a process started normally it returns at once. In a process started as a worker host
/// (with `--polyexec-cluster-worker`, `POLYEXEC_CLUSTER_WORKER=1`, or by a pool as a local
/// worker) it serves tasks until SIGTERM and then exits the process: it never returns. In a
/// worker process of a host (or of any `polyexec_subprocess::ProcessPool`) it runs the
/// subprocess backend's hook, which serves that process's tasks and never returns either.
///
/// # Examples
///
/// ```
/// fn main() {
///     polyexec_cluster::init();
///     // ... the program, which may build ClusterPools ...
/// }
/// # main();
/// ```
pub fn init() {
    // First: a host's worker process inherits the host's environment (and a host started with
    // `POLYEXEC_CLUSTER_WORKER=1` would pass that on), so it must not be taken for a host.
    polyexec_subprocess::init();
    if worker::is_worker() {
        worker::serve_and_exit();
    }
}

/// Registers the worker entry hook to run before `main`: for test files and benchmark
/// harnesses, whose `main` is generated.
///
/// # Examples
///
/// ```no_run
/// // tests/cluster.rs
/// polyexec_cluster::test_hook!();
/// ```
#[macro_export]
macro_rules! test_hook {
    () => {
        $crate::__private::ctor! {
            #[ctor(unsafe, anonymous)]
            fn __polyexec_cluster_worker_hook() {
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

// The unit tests never start hosts; the hook keeps a stray worker start harmless all the same.
#[cfg(test)]
crate::test_hook!();
