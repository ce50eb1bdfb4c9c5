//! A task whose worker dies of `SIGSEGV` resolves with `WorkerLost(SIGSEGV)`; the pool goes on.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError, WorkerExit};

/// Raises SIGSEGV until it kills the process: the first may be taken by the standard library's
/// stack-overflow handler, which restores the default action and returns.
fn segfault(_: ()) -> u8 {
    let me = rustix::process::getpid();
    loop {
        let _ = rustix::process::kill_process(me, rustix::process::Signal::SEGV);
    }
}

#[test]
fn segfault_loses_that_task_only() {
    let pool = common::pool(2);
    let crash = pool.spawn((), segfault);
    let others = pool.spawn_all(0..20u32, |x: u32| x + 1);
    assert_eq!(
        crash.join(),
        Err(TaskError::WorkerLost(WorkerExit::Signal(11)))
    );
    for (i, h) in others.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i as u32 + 1));
    }
    assert_eq!(pool.spawn(1u8, |x: u8| x).join(), Ok(1));
    pool.shutdown();
}

/// Fault injection, during the task: a real invalid memory access (not a raised signal) alongside
/// healthy tasks.
#[test]
fn null_dereference_alongside_healthy_tasks() {
    let pool = common::pool(2);
    let result = common::alongside(&pool, |pool| {
        pool.spawn(0usize, |addr: usize| -> u8 {
            // SAFETY: none; this is the fault being injected. A volatile read of address 0 is not
            // optimized away, and the kernel answers it with SIGSEGV.
            unsafe { std::ptr::read_volatile(std::ptr::without_provenance::<u8>(addr)) }
        })
    });
    assert_eq!(result, Err(TaskError::WorkerLost(WorkerExit::Signal(11))));
}
