//! A task that calls `exit(3)` fails with `WorkerLost(Code(3))`; the pool replaces the worker.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError, WorkerExit};

#[test]
fn exit_code_is_reported() {
    let pool = common::pool(2);
    let crash = pool.spawn(3i32, |code: i32| -> u8 { std::process::exit(code) });
    assert_eq!(
        crash.join(),
        Err(TaskError::WorkerLost(WorkerExit::Code(3)))
    );
    let results: Vec<u32> = pool
        .map(0..1000u32, |x: u32| x)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(results, (0..1000).collect::<Vec<_>>());
    // Many deaths in a row of workers that did start a task are no crash loop.
    for _ in 0..8 {
        let crash = pool.spawn(0i32, |code: i32| -> u8 { std::process::exit(code) });
        assert_eq!(
            crash.join(),
            Err(TaskError::WorkerLost(WorkerExit::Code(0)))
        );
    }
    assert_eq!(pool.spawn(1u8, |x: u8| x).join(), Ok(1));
}

/// Fault injection, during the task: `exit(1)` fails that task alone with `WorkerLost(Code(1))`;
/// healthy tasks ahead of it and behind it on the same worker are unaffected.
#[test]
fn exit_1_alongside_healthy_tasks() {
    let pool = common::pool(2);
    let result = common::alongside(&pool, |pool| {
        pool.spawn((), |()| -> u8 { std::process::exit(1) })
    });
    assert_eq!(result, Err(TaskError::WorkerLost(WorkerExit::Code(1))));
}
