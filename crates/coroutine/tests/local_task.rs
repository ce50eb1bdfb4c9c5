//! `spawn_local_capturing`: a `!Send` future built and run on a loop thread.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use polyexec_core::{Executor, TaskError, TaskHandle};
use polyexec_coroutine::EventLoop;

#[test]
fn a_non_send_future_runs_on_the_loop_thread() {
    let event_loop = EventLoop::builder()
        .thread_name("local-test")
        .build()
        .expect("build an event loop");
    let handle = event_loop.spawn_local_capturing(|| {
        // `Rc` and `Cell` make this future `!Send`; it is built on the loop thread.
        let counter = Rc::new(Cell::new(0u32));
        async move {
            for _ in 0..3 {
                counter.set(counter.get() + 1);
                polyexec_core::sleep(Duration::from_millis(1)).await;
            }
            let thread = std::thread::current().name().map(str::to_owned);
            (counter.get(), thread)
        }
    });
    assert_eq!(handle.join(), Ok((3, Some("local-test-0".to_string()))));
}

#[test]
fn local_tasks_interleave_with_other_tasks() {
    let event_loop = EventLoop::new().expect("build an event loop");
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    // The local task waits for a value that a later ordinary task sends.
    let local = event_loop.spawn_local_capturing(move || {
        let scale = Rc::new(10u32);
        async move { rx.await.map(|v| v * *scale) }
    });
    let sender = event_loop.spawn_capturing(async move { tx.send(4).is_ok() });
    assert_eq!(sender.join(), Ok(true));
    assert_eq!(local.join(), Ok(Ok(40)));
}

#[test]
fn panics_and_cancellation_work_for_local_tasks() {
    let event_loop = EventLoop::builder()
        .threads(2)
        .build()
        .expect("build an event loop");
    let panicking: TaskHandle<()> = event_loop.spawn_local_capturing(|| {
        let _not_send = Rc::new(());
        async move {
            polyexec_core::sleep(Duration::from_millis(1)).await;
            panic!("local boom");
        }
    });
    let err = panicking.join().unwrap_err();
    assert_eq!(err.panic_message(), Some("local boom"));
    // A panic while building the future is caught too.
    let bad_make =
        event_loop.spawn_local_capturing(|| -> std::future::Ready<u8> { panic!("make boom") });
    assert_eq!(
        bad_make.join().unwrap_err().panic_message(),
        Some("make boom")
    );

    let forever = event_loop.spawn_local_capturing(|| {
        let _not_send = Rc::new(());
        async move {
            polyexec_core::sleep(Duration::from_secs(3600)).await;
            1u8
        }
    });
    assert!(forever.cancel());
    assert_eq!(forever.join(), Err(TaskError::Cancelled));
    // Graceful shutdown does not wait for the cancelled task.
    event_loop.shutdown();
}

#[test]
fn shutdown_now_ends_waiting_local_tasks() {
    let event_loop = EventLoop::new().expect("build an event loop");
    let (started_tx, started) = std::sync::mpsc::channel();
    let waiting = event_loop.spawn_local_capturing(move || {
        let _not_send = Rc::new(());
        async move {
            started_tx.send(()).expect("test alive");
            polyexec_core::sleep(Duration::from_secs(3600)).await;
            1u8
        }
    });
    started.recv().expect("the local task started");
    event_loop.shutdown_now();
    assert_eq!(waiting.join(), Err(TaskError::ShutDown));
}
