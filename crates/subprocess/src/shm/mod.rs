//! Shared-memory regions for large payloads: one per direction, reused by every task.
//!
//! A payload of [`SHARED_MIN`] bytes or more does not travel through the socket: its sender
//! serializes it straight into a *region* (a `memfd` mapped by both processes) and sends a small
//! frame naming where it is; the receiver decodes it from its own mapping of the same memory. The
//! pool's region carries inputs to every worker; each worker's region carries its outputs back.
//! A region's descriptor crosses the socket once, when the region is made (`SCM_RIGHTS`), never
//! per task; it is replaced by a larger one only when a larger payload comes and nothing in it is
//! in use.
//!
//! A record may also be *streamed*: for a payload that is one run of bytes (a `Vec<u8>` or a
//! `serde_bytes::ByteBuf`), the frame naming it is sent before the bytes are written, and the
//! reader copies each part as soon as the writer publishes it (see [`stream`]), so that the two
//! processes' copies overlap instead of following each other.
//!
//! # Invariants
//!
//! - Only the writer (the side that made the region, through its [`Arena`]) hands out space, and
//!   a space is handed out again only after every holder released it: the 8-byte *flag* before
//!   every record counts its holders (the reader, and a writer still streaming into it); each
//!   holder takes one off (with `Release`) when done with it, and the arena reads it (with
//!   `Acquire`) before it reuses the space. Until then nobody but the current holders touches
//!   the record's bytes.
//! - The 4-byte *progress* word before the flag says how much of the record is written:
//!   [`COMPLETE`] for a record written in full before its frame was sent, else the bytes written
//!   so far (stored with `Release` after them, read with `Acquire` before them), or
//!   [`ABANDONED`]. A reader makes slices only of what progress says is written, and a writer
//!   writes only past it, so no byte is ever read while it is written.
//! - Regions are sealed against shrinking before they are shared, and a region received from the
//!   other process is mapped only if it is sealed so: a peer can never truncate the memory under a
//!   mapping (which would fault the reader with `SIGBUS`).
//! - A record's offset and length read from a frame are checked against the mapping before any
//!   byte is touched. A misbehaving peer can make this process read wrong bytes (which the
//!   decoders treat as any corrupt input) or wait for bytes that never come (bounded by the
//!   liveness check of [`stream`]), never read or write outside its mappings.
//!
//! This module, `entry`, `stop` and `inherited` are the only ones of the crate allowed to use
//! `unsafe`.
#![allow(unsafe_code)]

mod arena;
pub(crate) mod stream;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use polyexec_core::WorkerExit;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Payloads at least this long go through a region (when one can be had); shorter ones are
/// cheaper to copy through the socket than to place.
pub(crate) const SHARED_MIN: usize = 64 << 10;
/// Largest region made; larger payloads travel through the socket (up to its 4 GiB frame limit).
pub(crate) const MAX_REGION: usize = 1 << 30;
/// Smallest region made.
const MIN_REGION: usize = 1 << 20;
/// Bytes before each record's payload: its progress word (4 bytes, then 4 unused), then its
/// flag (8 bytes).
const HEADER: usize = 16;
/// Progress of a record written in full before its frame was sent.
pub(crate) const COMPLETE: u32 = u32::MAX;
/// Progress of a streamed record whose writer gave up: it will never be complete.
pub(crate) const ABANDONED: u32 = u32::MAX - 1;

pub(crate) use arena::Arena;

/// A `memfd` mapped into this process.
#[derive(Debug)]
pub(crate) struct Region {
    /// Kept by the maker, to pass on; a received region's is closed once mapped.
    fd: Option<OwnedFd>,
    ptr: NonNull<u8>,
    len: usize,
    /// Counts the regions an arena made, so a frame can say which one it means.
    generation: u64,
    /// For a region received from a worker: how that worker ended, once it has (see
    /// [`stream`]: a reader waiting for a record it streams then gives up).
    writer_exit: OnceLock<WorkerExit>,
}

// SAFETY: `Region` owns its mapping, which stays valid (and at the same address) until `Drop`;
// it hands out access to its bytes only through the bounds-checked methods below, whose own
// SAFETY arguments do not depend on the thread they run on.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: shared access goes through `&self` methods that check bounds and, for
// mutable access, rely on the arena's exclusive records, not on thread identity.
unsafe impl Sync for Region {}

