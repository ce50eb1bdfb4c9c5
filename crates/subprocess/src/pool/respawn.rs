//! Starting workers: the initial set, replacements with backoff, and installing a worker into
//! its slot with its reader thread.
//!
//! # Invariants
//!
//! - A worker is installed only while the pool is not stopping; one started during shutdown is
//!   reaped at once.
//! - A worker whose reader thread cannot be started is killed, reaped and settled as dead, so its
//!   tasks go elsewhere.
//! - Failed starts count toward the crash-loop limit like deaths before serving.
//!
//! # Lock scope
//!
//! Processes are started and greeted without the lock; it is taken to install the connection and
//! dispatch to it, or to count a failed start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use polyexec_core::{BuildError, Outcome, TaskError, WorkerExit};

use super::complete::deliver;
use super::{Conn, Shared, State, relock};
use crate::process::{self, Spawned};

impl Shared {
    /// Puts a freshly started worker into its slot and starts its reader.
    /// `restart`: it replaces a worker that ended (counted, and reported, as a restart).
    pub(super) fn install(self: &Arc<Self>, slot: usize, spawned: Spawned, restart: bool) {
        let Spawned {
            mut child,
            pidfd,
            stream,
            pid,
        } = spawned;
        let mut jobs = Vec::new();
        let conn = {
            let mut core = self.lock();
            if core.state == State::Stopping {
                drop(core);
                process::reap(&mut child, &pidfd, Duration::ZERO);
                return;
            }
            let slot_state = &mut core.slots[slot];
            let conn = Arc::new(Conn {
                slot,
                generation: slot_state.generation,
                pid,
                pidfd,
                stream,
                announced: AtomicU64::new(0),
            });
            slot_state.conn = Some(Arc::clone(&conn));
            self.counters.worker_started();
            self.dispatch(&mut core, &mut jobs);
            conn
        };
        self.write(&mut jobs);
        if restart {
            self.counters.worker_restarted();
        }
        #[cfg(feature = "tracing")]
        {
            let (worker, pid) = (slot, conn.pid);
            if restart {
                tracing::info!(
                    backend = "subprocess",
                    worker,
                    pid,
                    "worker process restarted"
                );
            } else {
                tracing::info!(
                    backend = "subprocess",
                    worker,
                    pid,
                    "worker process started"
                );
            }
        }
        if let Some(start) = &self.on_worker_start {
            // Contained: a hook's panic must not take the supervisor thread down.
            let _ = polyexec_core::catch_task(|| start(slot, conn.pid));
        }
        let shared = Arc::clone(self);
        let reader_conn = Arc::clone(&conn);
        let spawned = thread::Builder::new()
            .name(format!("polyexec-subprocess-reader-{slot}"))
            .spawn(move || shared.read_worker(&reader_conn, child));
        match spawned {
            Ok(handle) => relock(self.readers.lock()).push(handle),
            Err(_) => {
                // No thread to read this worker: it cannot serve. Its tasks go elsewhere. The
                // child was moved into the failed closure and dropped unreaped, so reap by pid.
                process::kill(&conn.pidfd);
                let _ = rustix::process::waitpid(
                    rustix::process::Pid::from_raw(conn.pid as i32),
                    rustix::process::WaitOptions::empty(),
                );
                self.on_death(&conn, WorkerExit::Unknown);
            }
        }
    }

    /// Starts every worker at once, then greets each; on any failure, stops them all.
    pub(super) fn start_initial(self: &Arc<Self>) -> Result<(), BuildError> {
        let mut started = Vec::with_capacity(self.size);
        for index in 0..self.size {
            match process::start(&self.config.spawn, index as u32) {
                Ok(worker) => started.push(worker),
                Err(err) => {
                    for worker in started {
                        worker.abandon(Duration::ZERO);
                    }
                    return Err(err.into());
                }
            }
        }
        let mut greeted = Vec::with_capacity(self.size);
        let mut failure = None;
        for worker in started {
            if failure.is_some() {
                worker.abandon(Duration::ZERO);
                continue;
            }
            match worker.greet() {
                Ok(spawned) => greeted.push(spawned),
                Err(err) => failure = Some(err),
            }
        }
        if let Some(err) = failure {
            for mut spawned in greeted {
                process::reap(&mut spawned.child, &spawned.pidfd, Duration::ZERO);
            }
            return Err(err.into());
        }
        for (slot, spawned) in greeted.into_iter().enumerate() {
            self.install(slot, spawned, false);
        }
        Ok(())
    }

    /// Starts a replacement for `slot`; on failure returns when to retry (or `None` if the pool
    /// gave up or is stopping).
    pub(super) fn respawn(self: &Arc<Self>, slot: usize) -> Option<Instant> {
        if self.lock().state == State::Stopping {
            return None;
        }
        match process::spawn(&self.config.spawn, slot as u32) {
            Ok(spawned) => {
                self.install(slot, spawned, true);
                None
            }
            Err(err) => {
                let mut failed = Vec::new();
                let (retry, message) = {
                    let mut core = self.lock();
                    core.failures_in_row += 1;
                    if core.broken.is_none() && core.failures_in_row >= self.config.crash_loop_limit
                    {
                        core.broken = Some(format!(
                            "the pool stopped taking tasks: {} worker processes in a row failed \
                             to start; the last: {err}",
                            core.failures_in_row
                        ));
                        self.accepting.store(false, Ordering::Release);
                        let core = &mut *core;
                        for id in core.queue.drain(..) {
                            if let Some(entry) = core.tasks.remove(&id) {
                                failed.extend(entry.completer);
                            }
                        }
                        self.notify_if_idle(core);
                    }
                    let retry = (core.broken.is_none() && core.state != State::Stopping)
                        .then(|| Instant::now() + backoff(core.failures_in_row));
                    (retry, core.broken.clone())
                };
                if let Some(message) = message {
                    #[cfg(feature = "tracing")]
                    if !failed.is_empty() || retry.is_none() {
                        tracing::error!(
                            backend = "subprocess",
                            reason = message.as_str(),
                            "crash loop: the pool stopped taking tasks"
                        );
                    }
                    for completer in failed {
                        self.counters.count(Outcome::Other);
                        deliver(|| completer.fail(TaskError::transport(message.as_str())));
                    }
                }
                retry
            }
        }
    }
}

/// Delay before starting a replacement after `failures` workers in a row died without serving.
pub(super) fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => Duration::from_millis(10u64 << (n - 1).min(6)),
    }
}
