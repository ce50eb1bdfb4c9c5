//! [`SubmitGate`]: lets a backend's shutdown close submission with no lock on the submit path.

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

/// Counts submitters between `enter` and `leave`, and refuses new ones once closed: the
/// submission gate of the thread pool and of the event loop, for backend implementors.
///
/// A submitter calls [`enter`](Self::enter), pushes its task to the backend's queue, then
/// [`leave`](Self::leave); shutdown calls [`close`](Self::close) and then queues whatever ends
/// the workers, which are sure to find every accepted task ahead of it. The submit path costs two
/// atomic read-modify-writes and takes no lock.
///
/// Invariant: after [`close`](Self::close) returns, no submitter is inside and none will enter,
/// so everything any submitter pushed to the queue was pushed before `close` returned. `leave`
/// uses `Release` and `close` reads with `Acquire`, so those pushes happen-before whatever the
/// closer does next (such as queueing stop messages behind them).
///
/// # Examples
///
/// ```
/// use polyexec_core::SubmitGate;
///
/// let gate = SubmitGate::default();
/// assert!(gate.enter()); // submitting: push the task, then leave
/// gate.leave();
/// gate.close(); // shutting down: every accepted task is queued by now
/// assert!(gate.is_closed());
/// assert!(!gate.enter()); // refused: resolve the handle with `ShutDown`
/// ```
#[derive(Debug, Default)]
pub struct SubmitGate {
    state: AtomicUsize,
}

impl SubmitGate {
    /// Enters the gate; `false` (and nothing to undo) if it is closed.
    #[inline]
    pub fn enter(&self) -> bool {
        let prev = self.state.fetch_add(1, Ordering::Acquire);
        if prev & CLOSED != 0 {
            self.state.fetch_sub(1, Ordering::Release);
            return false;
        }
        true
    }

    /// Leaves the gate after a successful [`enter`](Self::enter).
    #[inline]
    pub fn leave(&self) {
        self.state.fetch_sub(1, Ordering::Release);
    }

    /// Closes the gate and waits for the submitters inside to leave. Idempotent.
    pub fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        // Submitters inside only push to an unbounded queue, which does not block: the wait is
        // a handful of instructions long.
        while self.state.load(Ordering::Acquire) & !CLOSED != 0 {
            yield_now();
        }
    }

    /// `true` once [`close`](Self::close) has begun.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }
}

#[cfg(all(test, not(polyexec_loom)))]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_close() {
        let gate = SubmitGate::default();
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

        let gate = Arc::new(SubmitGate::default());
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

/// Exhaustive interleavings of submitters racing a closer, under loom:
/// `RUSTFLAGS="--cfg polyexec_loom" cargo test -p polyexec-core --release --lib loom`.
#[cfg(all(test, polyexec_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Msg {
        Task(usize),
        Stop,
    }

    /// The pool's shutdown protocol in miniature: a submitter that got in has its task queued
    /// before the closer's stop message; one that was refused queued nothing.
    #[test]
    fn loom_accepted_work_precedes_stop() {
        loom::model(|| {
            let gate = Arc::new(SubmitGate::default());
            let queue = Arc::new(Mutex::new(Vec::new()));
            let submitters: Vec<_> = (0..2)
                .map(|id| {
                    let gate = Arc::clone(&gate);
                    let queue = Arc::clone(&queue);
                    loom::thread::spawn(move || {
                        if gate.enter() {
                            queue.lock().unwrap().push(Msg::Task(id));
                            gate.leave();
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            gate.close();
            queue.lock().unwrap().push(Msg::Stop);
            let accepted: Vec<bool> = submitters.into_iter().map(|t| t.join().unwrap()).collect();
            let queue = queue.lock().unwrap();
            assert_eq!(
                queue.last(),
                Some(&Msg::Stop),
                "work queued after the stop: {queue:?}"
            );
            for (id, accepted) in accepted.into_iter().enumerate() {
                assert_eq!(queue.contains(&Msg::Task(id)), accepted, "{queue:?}");
            }
            assert!(!gate.enter(), "the gate reopened");
        });
    }
}
