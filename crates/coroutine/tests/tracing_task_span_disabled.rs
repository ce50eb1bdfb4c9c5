//! With the feature `tracing` and a subscriber at `INFO`, the `DEBUG` task spans are disabled:
//! tasks run and their events are recorded, outside any task span (the span is neither kept
//! nor entered, so a disabled span costs a task one word).

mod common;

use polyexec_core::Executor;
use polyexec_coroutine::EventLoop;

#[test]
fn tasks_run_outside_disabled_spans() {
    let captured = common::Captured::install(tracing::Level::INFO);

    let event_loop = EventLoop::builder().threads(1).build().unwrap();
    let handle = event_loop.spawn_async(5u32, |x: u32| async move {
        tracing::info!("task body at info");
        x * 2
    });
    assert_eq!(handle.join(), Ok(10));
    event_loop.shutdown();

    let text = captured.text();
    let body = text
        .lines()
        .find(|line| line.contains("task body at info"))
        .unwrap_or_else(|| panic!("the task's event is recorded:\n{text}"));
    assert!(!body.contains("task{"), "{body}");
}
