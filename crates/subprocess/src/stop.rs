//! Stopping one running blocking task without harming the worker's next one.
//!
//! A blocking task cannot be interrupted, so cancelling it (or timing it out) ends its worker
//! process. But the parent sees the worker late: by the time it decides to stop task X, the worker
//! may have finished X and started task Y, whose `STARTED` frame is still in the socket. A plain
//! `SIGKILL` would then kill Y, a task nobody asked to stop. So the decision is taken in the
//! worker, atomically with respect to its own task switches: the parent queues a real-time signal
//! carrying X's id, and the worker's handler exits only if X is the blocking task it is running.
//!
//! Invariant (worker side): [`CURRENT`] holds the *tag* of the blocking task whose code may be
//! running (its id plus one, since ids start at 0), and 0 otherwise. It is set before the task's `STARTED` frame is written and cleared
//! before its result frame is written, so:
//! - the parent can only ask to stop X after reading `STARTED(X)`, when `CURRENT` is X or later;
//! - if the parent reads X's result, `CURRENT` had been cleared first, so a stop request for X
//!   that arrives afterwards is ignored and the worker lives on.
//!
//! Real-time signals are queued, not merged, so a stale request for X cannot swallow a later one
//! for Y. The signal is reserved in worker processes (documented in docs/subprocess.md).
//!
//! This module, `entry`, `shm` and `inherited` are the only ones of the crate allowed to use
//! `unsafe`.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// The exit code of a worker that stopped itself on the parent's request.
pub(crate) const EXIT_STOPPED: i32 = 96;

/// The tag of the blocking task whose code may be running in this worker; 0 when none.
static CURRENT: AtomicU64 = AtomicU64::new(0);

/// A task's tag: its id plus one, so that no task shares the tag 0 meaning "none". Ids are a
/// counter far from wrapping around.
fn tag(id: u64) -> u64 {
    id.wrapping_add(1)
}

/// The signal used for stop requests: a real-time one, well above those libc keeps for itself.
fn stop_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

/// Worker side: installs the stop handler. Called once, before the first task.
pub(crate) fn install() -> std::io::Result<()> {
    // SAFETY: `sigaction` is given a fully initialized `sigaction` struct (zeroed, then the
    // handler, flags and an empty mask set) and a valid signal number. The handler is
    // async-signal-safe: it reads the `siginfo_t` the kernel passes, loads an atomic, calls
    // `getppid` and `_exit`, all of which POSIX allows in a signal handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_stop_request;
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(stop_signal(), &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn on_stop_request(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler; for a signal
    // sent with `sigqueue` (`SI_QUEUE`), `si_pid` and `si_value` are the fields it filled in.
    let (code, sender, value) = unsafe {
        let info = &*info;
        (
            info.si_code,
            info.si_pid(),
            info.si_value().sival_ptr as u64,
        )
    };
    // Only the parent's queued requests count; a stray signal from elsewhere is ignored.
    // SAFETY: `getppid` has no preconditions and is async-signal-safe.
    if code != libc::SI_QUEUE || sender != unsafe { libc::getppid() } {
        return;
    }
    if value != 0 && value == CURRENT.load(Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe and ends the process at once, without running
        // destructors or atexit handlers that could deadlock on state the task holds.
        unsafe { libc::_exit(EXIT_STOPPED) };
    }
}

/// Worker side: blocking task `id` is about to run (before its `STARTED` frame is written).
pub(crate) fn running(id: u64) {
    CURRENT.store(tag(id), Ordering::SeqCst);
}

/// Worker side: the blocking task has returned (before its result frame is written).
pub(crate) fn finished() {
    CURRENT.store(0, Ordering::SeqCst);
}

/// Parent side: asks worker `pid` to exit if it is still running blocking task `id`.
///
/// `pid` must be an unreaped child of this process, so it cannot name another process.
pub(crate) fn request_stop(pid: u32, id: u64) {
    let value = libc::sigval {
        sival_ptr: tag(id) as usize as *mut libc::c_void,
    };
    // SAFETY: `sigqueue` takes plain values; the worker is our child and not yet reaped (the pool
    // reaps only after the worker's channel closed), so its pid is still its own.
    unsafe {
        libc::sigqueue(pid as libc::pid_t, stop_signal(), value);
    }
}
