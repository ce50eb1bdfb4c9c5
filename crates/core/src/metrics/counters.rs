//! [`Counters`]: one executor's live counters, striped so that no two threads write one cache
//! line, and read into a [`Metrics`] snapshot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::count::{CountScope, Scope, enter_scope};
use super::{Metrics, OUTCOMES, Outcome};
use crate::SubmitGate;

/// One set of outcome counters, indexed by [`Outcome`], alone in its cache lines so that the
/// thread that adds to it shares them with no other writer.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(super) struct Stripe([AtomicU64; OUTCOMES]);

impl Stripe {
    /// Adds one to `outcome`'s counter; `exclusive` when the calling thread is the stripe's
    /// only writer (see [`bump`]).
    #[inline]
    pub(super) fn add(&self, outcome: Outcome, exclusive: bool) {
        bump(&self.0[outcome as usize], exclusive);
    }

    fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome as usize].load(Ordering::Relaxed)
    }

    /// A stripe for a new executor: a zeroed one from the free list, or a new one.
    ///
    /// Stripes live for the whole process (leaked, then recycled through [`FREE_STRIPES`]), so
    /// that a thread's scope can point at its stripe with a plain `&'static` in a thread-local
    /// that needs no destructor: reaching the counter from a finishing task is then two loads,
    /// where an `Arc` behind a `RefCell` cost about 30 instructions a task. The memory held is
    /// that of the most stripes ever alive at once (128 bytes each).
    fn take() -> &'static Stripe {
        let recycled = FREE_STRIPES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        recycled.unwrap_or_else(|| Box::leak(Box::default()))
    }

    /// Zeroes a stripe that no executor uses any more and puts it on the free list.
    fn give_back(stripe: &'static Stripe) {
        for counter in &stripe.0 {
            counter.store(0, Ordering::Relaxed);
        }
        FREE_STRIPES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stripe);
    }
}

/// Outcome stripes of executors that are gone, zeroed, for the next ones (see
/// [`Stripe::take`]).
static FREE_STRIPES: Mutex<Vec<&'static Stripe>> = Mutex::new(Vec::new());

