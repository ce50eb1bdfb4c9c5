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
//!
//! Such a *byte payload* (a whole `Vec<u8>` or `serde_bytes::ByteBuf`) that goes through a
//! region is also *streamed* ([`crate::shm::stream`]): its frame is sent first, and the reader
//! copies the bytes out while the writer copies them in.

use std::any::Any;

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

use crate::protocol::{self, CodecError, MAX_FRAME, encode_into, read_u64};
use crate::shm::Slot;
use crate::shm::stream::{Gone, Incoming, Stream};

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
    /// A byte payload given a slot of `len` bytes, not written yet: send the frame naming the
    /// slot first, then write the bytes with [`write_streamed`]. For a worker's output, `bytes`
    /// holds them (the output, taken apart); the pool writes an input from its own reference.
    Streamed {
        slot: Slot,
        len: usize,
        stream: Stream,
        bytes: Option<Vec<u8>>,
    },
}

/// The bytes of a byte payload: a whole `Vec<u8>` or `ByteBuf`.
pub(crate) fn byte_payload<T: 'static>(value: &T) -> Option<&[u8]> {
    let value = value as &dyn Any;
    if let Some(vec) = value.downcast_ref::<Vec<u8>>() {
        return Some(vec);
    }
    value.downcast_ref::<ByteBuf>().map(|buf| buf.as_slice())
}

/// A byte payload taken apart into its bytes, or the value back if it is none.
pub(crate) fn into_bytes<T: 'static>(value: T) -> Result<Vec<u8>, T> {
    let mut value = Some(value);
    let any = &mut value as &mut dyn Any;
    if let Some(vec) = any.downcast_mut::<Option<Vec<u8>>>() {
        return Ok(vec.take().expect("set just above"));
    }
    if let Some(buf) = any.downcast_mut::<Option<ByteBuf>>() {
        return Ok(buf.take().expect("set just above").into_vec());
    }
    Err(value.expect("set just above"))
}

/// A byte payload made from its bytes, if `T` is one.
fn from_bytes<T: 'static>(bytes: Vec<u8>) -> Option<T> {
    let mut value: Option<T> = None;
    let any = &mut value as &mut dyn Any;
    if let Some(vec) = any.downcast_mut::<Option<Vec<u8>>>() {
        *vec = Some(bytes);
    } else if let Some(buf) = any.downcast_mut::<Option<ByteBuf>>() {
        *buf = Some(ByteBuf::from(bytes));
    }
    value
}

/// `true` if `T` is a byte payload.
fn is_bytes<T: 'static>() -> bool {
    let id = std::any::TypeId::of::<T>();
    id == std::any::TypeId::of::<Vec<u8>>() || id == std::any::TypeId::of::<ByteBuf>()
}

/// Writes a byte payload into the slot [`encode_payload`] gave it, as postcard would (the
/// length, then the bytes), publishing as it goes; `false` if the slot is not its size.
pub(crate) fn write_streamed(mut stream: Stream, bytes: &[u8]) -> bool {
    let mut prefix = [0u8; 10];
    let Ok(prefix) = postcard::to_slice(&bytes.len(), &mut prefix) else {
        return false;
    };
    stream.write(prefix) && stream.write(bytes) && stream.finish()
}

