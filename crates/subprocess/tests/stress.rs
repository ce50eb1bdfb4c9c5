//! Exactly-once under stress, beyond the conformance suite's random mix: tasks that crash their
//! worker (`WorkerLost`), async and blocking tasks over the pool's time limit (`TimedOut`; a
//! blocking one has its worker killed), and tasks cancelled while they may be running (a running
//! blocking one has its worker killed). Async tasks running beside a task whose worker is lost
//! are lost with it; blocking tasks never are. Cases: `POLYEXEC_STRESS_CASES`.

polyexec_subprocess::test_hook!();

use std::time::Duration;

use polyexec_core::conformance::{StressOptions, exactly_once_stress};
use polyexec_subprocess::ProcessPool;

/// Far above what any other task of the mix takes (a few milliseconds): only the tasks made to
/// run for an hour reach it.
const LIMIT: Duration = Duration::from_millis(300);

#[test]
fn exactly_once_with_crashes_timeouts_and_cancellation_of_running_tasks() {
    exactly_once_stress(
        &|| {
            ProcessPool::builder()
                .workers(2)
                .task_timeout(LIMIT)
                .env("RUST_BACKTRACE", "0")
                .build()
                .expect("build a pool")
        },
        StressOptions {
            cancel_running: true,
            timeout: Some(LIMIT),
            blocking_timeout: true,
            crashes: true,
            shared_fate: true,
        },
    );
}
