//! After shutdown, every worker thread is gone and no descriptor is left open. (One test in this
//! file, so no other test's threads are counted.)
// The probes read /proc.
#![cfg(target_os = "linux")]

use polyexec_core::Executor;
use polyexec_core::conformance::{open_fds, thread_count};
use polyexec_thread::ThreadPool;

/// With the feature `tokio`, each executor also owns a tokio runtime with one thread, stopped
/// by the executor's shutdown.
const TOKIO_THREADS: usize = if cfg!(feature = "tokio") { 1 } else { 0 };

/// Waits until the thread count is `expected`. A joined thread leaves `/proc/self/task` a moment
/// after `join` returns (the kernel wakes the joiner before it finishes tearing the thread down),
/// so the count is polled; the bound only turns a real leak into a failure instead of a hang.
fn assert_thread_count_settles(expected: usize, context: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = thread_count();
        if now == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{context}: {now} threads, expected {expected}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn pools_leave_no_threads_behind() {
    // The timer reactor is one process-wide thread, started on first use and kept: start it now.
    polyexec_core::block_on(polyexec_core::sleep(std::time::Duration::from_millis(1)));
    // So is what a first pool leaves for good: with the feature `tokio`, in a build where
    // tokio's `signal` feature is on, the process-wide socket pair of tokio's signal driver.
    ThreadPool::builder()
        .workers(1)
        .build()
        .expect("pool")
        .shutdown();
    let before = thread_count();
    let fds_before = open_fds();
    for round in 0..20u64 {
        let pool = ThreadPool::builder().workers(4).build().expect("pool");
        assert_eq!(thread_count(), before + 4 + TOKIO_THREADS);
        let results: Vec<u64> = pool
            .map(0..100u64, |x: u64| x + 1)
            .collect::<Result<_, _>>()
            .expect("tasks");
        assert_eq!(results.len(), 100);
        let sleeper = pool.spawn_async(round, |r: u64| async move {
            polyexec_core::sleep(std::time::Duration::from_secs(3600)).await;
            r
        });
        if round % 2 == 0 {
            pool.shutdown_now();
            assert!(sleeper.join().unwrap_err().is_shutdown());
        } else {
            drop(sleeper);
            let h = pool.spawn(1u8, |x: u8| x);
            assert_eq!(h.join(), Ok(1));
            pool.shutdown_now();
        }
        assert_thread_count_settles(before, &format!("round {round}"));
        drop(pool);
        assert_eq!(open_fds(), fds_before, "round {round}: open descriptors");
    }
}
