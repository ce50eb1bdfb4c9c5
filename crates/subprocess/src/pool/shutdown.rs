//! Graceful shutdown (drain, then tell workers to exit) and immediate shutdown (kill).
//!
//! # Invariants
//!
//! - After the first call no task is accepted (`accepting` is cleared under the lock).
//! - Graceful: every submitted task finishes before any worker is told to exit.
//! - Immediate: handles resolve with `ShutDown` only once their workers are dead, so no task runs
//!   after its handle said it was shut down.
//! - A second, concurrent caller returns only once the workers are gone (`Shared::finish`); the
//!   supervisor and reader threads are joined unless the caller is one of them.
//!
//! # Lock scope
//!
//! One critical section changes the state (a graceful shutdown waits on `Shared::idle` inside
//! it); kills, waits, writes and joins run after it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use super::dispatch::control;
use super::supervisor::Command;
use super::{Shared, State, relock};
use crate::{process, protocol};

/// How long a worker that closed its channel gets to exit before it is killed.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(2);

impl Shared {
    pub(super) fn shutdown(&self, now: bool) {
        // Only the first call reports; never under the lock (a subscriber is user code).
        #[cfg(feature = "tracing")]
        let first = self.accepting.load(Ordering::Acquire);
        #[cfg(feature = "tracing")]
        if first {
            tracing::info!(
                backend = "subprocess",
                immediate = now,
                "shutdown requested"
            );
        }
        let mut dropped = Vec::new();
        let mut kills = Vec::new();
        let mut jobs = Vec::new();
        {
            let mut core = self.lock();
            self.accepting.store(false, Ordering::Release);
            if core.state == State::Running {
                core.state = State::Draining;
            }
            if now {
                core.state = State::Stopping;
                core.queue.clear();
                for (_, entry) in core.tasks.drain() {
                    dropped.extend(entry.completer);
                }
                for slot in &mut core.slots {
                    if let Some(conn) = &slot.conn {
                        slot.killed = true;
                        kills.push(Arc::clone(conn));
                    }
                }
                self.idle.notify_all();
            } else {
                while !core.tasks.is_empty() {
                    core = relock(self.idle.wait(core));
                }
                core.state = State::Stopping;
                for slot in &mut core.slots {
                    if slot.conn.is_some() && !slot.exit_sent {
                        slot.outgoing.push(control(protocol::EXIT, None));
                        slot.exit_sent = true;
                    }
                }
                Self::claim_writes(&mut core, &mut jobs);
            }
        }
        #[cfg(feature = "tracing")]
        if first {
            tracing::debug!(
                backend = "subprocess",
                immediate = now,
                "shutdown: tasks settled, the workers are told to exit or killed"
            );
        }
        for conn in &kills {
            process::kill(&conn.pidfd);
        }
        // Only once the workers are dead: no task they held can run after its handle resolved.
        for conn in &kills {
            process::wait_exit(&conn.pidfd, EXIT_GRACE);
        }
        // Resolves every dropped handle with `ShutDown`.
        for _ in &dropped {
            self.counters.count(polyexec_core::Outcome::ShutDown);
        }
        drop(dropped);
        self.write(&mut jobs);

        let _finish = relock(self.finish.lock());
        let _ = self.supervisor_tx.send(Command::Stop);
        let me = thread::current().id();
        if let Some(handle) = relock(self.supervisor.lock()).take() {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
        // Each reader returns once its worker is reaped; no new reader starts once the
        // supervisor is gone.
        loop {
            let handles = std::mem::take(&mut *relock(self.readers.lock()));
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                if handle.thread().id() != me {
                    let _ = handle.join();
                }
            }
        }
        #[cfg(feature = "tracing")]
        if first {
            tracing::info!(
                backend = "subprocess",
                "shutdown complete: the workers are gone"
            );
        }
    }
}
