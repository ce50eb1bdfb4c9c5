//! A task that aborts its worker resolves with `WorkerLost(SIGABRT)`; only that task is affected,
//! the tasks its worker held but had not started run elsewhere, and the worker is replaced.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError, WorkerExit};

#[test]
fn abort_loses_that_task_only() {
    let pool = common::pool(1);
    let first = pool.spawn((), |()| std::process::id()).join().unwrap();
    let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
    // Queued behind the crash on the one worker: not started when it dies, so sent again.
    let after: Vec<_> = pool.spawn_all(0..50u32, |x: u32| x * 2);
    assert_eq!(
        crash.join(),
        Err(TaskError::WorkerLost(WorkerExit::Signal(6)))
    );
    for (i, h) in after.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i as u32 * 2));
    }
    let replacement = pool.spawn((), |()| std::process::id()).join().unwrap();
    assert_ne!(first, replacement);
    assert!(
        !common::process_exists(first),
        "the dead worker was not reaped"
    );
    pool.shutdown();
}

/// Fault injection, during the task: `abort` alongside healthy tasks on two workers.
#[test]
fn abort_alongside_healthy_tasks() {
    let pool = common::pool(2);
    let result = common::alongside(&pool, |pool| {
        pool.spawn((), |()| -> u8 { std::process::abort() })
    });
    assert_eq!(result, Err(TaskError::WorkerLost(WorkerExit::Signal(6))));
}
