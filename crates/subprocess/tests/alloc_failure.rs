//! Fault injection, during the task: allocation failure under a memory limit. Each worker caps
//! its own address space (`RLIMIT_AS`) in the pool's per-worker initializer — the kind of
//! per-worker resource limit only a process can have — and a task then asks for more than the
//! cap: the allocator fails, Rust's allocation-error handler aborts the worker, and that task
//! alone fails with `WorkerLost(SIGABRT)`. The replacement worker runs the initializer again
//! (so it is capped too) and the pool goes on.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError, WorkerExit};
use polyexec_subprocess::ProcessPool;
use rustix::process::{Resource, Rlimit};

/// Head room above the worker's address space at start-up: enough for its own threads and
/// allocator arenas and for the healthy tasks, far below what the faulty task asks for.
const HEADROOM: u64 = 512 << 20;
/// What the faulty task allocates.
const TOO_MUCH: usize = 4 << 30;

/// The worker's address space now (`VmSize`), in bytes.
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("a VmSize line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmSize in kB");
    kib * 1024
}

/// The per-worker initializer: caps this worker's address space.
fn limit_memory() {
    let cap = address_space() + HEADROOM;
    rustix::process::setrlimit(
        Resource::As,
        Rlimit {
            current: Some(cap),
            maximum: Some(cap),
        },
    )
    .expect("set RLIMIT_AS");
}

/// The worker's current address-space cap.
fn cap(_: ()) -> Option<u64> {
    rustix::process::getrlimit(Resource::As).current
}

#[test]
fn allocation_failure_under_a_memory_limit_loses_that_task_only() {
    let pool = ProcessPool::builder()
        .workers(2)
        .initializer(limit_memory)
        .build()
        .expect("build a pool");
    assert!(common::join(pool.spawn((), cap)).unwrap().is_some());
    let result = common::alongside(&pool, |pool| {
        pool.spawn(TOO_MUCH, |bytes: usize| {
            // Touch it, so no allocator can hand out the memory lazily and succeed.
            let v = vec![1u8; bytes];
            v.iter().step_by(4096).map(|&b| u64::from(b)).sum::<u64>()
        })
    });
    assert_eq!(result, Err(TaskError::WorkerLost(WorkerExit::Signal(6))));
    // Every worker, the replacement included, is still capped.
    for _ in 0..4 {
        assert!(common::join(pool.spawn((), cap)).unwrap().is_some());
    }
    // A task that handles the failure itself (`try_reserve`) gets an error, not a crash.
    let graceful = pool.spawn(TOO_MUCH, |bytes: usize| {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(bytes).is_err()
    });
    assert_eq!(common::join(graceful), Ok(true));
}
