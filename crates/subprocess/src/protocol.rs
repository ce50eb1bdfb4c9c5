//! The wire protocol between the pool and a worker: length-prefixed frames on one socket pair.
//!
//! A frame is `[len: u32 LE][tag: u8][body]`, where `len` counts the tag and the body. Task frames
//! carry a task id, so any number of tasks are in flight on the one channel, and their fixed
//! headers are written by hand (no codec call on the hot path). Task inputs and outputs, and the
//! rare control messages, are encoded with postcard.
//!
//! | tag | direction | body |
//! |---|---|---|
//! | `HELLO` | pool → worker | postcard [`Hello`] |
//! | `RUN` | pool → worker | id u64, kind u8, offset i64, tag u64, encoded input |
//! | `CANCEL` | pool → worker | id u64 |
//! | `EXIT` | pool → worker | empty: finish every task held, then exit |
//! | `READY` | worker → pool | postcard [`Ready`] |
//! | `REFUSED` | worker → pool | postcard `String`: why the worker will not serve |
//! | `STARTED` | worker → pool | id u64: the worker is about to run this task's code (omitted for a lone task, see the worker) |
//! | `DONE_OK` | worker → pool | id u64, encoded output |
//! | `DONE_ERR` | worker → pool | id u64, postcard [`TaskError`] |

use std::io::{self, IoSlice, Read};
use std::ops::Range;
use std::os::fd::AsFd;
use std::time::Duration;

use polyexec_core::TaskError;
use rustix::net::{SendAncillaryBuffer, SendFlags};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::entry::{Kind, TaskAddr};

/// Bumped on every incompatible change; part of the handshake.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

pub(crate) const HELLO: u8 = 1;
pub(crate) const RUN: u8 = 2;
pub(crate) const CANCEL: u8 = 3;
pub(crate) const EXIT: u8 = 4;
pub(crate) const READY: u8 = 0x81;
pub(crate) const REFUSED: u8 = 0x82;
pub(crate) const STARTED: u8 = 0x83;
pub(crate) const DONE_OK: u8 = 0x84;
pub(crate) const DONE_ERR: u8 = 0x85;

/// Bytes before a frame's body: the length and the tag.
pub(crate) const HEADER: usize = 5;
/// Bytes of a `RUN` body before the input: id, kind, offset, tag.
const RUN_HEADER: usize = 8 + 1 + 8 + 8;
/// Largest frame either side accepts. Larger inputs and outputs fail with a codec error.
pub(crate) const MAX_FRAME: usize = u32::MAX as usize;

/// The pool's first message to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) protocol: u32,
    pub(crate) fingerprint: u64,
    pub(crate) index: u32,
    pub(crate) key: [u8; 16],
    /// The per-task time limit; the worker enforces it on async tasks itself.
    pub(crate) timeout: Option<Duration>,
    pub(crate) init: Option<TaskAddr>,
}

/// A worker's answer to [`Hello`] when it accepts to serve.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ready {
    pub(crate) protocol: u32,
    pub(crate) fingerprint: u64,
    pub(crate) pid: u32,
}

/// A postcard flavor that appends to an existing `Vec`, so a frame's header and body share one
/// buffer and nothing is copied.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("{0}")]
    Postcard(postcard::Error),
    #[error("{0} bytes left over after the value")]
    Trailing(usize),
}

/// A codec failure's message, naming the type: postcard keeps no custom message of a failing
/// `Serialize` or `Deserialize` impl, so the type is often the most useful part.
pub(crate) fn describe<T: ?Sized>(err: impl std::fmt::Display) -> String {
    format!("{err} (type `{}`)", std::any::type_name::<T>())
}

/// Appends the postcard encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    postcard::serialize_with_flavor(value, Append(out)).map_err(CodecError::Postcard)
}

/// Decodes a value that must fill `bytes` exactly.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(CodecError::Postcard)?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    Ok(value)
}

/// Starts a frame with `tag` at the end of `buf`; returns where it starts, for [`end_frame`].
#[inline]
pub(crate) fn begin_frame(buf: &mut Vec<u8>, tag: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, tag]);
    start
}

/// Writes the length of the frame begun at `start`. `false` if it is too large (the caller
/// truncates the buffer back to `start`).
#[inline]
pub(crate) fn end_frame(buf: &mut [u8], start: usize) -> bool {
    let len = buf.len() - start - 4;
    match u32::try_from(len) {
        Ok(len) if (len as usize) < MAX_FRAME => {
            buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
            true
        }
        _ => false,
    }
}

/// Appends a whole frame whose body is postcard `value`.
pub(crate) fn push_message<T: Serialize>(buf: &mut Vec<u8>, tag: u8, value: &T) {
    let start = begin_frame(buf, tag);
    // Control messages are small structs of plain fields: encoding cannot fail.
    encode_into(value, buf).expect("encode a control message");
    let ok = end_frame(buf, start);
    debug_assert!(ok);
}

