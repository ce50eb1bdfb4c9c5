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

/// Fault injection, during the task: `SIGKILL` from outside, to a worker found the way an
/// operator (or the OOM killer) would find it: the task reports its pid, then blocks on a gate;
/// the test kills that pid while healthy tasks are queued ahead of it and behind it.
#[test]
fn sigkill_from_outside_alongside_healthy_tasks() {
    let pool = common::pool(2);
    let mut gate = Gate::new();
    let (_dir, path) = polyexec_core::conformance::scratch_file("pid");
    let path = path.to_str().unwrap().to_owned();
    let before = common::Bystanders::submit(&pool, 0, 40);
    let victim = pool.spawn(
        (path.clone(), gate.port()),
        |(path, port): (String, u16)| {
            std::fs::write(&path, std::process::id().to_string()).unwrap();
            gated(port)
        },
    );
    let after = common::Bystanders::submit(&pool, 1000, 40);
    gate.wait_started(1);
    let pid: i32 = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    assert!(pool.worker_pids().contains(&(pid as u32)));
    rustix::process::kill_process(Pid::from_raw(pid).unwrap(), Signal::KILL).unwrap();
    assert_eq!(
        common::join(victim),
        Err(TaskError::WorkerLost(WorkerExit::Signal(9)))
    );
    before.check();
    after.check();
    common::assert_serves(&pool);
    assert!(
        !common::process_exists(pid as u32),
        "the killed worker was not reaped"
    );
}
