//! The writer's side of a direction: an [`Arena`] hands out records of its region as a ring.
//!
//! # Invariants
//!
//! - Only the arena hands out space in its region, and a record's space is handed out again only
//!   after every holder released it (its flag, read with `Acquire`, is back to zero).
//! - Records are laid out in allocation order around the region; they are reclaimed in that
//!   order, skipping over released ones, so a record released out of order waits for the ones
//!   before it. An empty ring starts again at the front, so a lockstep caller keeps reusing the
//!   same warm pages.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{COMPLETE, HEADER, Lease, MAX_REGION, MIN_REGION, Region, SHARED_MIN, Slot};

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
        if !(SHARED_MIN..=MAX_REGION - HEADER).contains(&len) || self.unavailable {
            return None;
        }
        self.reclaim();
        let size = (HEADER + len).next_multiple_of(8);
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
        // One holder: whoever releases the record after reading it. Published to the reader with
        // the frame that names the record (a system call, after these stores).
        region
            .flag(at + HEADER)
            .expect("inside the region")
            .store(1, Ordering::Relaxed);
        region
            .progress(at + HEADER)
            .expect("inside the region")
            .store(COMPLETE, Ordering::Relaxed);
        self.records.push_back(Record {
            flag: Some(at),
            size,
        });
        self.head += size;
        Some(Placed {
            slot: Slot {
                lease: Lease {
                    region,
                    offset: at + HEADER,
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
                    .flag(at + HEADER)
                    .is_some_and(|flag| flag.load(Ordering::Acquire) == 0)
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
        assert!(held.len() >= MIN_REGION / (SHARED_MIN + HEADER) - 1);
        // Releasing a later record frees nothing while the oldest is held.
        held.remove(1).release();
        assert!(arena.alloc(SHARED_MIN).is_none());
        held.remove(0).release();
        assert!(arena.alloc(SHARED_MIN).is_some());
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
                                prop_assert!(a + alen + HEADER <= b || b + blen + HEADER <= a);
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
            prop_assert_eq!(placed.slot.place().0, HEADER);
        }
    }
}
