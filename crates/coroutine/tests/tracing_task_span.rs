//! With the feature `tracing` and a subscriber at `DEBUG`, every task runs in its span: the
//! backend, a task id, the task function's type and its kind, entered whenever it is polled.

mod common;

use polyexec_core::Executor;
use polyexec_coroutine::EventLoop;

fn blocking_task(x: u32) -> u32 {
    tracing::info!("blocking task body");
    x + 1
}

async fn async_task(x: u32) -> u32 {
    // Polled twice: the span is entered again after the wait.
    polyexec_core::sleep(std::time::Duration::from_millis(1)).await;
    tracing::info!("async task body");
    x + 2
}

#[test]
fn each_task_runs_in_its_span() {
    let captured = common::Captured::install(tracing::Level::DEBUG);

    let event_loop = EventLoop::builder().threads(1).build().unwrap();
    assert_eq!(event_loop.spawn(1, blocking_task).join(), Ok(2));
    assert_eq!(event_loop.spawn_async(1, async_task).join(), Ok(3));
    event_loop.shutdown();

    let text = captured.text();
    let line = |needle: &str| {
        text.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    let blocking = line("blocking task body");
    assert!(
        blocking.contains("task{backend=\"coroutine\" id="),
        "{blocking}"
    );
    assert!(blocking.contains("blocking_task"), "{blocking}");
    assert!(blocking.contains("kind=\"blocking\""), "{blocking}");
    let asynchronous = line("async task body");
    assert!(
        asynchronous.contains("task{backend=\"coroutine\" id="),
        "{asynchronous}"
    );
    assert!(asynchronous.contains("async_task"), "{asynchronous}");
    assert!(asynchronous.contains("kind=\"async\""), "{asynchronous}");
    // Two tasks, two ids.
    let id = |line: &str| {
        line.split("id=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_ne!(id(blocking), id(asynchronous));
}
