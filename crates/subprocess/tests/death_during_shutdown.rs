//! Fault injection: a worker dies after a shutdown has begun. Graceful: the shutdown waits for
//! the task that died (it gets `WorkerLost`), the tasks its worker held but had not started run
//! on a replacement, every other task finishes, and the shutdown returns. Immediate: the death
//! races the shutdown's own kill; every handle resolves once (`ShutDown`, `WorkerLost`, or its
//! value if it finished first) and the shutdown returns. Either way no process is left behind.

polyexec_subprocess::test_hook!();

mod common;

use std::sync::{Arc, Barrier, Mutex, MutexGuard};

use polyexec_core::conformance::{Gate, gated, scratch_file};
use polyexec_core::{Executor, TaskError, TaskHandle, WorkerExit};
use polyexec_subprocess::ProcessPool;
use rustix::process::{Pid, Signal};

/// Reports its worker's pid in a file, then blocks on the gate; `abort` once released if told.
fn report_and_hold((path, port, abort): (String, u16, bool)) -> u16 {
    std::fs::write(&path, std::process::id().to_string()).unwrap();
    gated(port);
    if abort {
        std::process::abort();
    }
    port
}

/// Holds every worker of `pool` with a gated task; returns their handles and pids, in order.
fn hold_every_worker(
    pool: &ProcessPool,
    gate: &mut Gate,
    abort: bool,
) -> (tempfile::TempDir, Vec<TaskHandle<u16>>, Vec<u32>) {
    let (dir, _) = scratch_file("unused");
    let paths: Vec<String> = (0..pool.workers())
        .map(|i| {
            dir.path()
                .join(format!("pid{i}"))
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let handles: Vec<_> = paths
        .iter()
        .map(|path| pool.spawn((path.clone(), gate.port(), abort), report_and_hold))
        .collect();
    gate.wait_started(handles.len());
    let pids = paths
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap().parse().unwrap())
        .collect();
    (dir, handles, pids)
}

/// Waits until a graceful shutdown running on another thread has begun: a new task is then
/// refused at once. Probes accepted before that are ordinary tasks; they are returned.
fn wait_until_shutdown_began(pool: &ProcessPool) -> Vec<TaskHandle<u8>> {
    let mut accepted = Vec::new();
    common::wait_for("the shutdown to begin", || {
        let mut probe = pool.spawn(7u8, |x: u8| x);
        if !probe.is_finished() {
            accepted.push(probe);
            return false;
        }
        match probe.join_timeout(std::time::Duration::ZERO) {
            Some(Err(TaskError::ShutDown)) => true,
            other => {
                assert_eq!(other, Some(Ok(7)));
                false
            }
        }
    });
    accepted
}

/// The tests of this file count this process's children: one at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill(pid: u32) {
    rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
}

#[test]
fn worker_killed_during_graceful_shutdown() {
    let _serial = one_at_a_time();
    let pool = Arc::new(common::pool(2));
    let mut gate = Gate::new();
    let (_dir, held, pids) = hold_every_worker(&pool, &mut gate, false);
    let queued = common::Bystanders::submit(&pool, 0, 40);
    let shutdown = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || pool.shutdown())
    };
    let probes = wait_until_shutdown_began(&pool);
    kill(pids[0]);
    let mut held = held.into_iter();
    assert_eq!(
        common::join(held.next().unwrap()),
        Err(TaskError::WorkerLost(WorkerExit::Signal(9)))
    );
    gate.release();
    assert_eq!(common::join(held.next().unwrap()), Ok(gate.port()));
    shutdown.join().expect("the shutdown panicked");
    queued.check();
    for probe in probes {
        assert_eq!(common::join(probe), Ok(7));
    }
    drop(pool);
    assert_eq!(
        common::children(),
        Vec::<u32>::new(),
        "a worker was left behind"
    );
}

#[test]
fn workers_crash_on_their_own_during_graceful_shutdown() {
    let _serial = one_at_a_time();
    let pool = Arc::new(common::pool(2));
    let mut gate = Gate::new();
    // Both held tasks abort once released, which happens only after the shutdown began.
    let (_dir, held, _) = hold_every_worker(&pool, &mut gate, true);
    let queued = common::Bystanders::submit(&pool, 0, 40);
    let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
    let shutdown = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || pool.shutdown())
    };
    let probes = wait_until_shutdown_began(&pool);
    gate.release();
    for handle in held {
        assert_eq!(
            common::join(handle),
            Err(TaskError::WorkerLost(WorkerExit::Signal(6)))
        );
    }
    assert_eq!(
        common::join(crash),
        Err(TaskError::WorkerLost(WorkerExit::Signal(6)))
    );
    shutdown.join().expect("the shutdown panicked");
    queued.check();
    for probe in probes {
        assert_eq!(common::join(probe), Ok(7));
    }
    drop(pool);
    assert_eq!(
        common::children(),
        Vec::<u32>::new(),
        "a worker was left behind"
    );
}

#[test]
fn worker_killed_while_an_immediate_shutdown_runs() {
    let _serial = one_at_a_time();
    for round in 0..20 {
        let pool = Arc::new(common::pool(2));
        let mut gate = Gate::new();
        let (_dir, held, pids) = hold_every_worker(&pool, &mut gate, false);
        let queued: Vec<_> = (0..40u64).map(|x| pool.spawn(x, |x: u64| x + 1)).collect();
        // Both start together; which one reaches the worker first varies from round to round.
        let barrier = Arc::new(Barrier::new(2));
        let shutdown = {
            let pool = Arc::clone(&pool);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                pool.shutdown_now();
            })
        };
        barrier.wait();
        // The shutdown may have killed and reaped it already (ESRCH): that is the other order.
        let _ = rustix::process::kill_process(
            Pid::from_raw(pids[round % 2] as i32).unwrap(),
            Signal::KILL,
        );
        for handle in held {
            match common::join(handle) {
                Err(TaskError::ShutDown) | Err(TaskError::WorkerLost(WorkerExit::Signal(9))) => {}
                other => panic!("round {round}: held task: {other:?}"),
            }
        }
        for (x, handle) in queued.into_iter().enumerate() {
            match common::join(handle) {
                // A replacement may have started and run it before the shutdown dropped it.
                Ok(v) => assert_eq!(v, x as u64 + 1, "round {round}"),
                Err(TaskError::ShutDown) => {}
                other => panic!("round {round}: queued task: {other:?}"),
            }
        }
        shutdown.join().expect("shutdown_now panicked");
        assert_eq!(
            common::join(pool.spawn(1u8, |x: u8| x)),
            Err(TaskError::ShutDown)
        );
        drop(gate);
        drop(pool);
        assert_eq!(
            common::children(),
            Vec::<u32>::new(),
            "round {round}: a worker was left behind"
        );
    }
}
