//! A blocking task that crashes the process running it (abort, a fatal signal, `exit`) resolves
//! `WorkerLost` with the signal or exit code on its first delivery: it ran in a worker process
//! of its host, which replies with the loss and lives on. No redelivery is involved (a lost host
//! would give `WorkerLost(Deliveries(n))`, after `ack_wait`, instead).

polyexec_cluster::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError, WorkerExit};

#[test]
fn a_crash_inside_a_host_is_worker_lost_at_once_and_the_host_lives_on() {
    // One host of one slot: every task below runs on it.
    let pool = common::pool(1);
    let hosts = pool.local_worker_pids();
    assert_eq!(hosts.len(), 1);

    let aborted = pool.spawn((), |()| -> u8 { std::process::abort() });
    assert_eq!(
        aborted.join(),
        Err(TaskError::WorkerLost(WorkerExit::Signal(6)))
    );
    assert_eq!(pool.spawn(2u8, |x: u8| x + 1).join(), Ok(3));

    let segfault = pool.spawn((), |()| -> u8 {
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::SEGV);
        // Its default action ends the process, maybe on another of its threads: wait for
        // that without spinning.
        let (_keep, never) = std::sync::mpsc::channel::<()>();
        let _ = never.recv();
        0
    });
    let err = segfault.join().unwrap_err();
    assert_eq!(err, TaskError::WorkerLost(WorkerExit::Signal(11)));
    assert!(err.to_string().contains("SIGSEGV"), "{err}");

    let exited = pool.spawn((), |()| -> u8 { std::process::exit(3) });
    assert_eq!(
        exited.join(),
        Err(TaskError::WorkerLost(WorkerExit::Code(3)))
    );

    // The host survived all three: same process, and it still runs tasks.
    assert_eq!(pool.spawn(20u64, |x: u64| x * 2).join(), Ok(40));
    assert_eq!(pool.local_worker_pids(), hosts);
    let metrics = pool.metrics();
    assert_eq!(metrics.worker_lost(), 3, "{metrics:?}");
}
