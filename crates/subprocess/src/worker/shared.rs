//! The worker's side of the shared-memory regions (see [`crate::shm`]): where a task's input is
//! read from, and where a large output goes.
//!
//! # Invariants
//!
//! - The pool's region of inputs is held (an `Arc`) while a task's input is decoded from it, so
//!   a region frame read meanwhile cannot unmap it.
//! - A region made for outputs is announced (its descriptor sent) before any frame that names
//!   it, and only replaces one that the parent released entirely, so no frame still in flight
//!   names the old one.

use std::sync::Arc;

use polyexec_core::TaskError;

use super::Channel;
use crate::payload;
use crate::protocol;
use crate::shm::{Arena, Region, Slot};

impl Channel {
    /// Space in this worker's region for an output of `len` bytes, if it takes it.
    pub(super) fn place_output(&self, arena: &mut Arena, len: usize) -> Option<Slot> {
        if !self.shared_memory {
            return None;
        }
        let placed = arena.alloc(len)?;
        if placed.new_region {
            *self.announce.borrow_mut() = Some(Arc::clone(placed.slot.region()));
        }
        Some(placed.slot)
    }

    /// Appends a `DONE_SHARED` frame for an output in `slot`.
    pub(super) fn push_shared(buf: &mut Vec<u8>, id: u64, slot: Slot, len: usize) {
        let start = protocol::begin_frame(buf, protocol::DONE_SHARED);
        buf.extend_from_slice(&id.to_le_bytes());
        payload::Place::of(&slot, len).push(buf);
        protocol::end_frame(buf, start);
        slot.sent();
    }

    /// Where a `RUN_SHARED` task's input is: in the pool's region, if this worker has it mapped.
    pub(super) fn shared_input(&self, place: payload::Place) -> Result<Arc<Region>, TaskError> {
        let region = self.inputs.borrow().clone();
        region
            .filter(|region| {
                region.generation() == place.generation
                    && region.bytes(place.offset, place.len).is_some()
                    && region.progress(place.offset).is_some()
            })
            .ok_or_else(|| {
                TaskError::transport(
                    "the worker could not read the task's input from shared memory (the region \
                     could not be mapped); ProcessPoolBuilder::shared_memory(false) avoids it",
                )
            })
    }

    /// An output encoded already (an async task's), copied into the region if it is large and
    /// finds room: one copy that still saves the socket's two. `false` if it must go inline.
    pub(super) fn push_encoded_shared(&self, id: u64, bytes: &[u8]) -> bool {
        if bytes.len() < crate::shm::SHARED_MIN {
            return false;
        }
        let mut arena = std::mem::take(&mut *self.outputs.borrow_mut());
        let slot = self.place_output(&mut arena, bytes.len());
        *self.outputs.borrow_mut() = arena;
        let Some(mut slot) = slot else {
            return false;
        };
        slot.bytes_mut().copy_from_slice(bytes);
        Self::push_shared(&mut self.out.borrow_mut(), id, slot, bytes.len());
        true
    }
}