/// Adds one to `counter`. With `exclusive`, the caller is the counter's only writer, and a load
/// and a store do it: on x86 a locked add is a full barrier, which waits for the task's own
/// stores (its output, just written) to drain, and measured 25% of spawn + join on the thread
/// pool; a plain store waits for nothing. Readers only load, so they see one value or the next.
#[inline(always)]
pub(super) fn bump(counter: &AtomicU64, exclusive: bool) {
    if exclusive {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    } else {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A counter alone in its cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicU64);

/// The live counters of one executor, for backend implementors: the backend counts into them
/// and builds [`Metrics`] from them with [`snapshot`](Self::snapshot).
///
/// Outcome counters are striped: one stripe per worker (given to that worker's thread with
/// [`enter`](Self::enter), and written by that thread only) and one more for threads that are
/// not workers (shutdown paths, the subprocess pool's reader threads).
///
/// Submissions: a backend whose submissions all pass through a [`SubmitGate`] (the thread
/// pool, the event loop) lets the gate count them, which costs nothing more per task, and
/// reads them with [`snapshot_gated`](Self::snapshot_gated) or
/// [`snapshot_started_gated`](Self::snapshot_started_gated); the others (and submissions
/// that end before the gate) count them with [`count_submitted`](Self::count_submitted), one
/// shared counter, a locked add per task.
///
/// # Examples
///
/// ```
/// use polyexec_core::{Counters, Outcome};
///
/// let counters = Counters::new(2);
/// counters.count_submitted();
/// counters.count(Outcome::Succeeded);
/// let metrics = counters.snapshot(0);
/// assert_eq!((metrics.submitted(), metrics.succeeded()), (1, 1));
/// ```
#[derive(Debug)]
pub struct Counters {
    /// Submissions counted here rather than by a gate. Shared by all submitting threads: the
    /// backends that count every task here (worker processes, the cluster) spend micro-
    /// seconds on a task, beside which a locked add is nothing.
    submitted: Padded,
    /// `workers` stripes for the workers, then one for every other thread. Given back when
    /// the counters are dropped: no thread counts into them then, since a thread's scope
    /// holds the counters.
    outcomes: Box<[&'static Stripe]>,
    alive: AtomicUsize,
    restarts: AtomicU64,
}

impl Counters {
    /// Counters for an executor of `workers` workers.
    ///
    /// # Examples
    ///
    /// ```
    /// let counters = polyexec_core::Counters::new(4);
    /// assert_eq!(counters.snapshot(0).submitted(), 0);
    /// ```
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Counters {
            submitted: Padded::default(),
            outcomes: (0..=workers).map(|_| Stripe::take()).collect(),
            alive: AtomicUsize::new(0),
            restarts: AtomicU64::new(0),
        })
    }

    /// Counts one submitted task that no [`SubmitGate`] counts.
    ///
    /// # Examples
    ///
    /// ```
    /// let counters = polyexec_core::Counters::new(1);
    /// counters.count_submitted();
    /// assert_eq!(counters.snapshot(0).submitted(), 1);
    /// ```
    #[inline]
    pub fn count_submitted(&self) {
        self.count_submitted_many(1);
    }

    /// Counts `n` submitted tasks at once (a batch) that no [`SubmitGate`] counts.
    ///
    /// # Examples
    ///
    /// ```
    /// let counters = polyexec_core::Counters::new(1);
    /// counters.count_submitted_many(3);
    /// assert_eq!(counters.snapshot(0).submitted(), 3);
    /// ```
    pub fn count_submitted_many(&self, n: usize) {
        if cfg!(polyexec_no_metrics) {
            return;
        }
        self.submitted
            .0
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts one outcome on the stripe of threads that are not workers: for backends that
    /// count where no scope is entered (the subprocess pool's threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::{Counters, Outcome};
    /// let counters = Counters::new(1);
    /// counters.count(Outcome::Panicked);
    /// assert_eq!(counters.snapshot(0).panicked(), 1);
    /// ```
    #[inline]
    pub fn count(&self, outcome: Outcome) {
        if cfg!(polyexec_no_metrics) {
            return;
        }
        self.outcomes[self.outcomes.len() - 1].add(outcome, false);
    }

    /// Makes this thread count the tasks that finish or are dropped on it into these counters,
    /// until the guard is dropped: a worker enters its own stripe (`Some(index)`) for its life;
    /// a thread that drops tasks for a shutdown enters the shared one (`None`) with `dropped`
    /// set to [`Outcome::ShutDown`]. A task dropped unfinished counts as `dropped` (normally
    /// [`Outcome::Cancelled`]).
    ///
    /// A worker index must only ever be entered by one thread: its stripe is written without
    /// locked instructions.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::{Counters, Outcome, TaskCount};
    /// let counters = Counters::new(1);
    /// {
    ///     let _scope = counters.enter(Some(0), Outcome::Cancelled);
    ///     drop(TaskCount::new()); // a task dropped unfinished
    /// }
    /// assert_eq!(counters.snapshot(0).cancelled(), 1);
    /// ```
    pub fn enter(self: &Arc<Self>, worker: Option<usize>, dropped: Outcome) -> CountScope {
        let last = self.outcomes.len() - 1;
        let stripe = worker.map_or(last, |index| index.min(last));
        enter_scope(Scope {
            _counters: Arc::clone(self),
            stripe: self.outcomes[stripe],
            exclusive: stripe < last,
            dropped,
        })
    }

    /// Counts a worker that started.
    ///
    /// # Examples
    ///
    /// ```
    /// let counters = polyexec_core::Counters::new(1);
    /// counters.worker_started();
    /// assert_eq!(counters.snapshot(0).workers(), 1);
    /// ```
    pub fn worker_started(&self) {
        self.alive.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a worker that stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// let counters = polyexec_core::Counters::new(1);
    /// counters.worker_started();
    /// counters.worker_stopped();
    /// assert_eq!(counters.snapshot(0).workers(), 0);
    /// ```
    pub fn worker_stopped(&self) {
        let _ = self
            .alive
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Counts a worker started to replace another.
    ///
    /// # Examples
    ///
    /// ```
    /// let counters = polyexec_core::Counters::new(1);
    /// counters.worker_restarted();
    /// assert_eq!(counters.snapshot(0).worker_restarts(), 1);
    /// ```
    pub fn worker_restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the counters; `queued` is the backend's own count of waiting tasks, and `running`
    /// is what remains of the unfinished ones.
    ///
    /// # Examples
    ///
    /// ```
    /// let counters = polyexec_core::Counters::new(1);
    /// counters.count_submitted();
    /// counters.count_submitted();
    /// let metrics = counters.snapshot(1);
    /// assert_eq!((metrics.queued(), metrics.running()), (1, 1));
    /// ```
    pub fn snapshot(&self, queued: usize) -> Metrics {
        Self::with_queued(self.read(None), queued)
    }

    /// [`snapshot`](Self::snapshot) for a backend whose submissions `gate` counts: its
    /// [`SubmitGate::submitted`] is added to `submitted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::{Counters, Outcome, SubmitGate};
    /// let (counters, gate) = (Counters::new(1), SubmitGate::default());
    /// assert!(gate.enter()); // submitting one task: counted
    /// gate.leave();
    /// counters.count(Outcome::Succeeded);
    /// gate.close();
    /// assert!(!gate.enter()); // refused: counted too
    /// counters.count(Outcome::ShutDown);
    /// let metrics = counters.snapshot_gated(&gate, 0);
    /// assert_eq!((metrics.submitted(), metrics.finished()), (2, 2));
    /// ```
    pub fn snapshot_gated(&self, gate: &SubmitGate, queued: usize) -> Metrics {
        Self::with_queued(self.read(Some(gate)), queued)
    }

    fn with_queued(mut metrics: Metrics, queued: usize) -> Metrics {
        let unfinished = metrics.unfinished();
        metrics.queued = queued.min(unfinished);
        metrics.running = unfinished - metrics.queued;
        metrics
    }

    /// Reads the counters, for a backend that knows how many tasks have started and not
    /// finished (`started`) rather than how many wait: the rest of the unfinished ones are
    /// queued.
    ///
    /// # Examples
    ///
    /// ```
    /// let counters = polyexec_core::Counters::new(1);
    /// for _ in 0..3 {
    ///     counters.count_submitted();
    /// }
    /// let metrics = counters.snapshot_started(1);
    /// assert_eq!((metrics.queued(), metrics.running()), (2, 1));
    /// ```
    pub fn snapshot_started(&self, started: usize) -> Metrics {
        Self::with_started(self.read(None), started)
    }

    /// [`snapshot_started`](Self::snapshot_started) for a backend whose submissions `gate`
    /// counts: its [`SubmitGate::submitted`] is added to `submitted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::{Counters, SubmitGate};
    /// let (counters, gate) = (Counters::new(1), SubmitGate::default());
    /// assert!(gate.enter_many(3));
    /// gate.leave_many(3);
    /// let metrics = counters.snapshot_started_gated(&gate, 1);
    /// assert_eq!((metrics.submitted(), metrics.queued(), metrics.running()), (3, 2, 1));
    /// ```
    pub fn snapshot_started_gated(&self, gate: &SubmitGate, started: usize) -> Metrics {
        Self::with_started(self.read(Some(gate)), started)
    }

    fn with_started(mut metrics: Metrics, started: usize) -> Metrics {
        let unfinished = metrics.unfinished();
        metrics.running = started.min(unfinished);
        metrics.queued = unfinished - metrics.running;
        metrics
    }

    /// The totals, with `queued` and `running` left at zero; `gate` counts submissions too.
    fn read(&self, gate: Option<&SubmitGate>) -> Metrics {
        let mut metrics = Metrics {
            workers: self.alive.load(Ordering::Relaxed),
            worker_restarts: self.restarts.load(Ordering::Relaxed),
            ..Metrics::default()
        };
        for stripe in &*self.outcomes {
            metrics.succeeded += stripe.get(Outcome::Succeeded);
            metrics.panicked += stripe.get(Outcome::Panicked);
            metrics.cancelled += stripe.get(Outcome::Cancelled);
            metrics.timed_out += stripe.get(Outcome::TimedOut);
            metrics.worker_lost += stripe.get(Outcome::WorkerLost);
            metrics.shut_down += stripe.get(Outcome::ShutDown);
            metrics.failed_other += stripe.get(Outcome::Other);
        }
        // Read after the outcomes, so that a task counted finished has, all but always, been
        // seen submitted too (the loads are relaxed: the difference saturates at zero). Both
        // parts only grow, so their sum does: snapshots are monotonic.
        metrics.submitted =
            self.submitted.0.load(Ordering::Relaxed) + gate.map_or(0, SubmitGate::submitted);
        metrics
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        for stripe in self.outcomes.iter().copied() {
            Stripe::give_back(stripe);
        }
    }
}

impl Metrics {
    /// Submitted tasks not counted finished.
    fn unfinished(&self) -> usize {
        usize::try_from(self.submitted.saturating_sub(self.finished())).unwrap_or(usize::MAX)
    }
}
