//! Leaks after repeated pool creation and shutdown: graceful shutdown, immediate shutdown with
//! tasks queued and running, drop, a pool whose workers crash, a build that fails. After each
//! round: no zombie or stray process, the same open descriptors, the same threads (reader and
//! supervisor threads joined), no temp file.
//!
//! One test in this file, so no other test's threads or processes are counted.

polyexec_subprocess::test_hook!();

mod common;

use common::Holdings;
use polyexec_core::conformance::{Gate, gated};
use polyexec_core::{Executor, TaskError};
use polyexec_subprocess::ProcessPool;

const ROUNDS: usize = 40;

#[test]
fn repeated_pool_creation_and_shutdown_leave_nothing_behind() {
    // Warm up what the process keeps for good (the async-io reactor, thread-locals, ...).
    drop(common::quiet_pool(1));
    // One gate for every round: a gate keeps its listening socket and thread for good.
    let mut gate = Gate::new();
    let before = Holdings::now();
    assert!(before.children.is_empty());
    let started = std::time::Instant::now();

    for round in 0..ROUNDS {
        let pool = common::quiet_pool(1 + round % 3);
        let running = pool.spawn(gate.port(), gated);
        gate.wait_started(1);
        let queued = pool.spawn_all(0..100u64, |x: u64| x + 1);
        let sleeping = pool.spawn_async(3600u64, |s: u64| async move {
            polyexec_core::sleep(std::time::Duration::from_secs(s)).await;
        });
        match round % 5 {
            0 => {
                // Graceful: everything finishes, then the workers exit.
                drop(sleeping.cancel_and_keep());
                gate.release();
                pool.shutdown();
                assert_eq!(common::join(running), Ok(gate.port()));
                for (i, h) in queued.into_iter().enumerate() {
                    assert_eq!(common::join(h), Ok(i as u64 + 1));
                }
            }
            1 | 2 => {
                // Immediate, with a task running, tasks queued and an async task waiting.
                pool.shutdown_now();
                for h in queued {
                    match common::join(h) {
                        Ok(_) | Err(TaskError::ShutDown) => {}
                        other => panic!("round {round}: {other:?}"),
                    }
                }
                assert!(common::join(sleeping).is_err());
                assert!(common::join(running).is_err());
            }
            3 => {
                // Crashes, then drop (a graceful shutdown).
                drop(sleeping.cancel_and_keep());
                gate.release();
                let crash = pool.spawn((), |()| -> u8 { std::process::abort() });
                assert!(common::join(crash).unwrap_err().is_worker_lost());
                drop(queued);
                drop(running);
            }
            _ => {
                // Dropped with everything in flight and nothing joined (handles detached).
                drop(sleeping.cancel_and_keep());
                gate.release();
                drop(queued);
                drop(running);
            }
        }
        drop(pool);
        // Closes the gate's connections of this round.
        gate.release();
        Holdings::assert_back_to(&before, &format!("round {round}"));
    }
    // A build that fails (an initializer that panics) stops and reaps what it started.
    for _ in 0..5 {
        let err = ProcessPool::builder()
            .workers(2)
            .env("RUST_BACKTRACE", "0")
            .initializer(|| panic!("refuse to start"))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("refuse to start"), "{err}");
        Holdings::assert_back_to(&before, "failed build");
    }
    eprintln!(
        "{ROUNDS} pools created and shut down, 5 failed builds, in {:.2?}",
        started.elapsed()
    );
}

/// Cancels an async handle that waits forever, keeping the handle to drop.
trait CancelAndKeep {
    fn cancel_and_keep(self) -> Self;
}

impl<T> CancelAndKeep for polyexec_core::TaskHandle<T> {
    fn cancel_and_keep(self) -> Self {
        self.cancel();
        self
    }
}
