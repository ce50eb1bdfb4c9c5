//! A blocking task runs on the loop thread and stalls it: on a one-thread loop, nothing else
//! runs until it returns (asyncio's rule). Checked by what the blocking task observes, not by
//! timing.

use std::sync::atomic::{AtomicBool, Ordering};

use polyexec_core::Executor;
use polyexec_core::conformance::{Gate, gated};
use polyexec_coroutine::EventLoop;

/// Set by the async task when it runs. One test per file, so nothing else touches it.
static ASYNC_RAN: AtomicBool = AtomicBool::new(false);

#[test]
fn a_blocking_task_holds_the_only_loop_thread_until_it_returns() {
    let event_loop = EventLoop::builder()
        .threads(1)
        .build()
        .expect("build an event loop");
    let mut gate = Gate::new();
    // The blocking task waits on the gate, then reports whether the async task ran meanwhile.
    let blocker = event_loop.spawn(gate.port(), |port: u16| {
        gated(port);
        ASYNC_RAN.load(Ordering::SeqCst)
    });
    gate.wait_started(1);
    // Submitted while the blocking task holds the thread; ready to run at once, and already
    // (or soon) runnable: only a free loop thread is missing.
    let ready = event_loop.spawn_async((), |()| async {
        ASYNC_RAN.store(true, Ordering::SeqCst);
    });
    // Waiting cannot finish it: join_timeout returns with the task still queued.
    let mut ready = ready;
    assert_eq!(
        ready.join_timeout(std::time::Duration::from_millis(20)),
        None
    );
    assert!(!ASYNC_RAN.load(Ordering::SeqCst));
    gate.release();
    assert_eq!(
        blocker.join(),
        Ok(false),
        "the async task ran during the blocking one"
    );
    // Once the thread is free, the queued task runs.
    assert_eq!(ready.join(), Ok(()));
    assert!(ASYNC_RAN.load(Ordering::SeqCst));
}
