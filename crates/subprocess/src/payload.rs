//! Task payloads (inputs and outputs): measuring them, and encoding them into a shared region
//! or the frame buffer.
//!
//! A payload is measured before it is written (a postcard pass that only counts), so one too
//! large for any frame fails before a byte is allocated, and one that a region takes is
//! serialized straight into it: one copy, no buffer, no socket.

use serde::Serialize;

use crate::protocol::{CodecError, MAX_FRAME, encode_into, read_u64};
use crate::shm::Slot;

/// A postcard flavor that only counts bytes: a payload's size is known before any is written.
struct Count(u64);

impl postcard::ser_flavors::Flavor for Count {
    type Output = u64;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0 += data.len() as u64;
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, _: u8) -> postcard::Result<()> {
        self.0 += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<u64> {
        Ok(self.0)
    }
}

/// A postcard flavor that writes into a slot of a shared region.
struct Fill<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl postcard::ser_flavors::Flavor for Fill<'_> {
    type Output = usize;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.at + data.len();
        let dest = self
            .out
            .get_mut(self.at..end)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        dest.copy_from_slice(data);
        self.at = end;
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        let dest = self
            .out
            .get_mut(self.at)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *dest = data;
        self.at += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.at)
    }
}

/// Room a frame needs besides its payload (header, id, address, place), well above the real one.
const FRAME_OVERHEAD: u64 = 64;

/// Where [`encode_payload`] put a value.
#[derive(Debug)]
pub(crate) enum Payload {
    /// Appended to the frame buffer.
    Inline,
    /// Serialized into a shared region's slot: `len` bytes at its start.
    Shared { slot: Slot, len: usize },
}

/// Encodes a task's input or output. Its size is measured first, so a value too large for any
/// frame fails before a byte is written or allocated; a value that `place` finds room for in a
/// shared region is serialized straight into it (one copy: no buffer, no socket), anything else
/// is appended to `inline`.
pub(crate) fn encode_payload<T: Serialize + ?Sized>(
    value: &T,
    inline: &mut Vec<u8>,
    place: impl FnOnce(usize) -> Option<Slot>,
) -> Result<Payload, CodecError> {
    let size = postcard::serialize_with_flavor(value, Count(0)).map_err(CodecError::Postcard)?;
    // Every size a region takes is far below the frame limit.
    if size + FRAME_OVERHEAD > MAX_FRAME as u64 {
        return Err(CodecError::TooLarge(size));
    }
    if let Some(mut slot) = place(size as usize) {
        let written = postcard::serialize_with_flavor(
            value,
            Fill {
                out: slot.bytes_mut(),
                at: 0,
            },
        );
        match written {
            Ok(len) => return Ok(Payload::Shared { slot, len }),
            // A `Serialize` impl that writes more the second time: the socket takes it.
            Err(postcard::Error::SerializeBufferFull) => slot.release(),
            Err(err) => {
                slot.release();
                return Err(CodecError::Postcard(err));
            }
        }
    }
    encode_into(value, inline)?;
    Ok(Payload::Inline)
}

/// The place of a payload in a shared region, as frames carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) generation: u64,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// Bytes of a [`Place`] in a frame.
pub(crate) const PLACE_LEN: usize = 24;

impl Place {
    pub(crate) fn of(slot: &Slot, len: usize) -> Place {
        Place {
            generation: slot.region().generation(),
            offset: slot.place().0,
            len,
        }
    }

    pub(crate) fn push(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.generation.to_le_bytes());
        buf.extend_from_slice(&(self.offset as u64).to_le_bytes());
        buf.extend_from_slice(&(self.len as u64).to_le_bytes());
    }

    /// A place at the start of `bytes`, which must hold exactly one.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Place> {
        if bytes.len() != PLACE_LEN {
            return None;
        }
        Some(Place {
            generation: read_u64(&bytes[0..8]),
            offset: usize::try_from(read_u64(&bytes[8..16])).ok()?,
            len: usize::try_from(read_u64(&bytes[16..24])).ok()?,
        })
    }
}
