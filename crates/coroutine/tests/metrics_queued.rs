//! `metrics()` on the event loop tells queued tasks from started ones: while the loop thread
//! is held in a blocking task and another task waits in an `.await`, tasks submitted after
//! them are queued.

use polyexec_core::Executor;
use polyexec_core::conformance::{Gate, gated};
use polyexec_coroutine::EventLoop;

#[test]
fn tasks_behind_a_busy_loop_are_queued() {
    let event_loop = EventLoop::builder()
        .threads(1)
        .build()
        .expect("build an event loop");
    let idle = event_loop.metrics();
    assert_eq!((idle.queued(), idle.running()), (0, 0), "{idle:?}");

    // Waits in an `.await` (its blocking call runs elsewhere) after its first poll.
    let mut waiter_gate = Gate::new();
    let waiter = event_loop.spawn_async(waiter_gate.port(), |port: u16| async move {
        polyexec_core::unblock(move || gated(port)).await
    });
    waiter_gate.wait_started(1);
    // Holds the only loop thread, which can take it only once the waiter's first poll has
    // returned: the waiter is registered as waiting by then.
    let mut gate = Gate::new();
    let blocker = event_loop.spawn(gate.port(), gated);
    gate.wait_started(1);
    let behind: Vec<_> = (0..3u8)
        .map(|x| event_loop.spawn(x, |x: u8| x + 1))
        .collect();

    let busy = event_loop.metrics();
    assert_eq!(busy.submitted(), 5, "{busy:?}");
    assert_eq!((busy.queued(), busy.running()), (3, 2), "{busy:?}");

    gate.release();
    assert_eq!(blocker.join(), Ok(gate.port()));
    for (x, handle) in (0..3u8).zip(behind) {
        assert_eq!(handle.join(), Ok(x + 1));
    }
    waiter_gate.release();
    assert_eq!(waiter.join(), Ok(waiter_gate.port()));
    let done = event_loop.metrics();
    assert_eq!((done.queued(), done.running()), (0, 0), "{done:?}");
    assert_eq!(done.succeeded(), 5, "{done:?}");
    event_loop.shutdown();
}
