//! Shutting a pool down (or dropping it) from one of its own tasks does not deadlock.

use std::sync::Arc;

use polyexec_core::{Executor, TaskError};
use polyexec_thread::ThreadPool;

#[test]
fn shutdown_from_inside_a_task_completes() {
    let pool = Arc::new(ThreadPool::builder().workers(2).build().expect("pool"));
    let inner = Arc::clone(&pool);
    let handle = pool.spawn_capturing(move || {
        inner.shutdown();
        // The pool refuses work at once, even though it finishes shutting down elsewhere.
        inner.spawn(1u8, |x: u8| x).join()
    });
    assert_eq!(handle.join(), Ok(Err(TaskError::ShutDown)));
    // From outside, shutdown waits for the workers as usual.
    pool.shutdown();
}

#[test]
fn shutdown_now_from_inside_a_task_completes() {
    let pool = Arc::new(ThreadPool::builder().workers(1).build().expect("pool"));
    let inner = Arc::clone(&pool);
    let handle = pool.spawn_capturing(move || inner.shutdown_now());
    assert_eq!(handle.join(), Ok(()));
    pool.shutdown_now();
    assert_eq!(pool.spawn(1u8, |x: u8| x).join(), Err(TaskError::ShutDown));
}

#[test]
fn last_reference_dropped_inside_a_task() {
    let pool = Arc::new(ThreadPool::builder().workers(1).build().expect("pool"));
    let inner = Arc::clone(&pool);
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = pool.spawn_capturing(move || {
        // Wait until the test has dropped its reference, so this one is the last.
        rx.recv().expect("signal");
        drop(inner);
    });
    drop(pool);
    tx.send(()).expect("task alive");
    assert_eq!(handle.join(), Ok(()));
}
