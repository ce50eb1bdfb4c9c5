//! [`Metrics`]: what an executor has done, read at any time; and [`Counters`], the cheap,
//! striped counters backends keep it in.
//!
//! # Where a task is counted
//!
//! Every submitted task is counted once in `submitted` (on the submitting thread) and once in
//! exactly one outcome, where its work ends:
//!
//! - `succeeded`, `panicked`, `timed_out`, `shut_down`, `failed_other`: its future (or its
//!   worker process) produced that result. In-process backends count it on the worker thread
//!   that polled it to the end, before the handle can see the result, so a joiner that got the
//!   result also sees the count.
//! - `cancelled` (or `shut_down` during an immediate shutdown): it was dropped unfinished, which
//!   happens only when its handle was cancelled or its executor shut down.
//! - A task refused at submission (executor shut down) counts as `submitted` and `shut_down`.
//!
//! So the counters describe the work, which can differ from what a handle returned: a blocking
//! task that was running on a thread when its handle was cancelled runs on (a thread cannot be
//! interrupted) and counts in `succeeded` or `panicked`.
//!
//! # Cost
//!
//! In-process backends pay, per task, one add on a counter of the submitting thread's own and
//! one on the worker's own counters, each in a cache line of its own: no lock, no shared
//! counter, and not even a locked instruction (a counter with one writer is bumped with a
//! relaxed load and store). The thread-local [scope](Counters::enter) tells a finishing task
//! whose counters to add to, so a task's future carries no pointer to them (a zero-sized
//! [`TaskCount`]). Built with `--cfg polyexec_no_metrics`, nothing is counted (for measuring
//! the cost; see docs/benchmarks-notes.md).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::TaskError;

/// A snapshot of an executor's counters, from [`Executor::metrics`](crate::Executor::metrics).
///
/// Counts are totals since the executor was built. The counters are read one after the other
/// while tasks run, so a snapshot is not one instant: `queued` and `running` are estimates, and
/// two snapshots can disagree by the tasks that finished in between. Its `Debug` output is one
/// line, for logs and progress lines.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::Executor;
/// # let exec = polyexec_core::Inline;
/// let metrics = exec.metrics();
/// assert_eq!(metrics.panicked(), 0);
/// println!("{metrics:?}"); // Metrics { submitted: 0, queued: 0, running: 0, ... }
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    submitted: u64,
    queued: usize,
    running: usize,
    succeeded: u64,
    panicked: u64,
    cancelled: u64,
    timed_out: u64,
    worker_lost: u64,
    shut_down: u64,
    failed_other: u64,
    workers: usize,
    worker_restarts: u64,
}

impl Metrics {
    /// Tasks submitted, refused ones included.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().submitted(), 0);
    /// ```
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Tasks waiting to start. The event loop does not tell waiting tasks from running ones and
    /// counts them all in [`running`](Self::running).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().queued(), 0);
    /// ```
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Tasks started and not finished (an async task waiting on a timer or I/O counts).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().running(), 0);
    /// ```
    pub fn running(&self) -> usize {
        self.running
    }

    /// Tasks that returned a value.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().succeeded(), 0);
    /// ```
    pub fn succeeded(&self) -> u64 {
        self.succeeded
    }

    /// Tasks that panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().panicked(), 0);
    /// ```
    pub fn panicked(&self) -> u64 {
        self.panicked
    }

    /// Tasks stopped unfinished by a cancel (through the handle, an
    /// [`AbortHandle`](crate::AbortHandle), or a per-task [`SpawnOptions`](crate::SpawnOptions)
    /// time limit, which cancels).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().cancelled(), 0);
    /// ```
    pub fn cancelled(&self) -> u64 {
        self.cancelled
    }

    /// Tasks stopped by the executor's own time limit (the builders' `task_timeout`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().timed_out(), 0);
    /// ```
    pub fn timed_out(&self) -> u64 {
        self.timed_out
    }

    /// Tasks whose worker process died while running them.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().worker_lost(), 0);
    /// ```
    pub fn worker_lost(&self) -> u64 {
        self.worker_lost
    }

    /// Tasks refused or dropped because the executor shut down.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().shut_down(), 0);
    /// ```
    pub fn shut_down(&self) -> u64 {
        self.shut_down
    }

    /// Tasks that failed otherwise: input or output that could not be encoded or decoded, a
    /// transport failure, a pool that stopped after a crash loop.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().failed_other(), 0);
    /// ```
    pub fn failed_other(&self) -> u64 {
        self.failed_other
    }

    /// Workers alive now: threads, loop threads or worker processes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().workers(), 0);
    /// ```
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Worker processes started to replace one that died or retired. Always 0 in-process.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().worker_restarts(), 0);
    /// ```
    pub fn worker_restarts(&self) -> u64 {
        self.worker_restarts
    }

    /// Tasks finished in any way: the sum of the outcome counters.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().finished(), 0);
    /// ```
    pub fn finished(&self) -> u64 {
        self.succeeded
            + self.panicked
            + self.cancelled
            + self.timed_out
            + self.worker_lost
            + self.shut_down
            + self.failed_other
    }

    /// Metrics of an executor that keeps no counters: only the number of workers. The default
    /// of [`Executor::metrics`](crate::Executor::metrics).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::uncounted(4).workers(), 4);
    /// ```
    pub fn uncounted(workers: usize) -> Self {
        Metrics {
            workers,
            ..Metrics::default()
        }
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line whatever the formatter's flags: `{:#?}` in a log stays a log line.
        write!(
            f,
            "Metrics {{ submitted: {}, queued: {}, running: {}, succeeded: {}, panicked: {}, \
             cancelled: {}, timed_out: {}, worker_lost: {}, shut_down: {}, failed_other: {}, \
             workers: {}, worker_restarts: {} }}",
            self.submitted,
            self.queued,
            self.running,
            self.succeeded,
            self.panicked,
            self.cancelled,
            self.timed_out,
            self.worker_lost,
            self.shut_down,
            self.failed_other,
            self.workers,
            self.worker_restarts,
        )
    }
}

