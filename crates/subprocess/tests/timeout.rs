//! A task over the time limit resolves with `TimedOut`; a blocking one has its worker killed and
//! replaced, the tasks that worker held but had not started run elsewhere.

polyexec_subprocess::test_hook!();

mod common;

use std::time::Duration;

use polyexec_core::conformance::{Gate, gated};
use polyexec_core::{Executor, TaskError};
use polyexec_subprocess::ProcessPool;

const LIMIT: Duration = Duration::from_millis(300);

fn pool(workers: usize) -> ProcessPool {
    ProcessPool::builder()
        .workers(workers)
        .task_timeout(LIMIT)
        .build()
        .unwrap()
}

#[test]
fn blocking_task_over_the_limit_kills_its_worker() {
    let pool = pool(1);
    let first = pool.spawn((), |()| std::process::id()).join().unwrap();
    let gate = Gate::new();
    // Never released: only the time limit ends it.
    let stuck = pool.spawn(gate.port(), gated);
    let behind = pool.spawn_all(0..10u8, |x: u8| x);
    assert_eq!(stuck.join(), Err(TaskError::TimedOut(LIMIT)));
    for (i, h) in behind.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i as u8));
    }
    let second = pool.spawn((), |()| std::process::id()).join().unwrap();
    assert_ne!(first, second, "the worker was not replaced");
    assert!(!common::process_exists(first));
    drop(gate);
}

#[test]
fn async_task_over_the_limit_is_dropped_and_its_worker_lives() {
    let pool = pool(1);
    let first = pool.spawn((), |()| std::process::id()).join().unwrap();
    let slow = pool.spawn_async(3600u64, |secs: u64| async move {
        polyexec_core::sleep(Duration::from_secs(secs)).await;
    });
    assert_eq!(slow.join(), Err(TaskError::TimedOut(LIMIT)));
    assert_eq!(pool.spawn((), |()| std::process::id()).join(), Ok(first));
}

#[test]
fn tasks_within_the_limit_are_unaffected() {
    let pool = pool(2);
    let sum: u64 = pool.map(0..10_000u64, |x: u64| x).map(Result::unwrap).sum();
    assert_eq!(sum, 49_995_000);
}
