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
//! # Invariants
//!
//! - Only the writer (the side that made the region, through its [`Arena`]) hands out space, and
//!   a space is handed out again only after the reader released it: the 8-byte *flag* before
//!   every record is set (with `Release`) by whoever is done with it, and read (with `Acquire`)
//!   by the arena before it reuses the space. Until then nobody but the current holder writes
//!   the record's bytes.
//! - Records are laid out in allocation order around the region (a ring); the arena reclaims them
//!   in that order, skipping over released ones, so a record released out of order waits for the
//!   ones before it. An empty ring starts again at the front, so a lockstep caller keeps reusing
//!   the same warm pages.
//! - Regions are sealed against shrinking before they are shared, and a region received from the
//!   other process is mapped only if it is sealed so: a peer can never truncate the memory under a
//!   mapping (which would fault the reader with `SIGBUS`).
//! - A record's offset and length read from a frame are checked against the mapping before any
//!   byte is touched. A misbehaving peer can make this process read wrong bytes (which the
//!   decoders treat as any corrupt input), never read or write outside its mappings.
//!
//! This module, `entry`, `stop` and `inherited` are the only ones of the crate allowed to use
//! `unsafe`.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Payloads at least this long go through a region (when one can be had); shorter ones are
/// cheaper to copy through the socket than to place.
pub(crate) const SHARED_MIN: usize = 64 << 10;
/// Largest region made; larger payloads travel through the socket (up to its 4 GiB frame limit).
pub(crate) const MAX_REGION: usize = 1 << 30;
/// Smallest region made.
const MIN_REGION: usize = 1 << 20;
/// Bytes before each record's payload: its flag.
const FLAG: usize = 8;
const FREE: u64 = 1;
const IN_USE: u64 = 0;

/// A `memfd` mapped into this process.
#[derive(Debug)]
pub(crate) struct Region {
    /// Kept by the maker, to pass on; a received region's is closed once mapped.
    fd: Option<OwnedFd>,
    ptr: NonNull<u8>,
    len: usize,
    /// Counts the regions an arena made, so a frame can say which one it means.
    generation: u64,
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
        })
    }

    /// The descriptor, to pass to the other process (a region this process made has one).
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
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

    /// The flag of the record whose payload starts at `offset`, if it lies inside the mapping
    /// and is aligned.
    fn flag(&self, offset: usize) -> Option<&AtomicU64> {
        let at = offset.checked_sub(FLAG)?;
        if at % FLAG != 0 || offset > self.len {
            return None;
        }
        // SAFETY: `at..at + 8` lies inside the mapping (checked above) and is 8-aligned (the
        // mapping starts on a page); the mapping lives as long as `self`, which the borrow
        // cannot outlive. Both processes access flags only atomically, and every bit pattern is
        // a valid `u64`.
        Some(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(at).cast::<u64>()) })
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
        region.flag(offset)?;
        region.bytes(offset, len)?;
        Some(Lease {
            region,
            offset,
            len,
            owned: true,
        })
    }

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
        if let Some(flag) = self.region.flag(self.offset) {
            // Every read of the record happened before: the writer may reuse it once it sees this.
            flag.store(FREE, Ordering::Release);
        }
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

/// A record's place in the ring: positions count bytes since the ring was last empty.
#[derive(Debug)]
struct Record {
    /// Offset of its flag in the region, or `None` for padding up to the region's end.
    flag: Option<usize>,
    size: usize,
}

/// The writer's side of a direction: its current region and the records handed out in it.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    /// The other processes only read the records (the pool's inputs): its regions are sealed so.
    readers_only: bool,
    region: Option<Arc<Region>>,
    /// Bytes of the region from `tail` to `head` are in records not yet reclaimed.
    head: usize,
    tail: usize,
    records: VecDeque<Record>,
    generation: u64,
    /// Making a region failed once: don't try again (the socket carries everything).
    unavailable: bool,
}

/// What [`Arena::alloc`] found.
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) slot: Slot,
    /// The slot is in a region made for it: the other process must be sent its descriptor first.
    pub(crate) new_region: bool,
}

impl Arena {
    /// An arena whose regions the other processes may map for reading only.
    pub(crate) fn readers_only() -> Arena {
        Arena {
            readers_only: true,
            ..Arena::default()
        }
    }

    /// Space for a payload of `len` bytes, or `None` if it is not worth or not possible to place
    /// (the payload then goes through the socket): too short or too long, no room left in a
    /// region that is in use, or no region could be made.
    pub(crate) fn alloc(&mut self, len: usize) -> Option<Placed> {
        if !(SHARED_MIN..=MAX_REGION - FLAG).contains(&len) || self.unavailable {
            return None;
        }
        self.reclaim();
        let size = (FLAG + len).next_multiple_of(FLAG);
        let mut new_region = false;
        let capacity = self.region.as_ref().map_or(0, |r| r.len);
        if self.records.is_empty() && size > capacity {
            let wanted = (2 * size).clamp(MIN_REGION, MAX_REGION).max(size);
            self.generation += 1;
            let len = wanted.next_multiple_of(4096);
            match Region::create(len, self.generation, self.readers_only) {
                Ok(region) => self.region = Some(Arc::new(region)),
                Err(_) => {
                    self.region = None;
                    self.unavailable = true;
                    return None;
                }
            }
            new_region = true;
        }
        let region = Arc::clone(self.region.as_ref()?);
        let capacity = region.len;
        let used = self.head - self.tail;
        let mut at = self.head % capacity;
        if at + size > capacity {
            // Wraps: pad to the end, start again at the front.
            let pad = capacity - at;
            if used + pad + size > capacity {
                return None;
            }
            self.records.push_back(Record {
                flag: None,
                size: pad,
            });
            self.head += pad;
            at = 0;
        } else if used + size > capacity {
            return None;
        }
        region
            .flag(at + FLAG)
            .expect("inside the region")
            .store(IN_USE, Ordering::Relaxed);
        self.records.push_back(Record {
            flag: Some(at),
            size,
        });
        self.head += size;
        Some(Placed {
            slot: Slot {
                lease: Lease {
                    region,
                    offset: at + FLAG,
                    len,
                    owned: true,
                },
            },
            new_region,
        })
    }

