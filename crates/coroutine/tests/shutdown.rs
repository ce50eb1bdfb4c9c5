//! Shutdown semantics of the loop: immediate shutdown reaches tasks wherever they wait,
//! shutdown from inside a loop task does not deadlock, and both kinds are idempotent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use polyexec_core::{Executor, TaskError, TaskHandle};
use polyexec_coroutine::EventLoop;

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_now_ends_tasks_that_already_wait() {
    for threads in [1, 2] {
        let event_loop = EventLoop::builder()
            .threads(threads)
            .build()
            .expect("build");
        let (started_tx, started) = mpsc::channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let handles: Vec<TaskHandle<()>> = (0..10)
            .map(|_| {
                let started_tx = started_tx.clone();
                let guard = DropFlag(Arc::clone(&dropped));
                event_loop.spawn_capturing(async move {
                    let _guard = guard;
                    started_tx.send(()).expect("test alive");
                    // Waits on something that will never happen.
                    futures::future::pending::<()>().await;
                })
            })
            .collect();
        for _ in 0..10 {
            started.recv().expect("every task started");
        }
        event_loop.shutdown_now();
        // Every handle resolved by the time shutdown_now returned.
        for h in handles {
            assert!(h.is_finished());
            assert_eq!(h.join(), Err(TaskError::ShutDown));
        }
        assert!(dropped.load(Ordering::SeqCst));
        event_loop.shutdown_now(); // idempotent
        event_loop.shutdown();
    }
}

#[test]
fn graceful_shutdown_drains_sleeping_and_detached_tasks() {
    let event_loop = EventLoop::builder().threads(2).build().expect("build");
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    event_loop
        .spawn_capturing(async move {
            polyexec_core::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        })
        .detach();
    event_loop.shutdown();
    assert!(
        done.load(Ordering::SeqCst),
        "shutdown returned before the task ran"
    );
    // Refused at once afterwards, with a handle that is already resolved.
    let refused = event_loop.spawn(1u8, |x: u8| x);
    assert!(refused.is_finished());
    assert_eq!(refused.join(), Err(TaskError::ShutDown));
    let refused = event_loop.spawn_local_capturing(|| async { 1u8 });
    assert_eq!(refused.join(), Err(TaskError::ShutDown));
    assert_eq!(event_loop.spawn_all(0..3u8, |x: u8| x).len(), 3);
}

#[test]
fn shutdown_from_inside_a_task_does_not_deadlock() {
    for now in [false, true] {
        let event_loop = Arc::new(EventLoop::builder().threads(1).build().expect("build"));
        let inner = Arc::clone(&event_loop);
        let handle = event_loop.spawn_capturing(async move {
            if now {
                inner.shutdown_now();
            } else {
                inner.shutdown();
            }
            // The loop refuses new work from here on.
            inner.spawn(1u8, |x: u8| x).is_finished()
        });
        match handle.join() {
            // The calling task finished its poll before the loop stopped.
            Ok(refused) => assert!(refused),
            Err(err) => panic!("shutdown (now: {now}) from inside failed: {err:?}"),
        }
        // Completes the shutdown (waits for the threads) from outside.
        event_loop.shutdown();
    }
}

#[test]
fn dropping_the_last_reference_inside_a_task_does_not_deadlock() {
    let event_loop = Arc::new(EventLoop::new().expect("build"));
    let (tx, rx) = mpsc::channel();
    let inner = Arc::clone(&event_loop);
    event_loop
        .spawn_capturing(async move {
            // Wait until the test has dropped its reference: ours is then the last one.
            rx.recv().expect("test alive");
            drop(inner);
            7u8
        })
        .detach();
    drop(event_loop);
    tx.send(()).expect("task alive");
}

#[test]
fn concurrent_shutdowns_all_return_after_the_threads_are_gone() {
    let event_loop = Arc::new(EventLoop::builder().threads(2).build().expect("build"));
    let sleeper = event_loop.spawn_async(10u64, |ms: u64| async move {
        polyexec_core::sleep(Duration::from_millis(ms)).await;
        ms
    });
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let event_loop = Arc::clone(&event_loop);
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    event_loop.shutdown();
                } else {
                    event_loop.shutdown_now();
                }
            })
        })
        .collect();
    for c in callers {
        c.join().expect("shutdown caller");
    }
    // Drained or cancelled, depending on which shutdown came first; resolved either way.
    assert!(sleeper.is_finished());
    match sleeper.join() {
        Ok(ms) => assert_eq!(ms, 10),
        Err(err) => assert!(err.is_shutdown(), "{err:?}"),
    }
}
