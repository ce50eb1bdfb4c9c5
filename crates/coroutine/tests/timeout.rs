//! The builder's per-task time limit: the task's future is dropped and the handle resolves with
//! `TimedOut`; tasks within the limit are unaffected.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use polyexec_core::{Executor, TaskError};
use polyexec_coroutine::EventLoop;

/// Sets its flag when dropped: proves that the future owning it was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

const LIMIT: Duration = Duration::from_millis(20);

fn limited() -> EventLoop {
    EventLoop::builder()
        .task_timeout(LIMIT)
        .build()
        .expect("build an event loop")
}

#[test]
fn a_task_past_the_limit_is_dropped_and_times_out() {
    let event_loop = limited();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropFlag(Arc::clone(&dropped));
    let handle = event_loop.spawn_capturing(async move {
        let _guard = guard;
        // Never finishes, and never arranges a wake-up: only the limit's timer wakes it.
        futures::future::pending::<()>().await;
    });
    assert_eq!(handle.join(), Err(TaskError::TimedOut(LIMIT)));
    // The future is dropped before its handle can see the result.
    assert!(
        dropped.load(Ordering::SeqCst),
        "the timed-out future was not dropped"
    );
    // The loop goes on.
    assert_eq!(event_loop.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
}

#[test]
fn portable_async_tasks_time_out_too() {
    let event_loop = limited();
    let handle = event_loop.spawn_async(3600u64, |secs: u64| async move {
        polyexec_core::sleep(Duration::from_secs(secs)).await;
        secs
    });
    let err = handle.join().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.to_string(), format!("task timed out after {LIMIT:?}"));
    // Counted before its result was published: as timed out, not cancelled.
    let metrics = event_loop.metrics();
    assert_eq!(
        (metrics.timed_out(), metrics.cancelled()),
        (1, 0),
        "{metrics:?}"
    );
}

#[test]
fn tasks_within_the_limit_are_unaffected() {
    let event_loop = limited();
    // Ready at once, or after yielding: well within any limit.
    let quick = event_loop.spawn_async(7u32, |x: u32| async move { x * 6 });
    assert_eq!(quick.join(), Ok(42));
    let blocking = event_loop.spawn(5u8, |x: u8| x + 1);
    assert_eq!(blocking.join(), Ok(6));
}

#[test]
fn graceful_shutdown_waits_for_the_limit_not_forever() {
    let event_loop = limited();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropFlag(Arc::clone(&dropped));
    let handle = event_loop.spawn_capturing(async move {
        let _guard = guard;
        futures::future::pending::<()>().await;
    });
    // Draining ends when the stuck task times out.
    event_loop.shutdown();
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(handle.join(), Err(TaskError::TimedOut(LIMIT)));
}
