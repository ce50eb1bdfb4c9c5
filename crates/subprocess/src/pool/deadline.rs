//! Per-task time limits.
//!
//! # Invariants
//!
//! - A deadline is armed when the task's worker announces its start, never before: queueing and
//!   waiting in a worker's pipeline do not count.
//! - The heap may hold deadlines of tasks already finished, cancelled or moved; one fires only if
//!   its task is still started and still has its completer.
//! - A timed-out blocking task is stopped before its handle resolves, so it does not go on
//!   running after it reported `TimedOut`.
//!
//! # Lock scope
//!
//! [`Shared::arm_deadline`] runs with the lock held (from the reader). [`Shared::expire_deadlines`]
//! (supervisor thread) pops what is due under the lock; stops, kills and completions follow
//! without it.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polyexec_core::{Outcome, TaskError};

use super::complete::deliver;
use super::supervisor::Command;
use super::{Core, Place, Shared};
use crate::entry::Kind;
use crate::{process, stop};

/// Extra time an async task gets past its limit before the pool kills its worker: the worker
/// enforces the limit itself by dropping the future, unless the task blocks its thread.
const ASYNC_TIMEOUT_GRACE: Duration = Duration::from_secs(1);

impl Shared {
    /// Arms the time limit of task `id`, which its worker announced at `now`, and wakes the
    /// supervisor if it is now the earliest. Called with the lock held.
    pub(super) fn arm_deadline(&self, core: &mut Core, id: u64, kind: Kind, now: Instant) {
        let Some(limit) = self.config.timeout else {
            return;
        };
        let grace = match kind {
            Kind::Async => ASYNC_TIMEOUT_GRACE,
            _ => Duration::ZERO,
        };
        let deadline = now + limit + grace;
        let earliest = core.deadlines.peek().is_none_or(|d| deadline < d.0.0);
        core.deadlines.push(Reverse((deadline, id)));
        if earliest {
            let _ = self.supervisor_tx.send(Command::Wake);
        }
    }

    /// Resolves timed-out tasks and kills their workers; returns the next deadline.
    pub(super) fn expire_deadlines(&self) -> Option<Instant> {
        let limit = self.config.timeout?;
        let mut fired = Vec::new();
        let mut kills = Vec::new();
        let mut stops = Vec::new();
        // Emitted after the lock is released: a subscriber is user code.
        #[cfg(feature = "tracing")]
        let mut spans = Vec::new();
        let next = {
            let mut core = self.lock();
            let core = &mut *core;
            let now = Instant::now();
            while let Some(&Reverse((at, id))) = core.deadlines.peek() {
                if at > now {
                    break;
                }
                core.deadlines.pop();
                let Some(entry) = core.tasks.get_mut(&id) else {
                    continue;
                };
                let Place::Started { slot, generation } = entry.place else {
                    continue;
                };
                fired.extend(entry.completer.take());
                #[cfg(feature = "tracing")]
                spans.push(entry.span.clone());
                let kind = entry.kind;
                let slot = &mut core.slots[slot];
                if slot.generation == generation {
                    if let Some(conn) = &slot.conn {
                        if kind == Kind::Blocking {
                            // The worker exits only if it is still running this very task.
                            stops.push((conn.pid, id));
                        } else {
                            // The worker drops an async task at its own deadline; this later one
                            // is reached only if it could not (its thread stuck inside the task).
                            slot.killed = true;
                            kills.push(Arc::clone(conn));
                        }
                    }
                }
            }
            core.deadlines.peek().map(|d| d.0.0)
        };
        #[cfg(feature = "tracing")]
        for span in spans {
            tracing::warn!(parent: &span, ?limit, "task time limit reached: stopping it");
        }
        // Stopped first: the task cannot go on running once its handle says it timed out.
        for (pid, id) in stops {
            stop::request_stop(pid, id);
        }
        for conn in &kills {
            process::kill(&conn.pidfd);
        }
        for completer in fired {
            self.counters.count(Outcome::TimedOut);
            deliver(|| completer.fail(TaskError::TimedOut(limit)));
        }
        next
    }
}
