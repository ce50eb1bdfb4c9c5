//! With the feature `tracing`, a subscriber sees a crashed worker die and its replacement start
//! (the restart event), inside one process-wide subscriber: the events come from the pool's
//! reader and supervisor threads.

polyexec_subprocess::test_hook!();

use std::io::Write;
use std::sync::{Arc, Mutex};

use polyexec_core::{Executor, TaskError};
use polyexec_subprocess::ProcessPool;

/// Where the subscriber writes: one buffer shared with the test.
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
fn a_subscriber_sees_the_worker_restart() {
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

    let pool = ProcessPool::builder()
        .workers(1)
        .env("RUST_BACKTRACE", "0")
        .build()
        .unwrap();
    let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
    assert!(matches!(crash.join(), Err(TaskError::WorkerLost(_))));
    // Served by the replacement: the restart has been reported by now.
    assert_eq!(pool.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
    pool.shutdown();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = |needle: &str| text.lines().find(|line| line.contains(needle));
    let died = line("worker process died").expect("the death is reported");
    assert!(died.contains("SIGABRT"), "{died}");
    let restarted = line("worker process restarted").expect("the restart is reported");
    assert!(restarted.contains("worker=0"), "{restarted}");
    assert!(line("shutdown complete").is_some(), "{text}");
}
