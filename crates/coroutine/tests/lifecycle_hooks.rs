//! `on_worker_start` and `on_worker_stop` run once on each loop thread, with its index; a start
//! hook that panics fails `build()`.

use std::sync::Mutex;

use polyexec_core::{BuildError, Executor};
use polyexec_coroutine::EventLoop;

static EVENTS: Mutex<Vec<(&str, usize, String)>> = Mutex::new(Vec::new());

fn record(what: &'static str, index: usize) {
    let thread = std::thread::current().name().unwrap_or("").to_owned();
    EVENTS.lock().unwrap().push((what, index, thread));
}

#[test]
fn hooks_run_on_each_loop_thread_once() {
    let event_loop = EventLoop::builder()
        .threads(2)
        .thread_name("hooked")
        .on_worker_start(|index| record("start", index))
        .on_worker_stop(|index| record("stop", index))
        .build()
        .unwrap();
    assert_eq!(event_loop.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
    event_loop.shutdown();
    let mut events = EVENTS.lock().unwrap().clone();
    events.sort();
    let expected: Vec<_> = ["start", "stop"]
        .into_iter()
        .flat_map(|what| (0..2).map(move |i| (what, i, format!("hooked-{i}"))))
        .collect();
    assert_eq!(events, expected);
}

#[test]
fn a_panicking_start_hook_fails_build() {
    let err = EventLoop::builder()
        .threads(2)
        .on_worker_start(|index| assert!(index != 1, "no loop thread {index}"))
        .build()
        .unwrap_err();
    match err {
        BuildError::Start(message) => assert!(message.contains("no loop thread 1"), "{message}"),
        other => panic!("unexpected error: {other:?}"),
    }
}
