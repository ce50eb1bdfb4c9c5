//! A downstream integration test running tasks on the subprocess backend.

// The test binary is the workers' executable: the hook makes a worker serve, not run the tests.
polyexec::test_hook!();

use polyexec::Executor;
use polyexec::subprocess::ProcessPool;
use polyexec_downstream::{Order, total};

#[test]
fn tasks_of_this_crate_run_in_workers() {
    let pool = ProcessPool::builder().workers(2).build().expect("build a pool");
    let orders: Vec<Order> = (1..=20)
        .map(|i| Order {
            item: format!("item {i}"),
            quantity: i,
            unit_cents: 100,
        })
        .collect();
    let handles = pool.spawn_all(orders, total);
    for (i, handle) in handles.into_iter().enumerate() {
        let (cents, pid) = handle.join().expect("task result");
        assert_eq!(cents, (i as u64 + 1) * 100);
        assert_ne!(pid, std::process::id());
    }
}

#[test]
fn a_crash_in_a_downstream_task_is_contained() {
    let pool = ProcessPool::builder().workers(1).build().expect("build a pool");
    let crashed = pool.spawn((), |()| -> u8 { std::process::abort() }).join();
    assert!(crashed.unwrap_err().is_worker_lost());
    assert_eq!(pool.spawn(2u8, |x: u8| x * 21).join(), Ok(42));
}
