//! The parent-side hooks see every worker process start and end (a crash and its replacement
//! included), and `initializer_with` hands each worker its argument.

polyexec_subprocess::test_hook!();

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use polyexec_core::{BuildError, Executor, TaskError, WorkerExit};
use polyexec_subprocess::ProcessPool;

static STARTS: Mutex<Vec<(usize, u32)>> = Mutex::new(Vec::new());
static STOPS: Mutex<Vec<(usize, u32, WorkerExit)>> = Mutex::new(Vec::new());

/// Set in each worker by its initializer.
static GREETING: Mutex<String> = Mutex::new(String::new());
static FACTOR: AtomicU64 = AtomicU64::new(0);

fn setup((greeting, factor): (String, u64)) {
    *GREETING.lock().unwrap() = greeting;
    FACTOR.store(factor, Ordering::SeqCst);
}

#[test]
fn hooks_see_a_crash_and_its_replacement() {
    let pool = ProcessPool::builder()
        .workers(1)
        .env("RUST_BACKTRACE", "0")
        .initializer_with(("hello".to_string(), 3u64), setup)
        .on_worker_start(|index, pid| STARTS.lock().unwrap().push((index, pid)))
        .on_worker_stop(|index, pid, exit| STOPS.lock().unwrap().push((index, pid, exit)))
        .build()
        .unwrap();
    let first = pool.worker_pids()[0];
    assert_eq!(*STARTS.lock().unwrap(), [(0, first)]);
    let greeted = pool.spawn(2u64, |x: u64| {
        (
            GREETING.lock().unwrap().clone(),
            x * FACTOR.load(Ordering::SeqCst),
        )
    });
    assert_eq!(greeted.join(), Ok(("hello".to_string(), 6)));

    let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
    assert!(matches!(crash.join(), Err(TaskError::WorkerLost(_))));
    // Served by the replacement, which was initialized with the same argument.
    assert_eq!(
        pool.spawn(1u64, |x: u64| x * FACTOR.load(Ordering::SeqCst))
            .join(),
        Ok(3)
    );
    let second = pool.worker_pids()[0];
    assert_ne!(first, second);
    assert_eq!(*STARTS.lock().unwrap(), [(0, first), (0, second)]);
    assert_eq!(
        *STOPS.lock().unwrap(),
        [(0, first, WorkerExit::Signal(6))],
        "the stop hook ran before the replacement was asked for"
    );
    pool.shutdown();
    let stops = STOPS.lock().unwrap().clone();
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert_eq!((stops[1].0, stops[1].1), (0, second), "{stops:?}");
}

#[test]
fn an_argument_too_large_for_the_handshake_is_refused() {
    fn ignore(_: Vec<u8>) {}
    let err = ProcessPool::builder()
        .workers(1)
        .initializer_with(vec![0u8; 1 << 20], ignore)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidConfig(_)), "{err:?}");
}
