//! After shutdown, every loop thread is gone (counted in /proc/self/task) and no descriptor is
//! left open (the async-io reactor's are process-wide and opened once, before the count). One
//! test in this file, so that no other test starts or ends threads meanwhile.
// The probes read /proc.
#![cfg(target_os = "linux")]

use std::time::Duration;

use polyexec_core::Executor;
use polyexec_core::conformance::{open_fds, thread_count};
use polyexec_coroutine::EventLoop;

/// With the feature `tokio`, each executor also owns a tokio runtime with one thread, stopped
/// by the executor's shutdown.
const TOKIO_THREADS: usize = if cfg!(feature = "tokio") { 1 } else { 0 };

fn exercise(event_loop: &EventLoop) {
    let sleepers: Vec<_> = (0..50u64)
        .map(|i| {
            event_loop.spawn_async(i, |i: u64| async move {
                polyexec_core::sleep(Duration::from_millis(1)).await;
                i
            })
        })
        .collect();
    let blocking = event_loop.spawn_all(0..50u64, |i: u64| i);
    for h in sleepers.into_iter().chain(blocking) {
        h.join().expect("task");
    }
}

#[test]
fn shutdown_joins_every_loop_thread() {
    if !std::path::Path::new("/proc/self/task").exists() {
        return; // not Linux
    }
    // Warm up: async-io starts its own helper thread once per process, on first use.
    let warm = EventLoop::new().expect("build");
    exercise(&warm);
    warm.shutdown();
    drop(warm);
    let before = thread_count();
    let fds_before = open_fds();

    for threads in [1, 2, 4] {
        let event_loop = EventLoop::builder()
            .threads(threads)
            .build()
            .expect("build");
        assert_eq!(thread_count(), before + threads + TOKIO_THREADS);
        exercise(&event_loop);
        event_loop.shutdown();
        assert_eq!(
            thread_count(),
            before,
            "graceful shutdown, {threads} threads"
        );
    }
    for threads in [1, 3] {
        let event_loop = EventLoop::builder()
            .threads(threads)
            .build()
            .expect("build");
        exercise(&event_loop);
        let _sleeping = event_loop.spawn_async(3600u64, |s: u64| async move {
            polyexec_core::sleep(Duration::from_secs(s)).await;
        });
        event_loop.shutdown_now();
        assert_eq!(
            thread_count(),
            before,
            "immediate shutdown, {threads} threads"
        );
    }
    {
        let event_loop = EventLoop::builder().threads(2).build().expect("build");
        exercise(&event_loop);
        drop(event_loop);
        assert_eq!(thread_count(), before, "drop");
    }
    assert_eq!(open_fds(), fds_before, "open descriptors");
}
