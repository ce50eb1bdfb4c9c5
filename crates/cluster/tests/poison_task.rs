//! A task that kills every host that runs it: after `max_deliver` deliveries the pool gives up
//! with `WorkerLost` naming the count (from JetStream's max-deliveries advisory), and goes on.
//! (A task that merely crashes is contained by its host: see crash_contained.rs. This one kills
//! the host itself, its worker process's parent.)

polyexec_cluster::test_hook!();

mod common;

use std::time::Duration;

use polyexec_core::{Executor, TaskError, WorkerExit};

/// Kills the host this task runs on (the parent of its worker process), then waits to die with
/// it (a host's worker processes do).
fn kill_my_host(test: u32) -> u8 {
    let host = std::os::unix::process::parent_id();
    assert_ne!(
        host, test,
        "a task runs in a worker process of a host, never in the test"
    );
    let host = rustix::process::Pid::from_raw(host as i32).expect("a valid pid");
    rustix::process::kill_process(host, rustix::process::Signal::KILL).expect("kill the host");
    let (_keep, never) = std::sync::mpsc::channel::<()>();
    let _ = never.recv();
    0
}

#[test]
fn a_task_that_kills_its_hosts_fails_after_max_deliver_and_the_pool_goes_on() {
    let pool = common::builder(2)
        .ack_wait(Duration::from_secs(1))
        .max_deliver(2)
        .build()
        .expect("build a cluster pool");
    let poison = pool.spawn(std::process::id(), kill_my_host);
    let err = poison.join().unwrap_err();
    assert_eq!(err, TaskError::WorkerLost(WorkerExit::Deliveries(2)));
    assert!(
        err.to_string().contains("lost on each of its 2 deliveries"),
        "{err}"
    );
    // The hosts it killed were replaced.
    assert_eq!(pool.spawn(2u8, |x: u8| x + 1).join(), Ok(3));
}
