//! Thousands of tasks submitted at once, faster than the server confirms them: every one is
//! queued, run once and resolved with its own value.

polyexec_cluster::test_hook!();

mod common;

use polyexec_core::Executor;

#[test]
fn ten_thousand_tasks_submitted_at_once_all_resolve_with_their_values() {
    let pool = common::pool(2);
    let handles: Vec<_> = (0..10_000u64)
        .map(|i| pool.spawn(i, |x: u64| x * 3))
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join(), Ok(i as u64 * 3), "task {i}");
    }
    let metrics = pool.metrics();
    assert_eq!(metrics.succeeded(), 10_000, "{metrics:?}");
}
