//! Per-task time limits ([`Executor::spawn_with`]) and [`unblock`](crate::unblock).

use std::time::Duration;

use super::{Gate, HANG, gated};
use crate::{Executor, SpawnOptions, TaskError};

/// A task past its own time limit resolves `TimedOut` with that limit: a blocking task held at a
/// gate (which cannot finish before the limit, whatever the machine's speed), and a sleeping
/// async task. A task within its limit delivers its value, and the executor keeps serving.
pub fn spawn_with_timeout<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let limit = Duration::from_millis(20);
    let options = SpawnOptions::new().timeout(limit);
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
    assert_eq!(futures::executor::block_on(awaited), Ok(10));
    assert_eq!(exec.spawn(1u8, |x: u8| x).join(), Ok(1));
    exec.shutdown();
}

/// An async task that calls blocking code through `unblock` leaves its thread free: another
/// task finishes while the blocking call is held at a gate, even on a single worker.
pub fn unblock_keeps_the_worker_free<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let mut gate = Gate::new();
    let offloaded = exec.spawn_async(gate.port(), |port: u16| async move {
        crate::unblock(move || gated(port)).await
    });
    gate.wait_started(1);
    // Without `unblock`, a single worker (or loop thread) would be stuck in `gated`.
    assert_eq!(
        exec.spawn_async(2u8, |x: u8| async move { x + 1 }).join(),
        Ok(3)
    );
    assert_eq!(exec.spawn(4u8, |x: u8| x + 1).join(), Ok(5));
    gate.release();
    assert_eq!(offloaded.join(), Ok(gate.port()));
    let panicked = exec.spawn_async((), |()| async move {
        crate::unblock(|| -> u8 { panic!("blocking boom") }).await
    });
    assert_eq!(
        panicked.join().unwrap_err().panic_message(),
        Some("blocking boom")
    );
    exec.shutdown();
}

/// `shutdown_timeout` returns within its bound even while every worker is stuck in a blocking
/// task, says `true` only if the workers are gone (so the stuck tasks have resolved), and every
/// handle resolves; on an idle executor it says `true`. Dropping the executor afterwards does
/// not wait for stuck workers.
pub fn shutdown_timeout_is_bounded<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let mut gate = Gate::new();
    let stuck = super::occupy_all(&exec, &mut gate);
    let queued = exec.spawn(1u8, |x: u8| x);
    let all_gone = exec.shutdown_timeout(Duration::from_millis(20));
    if all_gone {
        assert!(
            stuck.iter().all(|h| h.is_finished()),
            "shutdown_timeout said the workers were gone while their tasks were unresolved"
        );
    }
    assert_eq!(queued.join(), Err(TaskError::ShutDown));
    assert!(exec.spawn(2u8, |x: u8| x).join().unwrap_err().is_shutdown());
    gate.release();
    for handle in stuck {
        // Ran on and finished (threads), or was stopped with its worker (processes).
        match handle.join() {
            Ok(port) => assert_eq!(port, gate.port()),
            Err(err) => assert!(err.is_shutdown() || err.is_worker_lost(), "{err}"),
        }
    }
    drop(exec);

    let idle = make();
    assert_eq!(idle.spawn(3u8, |x: u8| x).join(), Ok(3));
    assert!(
        idle.shutdown_timeout(HANG),
        "an idle executor did not stop in time"
    );
}
