//! Streamed records: a payload's frame is sent before its bytes are written, and the reader
//! copies each part out as soon as the writer publishes it.
//!
//! Written first and read after, a payload of `n` bytes costs its round trip two whole copies in
//! a row per direction, each process idle while the other copies. Streamed, the two copies run
//! at once on two cores, and the reader is woken while the writer is still busy, so that its
//! wake-up is hidden too (docs/benchmarks-notes.md, "Large payloads").
//!
//! # Invariants
//!
//! - A writer publishes progress (a `Release` store) only after the bytes it counts are
//!   written, and only ever raises it, up to the record's length; a writer that stops short
//!   publishes [`ABANDONED`] instead.
//! - A reader loads progress with `Acquire` and makes slices only of the bytes below it; the
//!   writer writes only above it, through a raw pointer (no reference covers the record while
//!   it is written), so no byte is read while it is written.
//! - A streaming writer is one of the record's holders until it is done (see the flag invariant
//!   in [`super`]): a reader that lets go early cannot get the record reused under the writer.
//! - A reader that finds nothing new spins for [`SPIN`] (a writer running on the other core
//!   publishes a chunk well within it), then sleeps on the progress word's futex, which the
//!   writer wakes when it finishes or abandons the record, with a timeout after which it asks
//!   whether the writer still lives: a writer that dies mid-record fails the read, never hangs
//!   it. The writer does not wake the reader at every chunk: where the two share one core, each
//!   such wake-up would switch to the reader for one chunk and back (measured: a switch every
//!   10 µs); a reader that sleeps instead copies the rest at once when the writer is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::futex;

use super::{ABANDONED, Region, Slot, release};

/// Bytes written between two publications of progress: small enough that the reader starts
/// soon and keeps up, large enough that the writer's wake-ups (a system call each) cost little.
const CHUNK: usize = 128 << 10;

/// How long a reader waits for more by spinning before it sleeps: a few chunks' copies.
const SPIN: Duration = Duration::from_micros(40);

/// How long a reader sleeps before it asks whether the writer still lives.
const NAP: futex::Timespec = futex::Timespec {
    tv_sec: 0,
    tv_nsec: 10_000_000,
};

/// The writer of a streamed record: writes it front to back, publishing as it goes. Dropped
/// before it wrote the whole record, it marks the record abandoned.
#[derive(Debug)]
pub(crate) struct Stream {
    region: Arc<Region>,
    offset: usize,
    len: usize,
    written: usize,
    published: usize,
}

impl Slot {
    /// Makes this record streamed: the frame naming it may be sent now, and the returned
    /// [`Stream`] writes it afterwards. Call it before that frame is sent.
    pub(crate) fn stream(&mut self) -> Stream {
        let region = Arc::clone(&self.lease.region);
        let offset = self.lease.offset;
        // Both stores reach the reader with the frame, a system call made after them.
        region
            .progress(offset)
            .expect("a slot's header lies inside its region")
            .store(0, Ordering::Relaxed);
        region
            .flag(offset)
            .expect("a slot's header lies inside its region")
            .fetch_add(1, Ordering::Relaxed);
        Stream {
            len: self.lease.len,
            region,
            offset,
            written: 0,
            published: 0,
        }
    }
}

impl Stream {
    /// Appends `bytes` to the record, publishing progress at every [`CHUNK`]; `false` (nothing
    /// written) if they would overrun it.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> bool {
        if bytes.len() > self.len - self.written {
            return false;
        }
        while !bytes.is_empty() {
            let room = CHUNK - (self.written - self.published).min(CHUNK);
            let (part, rest) = bytes.split_at(room.min(bytes.len()));
            let written = self.region.write(self.offset + self.written, part);
            debug_assert!(written, "the record lies inside its region");
            self.written += part.len();
            bytes = rest;
            if self.written - self.published >= CHUNK {
                self.publish(self.written, false);
            }
        }
        true
    }

    /// Publishes the whole record; `false` (the record abandoned) if it was not all written.
    pub(crate) fn finish(mut self) -> bool {
        if self.written != self.len {
            return false;
        }
        self.publish(self.written, true);
        true
    }

    /// Publishes `progress`, waking a sleeping reader if `wake`.
    fn publish(&mut self, progress: usize, wake: bool) {
        self.published = progress;
        let word = self.word();
        // `Release`: the bytes below `progress` were written before.
        word.store(
            u32::try_from(progress).unwrap_or(ABANDONED),
            Ordering::Release,
        );
        if wake {
            // Not private: the sleeper is another process, mapping the same memory.
            let _ = futex::wake(word, futex::Flags::empty(), u32::MAX);
        }
    }

    fn word(&self) -> &AtomicU32 {
        self.region
            .progress(self.offset)
            .expect("a slot's header lies inside its region")
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.published != self.len {
            let word = self.word();
            word.store(ABANDONED, Ordering::Release);
            let _ = futex::wake(word, futex::Flags::empty(), u32::MAX);
        }
        // Done with the record (its last write happened before): one holder less.
        release(&self.region, self.offset);
    }
}

/// The writer of a record stopped before it was complete: it died, or gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

