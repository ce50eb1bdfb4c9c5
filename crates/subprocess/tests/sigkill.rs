//! A worker killed with `SIGKILL` (from inside the task or from outside) fails the task it was
//! running with `WorkerLost(SIGKILL)`; the pool replaces it.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::conformance::{Gate, gated};
use polyexec_core::{Executor, TaskError, WorkerExit};
use rustix::process::{Pid, Signal};

#[test]
fn sigkill_from_inside() {
    let pool = common::pool(1);
    let crash = pool.spawn((), |()| -> u8 {
        let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
        unreachable!("SIGKILL cannot be caught")
    });
    assert_eq!(
        crash.join(),
        Err(TaskError::WorkerLost(WorkerExit::Signal(9)))
    );
    assert_eq!(pool.spawn(5u8, |x: u8| x).join(), Ok(5));
}

#[test]
fn sigkill_from_outside() {
    let pool = common::pool(1);
    let mut gate = Gate::new();
    let held = pool.spawn(gate.port(), gated);
    gate.wait_started(1);
    let pid = pool.worker_pids()[0];
    rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
    assert_eq!(
        held.join(),
        Err(TaskError::WorkerLost(WorkerExit::Signal(9)))
    );
    assert_eq!(pool.spawn(5u8, |x: u8| x).join(), Ok(5));
}