impl Region {
    /// A new region of `len` bytes, mapped read-write, then sealed against shrinking and
    /// growing and, if `readers_only`, against any other writable mapping: the processes it is
    /// passed to can then only read it, whatever they do with the descriptor.
    fn create(len: usize, generation: u64, readers_only: bool) -> io::Result<Region> {
        let fd = rustix::fs::memfd_create(
            "polyexec-payload",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        let mut region = Region::map(&fd, len, true, generation)?;
        let mut seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
        if readers_only {
            seals |= SealFlags::FUTURE_WRITE;
        }
        rustix::fs::fcntl_add_seals(&fd, seals)?;
        region.fd = Some(fd);
        Ok(region)
    }

    /// Maps a region received from the other process, if it is sealed against shrinking.
    pub(crate) fn open(fd: OwnedFd, writable: bool, generation: u64) -> io::Result<Region> {
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a shared payload region is not sealed against shrinking",
            ));
        }
        let len = usize::try_from(rustix::fs::fstat(&fd)?.st_size)
            .ok()
            .filter(|&len| len > 0 && len <= MAX_REGION)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad region size"))?;
        // The mapping stays valid after the descriptor is closed.
        Region::map(&fd, len, writable, generation)
    }

    fn map(fd: &OwnedFd, len: usize, writable: bool, generation: u64) -> io::Result<Region> {
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a null hint lets the kernel choose where to map, so no existing memory is
        // affected; `fd` is a memfd of at least `len` bytes (just sized, or checked by `fstat`)
        // that cannot shrink (sealed; checked in `open`), so every page of the mapping stays
        // backed for as long as it exists.
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)? };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Region {
            fd: None,
            ptr,
            len,
            generation,
            writer_exit: OnceLock::new(),
        })
    }

    /// The descriptor, to pass to the other process (a region this process made has one).
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Records that the process writing into this region ended, and how.
    pub(crate) fn set_writer_exit(&self, exit: WorkerExit) {
        let _ = self.writer_exit.set(exit);
    }

    /// How the process writing into this region ended, if it has.
    pub(crate) fn writer_exit(&self) -> Option<WorkerExit> {
        self.writer_exit.get().copied()
    }

    /// `len` bytes at `offset`, if they lie inside the mapping.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `offset..end` lies inside the mapping (checked above), which is valid for
        // reads for as long as `self` lives (the returned borrow cannot outlive it). `u8` has
        // no invalid values, so whatever the other process wrote there is a valid `[u8]`; by
        // protocol nobody writes a record while it is read (module invariants), and a peer that
        // breaks the protocol can only change which bytes this process decodes.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) })
    }

    /// The flag of the record whose payload starts at `offset`, if its header lies inside the
    /// mapping and is aligned.
    fn flag(&self, offset: usize) -> Option<&AtomicU64> {
        let at = self.header(offset)? + 8;
        // SAFETY: `at..at + 8` lies inside the mapping (`header` checked that the whole header
        // does) and is 8-aligned (the mapping starts on a page, and `header` checked the header's
        // alignment); the mapping lives as long as `self`, which the borrow cannot outlive. Both
        // processes access flags only atomically, and every bit pattern is a valid `u64`.
        Some(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(at).cast::<u64>()) })
    }

    /// The progress word of the record whose payload starts at `offset`, if its header lies
    /// inside the mapping and is aligned.
    pub(crate) fn progress(&self, offset: usize) -> Option<&AtomicU32> {
        let at = self.header(offset)?;
        // SAFETY: as for `flag`: `at..at + 4` lies inside the mapping and is 8-aligned, the
        // borrow cannot outlive the mapping, both processes access progress words only
        // atomically, and every bit pattern is a valid `u32`.
        Some(unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(at).cast::<u32>()) })
    }

    /// Where the header of the record whose payload starts at `offset` begins, if the header
    /// lies inside the mapping and is 8-aligned.
    fn header(&self, offset: usize) -> Option<usize> {
        let at = offset.checked_sub(HEADER)?;
        (at % 8 == 0 && offset <= self.len).then_some(at)
    }

    /// Copies `bytes` into the mapping at `offset`, if they fit in it; through a raw pointer, so
    /// that no reference covers memory the other process may be reading.
    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        let Some(end) = offset.checked_add(bytes.len()) else {
            return false;
        };
        if end > self.len {
            return false;
        }
        // SAFETY: `offset..end` lies inside the mapping (checked above), which is writable for
        // the only callers (streams of records that this process's arena handed out, in regions
        // it made read-write); `bytes` is a different allocation (a task's payload in this
        // process's heap), so the two do not overlap. By the progress invariant, no process reads
        // these bytes until progress is published past them, after this copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(offset),
                bytes.len(),
            );
        }
        true
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly the mapping made in `map`, and nothing refers to
        // it any more: every slice handed out borrowed `self`, and `Lease`s hold an `Arc`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A record received from the other process (or placed by this one, for the pool's inputs),
