//! The supervisor thread: starts the workers, replaces dead ones, wakes for deadlines.
//!
//! # Invariants
//!
//! - Every worker process is started by this thread (its parent-death signal is tied to the
//!   thread that started it), so the thread lives until the pool's shutdown has stopped it.
//! - Replacements are started no sooner than the backoff their death asked for.
//!
//! # Lock scope
//!
//! This loop takes no lock itself; [`Shared::expire_deadlines`] and [`Shared::respawn`] take it
//! briefly. It sleeps on its command channel until the next due replacement or deadline.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use polyexec_core::BuildError;

use super::Shared;

#[derive(Debug)]
pub(super) enum Command {
    Respawn { slot: usize, at: Instant },
    Wake,
    Stop,
}

impl Shared {
    /// time limits until told to stop.
    pub(super) fn supervise(
        self: Arc<Self>,
        commands: &mpsc::Receiver<Command>,
        started: mpsc::Sender<Result<(), BuildError>>,
    ) {
        match self.start_initial() {
            Ok(()) => {
                let _ = started.send(Ok(()));
            }
            Err(err) => {
                let _ = started.send(Err(err));
                return;
            }
        }
        drop(started);
        let mut pending: Vec<(Instant, usize)> = Vec::new();
        loop {
            let next_deadline = self.expire_deadlines();
            let now = Instant::now();
            let mut due = Vec::new();
            pending.retain(|&(at, slot)| {
                if at <= now {
                    due.push(slot);
                    false
                } else {
                    true
                }
            });
            for slot in due {
                if let Some(retry) = self.respawn(slot) {
                    pending.push((retry, slot));
                }
            }
            let wake_at = pending.iter().map(|&(at, _)| at).chain(next_deadline).min();
            let command = match wake_at {
                Some(at) => {
                    match commands.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Ok(command) => Some(command),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => Some(Command::Stop),
                    }
                }
                None => Some(commands.recv().unwrap_or(Command::Stop)),
            };
            match command {
                Some(Command::Respawn { slot, at }) => pending.push((at, slot)),
                Some(Command::Wake) | None => {}
                Some(Command::Stop) => return,
            }
        }
    }
}
