//! A blocking wait on a loop thread is refused with a clear panic instead of a silent deadlock;
//! the task that tried resolves with `Panicked`, and the loop goes on.

use futures::channel::oneshot;
use polyexec_core::{Executor, TaskHandle, join_all};
use polyexec_coroutine::EventLoop;

fn one_thread() -> EventLoop {
    EventLoop::builder()
        .threads(1)
        .build()
        .expect("build an event loop")
}

#[test]
fn join_of_an_unfinished_handle_inside_a_task_panics_with_advice() {
    let event_loop = one_thread();
    let (release, released) = oneshot::channel::<()>();
    // Unfinished until released: the joiner below finds it pending, whatever the timing.
    let pending = event_loop.spawn_capturing(async move {
        let _ = released.await;
        5u8
    });
    let joiner = event_loop.spawn_capturing(async move { pending.join() });
    let err = joiner.join().unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    let message = err.panic_message().expect("a panic message");
    assert!(
        message.contains("join() called on an event-loop thread: .await the handle instead"),
        "{message}"
    );
    // The location is the user's `join()`, not polyexec's internals.
    assert!(
        err.to_string().contains("join_from_loop.rs"),
        "location should point at the caller: {err}"
    );
    // The loop survived and still runs tasks (the pending task was detached by the panic).
    release.send(()).ok();
    assert_eq!(event_loop.spawn(2u8, |x: u8| x + 1).join(), Ok(3));
}

#[test]
fn other_blocking_waits_inside_a_task_panic_too() {
    let event_loop = one_thread();
    // join_all inside a task, on unfinished handles of the same loop: the deadlock case.
    let (senders, handles): (Vec<_>, Vec<TaskHandle<u8>>) = (0..3u8)
        .map(|i| {
            let (tx, rx) = oneshot::channel::<()>();
            (
                tx,
                event_loop.spawn_capturing(async move { rx.await.map_or(i, |()| i) }),
            )
        })
        .unzip();
    let joiner = event_loop.spawn_capturing(async move { join_all(handles) });
    let err = joiner.join().unwrap_err();
    assert!(
        err.panic_message()
            .is_some_and(|m| m.contains("event-loop thread")),
        "{err:?}"
    );
    drop(senders);
    // Waits that need not block are allowed: `join_timeout(ZERO)` on an unfinished handle
    // reports "not yet", and a finished handle can be joined.
    let (_keep, never) = oneshot::channel::<()>();
    let mut waiting = event_loop.spawn_capturing(async move {
        let _ = never.await;
    });
    let finished = event_loop.spawn(1u8, |x: u8| x);
    let probe = event_loop.spawn_capturing(async move {
        let not_yet = waiting.join_timeout(std::time::Duration::ZERO).is_none();
        // `finished` was queued before this task on a one-thread loop: it is done.
        let value = finished.join();
        assert!(waiting.cancel());
        (not_yet, value)
    });
    assert_eq!(probe.join(), Ok((true, Ok(1))));
    event_loop.shutdown();
}

#[test]
fn awaiting_inside_a_task_is_the_way() {
    let event_loop = one_thread();
    let inner = event_loop.spawn_async(20u32, |x: u32| async move {
        polyexec_core::sleep(std::time::Duration::from_millis(1)).await;
        x + 1
    });
    let outer = event_loop.spawn_capturing(async move { inner.await.map(|x| x * 2) });
    assert_eq!(outer.join(), Ok(Ok(42)));
}

#[test]
fn joining_from_outside_the_loop_is_fine() {
    let event_loop = one_thread();
    assert!(!polyexec_core::is_event_loop_thread());
    let on_loop = event_loop.spawn_capturing(async { polyexec_core::is_event_loop_thread() });
    assert_eq!(on_loop.join(), Ok(true));
}
