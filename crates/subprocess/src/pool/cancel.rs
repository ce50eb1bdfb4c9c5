//! Cancelling one task through its handle.
//!
//! # Invariants
//!
//! - A queued task is removed and never sent; a sent one is dropped by its worker when it reads
//!   the cancel (should it start anyway, the reader stops it); a started async task is dropped by
//!   its worker; a started blocking task has its worker exit (and be replaced), as it cannot be
//!   interrupted otherwise.
//! - The handle resolves (the completer is dropped) after the lock is released.
//!
//! # Lock scope
//!
//! One critical section finds the task and queues the cancel; the completer drop, writes and the
//! stop request follow without it.

use polyexec_core::{Cancel, Outcome};

use super::dispatch::control;
use super::{Place, Shared};
use crate::entry::Kind;
use crate::{protocol, stop};

impl Cancel for Shared {
    fn cancel(&self, id: u64) {
        self.stop_task(id, Outcome::Cancelled);
    }

    /// The handle's time limit (`spawn_with`) passed: stopped as a cancel, counted timed out.
    fn expire(&self, id: u64) {
        self.stop_task(id, Outcome::TimedOut);
    }
}

impl Shared {
    /// Stops task `id` if it is still queued or running, counting it as `outcome`.
    fn stop_task(&self, id: u64, outcome: Outcome) {
        let dropped;
        let mut stop = None;
        let mut jobs = Vec::new();
        // Reported after the lock is released: a subscriber is user code.
        #[cfg(feature = "tracing")]
        let mut running: Option<tracing::Span> = None;
        {
            let mut core = self.lock();
            let core = &mut *core;
            let Some(entry) = core.tasks.get_mut(&id) else {
                return;
            };
            match entry.place {
                Place::Queued => {
                    // Its id stays in the queue and is skipped there.
                    dropped = core.tasks.remove(&id).and_then(|e| e.completer);
                }
                Place::Sent { slot, generation } => {
                    // Not started: the worker drops it when it reads the cancel, before it starts
                    // its next task. Should its `STARTED` frame cross the cancel, `on_started`
                    // kills the worker then (a blocking task cannot be stopped otherwise).
                    dropped = entry.completer.take();
                    let slot = &mut core.slots[slot];
                    if slot.generation == generation && slot.conn.is_some() {
                        slot.outgoing.push(control(protocol::CANCEL, Some(id)));
                    }
                }
                Place::Started { slot, generation } => {
                    #[cfg(feature = "tracing")]
                    {
                        running = Some(entry.span.clone());
                    }
                    dropped = entry.completer.take();
                    let kind = entry.kind;
                    let slot = &mut core.slots[slot];
                    if slot.generation == generation {
                        if let Some(conn) = &slot.conn {
                            if kind == Kind::Async {
                                // The worker drops the future; others on it are unaffected.
                                slot.outgoing.push(control(protocol::CANCEL, Some(id)));
                            } else {
                                // A running blocking task cannot be interrupted: its worker
                                // exits (and is replaced) if it is still running this task.
                                stop = Some((conn.pid, id));
                            }
                        }
                    }
                }
            }
            Self::claim_writes(core, &mut jobs);
            self.notify_if_idle(core);
        }
        #[cfg(feature = "tracing")]
        if let Some(span) = running {
            tracing::info!(parent: &span, "cancelling a running task");
        }
        if dropped.is_some() {
            self.counters.count(outcome);
        }
        drop(dropped);
        self.write(&mut jobs);
        if let Some((pid, id)) = stop {
            stop::request_stop(pid, id);
        }
    }
}
