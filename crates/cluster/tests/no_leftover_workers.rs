//! A host's worker processes (which run its blocking tasks) end with their host, however the
//! pool stops: gracefully (the host stops its process pool and its workers exit before the host
//! does), immediately (the host is killed, and its workers die with it), or by drop. They are
//! not the pool's children, so the test follows one through a pidfd.

polyexec_cluster::test_hook!();

mod common;

use std::os::fd::OwnedFd;

use polyexec_core::Executor;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

/// Whether the process behind `pidfd` ended within `seconds` (a pidfd reads as ready then).
fn ended_within(pidfd: &OwnedFd, seconds: i64) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: seconds,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&timeout)).expect("poll a pidfd") == 1
}

#[test]
fn a_hosts_worker_processes_end_with_its_pool() {
    common::url();
    for how in ["shutdown", "shutdown_now", "drop"] {
        let pool = common::pool(1);
        let host = pool.local_worker_pids();
        let (worker, parent) = pool
            .spawn((), |()| {
                (std::process::id(), std::os::unix::process::parent_id())
            })
            .join()
            .expect("a task ran");
        assert_eq!(
            vec![parent],
            host,
            "{how}: the task ran in a worker process of the host"
        );
        let pidfd = pidfd_open(
            Pid::from_raw(worker as i32).expect("a valid pid"),
            PidfdFlags::empty(),
        )
        .expect("open a pidfd on the host's worker process");
        assert!(!ended_within(&pidfd, 0), "{how}: the worker process runs");
        match how {
            "shutdown" => pool.shutdown(),
            "shutdown_now" => pool.shutdown_now(),
            _ => {}
        }
        drop(pool);
        // Gracefully, the host stops its process pool (which reaps its workers) before it
        // exits. Killed (or, on a loaded machine, past its stop grace), its workers get the
        // parent-death signal as it dies and may still be on their way out when the pool has
        // reaped the host: hence a wait, bounded.
        assert!(
            ended_within(&pidfd, 120),
            "{how}: the host's worker process outlived it"
        );
    }
}
