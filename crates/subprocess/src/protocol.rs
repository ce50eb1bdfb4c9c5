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
//! | `RUN_SHARED` | pool → worker | as `RUN`, but the input is in the pool's region: generation u64, offset u64, length u64 |
//! | `INPUT_REGION` | pool → worker | generation u64; the region's descriptor rides along (`SCM_RIGHTS`) |
//! | `DONE_SHARED` | worker → pool | id u64, then the output's place in the worker's region: generation u64, offset u64, length u64 |
//! | `OUTPUT_REGION` | worker → pool | generation u64; the region's descriptor rides along (`SCM_RIGHTS`) |
//!
//! A region frame is sent before the first frame that names its generation; see [`crate::shm`].

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use polyexec_core::TaskError;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::entry::{Kind, TaskAddr};
use crate::payload::Place;

/// Bumped on every incompatible change; part of the handshake.
pub(crate) const PROTOCOL_VERSION: u32 = 2;

pub(crate) const HELLO: u8 = 1;
pub(crate) const RUN: u8 = 2;
pub(crate) const CANCEL: u8 = 3;
pub(crate) const EXIT: u8 = 4;
pub(crate) const RUN_SHARED: u8 = 5;
pub(crate) const INPUT_REGION: u8 = 6;
pub(crate) const READY: u8 = 0x81;
pub(crate) const REFUSED: u8 = 0x82;
pub(crate) const STARTED: u8 = 0x83;
pub(crate) const DONE_OK: u8 = 0x84;
pub(crate) const DONE_ERR: u8 = 0x85;
pub(crate) const DONE_SHARED: u8 = 0x86;
pub(crate) const OUTPUT_REGION: u8 = 0x87;

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
    /// Large outputs may come back through a shared-memory region.
    pub(crate) shared_memory: bool,
    /// The initializer's argument, encoded (empty for an initializer without one).
    pub(crate) init_arg: Vec<u8>,
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
    #[error("the value encodes to {0} bytes, more than the 4 GiB a frame can carry")]
    TooLarge(u64),
}

