//! No zombies, no leaked descriptors: after many worker crashes and after repeated pool creation
//! and shutdown, the children and open descriptors of this process are what they were.
//!
//! One test in this file, so no other test's pool is counted.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError};

#[test]
fn crashes_and_shutdowns_leave_nothing_behind() {
    // Warm up what the process keeps for good (the async-io reactor, thread-locals, ...).
    drop(common::pool(1));
    let fds_before = common::open_fds();
    assert!(common::children().is_empty());

    for round in 0..3 {
        let pool = common::pool(2);
        for i in 0..20 {
            let crash = pool.spawn(i, |i: u32| -> u32 {
                if i % 2 == 0 {
                    std::process::abort()
                } else {
                    std::process::exit(1)
                }
            });
            assert!(crash.join().unwrap_err().is_worker_lost());
        }
        assert_eq!(pool.spawn(1u8, |x: u8| x).join(), Ok(1));
        if round == 1 {
            pool.shutdown_now();
        }
        drop(pool);
        assert_eq!(common::children(), Vec::<u32>::new(), "round {round}");
    }
    // A pool shut down while tasks are queued and running.
    let pool = common::pool(2);
    let handles = pool.spawn_all(0..200u64, |x: u64| x);
    pool.shutdown_now();
    for h in handles {
        match h.join() {
            Ok(_) | Err(TaskError::ShutDown) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    drop(pool);
    assert!(common::children().is_empty());
    assert_eq!(common::open_fds(), fds_before);
}
