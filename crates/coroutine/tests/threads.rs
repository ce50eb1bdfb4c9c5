//! Loop threads: how many, and their names.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use polyexec_core::Executor;
use polyexec_coroutine::EventLoop;

#[test]
fn each_loop_thread_runs_tasks_and_carries_its_name() {
    const THREADS: usize = 3;
    let event_loop = EventLoop::builder()
        .threads(THREADS)
        .thread_name("poly-test")
        .build()
        .expect("build an event loop");
    assert_eq!(event_loop.workers(), THREADS);
    // Each task blocks its thread until all of them have started, so they must be on
    // different threads.
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            event_loop.spawn_capturing(async move {
                barrier.wait();
                std::thread::current().name().map(str::to_owned)
            })
        })
        .collect();
    let names: BTreeSet<String> = handles
        .into_iter()
        .map(|h| h.join().expect("task").expect("named thread"))
        .collect();
    let expected: BTreeSet<String> = (0..THREADS).map(|i| format!("poly-test-{i}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn one_thread_by_default() {
    let event_loop = EventLoop::new().expect("build an event loop");
    assert_eq!(event_loop.workers(), 1);
    let name =
        event_loop.spawn_capturing(async { std::thread::current().name().map(str::to_owned) });
    assert_eq!(name.join(), Ok(Some("polyexec-loop-0".to_string())));
}
