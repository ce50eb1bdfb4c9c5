//! With the feature `tracing` and a subscriber at `INFO`, the `DEBUG` task spans are disabled:
//! tasks run and their events are recorded, outside any task span (the span is neither kept
//! nor entered, so a disabled span costs a task one word).

use std::io::Write;
use std::sync::{Arc, Mutex};

use polyexec_core::Executor;
use polyexec_coroutine::EventLoop;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn tasks_run_outside_disabled_spans() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber of this test binary");

    let event_loop = EventLoop::builder().threads(1).build().unwrap();
    let handle = event_loop.spawn_async(5u32, |x: u32| async move {
        tracing::info!("task body at info");
        x * 2
    });
    assert_eq!(handle.join(), Ok(10));
    event_loop.shutdown();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let body = text
        .lines()
        .find(|line| line.contains("task body at info"))
        .unwrap_or_else(|| panic!("the task's event is recorded:\n{text}"));
    assert!(!body.contains("task{"), "{body}");
}
