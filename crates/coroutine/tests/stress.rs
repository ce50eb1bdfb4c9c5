//! Exactly-once under stress, beyond the conformance suite's random mix: async tasks over the
//! loop's per-task time limit (`TimedOut`) and tasks cancelled while they may be running, on
//! one loop thread and on several. Cases: `POLYEXEC_STRESS_CASES`.

use std::time::Duration;

use polyexec_core::conformance::{StressOptions, exactly_once_stress};
use polyexec_coroutine::EventLoop;

/// Far above what any other task of the mix takes (a few milliseconds): only the tasks made to
/// wait an hour reach it.
const LIMIT: Duration = Duration::from_millis(300);

#[test]
fn exactly_once_with_timeouts_and_cancellation_of_running_tasks() {
    for threads in [1, 2] {
        exactly_once_stress(
            &|| {
                EventLoop::builder()
                    .threads(threads)
                    .task_timeout(LIMIT)
                    .build()
                    .expect("build a loop")
            },
            StressOptions {
                cancel_running: true,
                timeout: Some(LIMIT),
                ..StressOptions::default()
            },
        );
    }
}
