//! Cancelling a running blocking task kills its worker (which is replaced) and the pool goes on;
//! cancelling a task sent to a worker but not started there drops it without a kill.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::conformance::{Gate, gated, mark, scratch_file};
use polyexec_core::{Executor, TaskError};

#[test]
fn cancel_running_task_kills_and_replaces_its_worker() {
    let pool = common::pool(1);
    let first = pool.spawn((), |()| std::process::id()).join().unwrap();
    let mut gate = Gate::new();
    let running = pool.spawn(gate.port(), gated);
    gate.wait_started(1);
    assert!(running.cancel());
    assert_eq!(running.join(), Err(TaskError::Cancelled));
    let second = pool.spawn((), |()| std::process::id()).join().unwrap();
    assert_ne!(
        first, second,
        "the worker running the cancelled task lives on"
    );
    assert!(
        !common::process_exists(first),
        "the killed worker was not reaped"
    );
    assert_eq!(pool.spawn(9u8, |x: u8| x).join(), Ok(9));
}

#[test]
fn cancel_sent_but_not_started_drops_it_in_the_worker() {
    let pool = common::pool(1);
    let first = pool.spawn((), |()| std::process::id()).join().unwrap();
    let mut gate = Gate::new();
    let blocker = pool.spawn(gate.port(), gated);
    gate.wait_started(1);
    // Pipelined to the busy worker (depth > 1), but it cannot start while the gate holds.
    let (_dir, path) = scratch_file("never");
    let victim = pool.spawn(path.to_str().unwrap().to_owned(), mark);
    assert!(victim.cancel());
    assert_eq!(victim.join(), Err(TaskError::Cancelled));
    gate.release();
    assert_eq!(blocker.join(), Ok(gate.port()));
    // The same worker: no kill was needed.
    assert_eq!(pool.spawn((), |()| std::process::id()).join(), Ok(first));
    pool.shutdown();
    assert!(!path.exists(), "a cancelled task ran");
}

#[test]
fn cancel_running_async_task_keeps_the_worker() {
    let pool = common::pool(1);
    let first = pool.spawn((), |()| std::process::id()).join().unwrap();
    let sleeping = pool.spawn_async(3600u64, |secs: u64| async move {
        polyexec_core::sleep(std::time::Duration::from_secs(secs)).await;
    });
    // Wait until it has started: a blocking task queued after it runs once it is parked.
    assert_eq!(pool.spawn(1u8, |x: u8| x).join(), Ok(1));
    assert!(sleeping.cancel());
    assert_eq!(sleeping.join(), Err(TaskError::Cancelled));
    assert_eq!(pool.spawn((), |()| std::process::id()).join(), Ok(first));
    // Graceful shutdown does not wait for the cancelled sleeper.
    pool.shutdown();
}
