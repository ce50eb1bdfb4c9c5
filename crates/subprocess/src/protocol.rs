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
//! | `STARTED` | worker → pool | id u64: the worker is about to run this task's code |
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

/// Property-based fuzzing of the frame decoder (proptest, with shrinking): random bytes,
/// truncated frames, flipped bits, huge declared lengths, in any split across reads. Cases:
/// `POLYEXEC_FUZZ_CASES` (default 1,000 per property).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::entry::Key;

    /// A stream that hands out its bytes in reads of the given sizes (cycled), as a socket may.
    struct Chunked<'a> {
        data: &'a [u8],
        sizes: &'a [usize],
        next: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.next % self.sizes.len()].max(1);
            self.next += 1;
            let n = size.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// What the reader made of a stream: the frames, whether it stopped on an error, whether it
    /// ended inside a frame, and the largest its buffer grew.
    #[derive(Debug, Default)]
    struct Outcome {
        frames: Vec<(u8, Vec<u8>)>,
        error: bool,
        in_frame: bool,
        max_buffer: usize,
    }

    fn read_stream(data: &[u8], sizes: &[usize]) -> Outcome {
        let mut stream = Chunked {
            data,
            sizes,
            next: 0,
        };
        let mut reader = FrameReader::new();
        let mut outcome = Outcome::default();
        'read: while reader.fill(&mut stream).expect("a slice never fails") {
            outcome.max_buffer = outcome.max_buffer.max(reader.buf.len());
            loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => {
                        let body = reader.body(&frame);
                        // Every decoder the two sides apply to a frame: errors, never panics.
                        let _ = parse_run(body);
                        let _ = split_id(body);
                        let _ = decode::<Hello>(body);
                        let _ = decode::<Ready>(body);
                        let _ = decode::<TaskError>(body);
                        let _ = decode::<String>(body);
                        if let Some((_, rest)) = split_id(body) {
                            let _ = decode::<TaskError>(rest);
                        }
                        outcome.frames.push((frame.tag, body.to_vec()));
                    }
                    Ok(None) => break,
                    Err(_) => {
                        outcome.error = true;
                        break 'read;
                    }
                }
            }
        }
        outcome.in_frame = reader.in_frame();
        outcome
    }

    fn frame_bytes(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (tag, body) in frames {
            let start = begin_frame(&mut bytes, *tag);
            bytes.extend_from_slice(body);
            assert!(end_frame(&mut bytes, start));
        }
        bytes
    }

    /// Frame bodies: mostly small and random, sometimes larger than the reader's first buffer
    /// (so it must grow) and filled with one byte (random bytes of that size cost more to
    /// generate than to test).
    fn frames() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        proptest::collection::vec(
            (
                any::<u8>(),
                prop_oneof![
                    8 => proptest::collection::vec(any::<u8>(), 0..64),
                    1 => (0usize..150_000, any::<u8>()).prop_map(|(len, b)| vec![b; len]),
                ],
            ),
            0..8,
        )
    }

    /// How a socket splits the stream: tiny reads (byte by byte, for headers split anywhere)
    /// only alongside larger ones, so a large frame is not read a byte at a time.
    fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(
            prop_oneof![1usize..16, 1usize..5000, Just(usize::MAX)],
            1..8,
        )
        .prop_map(|mut sizes| {
            sizes.push(64 * 1024);
            sizes
        })
    }

    /// Memory the reader may hold after `received` bytes: it grows toward a declared length
    /// only as fast as bytes arrive (at most doubling), never to the 4 GiB a header may claim.
    fn memory_bound(received: usize) -> usize {
        2 * received + READ_CHUNK + MIN_ROOM
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: crate::security_tests::fuzz_cases(1_000),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any bytes, split any way: frames or an error, never a panic, and memory in
        /// proportion to the bytes received.
        #[test]
        fn random_bytes_are_frames_or_an_error(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            small_lengths in any::<bool>(),
            sizes in chunk_sizes(),
        ) {
            let mut data = data;
            if small_lengths && data.len() >= 4 {
                // Also reach the decoders: keep the first declared length within the data.
                data[2] = 0;
                data[3] = 0;
            }
            let outcome = read_stream(&data, &sizes);
            prop_assert!(outcome.max_buffer <= memory_bound(data.len()).max(READ_CHUNK));
        }

        /// Well-formed frames come out whole and in order however the stream is split; a stream
        /// cut anywhere yields exactly the frames that ended before the cut, and says whether
        /// it stopped inside one.
        #[test]
        fn frames_survive_any_split_and_any_truncation(
            frames in frames(),
            sizes in chunk_sizes(),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = frame_bytes(&frames);
            let whole = read_stream(&bytes, &sizes);
            prop_assert!(!whole.error);
            prop_assert!(!whole.in_frame);
            prop_assert_eq!(&whole.frames, &frames);

            let cut = cut.index(bytes.len() + 1);
            let partial = read_stream(&bytes[..cut], &sizes);
            prop_assert!(!partial.error);
            let mut end = 0;
            let complete = frames
                .iter()
                .take_while(|(_, body)| {
                    end += HEADER + body.len();
                    end <= cut
                })
                .count();
            prop_assert_eq!(&partial.frames[..], &frames[..complete]);
            let boundary = frames[..complete].iter().map(|(_, b)| HEADER + b.len()).sum::<usize>();
            prop_assert_eq!(partial.in_frame, cut > boundary);
        }

        /// A header declaring a huge length (up to 4 GiB) followed by some bytes: no frame, no
        /// error, and memory in proportion to what arrived, not to what was declared.
        #[test]
        fn huge_declared_lengths_cost_only_what_arrives(
            declared in (1u32 << 20)..=u32::MAX,
            tail in 0usize..300_000,
            sizes in chunk_sizes(),
        ) {
            let mut data = declared.to_le_bytes().to_vec();
            data.push(RUN);
            data.resize(data.len() + tail, 0xEE);
            let outcome = read_stream(&data, &sizes);
            prop_assert!(outcome.frames.is_empty());
            prop_assert!(!outcome.error);
            prop_assert!(outcome.in_frame);
            prop_assert!(outcome.max_buffer <= memory_bound(data.len()).max(READ_CHUNK));
        }

        /// A zero length is an error wherever it appears.
        #[test]
        fn a_zero_length_is_an_error(frames in frames(), sizes in chunk_sizes()) {
            let mut bytes = frame_bytes(&frames);
            bytes.extend_from_slice(&[0, 0, 0, 0]);
            let outcome = read_stream(&bytes, &sizes);
            prop_assert!(outcome.error);
            prop_assert_eq!(&outcome.frames, &frames);
        }

        /// One flipped bit in a genuine `RUN` frame: the reader and `parse_run` either reject
        /// the frame, or the worker's address check refuses it — unless the bit is in the id or
        /// the input, which the tag does not cover (it authenticates which code runs; the data
        /// travels on a channel no one else holds). Never another task's code.
        #[test]
        fn a_flipped_bit_never_names_other_code(
            key in any::<[u8; 16]>(),
            offset in any::<i64>(),
            input in proptest::collection::vec(any::<u8>(), 0..32),
            bit in any::<prop::sample::Index>(),
        ) {
            let key = Key::from_bytes(key);
            let genuine = key.tagged(crate::entry::Kind::Blocking, offset);
            let mut frame = Vec::new();
            let start = begin_run(&mut frame, 7, genuine);
            frame.extend_from_slice(&input);
            prop_assert!(end_frame(&mut frame, start));
            let bit = bit.index(frame.len() * 8);
            frame[bit / 8] ^= 1 << (bit % 8);

            let outcome = read_stream(&frame, &[usize::MAX]);
            let Some((tag, body)) = outcome.frames.first() else {
                // The length grew (an incomplete frame) or became zero (an error).
                return Ok(());
            };
            if *tag != RUN {
                return Ok(()); // an unknown tag: the worker exits
            }
            let Some(run) = parse_run(body) else {
                return Ok(()); // a kind byte out of range: the worker exits
            };
            let address_bits = (HEADER + 8) * 8..(HEADER + RUN_HEADER) * 8;
            if address_bits.contains(&bit) {
                prop_assert!(key.resolve_blocking(run.addr).is_err());
                prop_assert!(key.resolve_async(run.addr).is_err());
                prop_assert!(key.resolve_init(run.addr).is_err());
            } else {
                prop_assert_eq!(run.addr, genuine);
            }
        }
    }
}
