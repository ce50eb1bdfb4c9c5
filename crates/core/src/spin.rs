//! A short, bounded, adaptive busy-wait before a blocking `join` parks.
//!
//! When a handle is resolved by another thread (the subprocess backend's reader thread), a
//! joiner that has parked costs that thread a `futex` wake-up and costs itself the scheduler's
//! wake-up latency: on the round trip of a trivial task those are a third of the time. A joiner
//! that is still awake when the result lands sees it at once. So `join` first polls the
//! handle's `done` flag for a short while, yielding the processor between polls so that the
//! threads that produce the result (the worker process, the reader thread) are never kept from
//! running by the waiting one, even on two cores.
//!
//! The wait is bounded ([`MAX`]) and adaptive, per thread: a wait that ends with the result
//! doubles this thread's budget (up to [`MAX`]); one that runs out halves it (down to [`MIN`]),
//! so a thread that joins long tasks soon spends almost nothing waiting awake.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest busy-wait: a few warm round trips to a worker process.
const MAX: Duration = Duration::from_micros(40);
/// Shortest busy-wait a thread's budget falls to: it keeps probing, cheaply.
const MIN: Duration = Duration::from_micros(2);

thread_local! {
    /// This thread's current budget, in nanoseconds.
    static BUDGET: Cell<u64> = const { Cell::new(MAX.as_nanos() as u64) };
}

/// Waits, awake, until `done` is set or this thread's budget runs out; `true` if it was set.
pub(crate) fn wait(done: &AtomicBool) -> bool {
    let Ok(budget) = BUDGET.try_with(Cell::get) else {
        return done.load(Ordering::Acquire);
    };
    let start = Instant::now();
    let limit = Duration::from_nanos(budget);
    let mut polls = 0u32;
    let arrived = loop {
        if done.load(Ordering::Acquire) {
            break true;
        }
        polls += 1;
        if polls % 8 == 0 {
            // Reading the clock costs ~20 ns: not on every poll.
            if start.elapsed() >= limit {
                break false;
            }
            // Let the threads that produce the result run if they share this processor.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    };
    let next = if arrived {
        budget.saturating_mul(2).min(MAX.as_nanos() as u64)
    } else {
        (budget / 2).max(MIN.as_nanos() as u64)
    };
    let _ = BUDGET.try_with(|b| b.set(next));
    arrived
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_at_once_when_done() {
        assert!(wait(&AtomicBool::new(true)));
    }

    #[test]
    fn gives_up_within_the_bound_and_adapts() {
        let never = AtomicBool::new(false);
        let start = Instant::now();
        assert!(!wait(&never));
        // The bound plus a scheduler's time slice of slack on a loaded machine.
        assert!(start.elapsed() < Duration::from_millis(100));
        let after_one = BUDGET.with(Cell::get);
        assert!(after_one < MAX.as_nanos() as u64);
        for _ in 0..20 {
            assert!(!wait(&never));
        }
        assert_eq!(BUDGET.with(Cell::get), MIN.as_nanos() as u64);
        // A success grows it again.
        assert!(wait(&AtomicBool::new(true)));
        assert_eq!(BUDGET.with(Cell::get), 2 * MIN.as_nanos() as u64);
    }

    #[test]
    fn sees_a_flag_set_by_another_thread() {
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let setter = {
            let done = std::sync::Arc::clone(&done);
            std::thread::spawn(move || done.store(true, Ordering::Release))
        };
        setter.join().unwrap();
        assert!(wait(&done));
    }
}
