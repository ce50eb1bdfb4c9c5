//! [`SubmitGate`]: lets a backend's shutdown close submission with no lock on the submit path,
//! and counts the submissions that pass through it at no extra cost.

#[cfg(polyexec_loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(polyexec_loom))]
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(polyexec_loom)]
use loom::thread::yield_now;
#[cfg(not(polyexec_loom))]
use std::thread::yield_now;

/// The low bit of `entered`: set once the gate is closed. The other bits count entries.
const CLOSED: u64 = 1;
/// What one entry adds to `entered`, above the flag.
const ENTRY: u64 = 2;

/// Counts submitters through `enter` and `leave`, and refuses new ones once closed: the
/// submission gate of the thread pool and of the event loop, for backend implementors.
///
/// A submitter calls [`enter`](Self::enter), pushes its task to the backend's queue, then
/// [`leave`](Self::leave); shutdown calls [`close`](Self::close) and then queues whatever ends
/// the workers, which are sure to find every accepted task ahead of it. The submit path costs two
/// atomic read-modify-writes and takes no lock. The gate also counts what passes through it
/// ([`submitted`](Self::submitted): every entry, refused ones included), so that a backend
/// needs no counter of its own for `Metrics::submitted`.
///
/// # How it works
///
/// Two counters that only grow: `entered` (the closed flag in its low bit, and 2 added per
/// task entering) and `left` (1 added per task leaving, and per task refused at once). A
/// submitter of `n` tasks adds `2n` to `entered` and, when it leaves or is refused, `n` to
/// `left`, always in that order; so at any time `left <= entered >> 1`, and the difference is
/// the number of tasks whose submitters are inside.
///
/// Invariant: after [`close`](Self::close) returns, no submitter is inside and none will enter,
/// so everything any submitter pushed to the queue was pushed before `close` returned. `close`
/// sets the flag, then reads `left` (`Acquire`) and after it `entered`, and returns once
/// `entered >> 1` equals the `left` it read. Why that suffices:
///
/// - every entry that was accepted added to `entered` before the flag did (else it would have
///   seen the flag and been refused), so the read of `entered`, which follows the setting of
///   the flag on the same thread, includes it;
/// - every leave counted in the `left` that was read happened-before that read (`leave` is a
///   `Release` add, the read `Acquire`, and every change of `left` is an add, so the read
///   synchronises with all the adds before the value it saw); so did the entry of the same
///   submitter, which precedes its leave, and therefore the later read of `entered` includes
///   that entry too;
/// - so the tasks counted in `left` are a subset of those counted in `entered`, each counted
///   with the same weight in both; if the two totals are equal, the subset is the whole: every
///   entry in `entered`, which includes every accepted one, had left by the time `left` was
///   read. Reading in the other order would not do: a submitter could enter and leave between
///   the two reads, counted in `left` and not in `entered`, and so hide one still inside.
///
/// Those leaves happen-before the read of `left`, so the pushes before them happen-before
/// whatever the closer does next (such as queueing stop messages behind them). The counters
/// are 64 bits, so `entered` counts tasks modulo 2^63; `close` compares modulo 2^63 on both
/// sides, so the test stays exact even past that.
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
/// assert_eq!(gate.submitted(), 2); // refused ones count too
/// ```
#[derive(Debug, Default)]
pub struct SubmitGate {
    /// [`CLOSED`] in the low bit, plus [`ENTRY`] per task entered (accepted or refused).
    entered: AtomicU64,
    /// One per task whose submitter left, or was refused.
    left: AtomicU64,
}

impl SubmitGate {
    /// Enters the gate for one task; `false` (and nothing to undo) if it is closed.
    #[inline]
    pub fn enter(&self) -> bool {
        self.enter_many(1)
    }

    /// Enters the gate for a batch of `n` tasks, which are counted submitted; `false` (and
    /// nothing to undo) if it is closed. Leave with [`leave_many`](Self::leave_many) and the
    /// same `n`.
    ///
    /// # Examples
    ///
    /// ```
    /// let gate = polyexec_core::SubmitGate::default();
    /// assert!(gate.enter_many(3));
    /// gate.leave_many(3);
    /// assert_eq!(gate.submitted(), 3);
    /// ```
    #[inline]
    pub fn enter_many(&self, n: u64) -> bool {
        let prev = self.entered.fetch_add(n * ENTRY, Ordering::Acquire);
        if prev & CLOSED != 0 {
            // Counted as entered and left at once: `close` waits for nothing on its account.
            self.left.fetch_add(n, Ordering::Release);
            return false;
        }
        true
    }

    /// Leaves the gate after a successful [`enter`](Self::enter).
    #[inline]
    pub fn leave(&self) {
        self.leave_many(1);
    }

