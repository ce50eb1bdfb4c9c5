//! Delivering a worker's encoded result to the task's typed handle.
//!
//! # Invariants
//!
//! - Runs without the pool's lock: decoding and the handle's wakers are user code.
//! - A panic in a `Deserialize` impl fails that task with a codec error; a panic in a waker or
//!   `Drop` is contained by [`deliver`]. Neither unwinds into the pool's threads.

use polyexec_core::{CodecStage, Resolver, TaskError};
use serde::de::DeserializeOwned;

use crate::protocol;

/// Delivers a task's encoded result to its typed handle.
pub(super) trait Complete: Send {
    /// `ok`: `payload` is the encoded output; otherwise an encoded [`TaskError`].
    fn complete(self: Box<Self>, ok: bool, payload: &[u8]);
    fn fail(self: Box<Self>, err: TaskError);
}

impl<T: DeserializeOwned + Send + 'static> Complete for Resolver<T> {
    fn complete(self: Box<Self>, ok: bool, payload: &[u8]) {
        if self.is_abandoned() {
            // Nobody can see the value: skip decoding it.
            return;
        }
        let result = if ok {
            // A `Deserialize` impl that panics fails this task, not the reader thread.
            match polyexec_core::catch_task(|| protocol::decode::<T>(payload)) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(err)) => Err(codec(
                    CodecStage::DecodeOutput,
                    protocol::describe::<T>(err),
                )),
                Err(panic) => Err(codec(
                    CodecStage::DecodeOutput,
                    protocol::describe::<T>(panic),
                )),
            }
        } else {
            Err(
                protocol::decode::<TaskError>(payload).unwrap_or_else(|err| {
                    TaskError::transport(format!("could not decode the worker's error: {err}"))
                }),
            )
        };
        (*self).resolve(result);
    }

    fn fail(self: Box<Self>, err: TaskError) {
        (*self).resolve(Err(err));
    }
}

pub(super) fn codec(stage: CodecStage, message: impl ToString) -> TaskError {
    TaskError::codec(stage, message.to_string())
}

/// Runs a completion, containing a panic from a user's waker or `Drop`.
pub(super) fn deliver(body: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
}
