//! `on_worker_start` and `on_worker_stop` run once on each worker thread, with its index.

use std::sync::Mutex;

use polyexec_core::Executor;
use polyexec_thread::ThreadPool;

static EVENTS: Mutex<Vec<(&str, usize, String)>> = Mutex::new(Vec::new());

fn record(what: &'static str, index: usize) {
    let thread = std::thread::current().name().unwrap_or("").to_owned();
    EVENTS.lock().unwrap().push((what, index, thread));
}

#[test]
fn hooks_run_on_each_worker_thread_once() {
    let pool = ThreadPool::builder()
        .workers(3)
        .thread_name("hooked")
        .on_worker_start(|index| record("start", index))
        .on_worker_stop(|index| record("stop", index))
        .build()
        .unwrap();
    assert_eq!(pool.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
    pool.shutdown();
    let mut events = EVENTS.lock().unwrap().clone();
    events.sort();
    let expected: Vec<_> = ["start", "stop"]
        .into_iter()
        .flat_map(|what| (0..3).map(move |i| (what, i, format!("hooked-{i}"))))
        .collect();
    assert_eq!(events, expected);
}
