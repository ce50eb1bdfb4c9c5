//! Delivering a worker's result to the task's typed handle.
//!
//! # Invariants
//!
//! - Runs without the pool's lock: the handle's wakers are user code.
//! - An output is not decoded here: its encoded bytes go to the handle
//!   ([`Resolver::resolve_encoded`]), and the thread that takes the result from the handle decodes
//!   it. A slow or panicking `Deserialize` therefore delays or fails only its own task, never the
//!   reader thread that resolves the worker's other tasks. (A worker's error, a `TaskError` of
//!   this crate's own encoding, is decoded by the reader.) An output in the worker's shared
//!   region is decoded from the mapping and released right after, or when the handle is
//!   dropped without taking it.
//! - A panic in a `Deserialize` impl fails that task with a codec error; a panic in a waker or
//!   `Drop` is contained by [`deliver`]. Neither unwinds into the pool's threads.

use polyexec_core::{CodecStage, Resolver, TaskError};
use serde::de::DeserializeOwned;

use crate::protocol;
use crate::shm::Lease;
use crate::shm::stream::Gone;

/// Bytes of a `DONE_*` body before the payload: the task id.
pub(super) const ID_LEN: usize = 8;

/// Delivers a task's result to its typed handle.
pub(super) trait Complete: Send {
    /// `true` if nobody can see the result any more: the caller may skip producing it.
    fn is_abandoned(&self) -> bool;
    /// `body` is a `DONE_OK` frame's body: the task id, then the encoded output.
    fn succeed(self: Box<Self>, body: Vec<u8>);
    /// The encoded output is in the worker's region; decoding it releases it.
    fn succeed_shared(self: Box<Self>, output: Lease);
    fn fail(self: Box<Self>, err: TaskError);
}

impl<T: DeserializeOwned + Send + 'static> Complete for Resolver<T> {
    fn is_abandoned(&self) -> bool {
        Resolver::is_abandoned(self)
    }

    fn succeed(self: Box<Self>, body: Vec<u8>) {
        (*self).resolve_encoded(body, decode_output::<T>);
    }

    fn succeed_shared(self: Box<Self>, output: Lease) {
        // Decoded from the mapping by the joiner: for byte payloads (`Vec<u8>`, `ByteBuf`), the
        // copy into the result is the only one made in this process, and it runs while the
        // worker still writes the output.
        (*self).resolve_deferred(Box::new(move || {
            let result = decode_shared::<T>(&output);
            drop(output);
            result
        }));
    }

    fn fail(self: Box<Self>, err: TaskError) {
        (*self).resolve(Err(err));
    }
}

/// Decodes an output on the thread that takes it from its handle. `body` holds the task id
/// first (the reader checked that it does).
fn decode_output<T: DeserializeOwned + 'static>(body: Vec<u8>) -> Result<T, TaskError> {
    decode_payload(body.get(ID_LEN..).unwrap_or_default())
}

/// Decodes an encoded output.
fn decode_payload<T: DeserializeOwned + 'static>(payload: &[u8]) -> Result<T, TaskError> {
    // A `Deserialize` impl that panics fails this task with a codec error, as a failing one does.
    match polyexec_core::catch_task(|| crate::payload::decode_payload::<T>(payload)) {
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
}

/// Decodes an output in the worker's region, as the worker writes it. A worker that dies before
/// it wrote the whole output fails the task as lost, with how it ended.
fn decode_shared<T: DeserializeOwned + 'static>(output: &Lease) -> Result<T, TaskError> {
    let region = output.region();
    let alive = || region.writer_exit().is_none();
    match polyexec_core::catch_task(|| {
        crate::payload::decode_record::<T>(&output.incoming(), &alive)
    }) {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(err))) => Err(codec(
            CodecStage::DecodeOutput,
            protocol::describe::<T>(err),
        )),
        Ok(Err(Gone)) => Err(match region.writer_exit() {
            Some(exit) => TaskError::WorkerLost(exit),
            None => TaskError::transport("the worker stopped writing the task's output"),
        }),
        Err(panic) => Err(codec(
            CodecStage::DecodeOutput,
            protocol::describe::<T>(panic),
        )),
    }
}

/// A worker's error, from a `DONE_ERR` frame's payload.
pub(super) fn decode_error(payload: &[u8]) -> TaskError {
    protocol::decode::<TaskError>(payload).unwrap_or_else(|err| {
        TaskError::transport(format!("could not decode the worker's error: {err}"))
    })
}

pub(super) fn codec(stage: CodecStage, message: impl ToString) -> TaskError {
    TaskError::codec(stage, message.to_string())
}

/// Runs a completion, containing a panic from a user's waker or `Drop`.
pub(super) fn deliver(body: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
}

#[cfg(test)]
mod tests {
    use polyexec_core::WorkerExit;

    use super::*;
    use crate::shm::{Arena, SHARED_MIN};

    #[test]
    fn an_output_whose_worker_died_while_writing_it_fails_as_lost() {
        let mut arena = Arena::default();
        let mut slot = arena.alloc(SHARED_MIN).unwrap().slot;
        let mut stream = slot.stream();
        let lease = slot.into_lease(SHARED_MIN);
        // Part written, none published, then the worker dies without a word.
        assert!(stream.write(&[0x80, 0x80, 0x04]));
        lease.region().set_writer_exit(WorkerExit::Signal(9));
        std::mem::forget(stream);
        assert_eq!(
            decode_shared::<Vec<u8>>(&lease),
            Err(TaskError::WorkerLost(WorkerExit::Signal(9)))
        );
    }

    #[test]
    fn an_output_written_in_full_is_decoded() {
        let mut arena = Arena::default();
        let bytes = vec![7u8; SHARED_MIN];
        let mut inline = Vec::new();
        let crate::payload::Payload::Streamed {
            slot, len, stream, ..
        } = crate::payload::encode_payload(&bytes, &mut inline, |len| {
            arena.alloc(len).map(|placed| placed.slot)
        })
        .unwrap()
        else {
            panic!("a byte payload given a slot is streamed");
        };
        let lease = slot.into_lease(len);
        assert!(crate::payload::write_streamed(stream, &bytes));
        // A dead worker that wrote everything first still delivers.
        lease.region().set_writer_exit(WorkerExit::Code(0));
        assert_eq!(decode_shared::<Vec<u8>>(&lease), Ok(bytes));
    }
}
