//! The tasks a host runs now, by pool and task id: what a cancel notice stops.
//!
//! A task is registered as soon as its frame is opened, before any of its code can run, and
//! gets its stopper once it has one (the process pool's abort handle for a blocking task, the
//! tokio task's for an async one). A notice that comes in between marks the registration, and
//! the stopper is used the moment it is attached. So a cancel the pool sends after the task
//! started (the earliest the pool can know the task is on a host) always stops it.
//!
//! Invariant: a registration is in the map exactly while its [`Registration`] lives; the same
//! task delivered twice to one host (a redelivery) has two, each removed by its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A task, named as its pool names it: the pool's result subject and the task's id there.
pub(super) type TaskKey = (String, u64);

/// Stops a running task.
pub(super) enum Stopper {
    /// Cancels the task in the host's process pool: one that runs has its worker process ended.
    Blocking(polyexec_core::AbortHandle),
    /// Drops the task's future at its next `.await`.
    Async(tokio::task::AbortHandle),
}

impl Stopper {
    fn stop(self) {
        match self {
            Stopper::Blocking(handle) => {
                handle.abort();
            }
            Stopper::Async(handle) => handle.abort(),
        }
    }
}

#[derive(Default)]
struct Entry {
    stopper: Option<Stopper>,
    cancelled: bool,
}

/// The registry of a host's running tasks.
#[derive(Default)]
pub(super) struct Running {
    tasks: Mutex<HashMap<TaskKey, Vec<(u64, Entry)>>>,
    next_token: AtomicU64,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, HashMap<TaskKey, Vec<(u64, Entry)>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers task `key`, which is about to start; it leaves the registry when the returned
    /// registration is dropped.
    pub(super) fn register(&self, key: TaskKey) -> Registration<'_> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(key.clone())
            .or_default()
            .push((token, Entry::default()));
        Registration {
            running: self,
            key,
            token,
        }
    }

    /// Stops task `key` if it runs here (every delivery of it); marks it if it has no stopper
    /// yet, so that it is stopped as soon as it gets one.
    pub(super) fn cancel(&self, key: &TaskKey) {
        let stoppers: Vec<Stopper> = {
            let mut tasks = self.lock();
            let Some(entries) = tasks.get_mut(key) else {
                return;
            };
            entries
                .iter_mut()
                .filter_map(|(_, entry)| {
                    entry.cancelled = true;
                    entry.stopper.take()
                })
                .collect()
        };
        // Outside the lock: stopping a blocking task takes the process pool's own.
        for stopper in stoppers {
            stopper.stop();
        }
    }
}

/// One delivery of a task in the registry.
pub(super) struct Registration<'a> {
    running: &'a Running,
    key: TaskKey,
    token: u64,
}

impl Registration<'_> {
    /// Whether a cancel notice for the task came already.
    pub(super) fn is_cancelled(&self) -> bool {
        self.with_entry(|entry| entry.cancelled)
    }

    /// Gives the task its stopper. If a cancel notice came already, stops it at once and returns
    /// `false`.
    pub(super) fn attach(&self, stopper: Stopper) -> bool {
        let rejected = self.with_entry(|entry| {
            if entry.cancelled {
                Some(stopper)
            } else {
                entry.stopper = Some(stopper);
                None
            }
        });
        match rejected {
            Some(stopper) => {
                stopper.stop();
                false
            }
            None => true,
        }
    }

    fn with_entry<T>(&self, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut tasks = self.running.lock();
        let entry = tasks
            .get_mut(&self.key)
            .and_then(|entries| entries.iter_mut().find(|(token, _)| *token == self.token))
            .map(|(_, entry)| entry)
            .expect("a registration stays in the registry while it lives");
        f(entry)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut tasks = self.running.lock();
        if let Some(entries) = tasks.get_mut(&self.key) {
            entries.retain(|(token, _)| *token != self.token);
            if entries.is_empty() {
                tasks.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u64) -> TaskKey {
        ("pool".into(), id)
    }

    /// A stopper whose use can be observed: an async one, on a runtime of the test's own.
    fn observed(runtime: &tokio::runtime::Runtime) -> (Stopper, tokio::task::JoinHandle<()>) {
        let task = runtime.spawn(std::future::pending::<()>());
        (Stopper::Async(task.abort_handle()), task)
    }

    #[test]
    fn a_cancel_before_the_stopper_stops_the_task_when_it_comes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let running = Running::default();
        let registration = running.register(key(1));
        running.cancel(&key(2)); // another task: no effect
        assert!(!registration.is_cancelled());
        running.cancel(&key(1));
        assert!(registration.is_cancelled());
        let (stopper, task) = observed(&runtime);
        assert!(!registration.attach(stopper));
        assert!(runtime.block_on(task).unwrap_err().is_cancelled());
    }

    #[test]
    fn a_cancel_stops_every_delivery_and_registrations_leave_when_dropped() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let running = Running::default();
        let first = running.register(key(1));
        let second = running.register(key(1));
        let (a, task_a) = observed(&runtime);
        let (b, task_b) = observed(&runtime);
        assert!(first.attach(a));
        assert!(second.attach(b));
        drop(first);
        running.cancel(&key(1));
        // One turn of the runtime: an aborted task is finished after it.
        runtime.block_on(tokio::task::yield_now());
        // The first registration had left: its task was not stopped.
        assert!(!task_a.is_finished());
        assert!(task_b.is_finished());
        assert!(runtime.block_on(task_b).unwrap_err().is_cancelled());
        drop(second);
        assert!(running.lock().is_empty());
        task_a.abort();
    }
}
