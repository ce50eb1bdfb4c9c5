//! Fault injection, during the task: a stack overflow (unbounded recursion) kills the worker —
//! Rust's guard-page handler reports it and aborts (`SIGABRT`), or, where that handler is not
//! installed on the worker's thread, the fault itself ends it (`SIGSEGV`) — and fails that task
//! alone with `WorkerLost`; the pool replaces the worker and goes on.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError, WorkerExit};

/// Recurses until the stack runs out. `black_box` keeps the frames (and the recursion) from
/// being optimized away or turned into a loop.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 32]);
    recurse(std::hint::black_box(depth + 1)) + frame[depth as usize % 32]
}

#[test]
fn stack_overflow_loses_that_task_only() {
    let pool = common::pool(2);
    let result = common::alongside(&pool, |pool| pool.spawn(0u64, recurse));
    eprintln!("stack overflow: {result:?}");
    match result {
        Err(TaskError::WorkerLost(WorkerExit::Signal(6 | 11))) => {}
        other => panic!("expected WorkerLost(SIGABRT or SIGSEGV), got {other:?}"),
    }
}

#[test]
fn stack_overflow_in_an_async_task_loses_that_task_only() {
    let pool = common::pool(2);
    let result = common::alongside(&pool, |pool| {
        pool.spawn_async(0u64, |depth: u64| async move { recurse(depth) })
    });
    eprintln!("stack overflow: {result:?}");
    match result {
        Err(TaskError::WorkerLost(WorkerExit::Signal(6 | 11))) => {}
        other => panic!("expected WorkerLost(SIGABRT or SIGSEGV), got {other:?}"),
    }
}
