//! A task that kills every host that runs it: after `max_deliver` deliveries the pool gives up
//! with `WorkerLost` naming the count (from JetStream's max-deliveries advisory), and goes on.

polyexec_cluster::test_hook!();

mod common;

use std::time::Duration;

use polyexec_core::{Executor, TaskError, WorkerExit};

#[test]
fn a_task_that_kills_its_hosts_fails_after_max_deliver_and_the_pool_goes_on() {
    let pool = common::builder(2)
        .ack_wait(Duration::from_secs(1))
        .max_deliver(2)
        .build()
        .expect("build a cluster pool");
    let poison = pool.spawn((), |()| -> u8 { std::process::abort() });
    let err = poison.join().unwrap_err();
    assert_eq!(err, TaskError::WorkerLost(WorkerExit::Deliveries(2)));
    assert!(
        err.to_string().contains("lost on each of its 2 deliveries"),
        "{err}"
    );
    // The hosts it killed were replaced.
    assert_eq!(pool.spawn(2u8, |x: u8| x + 1).join(), Ok(3));
}