/// released when dropped so its space can be reused.
#[derive(Debug)]
pub(crate) struct Lease {
    region: Arc<Region>,
    offset: usize,
    len: usize,
    /// Released on drop; cleared for a record whose release is the other process's to do.
    owned: bool,
}

impl Lease {
    /// The record at `offset` (its payload; the flag is before it) of `len` bytes, if it lies
    /// inside `region`.
    pub(crate) fn open(region: Arc<Region>, offset: usize, len: usize) -> Option<Lease> {
        region.header(offset)?;
        region.bytes(offset, len)?;
        Some(Lease {
            region,
            offset,
            len,
            owned: true,
        })
    }

    /// The record, to read as its writer publishes it.
    pub(crate) fn incoming(&self) -> stream::Incoming<'_> {
        stream::Incoming::new(&self.region, self.offset, self.len)
    }

    /// The whole record, which must be complete (a test's own).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        self.region
            .bytes(self.offset, self.len)
            .expect("checked when the lease was made")
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // Every read of the record happened before: the writer may reuse it once no holder
        // is left.
        release(&self.region, self.offset);
    }
}

/// Takes one holder off the record whose payload starts at `offset` (see the flag invariant).
fn release(region: &Region, offset: usize) {
    if let Some(flag) = region.flag(offset) {
        flag.fetch_sub(1, Ordering::Release);
    }
}

/// Space for one payload, handed out by an [`Arena`]: its holder alone writes it. Dropped, it
/// is given back (a payload that was never sent).
#[derive(Debug)]
pub(crate) struct Slot {
    lease: Lease,
}

impl Slot {
    /// Where the payload is: its offset in the region and its length.
    pub(crate) fn place(&self) -> (usize, usize) {
        (self.lease.offset, self.lease.len)
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.lease.region
    }

    /// The payload's bytes, to write.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let lease = &self.lease;
        // SAFETY: the arena made `offset..offset + len` a record of its own (inside the mapping,
        // which is writable: arenas make their regions read-write) and hands it out once, to
        // this slot, which `&mut self` borrows exclusively; the reader touches it only after the
        // frame that names it is sent, and the arena reuses it only after its flag says it was
        // released. The mapping outlives the borrow (the lease holds an `Arc`).
        unsafe {
            std::slice::from_raw_parts_mut(lease.region.ptr.as_ptr().add(lease.offset), lease.len)
        }
    }

    /// Keeps the record until the returned lease is dropped (the payload then had `len` bytes).
    pub(crate) fn into_lease(self, len: usize) -> Lease {
        let mut lease = self.lease;
        lease.len = len.min(lease.len);
        lease
    }

    /// The frame naming the record was sent: the other process releases it.
    pub(crate) fn sent(self) {
        let mut lease = self.lease;
        lease.owned = false;
    }

    /// Gives the record back at once (nothing was sent that names it).
    pub(crate) fn release(self) {
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_outside_the_region_is_refused() {
        let region = Arc::new(Region::create(4096, 1, false).unwrap());
        assert!(Lease::open(Arc::clone(&region), 16, 4080).is_some());
        assert!(Lease::open(Arc::clone(&region), 16, 4081).is_none());
        // Misaligned, or with no room for the header before it.
        assert!(Lease::open(Arc::clone(&region), 20, 8).is_none());
        assert!(Lease::open(Arc::clone(&region), 8, 8).is_none());
        assert!(Lease::open(Arc::clone(&region), 0, 8).is_none());
        assert!(Lease::open(region, usize::MAX - 4, 8).is_none());
    }

    #[test]
    fn a_readers_only_region_cannot_be_mapped_for_writing_by_its_receiver() {
        let region = Region::create(4096, 1, true).unwrap();
        let fd = region.fd().unwrap().try_clone_to_owned().unwrap();
        assert!(Region::open(fd.try_clone().unwrap(), true, 1).is_err());
        let read_only = Region::open(fd, false, 1).unwrap();
        assert_eq!(read_only.bytes(0, 4096).unwrap().len(), 4096);
    }
}
