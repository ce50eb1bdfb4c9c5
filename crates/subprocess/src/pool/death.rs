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