    /// Leaves the gate after a successful [`enter_many`](Self::enter_many) of `n` tasks.
    #[inline]
    pub fn leave_many(&self, n: u64) {
        self.left.fetch_add(n, Ordering::Release);
    }

    /// Closes the gate and waits for the submitters inside to leave. Idempotent.
    pub fn close(&self) {
        self.entered.fetch_or(CLOSED, Ordering::AcqRel);
        // Submitters inside only push to an unbounded queue, which does not block: the wait is
        // a handful of instructions long. `left` first, then `entered`: see the invariant.
        loop {
            let left = self.left.load(Ordering::Acquire);
            let entered = self.entered.load(Ordering::Acquire);
            if (entered & !CLOSED) == left.wrapping_mul(ENTRY) {
                return;
            }
            yield_now();
        }
    }

    /// `true` once [`close`](Self::close) has begun.
    pub fn is_closed(&self) -> bool {
        self.entered.load(Ordering::Acquire) & CLOSED != 0
    }

    /// The tasks that have entered, accepted or refused: each submission, counted once.
    ///
    /// # Examples
    ///
    /// ```
    /// let gate = polyexec_core::SubmitGate::default();
    /// assert!(gate.enter());
    /// assert_eq!(gate.submitted(), 1); // counted as it enters
    /// # gate.leave();
    /// ```
    pub fn submitted(&self) -> u64 {
        self.entered.load(Ordering::Relaxed) >> 1
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
        assert!(!gate.enter_many(4));
        gate.close();
    }

    #[test]
    fn counts_every_submission_refused_ones_included() {
        let gate = SubmitGate::default();
        assert_eq!(gate.submitted(), 0);
        assert!(gate.enter());
        assert!(gate.enter_many(3));
        assert_eq!(gate.submitted(), 4, "counted on entry");
        gate.leave_many(3);
        gate.leave();
        assert!(gate.enter_many(0));
        gate.leave_many(0);
        gate.close();
        assert_eq!(gate.submitted(), 4, "closing counts nothing");
        assert!(!gate.enter());
        assert!(!gate.enter_many(2));
        assert_eq!(gate.submitted(), 7);
        // Refusals leave nobody inside: closing again returns at once.
        gate.close();
    }

    #[test]
    fn close_compares_modulo_the_counters_width() {
        // Counters near their wrap: `entered` wraps first (2 per task above the flag bit).
        let gate = SubmitGate {
            entered: AtomicU64::new(u64::MAX - 1),
            left: AtomicU64::new(u64::MAX >> 1),
        };
        assert!(gate.enter_many(2));
        gate.leave_many(2);
        assert!(gate.enter());
        gate.leave();
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

    /// The pool's shutdown protocol in miniature, with submitters of `batches[id]` tasks each
    /// racing the closer: a submitter that got in has its tasks queued before the closer's
    /// stop message; one that was refused queued nothing; and every task is counted submitted
    /// once, whether accepted or refused.
    fn accepted_work_precedes_stop(batches: &'static [u64]) {
        loom::model(move || {
            let gate = Arc::new(SubmitGate::default());
            let queue = Arc::new(Mutex::new(Vec::new()));
            let submitters: Vec<_> = batches
                .iter()
                .enumerate()
                .map(|(id, &n)| {
                    let gate = Arc::clone(&gate);
                    let queue = Arc::clone(&queue);
                    loom::thread::spawn(move || {
                        if gate.enter_many(n) {
                            queue.lock().unwrap().push(Msg::Task(id));
                            gate.leave_many(n);
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
            let total: u64 = batches.iter().sum();
            assert_eq!(gate.submitted(), total + 1, "each task counted once");
        });
    }

    #[test]
    fn loom_accepted_work_precedes_stop() {
        accepted_work_precedes_stop(&[1, 1]);
    }

    /// A batch beside a single task: the counts are weighted, and must still balance only
    /// when everyone inside has left.
    #[test]
    fn loom_accepted_batch_precedes_stop() {
        accepted_work_precedes_stop(&[2, 1]);
    }

    /// The count only grows, whatever the interleaving: a reader never sees it go back.
    #[test]
    fn loom_submitted_is_monotonic() {
        loom::model(|| {
            let gate = Arc::new(SubmitGate::default());
            let submitter = {
                let gate = Arc::clone(&gate);
                loom::thread::spawn(move || {
                    for _ in 0..2 {
                        if gate.enter() {
                            gate.leave();
                        }
                    }
                })
            };
            let closer = {
                let gate = Arc::clone(&gate);
                loom::thread::spawn(move || gate.close())
            };
            let first = gate.submitted();
            let second = gate.submitted();
            assert!(first <= second, "{first} then {second}");
            submitter.join().unwrap();
            closer.join().unwrap();
            assert_eq!(gate.submitted(), 2);
        });
    }
}
