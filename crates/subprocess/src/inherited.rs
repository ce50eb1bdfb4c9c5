//! Closing the descriptors a worker inherited by accident.
//!
//! Rust opens every descriptor close-on-exec, but C libraries, or a program started by a service
//! manager with sockets passed on (`LISTEN_FDS`), may hold some that are not. A worker started
//! from such a program would otherwise keep them open for its whole life: a pipe's write end
//! kept by a worker means its reader never sees end of stream, a listening socket kept by a
//! worker keeps its port taken after the program closed it. So the first thing a worker does is
//! to close every descriptor above the standard three that is not close-on-exec.
//!
//! Invariant relied on: when [`close_inherited`] runs, the worker process has opened nothing of
//! its own that is not close-on-exec. It runs first in worker mode, before the channel is moved
//! off stdin and before anything of polyexec's or of the tasks' exists; what ran before it is the
//! Rust runtime's start-up and the program's static constructors, and Rust opens descriptors
//! close-on-exec. A descriptor without that flag was therefore inherited across `exec`, and no
//! owner in this process refers to it.
//!
//! This module, `entry`, `shm` and `stop` are the only ones of the crate allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

/// Closes every open descriptor above 2 that is not close-on-exec; returns how many it closed.
/// Best effort: without `/proc` nothing is closed.
pub(crate) fn close_inherited() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    // Collected first, then examined once the directory's own descriptor is closed again (it is
    // close-on-exec, so it would be spared anyway).
    let fds: Vec<RawFd> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    let mut closed = 0;
    for fd in fds {
        // SAFETY: `F_GETFD` only reads the descriptor's flags; on a number that is not an open
        // descriptor it fails with `EBADF` and touches nothing.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        // SAFETY: by the module's invariant a descriptor without close-on-exec at this point was
        // inherited and has no owner in this process, so closing it cannot pull a descriptor
        // from under any `OwnedFd`, `File` or socket that will use it later.
        if unsafe { libc::close(fd) } == 0 {
            closed += 1;
        }
    }
    closed
}