/// One set of outcome counters, alone in its cache lines so that the thread that adds to it
/// shares them with no other writer.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Stripe {
    succeeded: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    timed_out: AtomicU64,
    worker_lost: AtomicU64,
    shut_down: AtomicU64,
    failed_other: AtomicU64,
}

impl Stripe {
    /// Adds one to `outcome`'s counter; `exclusive` when the calling thread is the stripe's
    /// only writer (see [`bump`]).
    #[inline]
    fn add(&self, outcome: Outcome, exclusive: bool) {
        let counter = match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::Panicked => &self.panicked,
            Outcome::Cancelled => &self.cancelled,
            Outcome::TimedOut => &self.timed_out,
            Outcome::WorkerLost => &self.worker_lost,
            Outcome::ShutDown => &self.shut_down,
            Outcome::Other => &self.failed_other,
        };
        bump(counter, exclusive);
    }
}

/// Adds one to `counter`. With `exclusive`, the caller is the counter's only writer, and a load
/// and a store do it: on x86 a locked add is a full barrier, which waits for the task's own
/// stores (its output, just written) to drain, and measured 25% of spawn + join on the thread
/// pool; a plain store waits for nothing. Readers only load, so they see one value or the next.
#[inline(always)]
fn bump(counter: &AtomicU64, exclusive: bool) {
    if exclusive {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    } else {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A submission counter alone in its cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicU64);

/// Submission stripes per executor with a single writer each: the first this many threads of
/// the process that submit get one of their own (in every executor), the others share one more
/// stripe, with locked adds.
const SUBMIT_STRIPES: usize = 64;

/// How a task ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It returned a value.
    Succeeded,
    /// It panicked.
    Panicked,
    /// A cancel stopped it.
    Cancelled,
    /// The executor's time limit stopped it.
    TimedOut,
    /// Its worker process died.
    WorkerLost,
    /// The executor shut down first.
    ShutDown,
    /// Anything else (codec, transport).
    Other,
}

impl Outcome {
    /// The outcome a task's result stands for.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::{Outcome, TaskError};
    /// assert_eq!(Outcome::of(&Ok::<u8, TaskError>(1)), Outcome::Succeeded);
    /// assert_eq!(Outcome::of(&Err::<u8, _>(TaskError::ShutDown)), Outcome::ShutDown);
    /// ```
    #[inline]
    pub fn of<T>(result: &Result<T, TaskError>) -> Self {
        match result {
            Ok(_) => Outcome::Succeeded,
            Err(err) => Outcome::of_error(err),
        }
    }

