//! Leaks after 1,000 worker crashes: no zombie or stray process, the same open descriptors, the
//! same threads, no temp file; and while it runs, no worker holds a file or a named socket (so
//! there is nothing to leave behind by construction).
//!
//! One test in this file, so no other test's threads or processes are counted. The time for the
//! 1,000 crashes is printed (`--nocapture`) for docs/reliability.md.

polyexec_subprocess::test_hook!();

mod common;

use std::time::Instant;

use common::Holdings;
use polyexec_core::{Executor, TaskError, WorkerExit};
use rustix::process::Signal;

const CRASHES: u32 = 1_000;
const WORKERS: usize = 4;

/// Crashes its worker in one of four ways.
fn crash(i: u32) -> u32 {
    match i % 4 {
        0 => std::process::abort(),
        1 => std::process::exit(3),
        2 => {
            let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
            unreachable!("SIGKILL cannot be caught")
        }
        _ => loop {
            let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::SEGV);
        },
    }
}

fn expected(i: u32) -> TaskError {
    TaskError::WorkerLost(match i % 4 {
        0 => WorkerExit::Signal(6),
        1 => WorkerExit::Code(3),
        2 => WorkerExit::Signal(9),
        _ => WorkerExit::Signal(11),
    })
}

#[test]
fn a_thousand_crashes_leave_nothing_behind() {
    // Warm up what the process keeps for good (the async-io reactor, thread-locals, ...).
    drop(common::quiet_pool(1));
    let before = Holdings::now();
    assert!(before.children.is_empty());

    let pool = common::quiet_pool(WORKERS);
    for &pid in &pool.worker_pids() {
        common::assert_worker_holds_no_names(pid);
    }
    let started = Instant::now();
    // All at once: each crash kills a worker; the tasks queued behind it run on the replacement
    // (crashes of workers that ran a task never count toward the crash-loop limit).
    let handles: Vec<_> = (0..CRASHES).map(|i| (i, pool.spawn(i, crash))).collect();
    // Healthy tasks in between, to show they still run.
    let healthy = common::Bystanders::submit(&pool, 0, 100);
    for (i, handle) in handles {
        assert_eq!(common::join(handle), Err(expected(i)), "crash {i}");
    }
    let elapsed = started.elapsed();
    healthy.check();
    eprintln!(
        "{CRASHES} crashes on {WORKERS} workers in {elapsed:.2?} ({:.0} crashes/s)",
        f64::from(CRASHES) / elapsed.as_secs_f64()
    );
    // The replacements hold no file or named socket either.
    for &pid in &pool.worker_pids() {
        common::assert_worker_holds_no_names(pid);
    }
    common::assert_serves(&pool);
    drop(pool);

    let after = Holdings::assert_back_to(&before, "after 1,000 crashes");
    eprintln!(
        "after: {} children, {} open descriptors (before: {}), {} threads (before: {}), {} temp entries",
        after.children.len(),
        after.fds.len(),
        before.fds.len(),
        after.threads,
        before.threads,
        after.temp_entries.len()
    );
}
