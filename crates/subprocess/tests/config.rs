//! Builder settings: initializer, environment, max tasks per worker, zero workers, and the
//! crash-loop limit.

polyexec_subprocess::test_hook!();

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use polyexec_core::{BuildError, Executor, TaskError};
use polyexec_subprocess::ProcessPool;

static INITIALIZED: AtomicU32 = AtomicU32::new(0);

fn initialize() {
    // Refuses to start while the file named in the environment exists.
    if let Some(path) = std::env::var_os("TEST_INIT_FAIL_IF") {
        assert!(
            !std::path::Path::new(&path).exists(),
            "initializer told to fail"
        );
    }
    INITIALIZED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn initializer_runs_in_every_worker_including_replacements() {
    let pool = ProcessPool::builder()
        .workers(1)
        .initializer(initialize)
        .build()
        .unwrap();
    let count = |()| INITIALIZED.load(Ordering::SeqCst);
    assert_eq!(pool.spawn((), count).join(), Ok(1));
    let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
    assert!(crash.join().unwrap_err().is_worker_lost());
    assert_eq!(
        pool.spawn((), count).join(),
        Ok(1),
        "replacement initialized"
    );
    // Closures that capture nothing work too.
    let pool = ProcessPool::builder()
        .workers(1)
        .initializer(|| {
            INITIALIZED.store(100, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(pool.spawn((), count).join(), Ok(100));
}

#[test]
fn failing_initializer_fails_the_build() {
    let (_dir, path) = polyexec_core::conformance::scratch_file("fail");
    std::fs::write(&path, b"").unwrap();
    let err = ProcessPool::builder()
        .workers(2)
        .env("TEST_INIT_FAIL_IF", &path)
        .initializer(initialize)
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("initializer told to fail"),
        "{err}"
    );
}

#[test]
fn crash_loop_stops_the_pool_with_a_clear_error() {
    let (_dir, path) = polyexec_core::conformance::scratch_file("fail");
    let pool = ProcessPool::builder()
        .workers(1)
        .env("TEST_INIT_FAIL_IF", &path)
        .initializer(initialize)
        .crash_loop_limit(3)
        .build()
        .unwrap();
    // From now on every replacement refuses to start.
    std::fs::write(&path, b"").unwrap();
    let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
    assert!(crash.join().unwrap_err().is_worker_lost());
    let waiting = pool.spawn(1u8, |x: u8| x);
    let err = waiting.join().unwrap_err();
    let TaskError::Transport(message) = &err else {
        panic!("unexpected: {err:?}");
    };
    assert!(message.contains("stopped taking tasks"), "{message}");
    assert!(message.contains("initializer told to fail"), "{message}");
    // New submissions are refused at once with the same reason.
    let refused = pool.spawn(1u8, |x: u8| x);
    assert!(refused.is_finished());
    assert_eq!(refused.join(), Err(err));
}

#[test]
fn environment_reaches_the_workers() {
    let pool = ProcessPool::builder()
        .workers(1)
        .env("POLYEXEC_TEST_GREETING", "hello")
        .build()
        .unwrap();
    let value = pool
        .spawn((), |()| std::env::var("POLYEXEC_TEST_GREETING").ok())
        .join();
    assert_eq!(value, Ok(Some("hello".to_owned())));
}

#[test]
fn max_tasks_per_worker_replaces_workers() {
    let pool = ProcessPool::builder()
        .workers(1)
        .max_tasks_per_worker(3)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..10)
        .map(|_| pool.spawn((), |()| std::process::id()).join().unwrap())
        .collect();
    for chunk in pids.chunks(3) {
        assert!(chunk.iter().all(|&p| p == chunk[0]), "{pids:?}");
    }
    let mut distinct = pids.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{pids:?}");
}

#[test]
fn zero_workers_is_invalid() {
    let err = ProcessPool::builder().workers(0).build().unwrap_err();
    assert!(matches!(err, BuildError::InvalidConfig(_)), "{err:?}");
}