    /// The outcome an error stands for.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::{Outcome, TaskError};
    /// assert_eq!(Outcome::of_error(&TaskError::Cancelled), Outcome::Cancelled);
    /// ```
    #[inline]
    pub fn of_error(err: &TaskError) -> Self {
        match err {
            TaskError::Panicked(_) => Outcome::Panicked,
            TaskError::Cancelled => Outcome::Cancelled,
            TaskError::TimedOut(_) => Outcome::TimedOut,
            TaskError::WorkerLost(_) => Outcome::WorkerLost,
            TaskError::ShutDown => Outcome::ShutDown,
            TaskError::Codec(_) | TaskError::Transport(_) => Outcome::Other,
        }
    }
}

/// The live counters of one executor, for backend implementors: the backend counts into them
/// and builds [`Metrics`] from them with [`snapshot`](Self::snapshot).
///
/// Outcome counters are striped: one stripe per worker (given to that worker's thread with
/// [`enter`](Self::enter), and written by that thread only) and one more for threads that are
/// not workers (shutdown paths, the subprocess pool's reader threads). Submissions are striped
/// by submitting thread.
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
    submitted: Box<[Padded]>,
    /// `workers` stripes for the workers, then one for every other thread.
    outcomes: Box<[Stripe]>,
    alive: AtomicUsize,
    restarts: AtomicU64,
}

thread_local! {
    /// The counters a task finishing or dropped on this thread counts into: set for a worker
    /// thread's life, and around the drops of a shutdown.
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
    /// Set by [`TaskCount::finish_in_place`] for the drop of that count, which follows at once.
    static FINISHED: Cell<bool> = const { Cell::new(false) };
    /// This thread's submission stripe, picked once.
    static SUBMIT_STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT_SUBMIT_STRIPE: AtomicUsize = AtomicUsize::new(0);

/// A thread's counting scope.
#[derive(Debug, Clone)]
struct Scope {
    counters: Arc<Counters>,
    stripe: usize,
    /// This thread is the stripe's only writer (a worker's own stripe).
    exclusive: bool,
    /// What a task dropped unfinished on this thread counts as.
    dropped: Outcome,
}

/// Restores the previous scope of the thread when dropped; made by [`Counters::enter`].
#[derive(Debug)]
#[must_use = "the scope ends when this guard is dropped"]
pub struct CountScope {
    previous: Option<Scope>,
}

impl Drop for CountScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = SCOPE.try_with(|scope| {
            if let Ok(mut scope) = scope.try_borrow_mut() {
                *scope = previous;
            }
        });
    }
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
            submitted: (0..=SUBMIT_STRIPES).map(|_| Padded::default()).collect(),
            outcomes: (0..=workers).map(|_| Stripe::default()).collect(),
            alive: AtomicUsize::new(0),
            restarts: AtomicU64::new(0),
        })
    }

    /// Counts one submitted task, on the calling thread's stripe.
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
        if cfg!(polyexec_no_metrics) {
            return;
        }
        let stripe = SUBMIT_STRIPE
            .try_with(|stripe| {
                let mut index = stripe.get();
                if index == usize::MAX {
                    index = NEXT_SUBMIT_STRIPE
                        .fetch_add(1, Ordering::Relaxed)
                        .min(SUBMIT_STRIPES);
                    stripe.set(index);
                }
                index
            })
            .unwrap_or(SUBMIT_STRIPES);
        // Stripes below `SUBMIT_STRIPES` belong to one thread each; the last one is shared.
        bump(&self.submitted[stripe].0, stripe < SUBMIT_STRIPES);
    }

    /// Counts `n` submitted tasks at once (a batch).
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
        self.submitted[SUBMIT_STRIPES]
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
        let scope = Scope {
            counters: Arc::clone(self),
            stripe,
            exclusive: stripe < last,
            dropped,
        };
        let previous = SCOPE
            .try_with(|current| current.replace(Some(scope)))
            .ok()
            .flatten();
        CountScope { previous }
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
        let mut metrics = Metrics {
            workers: self.alive.load(Ordering::Relaxed),
            worker_restarts: self.restarts.load(Ordering::Relaxed),
            ..Metrics::default()
        };
        for stripe in &*self.outcomes {
            metrics.succeeded += stripe.succeeded.load(Ordering::Relaxed);
            metrics.panicked += stripe.panicked.load(Ordering::Relaxed);
            metrics.cancelled += stripe.cancelled.load(Ordering::Relaxed);
            metrics.timed_out += stripe.timed_out.load(Ordering::Relaxed);
            metrics.worker_lost += stripe.worker_lost.load(Ordering::Relaxed);
            metrics.shut_down += stripe.shut_down.load(Ordering::Relaxed);
            metrics.failed_other += stripe.failed_other.load(Ordering::Relaxed);
        }
        // Read after the outcomes, so that a task counted finished has, all but always, been
        // seen submitted too (the loads are relaxed: the difference saturates at zero).
        metrics.submitted = self
            .submitted
            .iter()
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum();
        let unfinished = metrics.submitted.saturating_sub(metrics.finished());
        let unfinished = usize::try_from(unfinished).unwrap_or(usize::MAX);
        metrics.queued = queued.min(unfinished);
        metrics.running = unfinished - metrics.queued;
        metrics
    }
}

