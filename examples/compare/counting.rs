//! A global allocator that counts bytes while counting is switched on.
//!
//! Counting is off outside the memory and data rows, so the timed rows pay one relaxed load
//! per allocation and nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

static ON: AtomicBool = AtomicBool::new(false);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static FREED: AtomicUsize = AtomicUsize::new(0);

/// The allocator: `System`, plus two counters.
#[derive(Debug)]
pub(crate) struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and
// returns what `System` returned; the counters never influence an allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.load(Relaxed) {
            ALLOCATED.fetch_add(layout.size(), Relaxed);
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ON.load(Relaxed) {
            ALLOCATED.fetch_add(layout.size(), Relaxed);
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Relaxed) {
            FREED.fetch_add(layout.size(), Relaxed);
        }
        // SAFETY: `ptr` and `layout` come from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.load(Relaxed) {
            ALLOCATED.fetch_add(new_size, Relaxed);
            FREED.fetch_add(layout.size(), Relaxed);
        }
        // SAFETY: `ptr` and `layout` come from `System`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The counters at one moment.
#[derive(Debug)]
pub(crate) struct Mark {
    allocated: usize,
    freed: usize,
}

/// Switches counting on and returns the counters now.
pub(crate) fn start() -> Mark {
    ON.store(true, Relaxed);
    Mark {
        allocated: ALLOCATED.load(Relaxed),
        freed: FREED.load(Relaxed),
    }
}

/// Switches counting off.
pub(crate) fn stop() {
    ON.store(false, Relaxed);
}

/// Bytes allocated since `mark`.
pub(crate) fn allocated_since(mark: &Mark) -> usize {
    ALLOCATED.load(Relaxed) - mark.allocated
}

/// Bytes allocated and not freed since `mark` (frees of older blocks count against it).
pub(crate) fn live_since(mark: &Mark) -> isize {
    let allocated = allocated_since(mark) as isize;
    let freed = (FREED.load(Relaxed) - mark.freed) as isize;
    allocated - freed
}