/// A record to read, as its writer publishes it (a record written in full before its frame
/// was sent is published whole).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming<'a> {
    region: &'a Region,
    offset: usize,
    len: usize,
}

impl<'a> Incoming<'a> {
    /// The record of `len` bytes at `offset`, which the caller checked lies inside `region`.
    pub(crate) fn new(region: &'a Region, offset: usize, len: usize) -> Self {
        debug_assert!(region.bytes(offset, len).is_some());
        debug_assert!(region.progress(offset).is_some());
        Incoming {
            region,
            offset,
            len,
        }
    }

    /// The record's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The published part of the record, once it holds at least `at_least` bytes (at most the
    /// record's length); waits for the writer until then. `alive` is asked after every
    /// [`NAP`] asleep: once it says the writer is gone, a record it did not finish is [`Gone`].
    pub(crate) fn published(
        &self,
        at_least: usize,
        alive: &dyn Fn() -> bool,
    ) -> Result<&'a [u8], Gone> {
        let at_least = at_least.min(self.len);
        let word = self
            .region
            .progress(self.offset)
            .expect("checked when the record was opened");
        let mut spinning_since: Option<Instant> = None;
        loop {
            let progress = word.load(Ordering::Acquire);
            if progress == ABANDONED {
                return Err(Gone);
            }
            // A complete record's progress (`COMPLETE`) exceeds every length.
            let progress = (progress as usize).min(self.len);
            if progress >= at_least {
                return Ok(self
                    .region
                    .bytes(self.offset, progress)
                    .expect("checked when the record was opened"));
            }
            let since = *spinning_since.get_or_insert_with(Instant::now);
            if since.elapsed() < SPIN {
                // Yields rather than pauses: where the writer shares this core (a wake-up often
                // puts the reader there), pausing would only hold the writer off; yielding lets
                // it run. On a core of its own, a yield returns at once.
                std::thread::yield_now();
                continue;
            }
            spinning_since = None;
            // Returns at once if progress moved since it was loaded (no wake-up is lost).
            let waited = futex::wait(word, futex::Flags::empty(), progress as u32, Some(&NAP));
            if waited == Err(rustix::io::Errno::TIMEDOUT) && !alive() {
                // The writer may have finished just before it went: look once more.
                let last = word.load(Ordering::Acquire);
                if last != ABANDONED && (last as usize) >= at_least {
                    continue;
                }
                return Err(Gone);
            }
        }
    }

    /// The whole record, once written (see [`published`](Self::published)).
    pub(crate) fn complete(&self, alive: &dyn Fn() -> bool) -> Result<&'a [u8], Gone> {
        self.published(self.len, alive)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Arena;
    use super::*;

    #[test]
    fn a_reader_follows_a_writer_on_another_thread() {
        let mut arena = Arena::default();
        let len = 3 * CHUNK + 17;
        let mut slot = arena.alloc(len).unwrap().slot;
        let mut stream = slot.stream();
        let lease = slot.into_lease(len);
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let copy = data.clone();
        let writer = std::thread::spawn(move || {
            for part in copy.chunks(CHUNK / 3) {
                assert!(stream.write(part));
            }
            assert!(stream.finish());
        });
        let incoming = lease.incoming();
        let mut read = 0;
        let mut out = Vec::new();
        while read < len {
            let bytes = incoming.published(read + 1, &|| true).unwrap();
            out.extend_from_slice(&bytes[read..]);
            read = bytes.len();
        }
        writer.join().unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn a_writer_that_stops_short_fails_its_reader() {
        let mut arena = Arena::default();
        let len = 2 * CHUNK;
        let mut slot = arena.alloc(len).unwrap().slot;
        let mut stream = slot.stream();
        let lease = slot.into_lease(len);
        assert!(stream.write(&vec![1; CHUNK]));
        assert!(!stream.write(&vec![1; CHUNK + 1]));
        let incoming = lease.incoming();
        assert_eq!(incoming.published(1, &|| true).unwrap().len(), CHUNK);
        drop(stream);
        assert_eq!(incoming.published(len, &|| true), Err(Gone));
    }

    #[test]
    fn a_reader_of_a_dead_writer_gives_up() {
        let mut arena = Arena::default();
        let len = CHUNK;
        let mut slot = arena.alloc(len).unwrap().slot;
        // Never written, never dropped: a writer that died without a word.
        let stream = slot.stream();
        let lease = slot.into_lease(len);
        assert_eq!(lease.incoming().complete(&|| false), Err(Gone));
        std::mem::forget(stream);
    }

    #[test]
    fn a_record_is_reused_only_after_its_reader_and_its_writer_let_go() {
        let mut arena = Arena::default();
        let len = super::super::SHARED_MIN;
        let mut slot = arena.alloc(len).unwrap().slot;
        let (first, _) = slot.place();
        let mut stream = slot.stream();
        // The reader lets go before the writer is done.
        drop(slot.into_lease(len));
        let next = arena.alloc(len).unwrap().slot;
        assert_ne!(next.place().0, first, "the writer still holds the record");
        assert!(stream.write(&vec![0; len]));
        assert!(stream.finish());
        next.release();
        assert_eq!(arena.alloc(len).unwrap().slot.place().0, first);
    }
}
