//! Settling what a dead worker held, and the crash-loop guard.
//!
//! # Invariants
//!
//! - A task the worker had not announced as started is requeued (at the queue's front, oldest
//!   first) and runs elsewhere; one it had started fails with [`TaskError::WorkerLost`]: it may
//!   have had effects, so it is never run twice.
//! - A death counts toward the crash-loop limit only if the pool neither expected it (exit,
//!   shutdown) nor caused it (kill), and the worker never served a task.
//! - Once the pool is broken, the queue is failed with the reason and no replacement is asked.
//!
//! # Lock scope
//!
//! One critical section resets the slot, sorts its tasks and redispatches; handles are resolved
//! and the replacement is asked for after it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use polyexec_core::{Outcome, TaskError, WorkerExit};

use super::complete::deliver;
use super::respawn::backoff;
use super::supervisor::Command;
use super::{Conn, Place, Shared, State};
use crate::error::HOOK_ADVICE;

impl Shared {
    /// Settles everything a dead worker held, and asks for its replacement.
    pub(super) fn on_death(&self, conn: &Conn, status: WorkerExit) {
        let mut lost = Vec::new();
        let mut failed = Vec::new();
        let mut jobs = Vec::new();
        let mut respawn = None;
        let broken_message;
        // What to report once the lock is released (a subscriber is user code).
        #[cfg(feature = "tracing")]
        let mut traced = Traced::default();
        {
            let mut core = self.lock();
            let core = &mut *core;
            let slot = &mut core.slots[conn.slot];
            if slot.generation != conn.generation {
                return;
            }
            let expected = slot.exit_sent || core.state == State::Stopping;
            let killed = slot.killed;
            let served = slot.served;
            slot.reset();
            // Every task announces its start before any of its code runs (the worker's
            // `started`), and every frame the worker wrote before dying has been read: a task
            // without a `STARTED` frame certainly had not started.
            let crash = !expected && !killed && !served;
            #[cfg(feature = "tracing")]
            {
                traced.unexpected = !expected && !killed;
            }
            let mut requeue = Vec::new();
            core.tasks.retain(|&id, entry| match entry.place {
                Place::Sent { slot, generation }
                    if slot == conn.slot && generation == conn.generation =>
                {
                    if entry.completer.is_some() {
                        // Never started: safe to run elsewhere.
                        entry.place = Place::Queued;
                        requeue.push(id);
                        true
                    } else {
                        false
                    }
                }
                Place::Started { slot, generation }
                    if slot == conn.slot && generation == conn.generation =>
                {
                    lost.extend(entry.completer.take());
                    false
                }
                _ => true,
            });
            requeue.sort_unstable();
            for id in requeue.into_iter().rev() {
                core.queue.push_front(id);
            }
            if crash {
                core.failures_in_row += 1;
            }
            if core.broken.is_none() && core.failures_in_row >= self.config.crash_loop_limit {
                core.broken = Some(format!(
                    "the pool stopped taking tasks: {} worker processes in a row died before \
                     running any task (the last one {status}); check the worker initializer \
                     and the entry hook ({HOOK_ADVICE})",
                    core.failures_in_row
                ));
                self.accepting.store(false, Ordering::Release);
                #[cfg(feature = "tracing")]
                {
                    traced.broke = true;
                }
                for id in core.queue.drain(..) {
                    if let Some(entry) = core.tasks.remove(&id) {
                        failed.extend(entry.completer);
                    }
                }
            }
            broken_message = core.broken.clone();
            if core.state != State::Stopping && core.broken.is_none() {
                respawn = Some(Instant::now() + backoff(core.failures_in_row));
            }
            self.dispatch(core, &mut jobs);
            self.notify_if_idle(core);
        }
        self.counters.worker_stopped();
        #[cfg(feature = "tracing")]
        traced.emit(conn, status, broken_message.as_deref());
        for completer in lost {
            self.counters.count(Outcome::WorkerLost);
            deliver(|| completer.fail(TaskError::WorkerLost(status)));
        }
        if let Some(message) = broken_message {
            for completer in failed {
                self.counters.count(Outcome::Other);
                deliver(|| completer.fail(TaskError::transport(message.as_str())));
            }
        }
        self.write(&mut jobs);
        if let Some(stop) = &self.on_worker_stop {
            let _ = polyexec_core::catch_task(|| stop(conn.slot, conn.pid, status));
        }
        if let Some(at) = respawn {
            let _ = self.supervisor_tx.send(Command::Respawn {
                slot: conn.slot,
                at,
            });
        }
    }
}

/// The events of one death, gathered under the lock and emitted after it.
#[cfg(feature = "tracing")]
#[derive(Default)]
struct Traced {
    /// Neither asked for (exit, shutdown) nor caused (kill) by the pool.
    unexpected: bool,
    /// This death made the pool stop taking tasks.
    broke: bool,
}

#[cfg(feature = "tracing")]
impl Traced {
    fn emit(&self, conn: &Conn, status: WorkerExit, broken: Option<&str>) {
        let (worker, pid) = (conn.slot, conn.pid);
        if self.unexpected {
            tracing::warn!(backend = "subprocess", worker, pid, %status, "worker process died");
        } else {
            tracing::info!(backend = "subprocess", worker, pid, %status, "worker process exited");
        }
        if self.broke {
            tracing::error!(
                backend = "subprocess",
                reason = broken,
                "crash loop: the pool stopped taking tasks"
            );
        }
    }
}