/// Counts a task's end exactly once: carried (zero-sized) inside an in-process task's future,
/// it is either [`finish`](Self::finish)ed with the task's result or dropped with the future
/// unfinished. Either way it counts into the [scope](Counters::enter) of the thread it ends on,
/// before the task's result is published; on a thread without one it counts nothing.
///
/// # Examples
///
/// ```
/// use polyexec_core::{Counters, Outcome, TaskCount, TaskError};
/// let counters = Counters::new(1);
/// let _scope = counters.enter(Some(0), Outcome::Cancelled);
/// let count = TaskCount::new();
/// let result: Result<u8, TaskError> = Ok(1);
/// count.finish(&result);
/// assert_eq!(counters.snapshot(0).succeeded(), 1);
/// ```
#[derive(Debug)]
#[must_use = "a TaskCount dropped unfinished counts its task as cancelled"]
pub struct TaskCount(());

impl TaskCount {
    /// A count for one task, made when it is submitted.
    #[inline]
    pub fn new() -> Self {
        TaskCount(())
    }

    /// Counts the task's result.
    #[inline]
    pub fn finish<T>(self, result: &Result<T, TaskError>) {
        std::mem::forget(self);
        count_in_scope(|_| Outcome::of(result));
    }

    /// Counts the task's result, for a count held in a pinned future that cannot give it up:
    /// the next `TaskCount` dropped on this thread, which must be this one, then counts
    /// nothing. Call it as the future returns `Ready`, when `async-task` drops the future at
    /// once on the same thread; declare the count as the future's first field, so that it is
    /// dropped before anything else the future holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::{Counters, Outcome, TaskCount, TaskError};
    /// let counters = Counters::new(1);
    /// let _scope = counters.enter(Some(0), Outcome::Cancelled);
    /// let mut count = TaskCount::new();
    /// count.finish_in_place(&Err::<u8, _>(TaskError::panicked("boom", None)));
    /// drop(count);
    /// let metrics = counters.snapshot(0);
    /// assert_eq!((metrics.panicked(), metrics.cancelled()), (1, 0));
    /// ```
    #[inline]
    pub fn finish_in_place<T>(&mut self, result: &Result<T, TaskError>) {
        count_in_scope(|_| Outcome::of(result));
        let _ = FINISHED.try_with(|finished| finished.set(true));
    }
}

impl Default for TaskCount {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TaskCount {
    #[inline]
    fn drop(&mut self) {
        if FINISHED.try_with(|finished| finished.replace(false)) == Ok(true) {
            return;
        }
        count_in_scope(|dropped| dropped);
    }
}

#[inline]
fn count_in_scope(outcome: impl FnOnce(Outcome) -> Outcome) {
    if cfg!(polyexec_no_metrics) {
        return;
    }
    let _ = SCOPE.try_with(|scope| {
        if let Ok(scope) = scope.try_borrow() {
            if let Some(scope) = &*scope {
                scope.counters.outcomes[scope.stripe].add(outcome(scope.dropped), scope.exclusive);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_one_line() {
        let text = format!("{:#?}", Metrics::uncounted(2));
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("workers: 2"), "{text}");
    }

    #[test]
    fn a_nested_scope_restores_the_outer_one() {
        let outer = Counters::new(1);
        let inner = Counters::new(1);
        let _outer = outer.enter(Some(0), Outcome::Cancelled);
        {
            let _inner = inner.enter(None, Outcome::ShutDown);
            drop(TaskCount::new());
        }
        drop(TaskCount::new());
        assert_eq!(inner.snapshot(0).shut_down(), 1);
        assert_eq!(outer.snapshot(0).cancelled(), 1);
        assert_eq!(outer.snapshot(0).shut_down(), 0);
    }
}
