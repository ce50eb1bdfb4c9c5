//! Local worker hosts: this executable started again on this machine, kept running by the pool.
//!
//! Each local worker has a thread of the pool that starts it, waits for it, and starts it again
//! if it dies while the pool runs (a task that crashes its host is redelivered; the host comes
//! back). Spawning from that long-lived thread matters: a worker arms `PR_SET_PDEATHSIG`, which
//! fires when the *thread* that forked it exits. Signals go through a pidfd, so they can never
//! reach a process that reused a reaped worker's pid.

use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polyexec_core::Counters;
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::settings::{Settings, env};

/// A worker that exits this soon after its start, this many times in a row, is not started again
/// (it cannot reach NATS, or the program never calls the entry hook).
const EARLY_EXIT: Duration = Duration::from_secs(2);
const EARLY_EXITS_TOLERATED: u32 = 3;

#[derive(Debug, Default)]
struct State {
    pidfd: Option<OwnedFd>,
    pid: Option<u32>,
    stopping: bool,
    /// Why the worker stopped being restarted, if it did.
    gave_up: Option<String>,
}

#[derive(Debug)]
struct Slot {
    state: Mutex<State>,
    changed: Condvar,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The local workers of one pool.
#[derive(Debug)]
pub(crate) struct LocalWorkers {
    slots: Vec<(Arc<Slot>, Option<JoinHandle<()>>)>,
}

impl LocalWorkers {
    /// Starts `n` local workers with `settings`. Each restart is counted in the counters
    /// `restarts` holds by then (set once the pool exists, after its first workers started).
    pub(crate) fn start(
        n: usize,
        settings: &Settings,
        restarts: &Arc<OnceLock<Arc<Counters>>>,
    ) -> Result<LocalWorkers, String> {
        let vars = settings.to_env();
        let mut workers = LocalWorkers { slots: Vec::new() };
        for i in 0..n {
            let slot = Arc::new(Slot {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
            });
            let thread = {
                let slot = Arc::clone(&slot);
                let vars = vars.clone();
                let restarts = Arc::clone(restarts);
                std::thread::Builder::new()
                    .name(format!("polyexec-cluster-local-{i}"))
                    .spawn(move || keep_running(&slot, &vars, &restarts))
                    .map_err(|e| format!("cannot start a thread for a local worker: {e}"))?
            };
            workers.slots.push((slot, Some(thread)));
        }
        Ok(workers)
    }

    /// The pids of the workers running now.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|(slot, _)| slot.lock().pid)
            .collect()
    }

    /// Why a worker is no longer restarted, if one is not.
    pub(crate) fn failure(&self) -> Option<String> {
        self.slots
            .iter()
            .find_map(|(slot, _)| slot.lock().gave_up.clone())
    }

    /// Stops every worker: SIGTERM (the worker finishes its tasks) and up to `grace` for them to
    /// exit, then SIGKILL. Returns when every worker is reaped. With a zero `grace`, SIGKILL.
    pub(crate) fn stop(&mut self, grace: Duration) {
        let first = if grace.is_zero() {
            Signal::KILL
        } else {
            Signal::TERM
        };
        for (slot, _) in &self.slots {
            let mut state = slot.lock();
            state.stopping = true;
            if let Some(fd) = &state.pidfd {
                let _ = rustix::process::pidfd_send_signal(fd, first);
            }
        }
        let deadline = Instant::now() + grace;
        for (slot, _) in &self.slots {
            let mut state = slot.lock();
            while state.pidfd.is_some() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    if let Some(fd) = &state.pidfd {
                        let _ = rustix::process::pidfd_send_signal(fd, Signal::KILL);
                    }
                    // The watcher thread reaps it and clears the pidfd.
                    state = slot
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                } else {
                    state = slot
                        .changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        for (_, thread) in &mut self.slots {
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

/// The watcher thread of one local worker: starts it, reaps it, starts it again.
fn keep_running(slot: &Slot, vars: &[(&'static str, String)], restarts: &OnceLock<Arc<Counters>>) {
    let mut early_exits = 0;
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            if let Some(counters) = restarts.get() {
                counters.worker_restarted();
            }
        }
        let mut command = Command::new("/proc/self/exe");
        command
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env(env::WORKER, format!("parent:{}", std::process::id()))
            .stdin(Stdio::null());
        if let Some(name) = std::env::args_os().next() {
            // Shown by `ps`; the file run is this one whatever this says.
            command.arg0(name);
        }
        let started = Instant::now();
        let mut state = slot.lock();
        if state.stopping {
            return;
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                state.gave_up = Some(format!("cannot start a local worker: {err}"));
                slot.changed.notify_all();
                return;
            }
        };
        state.pid = Some(child.id());
        state.pidfd = Pid::from_raw(child.id() as i32)
            .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok());
        if state.pidfd.is_none() {
            // Without a pidfd (Linux before 5.3) the worker could not be signalled safely.
            let _ = child.kill();
            let _ = child.wait();
            state.pid = None;
            state.gave_up = Some(
                "cannot watch a local worker: pidfd_open failed (Linux ≥ 5.3 is needed)".into(),
            );
            slot.changed.notify_all();
            return;
        }
        drop(state);
        let status = child.wait();
        let mut state = slot.lock();
        state.pidfd = None;
        state.pid = None;
        slot.changed.notify_all();
        if state.stopping {
            return;
        }
        // A host that a task crashes dies of a signal, and comes back; one that exits on its
        // own right after its start cannot serve (its reason is on stderr).
        let exited_by_itself = status.as_ref().is_ok_and(|s| s.code().is_some());
        if exited_by_itself && started.elapsed() < EARLY_EXIT {
            early_exits += 1;
        } else {
            early_exits = 0;
        }
        if early_exits >= EARLY_EXITS_TOLERATED {
            let how = match status {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => format!("exited with code {code}"),
                    (_, Some(signal)) => format!("was killed by signal {signal}"),
                    _ => "stopped".into(),
                },
                Err(err) => format!("could not be waited for ({err})"),
            };
            state.gave_up = Some(format!(
                "a local worker {how} {early_exits} times within {EARLY_EXIT:?} of its start \
                 (its reason is on stderr); it is not started again"
            ));
            return;
        }
    }
}
