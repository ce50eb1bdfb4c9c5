//! Task payloads (inputs and outputs): measuring them, and encoding them into a shared region
//! or the frame buffer.
//!
//! A payload is measured before it is written (a postcard pass that only counts), so one too
//! large for any frame fails before a byte is allocated, and one that a region takes is
//! serialized straight into it: one copy, no buffer, no socket.
//!
//! A whole input or output of type `Vec<u8>` is encoded and decoded as bytes (one memcpy each
//! way) instead of element by element, as serde would have postcard do: postcard writes a
//! sequence of `u8` and a byte string the same way (the length, then the bytes), so the bytes
//! on the wire are the same and either side may take either path.

use std::any::Any;

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::{self, CodecError, MAX_FRAME, encode_into, read_u64};
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

/// A byte slice that serde sees as bytes: postcard writes its length, then the bytes in one copy.
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A `Vec<u8>` that serde decodes as bytes (one copy) rather than as a sequence.
struct ByteVec(Vec<u8>);

impl<'de> Deserialize<'de> for ByteVec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteVec, D::Error> {
        struct Bytes;

        impl Visitor<'_> for Bytes {
            type Value = ByteVec;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }

            fn visit_bytes<E>(self, bytes: &[u8]) -> Result<ByteVec, E> {
                Ok(ByteVec(bytes.to_vec()))
            }

            fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<ByteVec, E> {
                Ok(ByteVec(bytes))
            }
        }

        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// Decodes a task's input or output, which must fill `bytes` exactly; a `Vec<u8>` as bytes.
pub(crate) fn decode_payload<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut value: Option<T> = None;
    if let Some(vec) = (&mut value as &mut dyn Any).downcast_mut::<Option<Vec<u8>>>() {
        let ByteVec(decoded) = protocol::decode(bytes)?;
        *vec = Some(decoded);
        return Ok(value.expect("set just above"));
    }
    protocol::decode(bytes)
}

/// Encodes a task's input or output. Its size is measured first, so a value too large for any
/// frame fails before a byte is written or allocated; a value that `place` finds room for in a
/// shared region is serialized straight into it (one copy: no buffer, no socket), anything else
/// is appended to `inline`. A `Vec<u8>` is written as bytes.
pub(crate) fn encode_payload<T: Serialize + 'static>(
    value: &T,
    inline: &mut Vec<u8>,
    place: impl FnOnce(usize) -> Option<Slot>,
) -> Result<Payload, CodecError> {
    match (value as &dyn Any).downcast_ref::<Vec<u8>>() {
        Some(bytes) => encode_value(&AsBytes(bytes), inline, place),
        None => encode_value(value, inline, place),
    }
}

fn encode_value<T: Serialize + ?Sized>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_inline<T: Serialize + 'static>(value: &T) -> Vec<u8> {
        let mut inline = Vec::new();
        let payload = encode_payload(value, &mut inline, |_| None).unwrap();
        assert!(matches!(payload, Payload::Inline));
        inline
    }

    #[test]
    fn a_byte_vector_is_encoded_as_serde_would_and_decoded_either_way() {
        let bytes: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        // The same bytes as postcard's element-by-element encoding: a worker or pool that takes
        // the generic path reads and writes the same frames.
        let encoded = encode_inline(&bytes);
        assert_eq!(encoded, postcard::to_allocvec(&bytes).unwrap());
        assert_eq!(decode_payload::<Vec<u8>>(&encoded).unwrap(), bytes);
        assert_eq!(protocol::decode::<Vec<u8>>(&encoded).unwrap(), bytes);
        assert_eq!(encode_inline(&Vec::<u8>::new()), [0]);
        assert_eq!(decode_payload::<Vec<u8>>(&[0]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_short_or_long_byte_vector_payload_is_refused() {
        let encoded = encode_inline(&vec![7u8; 300]);
        assert!(decode_payload::<Vec<u8>>(&encoded[..encoded.len() - 1]).is_err());
        let mut longer = encoded.clone();
        longer.push(0);
        assert!(matches!(
            decode_payload::<Vec<u8>>(&longer),
            Err(CodecError::Trailing(1))
        ));
    }

    #[test]
    fn other_types_take_serdes_own_path() {
        let value = (vec![1u16, 2, 3], String::from("x"), vec![4u8, 5]);
        let encoded = encode_inline(&value);
        assert_eq!(encoded, postcard::to_allocvec(&value).unwrap());
        assert_eq!(
            decode_payload::<(Vec<u16>, String, Vec<u8>)>(&encoded).unwrap(),
            value
        );
    }

    #[test]
    fn a_byte_vector_goes_into_a_region_slot_in_full() {
        let bytes = vec![0xA5u8; crate::shm::SHARED_MIN];
        let mut arena = crate::shm::Arena::default();
        let mut inline = Vec::new();
        let payload =
            encode_payload(&bytes, &mut inline, |len| arena.alloc(len).map(|p| p.slot)).unwrap();
        let Payload::Shared { slot, len } = payload else {
            panic!("a payload of SHARED_MIN bytes goes into the region");
        };
        assert!(inline.is_empty());
        let lease = slot.into_lease(len);
        assert_eq!(lease.bytes(), postcard::to_allocvec(&bytes).unwrap());
        assert_eq!(decode_payload::<Vec<u8>>(lease.bytes()).unwrap(), bytes);
    }
}
