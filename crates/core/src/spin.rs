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
//! The wait is bounded ([`MAX`]) and adaptive, per thread, on how long joins have actually been
//! taking: a join whose result came within [`MAX`] of the call (awake or after parking) restores
//! this thread's budget to [`MAX`], since results that come this fast are worth waiting for
//! awake; a slower one halves it, down to [`MIN`]. A thread that joins long tasks thus soon
//! spends almost nothing waiting awake, and one that turns back to short tasks gets the full
//! budget again after a single join.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Longest busy-wait: a few warm round trips to a worker process.
const MAX: Duration = Duration::from_micros(40);
/// Shortest busy-wait a thread's budget falls to: it keeps probing, cheaply.
const MIN: Duration = Duration::from_micros(2);

thread_local! {
    /// This thread's current budget, in nanoseconds.
    static BUDGET: Cell<u64> = const { Cell::new(MAX.as_nanos() as u64) };
}

/// Waits, awake, until `done()` is `true` or this thread's budget runs out, counting from
/// `start`; `true` if it became `true`. `done` must be a cheap read, such as an `Acquire` load.
pub(crate) fn wait(done: impl Fn() -> bool, start: Instant) -> bool {
    let Ok(budget) = BUDGET.try_with(Cell::get) else {
        return done();
    };
    let limit = Duration::from_nanos(budget);
    let mut polls = 0u32;
    loop {
        if done() {
            return true;
        }
        polls += 1;
        if polls % 8 == 0 {
            // Reading the clock costs ~20 ns: not on every poll.
            if start.elapsed() >= limit {
                return false;
            }
            // Let the threads that produce the result run if they share this processor.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Adapts this thread's budget to a join that took `waited` in all (see the module's
/// documentation).
pub(crate) fn learn(waited: Duration) {
    let _ = BUDGET.try_with(|budget| {
        budget.set(if waited <= MAX {
            MAX.as_nanos() as u64
        } else {
            (budget.get() / 2).max(MIN.as_nanos() as u64)
        })
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn is_set(flag: &AtomicBool) -> impl Fn() -> bool + '_ {
        || flag.load(Ordering::Acquire)
    }

    fn budget() -> u64 {
        BUDGET.with(Cell::get)
    }

    #[test]
    fn returns_at_once_when_done() {
        assert!(wait(is_set(&AtomicBool::new(true)), Instant::now()));
    }

    #[test]
    fn gives_up_when_the_flag_stays_clear() {
        let never = AtomicBool::new(false);
        assert!(!wait(is_set(&never), Instant::now()));
    }

    #[test]
    fn slow_joins_shrink_the_budget_and_one_fast_join_restores_it() {
        assert_eq!(budget(), MAX.as_nanos() as u64);
        learn(Duration::from_millis(5));
        assert_eq!(budget(), MAX.as_nanos() as u64 / 2);
        for _ in 0..20 {
            learn(Duration::from_millis(5));
        }
        assert_eq!(budget(), MIN.as_nanos() as u64);
        // Waiting with the smallest budget gives up after about `MIN`.
        let never = AtomicBool::new(false);
        assert!(!wait(is_set(&never), Instant::now()));
        learn(Duration::from_micros(10));
        assert_eq!(budget(), MAX.as_nanos() as u64);
    }

    #[test]
    fn sees_a_flag_set_by_another_thread() {
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let setter = {
            let done = std::sync::Arc::clone(&done);
            std::thread::spawn(move || done.store(true, Ordering::Release))
        };
        setter.join().unwrap();
        assert!(wait(is_set(&done), Instant::now()));
    }
}
