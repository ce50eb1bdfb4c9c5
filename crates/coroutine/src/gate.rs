//! The submission gate: lets `shutdown` close the queue with no lock on the submit path.

#[cfg(polyexec_loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(polyexec_loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(polyexec_loom)]
use loom::thread::yield_now;
#[cfg(not(polyexec_loom))]
use std::thread::yield_now;

/// Set in the state once the gate is closed; the remaining bits count submitters inside.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Counts submitters between `enter` and `leave`, and refuses new ones once closed.
///
/// Invariant: after [`close`](Gate::close) returns, no submitter is inside and none will enter,
/// so everything any submitter pushed to the queue was pushed before `close` returned. `leave`
/// uses `Release` and `close` reads with `Acquire`, so those pushes happen-before whatever the
/// closer does next (such as queueing stop messages behind them).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: AtomicUsize,
}

impl Gate {
    /// Enters the gate; `false` (and nothing to undo) if it is closed.
    #[inline]
    pub(crate) fn enter(&self) -> bool {
        let prev = self.state.fetch_add(1, Ordering::Acquire);
        if prev & CLOSED != 0 {
            self.state.fetch_sub(1, Ordering::Release);
            return false;
        }
        true
    }

    /// Leaves the gate after a successful [`enter`](Gate::enter).
    #[inline]
    pub(crate) fn leave(&self) {
        self.state.fetch_sub(1, Ordering::Release);
    }

    /// Closes the gate and waits for the submitters inside to leave. Idempotent.
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        // Submitters inside only push to an unbounded queue, which does not block: the wait is
        // a handful of instructions long.
        while self.state.load(Ordering::Acquire) & !CLOSED != 0 {
            yield_now();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }
}

#[cfg(all(test, not(polyexec_loom)))]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_close() {
        let gate = Gate::default();
        assert!(gate.enter());
        gate.leave();
        gate.close();
        assert!(gate.is_closed());
        assert!(!gate.enter());
        gate.close();
        assert!(!gate.enter());
    }

    #[test]
    fn close_waits_for_submitters_inside() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;

        let gate = Arc::new(Gate::default());
        let left = Arc::new(AtomicBool::new(false));
        assert!(gate.enter());
        let closer = {
            let gate = Arc::clone(&gate);
            let left = Arc::clone(&left);
            std::thread::spawn(move || {
                gate.close();
                // `close` may only return after `leave`.
                assert!(left.load(Ordering::Acquire));
            })
        };
        left.store(true, Ordering::Release);
        gate.leave();
        closer.join().unwrap();
    }
}

/// Exhaustive interleavings of submitters racing a closer, under loom (the same model as the
/// thread pool's gate, which this one copies):
/// `RUSTFLAGS="--cfg polyexec_loom" cargo test -p polyexec-coroutine --release --lib loom`.
#[cfg(all(test, polyexec_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Msg {
        Task(usize),
        /// What the loop's shutdown does once the gate is closed (mark the loop draining).
        Closed,
    }

    /// A submitter that got in has its task spawned before the closer goes on; one that was
    /// refused spawned nothing; the gate never reopens.
    #[test]
    fn loom_accepted_work_precedes_the_close() {
        loom::model(|| {
            let gate = Arc::new(Gate::default());
            let spawned = Arc::new(Mutex::new(Vec::new()));
            let submitters: Vec<_> = (0..2)
                .map(|id| {
                    let gate = Arc::clone(&gate);
                    let spawned = Arc::clone(&spawned);
                    loom::thread::spawn(move || {
                        if gate.enter() {
                            spawned.lock().unwrap().push(Msg::Task(id));
                            gate.leave();
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            gate.close();
            spawned.lock().unwrap().push(Msg::Closed);
            let accepted: Vec<bool> = submitters.into_iter().map(|t| t.join().unwrap()).collect();
            let spawned = spawned.lock().unwrap();
            assert_eq!(
                spawned.last(),
                Some(&Msg::Closed),
                "a task spawned after the close: {spawned:?}"
            );
            for (id, accepted) in accepted.into_iter().enumerate() {
                assert_eq!(spawned.contains(&Msg::Task(id)), accepted, "{spawned:?}");
            }
            assert!(!gate.enter(), "the gate reopened");
        });
    }
}
