//! [`Executor::metrics`]: every task counted once, in the outcome it had.

use std::time::Duration;

use super::{Gate, HANG, gated, occupy_all};
use crate::{Executor, Metrics, SpawnOptions, TaskError};

/// The counters' change from `before` to `after`, as (submitted, succeeded, panicked,
/// cancelled, shut down).
fn grown(before: &Metrics, after: &Metrics) -> (u64, u64, u64, u64, u64) {
    (
        after.submitted() - before.submitted(),
        after.succeeded() - before.succeeded(),
        after.panicked() - before.panicked(),
        after.cancelled() - before.cancelled(),
        after.shut_down() - before.shut_down(),
    )
}

/// After 10 tasks (blocking and async) of which one panics, joined: `submitted` grew by 10,
/// `succeeded` by 9 and `panicked` by 1, nothing is left queued or running, and every worker
/// is alive.
pub fn metrics_count_outcomes<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let before = exec.metrics();
    let mut handles = Vec::new();
    for i in 0..5u32 {
        handles.push(exec.spawn(i, |i: u32| {
            assert!(i != 3, "task {i} panics");
            i
        }));
        handles.push(exec.spawn_async(i, |i: u32| async move { i }));
    }
    let results: Vec<Result<u32, TaskError>> = handles.into_iter().map(|h| h.join()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 9);
    // Counted before the result reached the handle: visible to whoever joined it.
    let after = exec.metrics();
    assert_eq!(grown(&before, &after), (10, 9, 1, 0, 0), "{after:?}");
    assert_eq!((after.queued(), after.running()), (0, 0), "{after:?}");
    assert_eq!(after.finished(), after.submitted(), "{after:?}");
    assert_eq!(after.workers(), exec.workers(), "{after:?}");
    exec.shutdown();
}

/// A queued task that is cancelled counts as cancelled (once its executor has dropped it, at
/// the latest when a graceful shutdown returns), the tasks that ran as succeeded, and tasks
/// refused after shutdown (blocking, async, a batch) as submitted and shut down; in the end
/// every submitted task has one outcome.
pub fn metrics_count_cancel_and_shutdown<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let before = exec.metrics();
    let mut gate = Gate::new();
    let blockers = occupy_all(&exec, &mut gate);
    let victim = exec.spawn(0u16, gated);
    assert!(victim.cancel());
    // Joined at once: an in-process backend stops the work when the handle is next used.
    assert_eq!(victim.join(), Err(TaskError::Cancelled));
    let behind = exec.spawn(1u8, |x: u8| x + 1);
    gate.release();
    for blocker in blockers {
        assert!(blocker.join().is_ok());
    }
    assert_eq!(behind.join(), Ok(2));
    exec.shutdown();
    // Refused, each one counted submitted and shut down: a task, an async task, a batch of 2.
    assert_eq!(exec.spawn(1u8, |x: u8| x).join(), Err(TaskError::ShutDown));
    let refused_async = exec.spawn_async(1u8, |x: u8| async move { x });
    assert_eq!(refused_async.join(), Err(TaskError::ShutDown));
    for handle in exec.spawn_all([1u8, 2], |x: u8| x) {
        assert_eq!(handle.join(), Err(TaskError::ShutDown));
    }
    let after = exec.metrics();
    let n = exec.workers() as u64;
    assert_eq!(grown(&before, &after), (n + 6, n + 1, 0, 1, 4), "{after:?}");
    assert_eq!(after.finished(), after.submitted(), "{after:?}");
    assert_eq!(
        after.workers(),
        0,
        "no worker is left after shutdown: {after:?}"
    );
}

/// Tasks whose own time limit ([`SpawnOptions::timeout`]) passes count as timed out, not
/// cancelled, however they then end: one still queued (dropped, or removed from the queue),
/// one running a blocking call (which a thread runs on to its end, and a worker process is
/// killed for), one waiting in an `.await` (dropped). A task that ends within its limit
/// counts as usual.
pub fn metrics_count_timeouts<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let before = exec.metrics();
    let limit = Duration::from_millis(20);
    let options = SpawnOptions::new().timeout(limit);

    let mut gate = Gate::new();
    let blockers = occupy_all(&exec, &mut gate);
    let queued = exec.spawn_with(1u8, |x: u8| x + 1, options);
    assert_eq!(queued.join(), Err(TaskError::TimedOut(limit)));
    gate.release();
    for blocker in blockers {
        assert!(blocker.join().is_ok());
    }

    let mut gate = Gate::new();
    let held = exec.spawn_with(gate.port(), gated, options);
    gate.wait_started(1);
    assert_eq!(held.join(), Err(TaskError::TimedOut(limit)));
    gate.release();

    let sleeping = exec.spawn_async_with(
        3_600u64,
        |secs: u64| async move {
            crate::sleep(Duration::from_secs(secs)).await;
            secs
        },
        options,
    );
    assert_eq!(sleeping.join(), Err(TaskError::TimedOut(limit)));

    let generous = SpawnOptions::new().timeout(HANG);
    assert_eq!(exec.spawn_with(3u8, |x: u8| x + 1, generous).join(), Ok(4));
    let awaited = exec.spawn_async_with(5u8, |x: u8| async move { x * 2 }, generous);
    assert_eq!(awaited.join(), Ok(10));

    // A graceful shutdown returns once the held task has run on to its end and the dropped
    // ones have been dropped: every task has counted its outcome by then.
    exec.shutdown();
    let after = exec.metrics();
    let n = exec.workers() as u64;
    assert_eq!(
        grown(&before, &after),
        (n + 5, n + 2, 0, 0, 0),
        "(submitted, succeeded, panicked, cancelled, shut down) {after:?}"
    );
    assert_eq!(after.timed_out() - before.timed_out(), 3, "{after:?}");
    assert_eq!(after.finished(), after.submitted(), "{after:?}");
}