/// A region frame: its generation (the descriptor is sent with it).
pub(crate) fn push_region_frame(buf: &mut Vec<u8>, tag: u8, generation: u64) {
    push_id_frame(buf, tag, generation);
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

pub(crate) fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// Splits a `RUN_SHARED` body: the task and where its input is; `None` if it is malformed.
pub(crate) fn parse_run_shared(body: &[u8]) -> Option<(Run<'_>, Place)> {
    let run = parse_run(body)?;
    let place = Place::parse(run.input)?;
    Some((run, place))
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

/// A task's encoded input: inside the `RUN` body that carried it, or in the pool's region
/// (where the pool may still be writing it).
pub(crate) enum Input<'a> {
    Frame { body: &'a mut Vec<u8>, start: usize },
    Shared(crate::shm::stream::Incoming<'a>),
}

impl<'a> Input<'a> {
    /// The input at `body[start..]`.
    pub(crate) fn new(body: &'a mut Vec<u8>, start: usize) -> Self {
        debug_assert!(start <= body.len());
        Input::Frame { body, start }
    }

    /// The whole input, once written; [`Gone`](crate::shm::stream::Gone) if its writer
    /// stopped first. `alive` says whether the writer (the pool) still lives.
    pub(crate) fn bytes(
        &self,
        alive: &dyn Fn() -> bool,
    ) -> Result<&[u8], crate::shm::stream::Gone> {
        match self {
            Input::Frame { body, start } => Ok(&body[*start..]),
            Input::Shared(record) => record.complete(alive),
        }
    }

    /// Called once the input is decoded. The buffer of a large frame (which no later frame
    /// reuses) is freed now rather than after the task: the worker then holds one copy of a
    /// large input less while the task runs, and the task and its encoded output can reuse that
    /// memory instead of fresh pages (16 MiB round trips: 20-40% faster, measured A/B). An input
    /// in the pool's region is released by the pool, once the task's result is in.
    pub(crate) fn release(self) {
        if let Input::Frame { body, .. } = self {
            if body.capacity() > LARGE {
                *body = Vec::new();
            }
        }
    }
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

/// Reads frames from a stream. Frames up to [`LARGE`] bytes go into one reused buffer and are
/// handed out as ranges of it, so they cost no allocation; a larger frame's body is read into a
/// `Vec` of its own, sized to the frame, which the caller may take whole ([`Self::take_body`]).
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    /// Start of the first frame not yet consumed.
    start: usize,
    /// End of the bytes read.
    end: usize,
    /// The last read returned less than it had room for: the stream had nothing more then.
    short: bool,
    /// The large frame being read, if any. While it is, `buf` holds no unconsumed bytes: its
    /// header was the last thing read into `buf`, and reads stop at its end.
    large: Option<Large>,
    /// The body of the large frame last handed out by `next_frame`; freed by the next `fill`,
    /// so a large frame's memory is never kept between frames.
    done: Vec<u8>,
    /// Longest frame accepted; a longer one is an error as soon as its header is in.
    limit: usize,
}

/// A frame longer than [`LARGE`] whose bytes are still arriving.
#[derive(Debug)]
struct Large {
    tag: u8,
    /// The body's bytes so far. Its capacity never exceeds `len`, nor the larger of
    /// [`UP_FRONT`] and twice the bytes received (see [`FrameReader::fill_large`]).
    body: Vec<u8>,
    /// The body's declared length.
    len: usize,
}

/// A complete frame in a [`FrameReader`].
#[derive(Debug, Clone)]
pub(crate) struct FrameRef {
    pub(crate) tag: u8,
    body: Range<usize>,
    /// The body is the reader's last large frame, not part of its shared buffer.
    large: bool,
}

const READ_CHUNK: usize = 64 * 1024;
/// Least free space a read is given.
const MIN_ROOM: usize = 4096;
/// Frames longer than this get a buffer of their own, sized to them. Shorter ones share the
/// reused buffer, which therefore never grows much past this: a medium frame that came once
/// costs at most this much memory kept, and repeated ones find the buffer warm, which costs
/// less than a fresh buffer's page faults.
pub(crate) const LARGE: usize = 4 << 20;
/// Most a large frame's buffer reserves ahead of the bytes received. Up to this, a frame is read
/// into one allocation of exactly its size; beyond it, capacity at most doubles per step. Pages
/// reserved but not yet written are not committed, so this bounds address space more than memory.
const UP_FRONT: usize = 8 << 20;

fn out_of_memory() -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        "no memory for an incoming frame",
    )
}

impl FrameReader {
    pub(crate) fn new() -> Self {
        Self::with_limit(MAX_FRAME)
    }

    /// A reader that refuses frames longer than `limit` (for the handshake, whose frames are
    /// small: a peer then cannot make a deadline-bound read loop over a long frame).
    pub(crate) fn with_limit(limit: usize) -> Self {
        FrameReader {
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            short: false,
            large: None,
            done: Vec::new(),
            limit,
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

    /// Reads, blocking, after making room: once, or inside a large frame until the room made
    /// for it is full or the stream runs dry. `Ok(false)` on end of stream.
    pub(crate) fn fill(&mut self, stream: &mut impl Read) -> io::Result<bool> {
        // The body handed out last was valid until now.
        self.done = Vec::new();
        if self.large.is_some() {
            return self.fill_large(stream);
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let needed = match self.pending_len() {
            Some(len)
                if len > LARGE
                    && len <= self.limit
                    && (HEADER..4 + len).contains(&(self.end - self.start)) =>
            {
                self.begin_large(len)?;
                return self.fill_large(stream);
            }
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
            // not the 4 GiB it may claim. Frames longer than `LARGE` go to `begin_large` once
            // their header is in, so this buffer stays below `LARGE + HEADER + MIN_ROOM`
            // (or `READ_CHUNK`, its starting size).
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

    /// Moves the frame at `start` (declared length `len`, header in, body incomplete) out of the
    /// shared buffer into a buffer of its own.
    fn begin_large(&mut self, len: usize) -> io::Result<()> {
        let tag = self.buf[self.start + 4];
        let have = &self.buf[self.start + HEADER..self.end];
        let body_len = len - 1;
        let mut body = Vec::new();
        body.try_reserve_exact(body_len.min(UP_FRONT.max(2 * have.len())))
            .map_err(|_| out_of_memory())?;
        body.extend_from_slice(have);
        // The frame is incomplete, so it was the last thing in the buffer.
        self.start = 0;
        self.end = 0;
        self.large = Some(Large {
            tag,
            body,
            len: body_len,
        });
        Ok(())
    }

    /// Reads more of the large frame, straight into its buffer's spare capacity: no zero-fill
    /// (`read_to_end` reads into uninitialized capacity for readers that support it, such as
    /// sockets) and no copy. Reads stop at the frame's end, so the next frame's bytes go to
    /// the shared buffer.
    ///
    /// Invariant: the buffer's capacity is at most `len`, and at most the larger of `UP_FRONT`
    /// and twice the bytes received, so a header that declares 4 GiB and sends nothing costs
    /// `UP_FRONT` of address space, and memory (pages written) only for the bytes that came.
    fn fill_large(&mut self, stream: &mut impl Read) -> io::Result<bool> {
        let large = self.large.as_mut().expect("a large frame in progress");
        let have = large.body.len();
        if have == large.body.capacity() {
            let target = large.len.min(UP_FRONT.max(have.saturating_mul(2)));
            large
                .body
                .try_reserve_exact(target - have)
                .map_err(|_| out_of_memory())?;
        }
        // `have < len`: a complete frame leaves `large` in `next_frame`.
        let room = large.body.capacity().min(large.len) - have;
        // `read_to_end` keeps reading until `room` bytes came, the stream ends, or it errs;
        // what it read before an error stays in the buffer.
        let result = Read::take(&mut *stream, room as u64).read_to_end(&mut large.body);
        let got = large.body.len() - have;
        match result {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            // A non-blocking stream ran dry after some bytes: progress, not an error.
            Err(err) if got > 0 && err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
        self.short = got < room;
        Ok(true)
    }

    /// The next complete frame, consuming it. Its body stays valid until the next `fill`.
    /// `Err` for a frame whose declared length is impossible.
    pub(crate) fn next_frame(&mut self) -> Result<Option<FrameRef>, TaskError> {
        if let Some(large) = &self.large {
            if large.body.len() < large.len {
                return Ok(None);
            }
            let large = self.large.take().expect("checked above");
            self.done = large.body;
            return Ok(Some(FrameRef {
                tag: large.tag,
                body: 0..self.done.len(),
                large: true,
            }));
        }
        let Some(len) = self.pending_len() else {
            return Ok(None);
        };
        if len == 0 {
            return Err(TaskError::transport("received an empty frame"));
        }
        if len > self.limit {
            return Err(TaskError::transport("received a frame longer than allowed"));
        }
        if self.end - self.start < 4 + len {
            return Ok(None);
        }
        let tag = self.buf[self.start + 4];
        let body = self.start + HEADER..self.start + 4 + len;
        self.start += 4 + len;
        Ok(Some(FrameRef {
            tag,
            body,
            large: false,
        }))
    }

    /// `true` if the last read did not fill the room it had, so the stream was drained then.
    pub(crate) fn drained(&self) -> bool {
        self.short
    }

    /// `true` while part of a frame has been read and the rest has not.
    pub(crate) fn in_frame(&self) -> bool {
        self.large.is_some() || self.start < self.end
    }

    /// `true` while a large frame's bytes are arriving: its sender is writing the rest, so a
    /// blocking read for it waits only as long as the transfer takes.
    pub(crate) fn in_large_frame(&self) -> bool {
        self.large.is_some()
    }

    /// A frame's body.
    pub(crate) fn body(&self, frame: &FrameRef) -> &[u8] {
        if frame.large {
            &self.done[frame.body.clone()]
        } else {
            &self.buf[frame.body.clone()]
        }
    }

    /// A frame's body as an owned `Vec`: a large frame's own buffer, moved out without a copy;
    /// for other frames, a copy in the buffer `spare` returns.
    pub(crate) fn take_body(
        &mut self,
        frame: &FrameRef,
        spare: impl FnOnce() -> Vec<u8>,
    ) -> Vec<u8> {
        if frame.large {
            std::mem::take(&mut self.done)
        } else {
            let mut owned = spare();
            owned.extend_from_slice(&self.buf[frame.body.clone()]);
            owned
        }
    }

    /// Bytes of memory the reader holds: the large buffers' capacity, and the shared buffer's
    /// length (which `resize` may round its capacity up from, to at most twice as much).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.len()
            + self.done.capacity()
            + self.large.as_ref().map_or(0, |large| large.body.capacity())
    }
}

/// Writes every byte of `frames` to the socket, coalescing them into as few `sendmsg` calls as
/// possible. `MSG_NOSIGNAL`: a peer that died gives an error here, never `SIGPIPE`. `pass`, if
/// any, is sent along with the first bytes (`SCM_RIGHTS`).
pub(crate) fn send_all<Fd: AsFd, B: AsRef<[u8]>>(
    socket: Fd,
    frames: &[B],
    mut pass: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
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
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let current = pass;
            let passed = current.as_slice();
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !passed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(passed)) {
                return Err(io::Error::other("no room for a descriptor"));
            }
            match rustix::net::sendmsg(fd, &slices[..count], &mut control, SendFlags::NOSIGNAL) {
                Ok(n) => {
                    // The descriptor went with these bytes.
                    pass = None;
                    break n;
                }
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

/// Sends some of `bytes` with `pass` attached (`SCM_RIGHTS`); returns how many were sent.
pub(crate) fn send_with_fd(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    pass: BorrowedFd<'_>,
) -> rustix::io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let passed = [pass];
    if !control.push(SendAncillaryMessage::ScmRights(&passed)) {
        return Err(rustix::io::Errno::NOBUFS);
    }
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
}

/// Reads from a socket with `recvmsg`, keeping the descriptors that arrive with the bytes (a
/// plain `read` would have the kernel close them). At most a few are kept: only region frames
/// carry one, and the reader takes it when it parses the frame.
pub(crate) struct FdReader<'a> {
    pub(crate) socket: BorrowedFd<'a>,
    pub(crate) fds: &'a mut VecDeque<OwnedFd>,
    /// Wait for bytes if there are none (on a blocking socket); otherwise `WouldBlock`.
    pub(crate) wait: bool,
}

/// Most descriptors kept unclaimed; a peer that sends more has them closed.
const MAX_PENDING_FDS: usize = 4;

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut flags = RecvFlags::CMSG_CLOEXEC;
        if !self.wait {
            flags |= RecvFlags::DONTWAIT;
        }
        let received = loop {
            match rustix::net::recvmsg(
                self.socket,
                &mut [IoSliceMut::new(buf)],
                &mut control,
                flags,
            ) {
                Ok(msg) => break msg.bytes,
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                for fd in fds {
                    if self.fds.len() < MAX_PENDING_FDS {
                        self.fds.push_back(fd);
                    }
                }
            }
        }
        Ok(received)
    }
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

    /// A non-blocking stream: hands out `data` in reads of 1 to `max` bytes (a fixed
    /// pseudo-random sequence), every other read reporting `WouldBlock`, and only `WouldBlock`
    /// once the data is out, as a socket whose peer stopped writing.
    struct Trickle<'a> {
        data: &'a [u8],
        max: usize,
        state: u64,
        dry: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.dry = !self.dry;
            if self.dry || self.data.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.state = self
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let size = 1 + (self.state >> 33) as usize % self.max;
            let n = size.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let start = begin_frame(&mut bytes, tag);
        bytes.extend_from_slice(body);
        assert!(end_frame(&mut bytes, start));
        bytes
    }

    #[test]
    fn a_large_frame_in_small_reads_gets_one_buffer_of_its_size() {
        // Longer than `UP_FRONT`, so its buffer grows while the bytes arrive.
        let large: Vec<u8> = (0..UP_FRONT * 2 + 3).map(|i| (i % 251) as u8).collect();
        let mut stream = frame(STARTED, &[1; 8]);
        stream.extend_from_slice(&frame(DONE_OK, &large));
        stream.extend_from_slice(&frame(DONE_ERR, &[2; 9]));
        let mut trickle = Trickle {
            data: &stream,
            max: 4099,
            state: 1,
            dry: false,
        };

        let mut reader = FrameReader::new();
        let mut seen = Vec::new();
        let mut large_capacity = 0;
        while !trickle.data.is_empty() {
            match reader.fill(&mut trickle) {
                Ok(true) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                other => panic!("unexpected {other:?}"),
            }
            // The shared buffer does not grow with the large frame (a header split after its
            // length may add a few bytes to it, once).
            assert!(reader.buf.len() <= READ_CHUNK + MIN_ROOM);
            if let Some(frame) = &reader.large {
                let cap = frame.body.capacity();
                assert!(cap <= frame.len);
                assert!(cap <= UP_FRONT.max(2 * frame.body.len()), "{cap} reserved");
            }
            while let Some(frame) = reader.next_frame().unwrap() {
                if frame.tag == DONE_OK {
                    large_capacity = reader.done.capacity();
                }
                seen.push((frame.tag, reader.body(&frame).to_vec()));
            }
        }
        assert!(!reader.in_frame());
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], (STARTED, vec![1; 8]));
        assert_eq!(seen[1].0, DONE_OK);
        assert!(seen[1].1 == large, "the large body differs");
        assert_eq!(seen[2], (DONE_ERR, vec![2; 9]));
        // No doubling past the declared length.
        assert_eq!(large_capacity, large.len());
    }

    #[test]
    fn a_huge_declared_length_without_its_bytes_costs_a_bounded_reservation() {
        let mut stream = (u32::MAX - 1).to_le_bytes().to_vec();
        stream.push(RUN);
        stream.extend_from_slice(&[0xEE; 3000]);
        let mut trickle = Trickle {
            data: &stream,
            max: 700,
            state: 7,
            dry: false,
        };
        let mut reader = FrameReader::new();
        // The bytes run out after a few reads; the stream then stays dry.
        for _ in 0..1000 {
            match reader.fill(&mut trickle) {
                Ok(true) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("unexpected {other:?}"),
            }
            assert!(reader.next_frame().unwrap().is_none());
            assert!(
                reader.held() <= READ_CHUNK + UP_FRONT,
                "{} held",
                reader.held()
            );
        }
        assert!(trickle.data.is_empty());
        assert!(reader.in_frame());
        assert!(reader.in_large_frame());
    }

    #[test]
    fn a_large_body_is_taken_without_a_copy() {
        let body = vec![9u8; LARGE + 1];
        let mut stream = frame(RUN, &body);
        stream.extend_from_slice(&frame(CANCEL, &[3; 8]));
        let mut stream = &stream[..];
        let mut reader = FrameReader::new();
        let mut taken = Vec::new();
        while reader.fill(&mut stream).unwrap() {
            while let Some(frame) = reader.next_frame().unwrap() {
                let at = reader.body(&frame).as_ptr();
                let owned = reader.take_body(&frame, Vec::new);
                assert_eq!(owned.as_ptr() == at, frame.tag == RUN);
                taken.push((frame.tag, owned));
            }
        }
        assert_eq!(taken, vec![(RUN, body), (CANCEL, vec![3; 8])]);
    }

    #[test]
    fn a_limited_reader_refuses_a_longer_frame_at_its_header() {
        let mut reader = FrameReader::with_limit(100);
        let mut stream = &(101u32.to_le_bytes())[..];
        assert!(reader.fill(&mut stream).unwrap());
        assert!(reader.next_frame().is_err());
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
            outcome.max_buffer = outcome.max_buffer.max(reader.held());
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
    /// (so it must grow), rarely around `LARGE` (so some get a buffer of their own), the larger
    /// ones filled with one byte (random bytes of that size cost more to generate than to test).
    fn frames() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        proptest::collection::vec(
            (
                any::<u8>(),
                prop_oneof![
                    16 => proptest::collection::vec(any::<u8>(), 0..64),
                    2 => (0usize..150_000, any::<u8>()).prop_map(|(len, b)| vec![b; len]),
                    1 => (LARGE - 8..LARGE + 100_000, any::<u8>())
                        .prop_map(|(len, b)| vec![b; len]),
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

    /// Memory the reader may hold after `received` bytes: the shared buffer grows toward a
    /// declared length only as fast as bytes arrive (at most doubling), and a large frame's
    /// buffer reserves at most `UP_FRONT` or twice its bytes received; never the 4 GiB a
    /// header may claim.
    fn memory_bound(received: usize) -> usize {
        2 * received + READ_CHUNK + MIN_ROOM + UP_FRONT.max(2 * received)
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
