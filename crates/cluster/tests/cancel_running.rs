//! Cancelling a blocking task that runs on a host: the handle resolves `Cancelled` at once, the
//! host ends the worker process running it, and the slot is free again for the next task.

polyexec_cluster::test_hook!();

mod common;
mod reporter;

use polyexec_core::{Executor, TaskError};
use reporter::{HANG, Reports, report_and_block};

#[test]
fn cancelling_a_running_blocking_task_stops_it_on_its_host() {
    // One host with one slot: while the stuck task holds it, nothing else runs there.
    let pool = common::pool(1);
    let host = pool.local_worker_pids();
    let reports = Reports::listen();

    let stuck = pool.spawn(reports.port, report_and_block);
    let started = reports.next();
    assert_eq!(
        host,
        vec![started.parent],
        "it ran in a worker process of the host"
    );
    assert!(stuck.cancel());
    assert_eq!(stuck.join(), Err(TaskError::Cancelled));
    started.wait_until_stopped();

    let next = pool.spawn(3u8, |x: u8| x * 2).with_deadline(HANG);
    assert_eq!(next.join(), Ok(6));
    assert_eq!(pool.local_worker_pids(), host, "the host itself lives on");
    let metrics = pool.metrics();
    assert_eq!(
        (metrics.cancelled(), metrics.succeeded()),
        (1, 1),
        "{metrics:?}"
    );
}
