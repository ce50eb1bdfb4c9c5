//! A panic's backtrace crosses the process boundary: with `RUST_BACKTRACE=1` in the worker,
//! `TaskError::panic_backtrace` holds the worker's stack; with `RUST_BACKTRACE=0`, nothing.

polyexec_subprocess::test_hook!();

use polyexec_core::Executor;
use polyexec_subprocess::ProcessPool;

/// Named so that its frame can be recognized in the backtrace.
#[inline(never)]
fn explode_in_worker(x: u8) -> u8 {
    if x > 0 {
        panic!("exploded with {x}");
    }
    x
}

fn pool(backtrace: &str) -> ProcessPool {
    ProcessPool::builder()
        .workers(1)
        .env("RUST_BACKTRACE", backtrace)
        .build()
        .expect("build a pool")
}

#[test]
fn the_worker_backtrace_reaches_the_parent() {
    let pool = pool("1");
    let err = pool.spawn(7u8, explode_in_worker).join().unwrap_err();
    assert_eq!(err.panic_message(), Some("exploded with 7"));
    let backtrace = err.panic_backtrace().expect("a backtrace was asked for");
    assert!(
        backtrace.contains("explode_in_worker"),
        "the worker's frames are in it:\n{backtrace}"
    );
    // The worker serves on.
    assert_eq!(pool.spawn(0u8, explode_in_worker).join(), Ok(0));
}

#[test]
fn no_backtrace_unless_asked() {
    let pool = pool("0");
    let err = pool.spawn(7u8, explode_in_worker).join().unwrap_err();
    assert_eq!(err.panic_message(), Some("exploded with 7"));
    assert_eq!(err.panic_backtrace(), None);
}
