//! Exactly-once under stress, beyond the conformance suite's random mix: tasks cancelled while
//! they may be running (a running thread-pool task cannot be stopped: it runs on, and its handle
//! says `Cancelled`). Cases: `POLYEXEC_STRESS_CASES`.

use polyexec_core::conformance::{StressOptions, exactly_once_stress};
use polyexec_thread::ThreadPool;

#[test]
fn exactly_once_with_cancellation_of_running_tasks() {
    for workers in [1, 3] {
        exactly_once_stress(
            &|| {
                ThreadPool::builder()
                    .workers(workers)
                    .build()
                    .expect("build a pool")
            },
            StressOptions {
                cancel_running: true,
                ..StressOptions::default()
            },
        );
    }
}
