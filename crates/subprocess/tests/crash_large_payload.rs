//! Fault injection: a worker dies while a large payload (8 MiB, far more than a socket buffer
//! holds) is half-way through the channel, in either direction. Nothing hangs: a writer blocked
//! on the dead worker gets an error, a reader holding half a frame sees the end of the stream and
//! drops it. The task whose worker died gets `WorkerLost`; a task whose input was still being
//! written had not started, so it runs on the replacement and succeeds; every other task is
//! unaffected.
//!
//! These are the socket's large frames: shared memory is turned off here
//! (`tests/crash_shared_payload.rs` covers the regions).
//!
//! "Half-way" is made certain, not likely: the test waits until the sending thread is blocked in
//! `sendmsg`/`sendto` (read from `/proc/.../syscall`) before it kills the worker.

polyexec_subprocess::test_hook!();

mod common;

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use polyexec_core::conformance::{Gate, gated};
use polyexec_core::{Executor, TaskError, WorkerExit};
use polyexec_subprocess::ProcessPool;
use rustix::process::{Pid, Signal};
use serde_bytes::ByteBuf;

const BIG: usize = 8 << 20;

#[test]
fn worker_killed_while_a_large_input_is_being_written_to_it() {
    // With a time limit (one that never fires here) every task announces its start, so the
    // parent knows the blocked task below is running and not merely sent.
    let pool = ProcessPool::builder()
        .workers(1)
        .task_timeout(Duration::from_secs(3600))
        .shared_memory(false)
        .build()
        .expect("build a pool");
    let pid = pool.worker_pids()[0];
    let mut gate = Gate::new();
    // An async task that blocks its worker's thread (a bug in user code, but a possible one):
    // the parent sees a worker running no blocking task, so it sends it the large frame, which
    // the worker never reads.
    let stuck = pool.spawn_async(gate.port(), |port: u16| async move { gated(port) });
    gate.wait_started(1);
    let (tid_tx, tid_rx) = mpsc::channel();
    let (big, behind) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            tid_tx.send(common::current_tid()).unwrap();
            // This thread writes the frame itself, and blocks once the socket buffer is full.
            pool.spawn(ByteBuf::from(vec![7u8; BIG]), |bytes: ByteBuf| {
                bytes.iter().map(|&b| u64::from(b)).sum::<u64>()
            })
        });
        let tid = tid_rx.recv().unwrap();
        common::wait_for("the large input to be half-way through the channel", || {
            common::blocked_sending(std::process::id(), tid)
        });
        rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
        let big = writer.join().expect("the writer panicked");
        (big, common::Bystanders::submit(&pool, 0, 20))
    });
    assert_eq!(
        common::join(stuck),
        Err(TaskError::WorkerLost(WorkerExit::Signal(9)))
    );
    // Never started: sent again, whole, to the replacement.
    assert_eq!(common::join(big), Ok(7 * BIG as u64));
    behind.check();
    common::assert_serves(&pool);
    assert!(
        !common::process_exists(pid),
        "the killed worker was not reaped"
    );
}

/// A waker whose `wake` blocks until the test lets it return. The pool's reader thread for a
/// worker wakes the handles it resolves, so registering this one with a handle holds that
/// thread once the handle's result comes in: nothing the worker writes meanwhile is read.
struct StallingWaker {
    stalled: mpsc::Sender<()>,
    resume: std::sync::Mutex<mpsc::Receiver<()>>,
}

impl std::task::Wake for StallingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        let _ = self.stalled.send(());
        let _ = self.resume.lock().unwrap().recv_timeout(common::HANG);
    }
}

#[test]
fn worker_dies_while_writing_a_large_output() {
    let pool = ProcessPool::builder()
        .workers(1)
        .shared_memory(false)
        .build()
        .expect("build a pool");
    let pid = pool.worker_pids()[0];
    let mut gate = Gate::new();
    // Holds the worker until the waker below is registered, so `held` is certainly pending then.
    let first = pool.spawn(gate.port(), gated);
    let mut held = pool.spawn(3u8, |x: u8| x);
    let big = pool.spawn(BIG, |len: usize| {
        // A watcher aborts this worker once its thread is blocked writing the output.
        let (pid, tid) = (std::process::id(), common::current_tid());
        std::thread::spawn(move || {
            common::wait_for("the output to be half-way through the channel", || {
                common::blocked_sending(pid, tid)
            });
            std::process::abort();
        });
        ByteBuf::from(vec![9u8; len])
    });
    let behind = common::Bystanders::submit(&pool, 0, 20);
    gate.wait_started(1);
    let (stalled_tx, stalled) = mpsc::channel();
    let (resume, resume_rx) = mpsc::channel();
    let waker = std::task::Waker::from(std::sync::Arc::new(StallingWaker {
        stalled: stalled_tx,
        resume: std::sync::Mutex::new(resume_rx),
    }));
    let poll = std::pin::Pin::new(&mut held).poll(&mut std::task::Context::from_waker(&waker));
    assert!(poll.is_pending(), "its worker is still running `first`");
    gate.release();
    // The reader thread is now stuck waking `held`: the large output fills the channel and the
    // worker blocks writing it, until its watcher aborts it.
    stalled
        .recv_timeout(common::HANG)
        .expect("the reader woke `held`");
    common::wait_for("the worker to die", || common::has_exited(pid));
    resume.send(()).unwrap();
    assert_eq!(common::join(first), Ok(gate.port()));
    assert_eq!(common::join(held), Ok(3));
    assert_eq!(
        common::join(big),
        Err(TaskError::WorkerLost(WorkerExit::Signal(6)))
    );
    behind.check();
    common::assert_serves(&pool);
    assert!(
        !common::process_exists(pid),
        "the dead worker was not reaped"
    );
}
