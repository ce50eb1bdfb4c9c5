//! A worker that dies mid-task shows in the pool's metrics: the task counts as `worker_lost`,
//! the replacement as a restart, and the pool is back to full strength.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError};

#[test]
fn a_crash_counts_one_lost_task_and_one_restart() {
    let pool = common::pool(1);
    assert_eq!(pool.spawn(1u8, |x: u8| x).join(), Ok(1));
    let before = pool.metrics();
    assert_eq!(before.workers(), 1, "{before:?}");
    let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
    assert!(matches!(crash.join(), Err(TaskError::WorkerLost(_))));
    // Run by the replacement: it has been started (and counted) by now.
    assert_eq!(pool.spawn(5u8, |x: u8| x).join(), Ok(5));
    let after = pool.metrics();
    assert_eq!(after.worker_lost() - before.worker_lost(), 1, "{after:?}");
    assert_eq!(
        after.worker_restarts() - before.worker_restarts(),
        1,
        "{after:?}"
    );
    assert_eq!(after.submitted() - before.submitted(), 2, "{after:?}");
    assert_eq!(after.succeeded() - before.succeeded(), 1, "{after:?}");
    assert_eq!(after.workers(), 1, "{after:?}");
    assert_eq!(after.finished(), after.submitted(), "{after:?}");
    pool.shutdown();
    assert_eq!(pool.metrics().workers(), 0);
}