/// Appends a frame whose body is one task id.
#[inline]
pub(crate) fn push_id_frame(buf: &mut Vec<u8>, tag: u8, id: u64) {
    buf.extend_from_slice(&9u32.to_le_bytes());
    buf.push(tag);
    buf.extend_from_slice(&id.to_le_bytes());
}

/// Starts a `RUN` frame: header, id and address; the caller appends the input and calls
/// [`end_frame`].
#[inline]
pub(crate) fn begin_run(buf: &mut Vec<u8>, id: u64, addr: TaskAddr) -> usize {
    let start = begin_frame(buf, RUN);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.push(addr.kind as u8);
    buf.extend_from_slice(&addr.offset.to_le_bytes());
    buf.extend_from_slice(&addr.tag.to_le_bytes());
    start
}

/// A `RUN` body, split.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub(crate) id: u64,
    pub(crate) addr: TaskAddr,
    pub(crate) input: &'a [u8],
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// Splits a `RUN` body; `None` if it is malformed.
pub(crate) fn parse_run(body: &[u8]) -> Option<Run<'_>> {
    if body.len() < RUN_HEADER {
        return None;
    }
    let id = read_u64(&body[0..8]);
    let kind = Kind::from_u8(body[8])?;
    let offset = read_u64(&body[9..17]) as i64;
    let tag = read_u64(&body[17..25]);
    Some(Run {
        id,
        addr: TaskAddr { kind, offset, tag },
        input: &body[RUN_HEADER..],
    })
}

/// Splits a body that starts with a task id; `None` if too short.
#[inline]
pub(crate) fn split_id(body: &[u8]) -> Option<(u64, &[u8])> {
    if body.len() < 8 {
        return None;
    }
    Some((read_u64(&body[..8]), &body[8..]))
}

/// Encodes a task error for a `DONE_ERR` frame.
pub(crate) fn push_error(buf: &mut Vec<u8>, id: u64, err: &TaskError) {
    let start = begin_frame(buf, DONE_ERR);
    buf.extend_from_slice(&id.to_le_bytes());
    if encode_into(err, buf).is_err() || !end_frame(buf, start) {
        buf.truncate(start);
        let fallback = TaskError::transport("the worker could not encode a task error");
        let start = begin_frame(buf, DONE_ERR);
        buf.extend_from_slice(&id.to_le_bytes());
        encode_into(&fallback, buf).expect("encode a plain error");
        end_frame(buf, start);
    }
}

/// Reads frames from a stream into one growing buffer; complete frames are handed out as ranges
/// of that buffer, so small frames cost no allocation and large ones are read in place.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    /// Start of the first frame not yet consumed.
    start: usize,
    /// End of the bytes read.
    end: usize,
    /// The last read returned less than it had room for: the stream had nothing more then.
    short: bool,
}

/// A complete frame in a [`FrameReader`]'s buffer.
#[derive(Debug, Clone)]
pub(crate) struct FrameRef {
    pub(crate) tag: u8,
    pub(crate) body: Range<usize>,
}

const READ_CHUNK: usize = 64 * 1024;
/// Least free space a read is given.
const MIN_ROOM: usize = 4096;
/// A buffer grown past this for one frame is shrunk again once drained.
const KEEP_AT_MOST: usize = 16 << 20;

impl FrameReader {
    pub(crate) fn new() -> Self {
        FrameReader {
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            short: false,
        }
    }

    /// The length of the frame at the start of the unconsumed bytes, once its header is in.
    fn pending_len(&self) -> Option<usize> {
        let have = &self.buf[self.start..self.end];
        if have.len() < 4 {
            return None;
        }
        Some(u32::from_le_bytes([have[0], have[1], have[2], have[3]]) as usize)
    }