    /// Reclaims released records at the tail, in order; an empty ring starts at the front.
    fn reclaim(&mut self) {
        let Some(region) = &self.region else { return };
        while let Some(record) = self.records.front() {
            let free = record.flag.is_none_or(|at| {
                region
                    .flag(at + FLAG)
                    .is_some_and(|flag| flag.load(Ordering::Acquire) == FREE)
            });
            if !free {
                break;
            }
            self.tail += record.size;
            self.records.pop_front();
        }
        if self.records.is_empty() {
            self.head = 0;
            self.tail = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_records_are_reused_and_held_ones_are_not() {
        let mut arena = Arena::default();
        let first = arena.alloc(SHARED_MIN).unwrap();
        assert!(first.new_region);
        let mut a = first.slot;
        a.bytes_mut().fill(1);
        let b = arena.alloc(SHARED_MIN).unwrap();
        assert!(!b.new_region);
        let (a_at, _) = a.place();
        let (b_at, _) = b.slot.place();
        assert_ne!(a_at, b_at);
        let lease = a.into_lease(SHARED_MIN);
        assert!(lease.bytes().iter().all(|&x| x == 1));
        drop(lease);
        b.slot.release();
        // Empty again: the next record starts at the front, in the same region.
        let c = arena.alloc(SHARED_MIN).unwrap();
        assert!(!c.new_region);
        assert_eq!(c.slot.place().0, a_at);
        // Held: a payload larger than the region cannot replace it, and does not fit.
        assert!(arena.alloc(4 * MIN_REGION).is_none());
        c.slot.release();
        let d = arena.alloc(4 * MIN_REGION).unwrap();
        assert!(d.new_region);
        assert_eq!(d.slot.region().generation(), 2);
    }

    #[test]
    fn a_full_ring_refuses_until_its_oldest_record_is_released() {
        let mut arena = Arena::default();
        let mut held = Vec::new();
        while let Some(placed) = arena.alloc(SHARED_MIN) {
            held.push(placed.slot);
            assert!(held.len() < 1000);
        }
        assert!(held.len() >= MIN_REGION / (SHARED_MIN + FLAG) - 1);
        // Releasing a later record frees nothing while the oldest is held.
        held.remove(1).release();
        assert!(arena.alloc(SHARED_MIN).is_none());
        held.remove(0).release();
        assert!(arena.alloc(SHARED_MIN).is_some());
    }

    #[test]
    fn a_lease_outside_the_region_is_refused() {
        let region = Arc::new(Region::create(4096, 1, false).unwrap());
        assert!(Lease::open(Arc::clone(&region), 8, 4088).is_some());
        assert!(Lease::open(Arc::clone(&region), 8, 4089).is_none());
        assert!(Lease::open(Arc::clone(&region), 12, 8).is_none());
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

/// Property-based tests of the ring (proptest): any sequence of allocations and out-of-order
/// releases never hands out space that overlaps a record still held, and never loses space for
/// good. Cases: `POLYEXEC_FUZZ_CASES` (default 200).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize),
        /// Releases the held record at this index (modulo the number held).
        Release(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                3 => (SHARED_MIN..5 * SHARED_MIN).prop_map(Op::Alloc),
                1 => (2 * MIN_REGION..3 * MIN_REGION).prop_map(Op::Alloc),
                4 => any::<usize>().prop_map(Op::Release),
            ],
            1..60,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: crate::security_tests::fuzz_cases(200),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn held_records_never_overlap_and_space_comes_back(ops in ops()) {
            let mut arena = Arena::default();
            // Held slots, each filled with its own byte.
            let mut held: Vec<(Slot, u8)> = Vec::new();
            let mut next = 0u8;
            for op in ops {
                match op {
                    Op::Alloc(len) => {
                        let Some(placed) = arena.alloc(len) else {
                            // Refused only while something is held (an empty arena takes any
                            // size up to the limit).
                            prop_assert!(!held.is_empty());
                            continue;
                        };
                        let mut slot = placed.slot;
                        prop_assert_eq!(slot.bytes_mut().len(), len);
                        next = next.wrapping_add(1);
                        slot.bytes_mut().fill(next);
                        for (other, _) in &held {
                            if Arc::ptr_eq(other.region(), slot.region()) {
                                let (a, alen) = other.place();
                                let (b, blen) = slot.place();
                                prop_assert!(a + alen + FLAG <= b || b + blen + FLAG <= a);
                            }
                        }
                        held.push((slot, next));
                    }
                    Op::Release(i) if !held.is_empty() => {
                        let (mut slot, byte) = held.remove(i % held.len());
                        prop_assert!(slot.bytes_mut().iter().all(|&b| b == byte));
                        slot.release();
                    }
                    Op::Release(_) => {}
                }
            }
            for (mut slot, byte) in held.drain(..) {
                prop_assert!(slot.bytes_mut().iter().all(|&b| b == byte));
            }
            // Everything released: the next record starts at the front again.
            let placed = arena.alloc(SHARED_MIN).expect("an empty arena takes a payload");
            prop_assert_eq!(placed.slot.place().0, FLAG);
        }
    }
}