/// Decodes a task's input or output from a record in a shared region: a byte payload as its
/// bytes are published (one copy, made while the writer still writes), anything else once the
/// record is complete. [`Gone`] if its writer stopped before it was.
pub(crate) fn decode_record<T: DeserializeOwned + 'static>(
    record: &Incoming<'_>,
    alive: &dyn Fn() -> bool,
) -> Result<Result<T, CodecError>, Gone> {
    if !is_bytes::<T>() {
        return Ok(decode_payload(record.complete(alive)?));
    }
    let len = record.len();
    // The length prefix: a varint of at most 10 bytes.
    let head = record.published(10, alive)?;
    let (n, after) = match postcard::take_from_bytes::<u64>(head) {
        Ok(taken) => taken,
        Err(err) => return Ok(Err(CodecError::Postcard(err))),
    };
    let mut at = head.len() - after.len();
    let rest = (len - at) as u64;
    if n > rest {
        return Ok(Err(CodecError::Postcard(
            postcard::Error::DeserializeUnexpectedEnd,
        )));
    }
    if n < rest {
        return Ok(Err(CodecError::Trailing((rest - n) as usize)));
    }
    let mut bytes = Vec::with_capacity(n as usize);
    while at < len {
        let published = record.published(at + 1, alive)?;
        bytes.extend_from_slice(&published[at..]);
        at = published.len();
    }
    Ok(Ok(from_bytes(bytes).expect("checked by is_bytes")))
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

/// Decodes a task's input or output, which must fill `bytes` exactly; a byte payload as bytes.
pub(crate) fn decode_payload<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, CodecError> {
    if is_bytes::<T>() {
        let ByteVec(decoded) = protocol::decode(bytes)?;
        return Ok(from_bytes(decoded).expect("checked by is_bytes"));
    }
    protocol::decode(bytes)
}

/// Encodes a task's input or output. Its size is measured first, so a value too large for any
/// frame fails before a byte is written or allocated; a value that `place` finds room for in a
/// shared region is serialized straight into it (one copy: no buffer, no socket), anything else
/// is appended to `inline`. A byte payload is written as bytes; given a slot, it is left to the
/// caller to stream ([`Payload::Streamed`]).
pub(crate) fn encode_payload<T: Serialize + 'static>(
    value: &T,
    inline: &mut Vec<u8>,
    place: impl FnOnce(usize) -> Option<Slot>,
) -> Result<Payload, CodecError> {
    let Some(bytes) = byte_payload(value) else {
        return encode_value(value, inline, place);
    };
    let size = postcard::serialize_with_flavor(&AsBytes(bytes), Count(0))
        .map_err(CodecError::Postcard)? as usize;
    if size as u64 + FRAME_OVERHEAD > MAX_FRAME as u64 {
        return Err(CodecError::TooLarge(size as u64));
    }
    match place(size) {
        Some(mut slot) => {
            let stream = slot.stream();
            Ok(Payload::Streamed {
                slot,
                len: size,
                stream,
                bytes: None,
            })
        }
        None => {
            encode_into(&AsBytes(bytes), inline)?;
            Ok(Payload::Inline)
        }
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
    fn a_byte_payload_is_streamed_into_a_region_slot_as_postcard_writes_it() {
        for len in [crate::shm::SHARED_MIN, 300_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut arena = crate::shm::Arena::default();
            let mut inline = Vec::new();
            let payload =
                encode_payload(&bytes, &mut inline, |len| arena.alloc(len).map(|p| p.slot))
                    .unwrap();
            let Payload::Streamed {
                slot, len, stream, ..
            } = payload
            else {
                panic!("a byte payload given a slot is streamed");
            };
            assert!(inline.is_empty());
            let lease = slot.into_lease(len);
            let record = lease.incoming();
            assert!(write_streamed(stream, &bytes));
            assert_eq!(
                record.complete(&|| true).unwrap(),
                postcard::to_allocvec(&AsBytes(&bytes)).unwrap()
            );
            let decoded: Vec<u8> = decode_record(&record, &|| true).unwrap().unwrap();
            assert_eq!(decoded, bytes);
            let buf: ByteBuf = decode_record(&record, &|| true).unwrap().unwrap();
            assert_eq!(buf.into_vec(), bytes);
        }
    }

    #[test]
    fn a_streamed_record_whose_length_prefix_disagrees_is_refused() {
        let mut arena = crate::shm::Arena::default();
        let len = crate::shm::SHARED_MIN;
        let mut slot = arena.alloc(len).unwrap().slot;
        let mut stream = slot.stream();
        let lease = slot.into_lease(len);
        // The prefix says 10 bytes; the record holds many more.
        assert!(stream.write(&[10]) && stream.write(&vec![0; len - 1]) && stream.finish());
        assert!(matches!(
            decode_record::<Vec<u8>>(&lease.incoming(), &|| true),
            Ok(Err(CodecError::Trailing(n))) if n == len - 1 - 10
        ));
        // A writer that stops short: the reader is told, not left waiting.
        let mut slot = arena.alloc(len).unwrap().slot;
        let stream = slot.stream();
        let lease = slot.into_lease(len);
        assert!(!write_streamed(stream, &vec![0; len - 4]));
        assert_eq!(
            decode_record::<Vec<u8>>(&lease.incoming(), &|| true).err(),
            Some(Gone)
        );
    }

    #[test]
    fn byte_payloads_are_recognised_and_taken_apart() {
        assert_eq!(byte_payload(&vec![1u8, 2]), Some(&[1u8, 2][..]));
        assert_eq!(byte_payload(&ByteBuf::from(vec![3u8])), Some(&[3u8][..]));
        assert_eq!(byte_payload(&vec![1u16]), None);
        assert_eq!(into_bytes(ByteBuf::from(vec![4u8])), Ok(vec![4u8]));
        assert_eq!(into_bytes(7u32), Err(7u32));
    }
}
