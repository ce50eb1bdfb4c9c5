//! Async tasks run in the worker on a local executor: many interleave on one worker, and they
//! are dropped, not the worker killed, when cancelled.

polyexec_subprocess::test_hook!();

mod common;

use std::time::Duration;

use polyexec_core::{Executor, TaskError};

#[test]
fn async_tasks_interleave_in_one_worker() {
    let pool = common::pool(1);
    // Each task waits for a file the next one writes; they only finish if they all wait at once.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap().to_owned();
    let n = 20u32;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            pool.spawn_async(
                (base.clone(), i, n),
                |(base, i, n): (String, u32, u32)| async move {
                    if i + 1 < n {
                        let wait_for = format!("{base}/{}", i + 1);
                        while !std::path::Path::new(&wait_for).exists() {
                            polyexec_core::sleep(Duration::from_millis(2)).await;
                        }
                    }
                    std::fs::write(format!("{base}/{i}"), b"").unwrap();
                    (i, std::process::id())
                },
            )
        })
        .collect();
    let results: Vec<(u32, u32)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let pid = results[0].1;
    assert!(results.iter().all(|&(_, p)| p == pid));
    assert_eq!(
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
}

#[test]
fn async_and_blocking_mix_and_errors_stay_per_task() {
    let pool = common::pool(2);
    let sleepers: Vec<_> = (0..50u64)
        .map(|i| {
            pool.spawn_async(i, |i: u64| async move {
                polyexec_core::sleep(Duration::from_millis(5)).await;
                i * 2
            })
        })
        .collect();
    let blocking = pool.spawn_all(0..50u64, |i: u64| i + 1);
    let panicking: polyexec_core::TaskHandle<()> = pool.spawn_async((), |()| async {
        polyexec_core::sleep(Duration::from_millis(1)).await;
        panic!("async boom");
    });
    for (i, h) in sleepers.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i as u64 * 2));
    }
    for (i, h) in blocking.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i as u64 + 1));
    }
    let err: TaskError = panicking.join().unwrap_err();
    assert_eq!(err.panic_message(), Some("async boom"));
}
