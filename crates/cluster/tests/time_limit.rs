//! A task over its time limit resolves `TimedOut`, and its host stops the work: a blocking
//! task's worker process is ended (and replaced), an async task's future is dropped. The limit
//! travels with the task, so the host stops it even when nobody watches the handle (a pool
//! whose handle is never polled never sends a cancel notice).

polyexec_cluster::test_hook!();

mod common;
mod reporter;

use std::time::Duration;

use polyexec_core::{Executor, SpawnOptions, TaskError};
use reporter::{HANG, Reports, report_and_block, report_and_pend};

/// Long enough for a warm host to start a task many times over (so the task reports before its
/// limit passes), short enough for a quick test.
const LIMIT: Duration = Duration::from_secs(2);

#[test]
fn a_blocking_task_over_the_pools_limit_times_out_and_its_process_is_ended() {
    let pool = common::builder(1)
        .time_limit(LIMIT)
        .build()
        .expect("build a cluster pool");
    let host = pool.local_worker_pids();
    // Warm: the host and its worker process are up.
    assert_eq!(pool.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
    let reports = Reports::listen();

    let stuck = pool.spawn(reports.port, report_and_block);
    let started = reports.next();
    assert_eq!(
        host,
        vec![started.parent],
        "it ran in a worker process of the host"
    );
    assert_eq!(stuck.join(), Err(TaskError::TimedOut(LIMIT)));
    started.wait_until_stopped();
    assert_eq!(pool.local_worker_pids(), host, "the host itself lives on");
}

#[test]
fn the_host_ends_a_blocking_task_at_its_limit_even_if_nobody_waits_for_it() {
    let pool = common::pool(1);
    let host = pool.local_worker_pids();
    assert_eq!(pool.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
    let reports = Reports::listen();

    let limited = SpawnOptions::new().timeout(LIMIT);
    pool.spawn_with(reports.port, report_and_block, limited)
        .detach();
    let started = reports.next();
    let stuck_process = started.pid;
    // Only the host's own count of the limit can stop it: the detached handle never fires.
    started.wait_until_stopped();

    // One host with one slot: the next task runs only because the stuck one was stopped, and
    // in a new worker process of the same host.
    let next = pool
        .spawn(reports.port, report_and_block)
        .with_deadline(HANG);
    let report = reports.next();
    assert_ne!(report.pid, stuck_process);
    assert_eq!(vec![report.parent], host);
    drop(report); // lets the task return
    assert!(next.join().is_ok());
    assert_eq!(pool.local_worker_pids(), host);
}

#[test]
fn an_async_task_over_its_limit_is_dropped_on_its_host() {
    let pool = common::pool(1);
    assert_eq!(pool.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
    let reports = Reports::listen();

    let limited = SpawnOptions::new().timeout(LIMIT);
    let stuck = pool.spawn_async_with(reports.port, report_and_pend, limited);
    let started = reports.next();
    assert_eq!(
        pool.local_worker_pids(),
        vec![started.pid],
        "async tasks run on the host"
    );
    assert_eq!(stuck.join(), Err(TaskError::TimedOut(LIMIT)));
    started.wait_until_stopped();
}