    /// Reads once, blocking, after making room. `Ok(false)` on end of stream.
    pub(crate) fn fill(&mut self, stream: &mut impl Read) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_AT_MOST {
                // A huge frame came and went: give the memory back.
                self.buf.truncate(READ_CHUNK);
                self.buf.shrink_to_fit();
            }
        }
        let needed = match self.pending_len() {
            Some(len) => 4 + len,
            None => HEADER,
        };
        if self.start + needed > self.buf.len() || self.buf.len() - self.end < MIN_ROOM {
            // Move the partial frame to the front, then grow if it still does not fit.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            // Grow toward the declared length only as fast as bytes actually arrive (at most
            // doubling), so a corrupted length costs memory in proportion to the data received,
            // not the 4 GiB it may claim.
            let want = needed
                .min(self.end + self.end.max(READ_CHUNK))
                .max(self.end + MIN_ROOM);
            if want > self.buf.len() {
                self.buf.resize(want, 0);
            }
        }
        loop {
            match stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.short = n < self.buf.len() - self.end;
                    self.end += n;
                    return Ok(true);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// The next complete frame, consuming it. Its body stays valid until the next `fill`.
    /// `Err` for a frame whose declared length is impossible.
    pub(crate) fn next_frame(&mut self) -> Result<Option<FrameRef>, TaskError> {
        let Some(len) = self.pending_len() else {
            return Ok(None);
        };
        if len == 0 {
            return Err(TaskError::transport("received an empty frame"));
        }
        if self.end - self.start < 4 + len {
            return Ok(None);
        }
        let tag = self.buf[self.start + 4];
        let body = self.start + HEADER..self.start + 4 + len;
        self.start += 4 + len;
        Ok(Some(FrameRef { tag, body }))
    }

    /// `true` if the last read did not fill the room it had, so the stream was drained then.
    pub(crate) fn drained(&self) -> bool {
        self.short
    }

    /// `true` while part of a frame has been read and the rest has not.
    pub(crate) fn in_frame(&self) -> bool {
        self.start < self.end
    }

    /// A frame's body.
    pub(crate) fn body(&self, frame: &FrameRef) -> &[u8] {
        &self.buf[frame.body.clone()]
    }

    pub(crate) fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// Writes every byte of `frames` to the socket, coalescing them into as few `sendmsg` calls as
/// possible. `MSG_NOSIGNAL`: a peer that died gives an error here, never `SIGPIPE`.
pub(crate) fn send_all<Fd: AsFd, B: AsRef<[u8]>>(socket: Fd, frames: &[B]) -> io::Result<()> {
    const MAX_IOV: usize = 512;
    let fd = socket.as_fd();
    let mut index = 0;
    let mut skip = 0;
    while index < frames.len() {
        let mut slices: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        let mut offset = skip;
        for frame in &frames[index..] {
            if count == MAX_IOV {
                break;
            }
            slices[count] = IoSlice::new(&frame.as_ref()[offset..]);
            offset = 0;
            count += 1;
        }
        let written = loop {
            match rustix::net::sendmsg(
                fd,
                &slices[..count],
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            ) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // Advance over what was written.
        let mut left = written;
        while left > 0 {
            let remaining = frames[index].as_ref().len() - skip;
            if left >= remaining {
                left -= remaining;
                index += 1;
                skip = 0;
            } else {
                skip += left;
                left = 0;
            }
        }
        while index < frames.len() && frames[index].as_ref().len() == skip {
            index += 1;
            skip = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_reader() {
        let mut buf = Vec::new();
        push_id_frame(&mut buf, STARTED, 7);
        let start = begin_frame(&mut buf, DONE_OK);
        buf.extend_from_slice(&7u64.to_le_bytes());
        encode_into(&"hello", &mut buf).unwrap();
        assert!(end_frame(&mut buf, start));
        let big = vec![3u8; 300_000];
        let start = begin_frame(&mut buf, DONE_OK);
        buf.extend_from_slice(&big);
        assert!(end_frame(&mut buf, start));

        let mut reader = FrameReader::new();
        let mut stream = std::io::Cursor::new(buf);
        let mut seen = Vec::new();
        while reader.fill(&mut stream).unwrap() {
            while let Some(frame) = reader.next_frame().unwrap() {
                seen.push((frame.tag, reader.body(&frame).to_vec()));
            }
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], (STARTED, 7u64.to_le_bytes().to_vec()));
        let (id, rest) = split_id(&seen[1].1).unwrap();
        assert_eq!(id, 7);
        assert_eq!(decode::<String>(rest).unwrap(), "hello");
        assert_eq!(seen[2].1, big);
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        let mut buf = Vec::new();
        encode_into(&(1u8, 2u8), &mut buf).unwrap();
        assert!(decode::<u8>(&buf).is_err());
        assert_eq!(decode::<(u8, u8)>(&buf).unwrap(), (1, 2));
    }
}

#[cfg(test)]
mod garbage {
    use super::*;

    /// A deterministic stream of pseudo-random bytes (xorshift), so failures reproduce.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        for seed in 0..2_000u64 {
            let mut bytes = noise(seed, (seed as usize * 7) % 300);
            // Keep declared lengths small so frames complete within the input.
            if bytes.len() >= 4 {
                bytes[3] = 0;
                bytes[2] = 0;
            }
            let mut reader = FrameReader::new();
            let mut stream = std::io::Cursor::new(bytes);
            while let Ok(true) = reader.fill(&mut stream) {
                while let Ok(Some(frame)) = reader.next_frame() {
                    let body = reader.body(&frame);
                    let _ = parse_run(body);
                    let _ = split_id(body);
                    let _ = decode::<Hello>(body);
                    let _ = decode::<TaskError>(body);
                }
            }
        }
    }
}
