//! How a task's end finds its executor's counters: the thread-local scope a worker enters, and
//! the [`TaskCount`] (or, for a task with a time limit, [`TimedCount`]) its future carries.
//!
//! A success, the common end, is counted inline (a load of the thread's scope, a test and an
//! add): a few instructions, which cost less than a call would. The other outcomes are kept
//! out of line (`#[cold]`, `#[inline(never)]`), so that they do not make every task body larger
//! (docs/benchmarks-notes.md).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::counters::{Counters, Stripe};
use super::{Outcome, TaskError};

thread_local! {
    /// The scope this thread is in, which holds its counters (so that they outlive the
    /// scope); set for a worker thread's life, and around the drops of a shutdown.
    static SCOPE: Owner = const { Owner(RefCell::new(None)) };
    /// What a task finishing or dropped on this thread reads of its scope: plain copies,
    /// which need no destructor, so reading them is a load with no check.
    static FAST: Cell<Option<Fast>> = const { Cell::new(None) };
    /// Set by [`TaskCount::finish_in_place`] for the drop of that count, which follows at once.
    static FINISHED: Cell<bool> = const { Cell::new(false) };
}

/// A thread's counting scope.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    /// Keeps `stripe` in use (see [`Stripe::take`]).
    pub(super) _counters: Arc<Counters>,
    pub(super) stripe: &'static Stripe,
    /// This thread is the stripe's only writer (a worker's own stripe).
    pub(super) exclusive: bool,
    /// What a task dropped unfinished on this thread counts as.
    pub(super) dropped: Outcome,
}

impl Scope {
    fn fast(&self) -> Fast {
        Fast {
            stripe: self.stripe,
            exclusive: self.exclusive,
            dropped: self.dropped,
        }
    }
}

/// The part of a [`Scope`] counting reads, copied into [`FAST`].
#[derive(Debug, Clone, Copy)]
struct Fast {
    stripe: &'static Stripe,
    exclusive: bool,
    dropped: Outcome,
}

/// The holder of a thread's scope; when the thread's thread-locals are torn down, it clears
/// [`FAST`], whose stripe its counters kept in use.
struct Owner(RefCell<Option<Scope>>);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = FAST.try_with(|fast| fast.set(None));
    }
}

/// Makes `scope` this thread's, until the returned guard restores the previous one.
pub(super) fn enter_scope(scope: Scope) -> CountScope {
    let fast = scope.fast();
    let previous = SCOPE.try_with(|current| current.0.replace(Some(scope)));
    match previous {
        Ok(previous) => {
            let _ = FAST.try_with(|current| current.set(Some(fast)));
            CountScope { previous }
        }
        // The thread is being torn down: it counts nothing any more.
        Err(_) => CountScope { previous: None },
    }
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
        let fast = previous.as_ref().map(Scope::fast);
        let _ = SCOPE.try_with(|scope| {
            if let Ok(mut scope) = scope.0.try_borrow_mut() {
                // First, so that no stripe of counters about to be released stays in `FAST`.
                let _ = FAST.try_with(|current| current.set(fast));
                *scope = previous;
            }
        });
    }
}

/// Counts into the scope of this thread (nothing if it has none) the outcome `outcome` picks,
/// given what a task dropped here counts as.
#[inline(always)]
fn count_in_scope(outcome: impl FnOnce(Outcome) -> Outcome) {
    if cfg!(polyexec_no_metrics) {
        return;
    }
    if let Ok(Some(fast)) = FAST.try_with(Cell::get) {
        fast.stripe.add(outcome(fast.dropped), fast.exclusive);
    }
}

/// A success: the common end, out of line so that the task body calling it stays small.
#[inline(always)]
fn count_succeeded() {
    count_in_scope(|_| Outcome::Succeeded);
}

/// Any other result.
#[cold]
#[inline(never)]
fn count_failed(err: &TaskError) {
    count_in_scope(|_| Outcome::of_error(err));
}

/// [`count_succeeded`], and the next [`TaskCount`] dropped on this thread counts nothing.
#[inline(always)]
fn count_succeeded_in_place() {
    count_in_scope(|_| Outcome::Succeeded);
    let _ = FINISHED.try_with(|finished| finished.set(true));
}

/// [`count_failed`], and the next [`TaskCount`] dropped on this thread counts nothing.
#[cold]
#[inline(never)]
fn count_failed_in_place(err: &TaskError) {
    count_in_scope(|_| Outcome::of_error(err));
    let _ = FINISHED.try_with(|finished| finished.set(true));
}

/// A [`TaskCount`] dropped: nothing if it was just finished in place, else the task ended
/// unfinished.
#[inline(always)]
fn count_dropped() {
    if FINISHED.try_with(|finished| finished.replace(false)) == Ok(true) {
        return;
    }
    count_dropped_unfinished();
}

#[cold]
#[inline(never)]
fn count_dropped_unfinished() {
    count_in_scope(|dropped| dropped);
}

/// How an in-process task's future counts its end: [`TaskCount`] for most tasks, and
/// [`TimedCount`] for a task with a time limit of its own.
///
/// # Examples
///
/// ```
/// use polyexec_core::{Counters, Outcome, TaskCount, TaskCounter, TaskError};
///
/// fn run<C: TaskCounter>(count: C) -> Result<u8, TaskError> {
///     let result = Ok(1);
///     count.finish(&result);
///     result
/// }
///
/// let counters = Counters::new(1);
/// let _scope = counters.enter(Some(0), Outcome::Cancelled);
/// assert_eq!(run(TaskCount::new()), Ok(1));
/// assert_eq!(counters.snapshot(0).succeeded(), 1);
/// ```
pub trait TaskCounter: Send + 'static {
    /// Counts the task's result.
    fn finish<T>(self, result: &Result<T, TaskError>);

    /// Counts the task's result, for a count held in a pinned future that cannot give it up
    /// (see [`TaskCount::finish_in_place`]).
    fn finish_in_place<T>(&mut self, result: &Result<T, TaskError>);
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
    #[inline(always)]
    pub fn finish<T>(self, result: &Result<T, TaskError>) {
        std::mem::forget(self);
        if cfg!(polyexec_no_metrics) {
            return;
        }
        match result {
            Ok(_) => count_succeeded(),
            Err(err) => count_failed(err),
        }
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
    #[inline(always)]
    pub fn finish_in_place<T>(&mut self, result: &Result<T, TaskError>) {
        if cfg!(polyexec_no_metrics) {
            return;
        }
        match result {
            Ok(_) => count_succeeded_in_place(),
            Err(err) => count_failed_in_place(err),
        }
    }
}

impl Default for TaskCount {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TaskCount {
    #[inline(always)]
    fn drop(&mut self) {
        if cfg!(polyexec_no_metrics) {
            return;
        }
        count_dropped();
    }
}

impl TaskCounter for TaskCount {
    #[inline(always)]
    fn finish<T>(self, result: &Result<T, TaskError>) {
        TaskCount::finish(self, result);
    }

    #[inline(always)]
    fn finish_in_place<T>(&mut self, result: &Result<T, TaskError>) {
        TaskCount::finish_in_place(self, result);
    }
}

/// [`Expiry`] state: the task has counted its end.
const ENDED: u8 = 1;
/// [`Expiry`] state: the task's handle gave up on it at its time limit.
const EXPIRED: u8 = 2;

/// What a task with a time limit shares with its handle: which of the two ended first, the
/// task or the limit. A task whose limit passed first counts as timed out however it then
/// ends (dropped, or run on to the end by a thread that could not stop it).
///
/// For backend implementors: the task's future carries a [`TimedCount`] made from it, and
/// [`TaskHandle::with_expiry`](crate::TaskHandle::with_expiry) gives it to the handle.
///
/// # Examples
///
/// ```
/// use polyexec_core::{Counters, Expiry, Outcome, TimedCount};
/// let counters = Counters::new(1);
/// let _scope = counters.enter(Some(0), Outcome::Cancelled);
/// let expiry = Expiry::new();
/// let count = TimedCount::new(&expiry);
/// assert!(expiry.expire()); // the limit passed before the task ended
/// drop(count); // dropped unfinished, after its limit
/// assert_eq!(counters.snapshot(0).timed_out(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Expiry(Arc<AtomicU8>);

impl Expiry {
    /// A task that has neither ended nor expired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the task's limit as passed: `true` if the task had not ended yet, so that it
    /// counts as timed out; `false` if it ended first (its result is on its way, counted).
    ///
    /// # Examples
    ///
    /// ```
    /// let expiry = polyexec_core::Expiry::new();
    /// assert!(expiry.expire());
    /// ```
    pub fn expire(&self) -> bool {
        self.0.fetch_or(EXPIRED, Ordering::AcqRel) & ENDED == 0
    }

    /// Marks the task as ended: `true` if its limit had passed first.
    fn end(&self) -> Option<bool> {
        let previous = self.0.fetch_or(ENDED, Ordering::AcqRel);
        (previous & ENDED == 0).then_some(previous & EXPIRED != 0)
    }
}

/// A [`TaskCount`] for a task with a time limit of its own: it counts `timed_out` if the
/// limit passed (its [`Expiry`] expired) before the task ended. It holds one pointer, so
/// only tasks given a limit carry it.
///
/// # Examples
///
/// ```
/// use polyexec_core::{Counters, Expiry, Outcome, TaskCounter, TimedCount};
/// let counters = Counters::new(1);
/// let _scope = counters.enter(Some(0), Outcome::Cancelled);
/// let expiry = Expiry::new();
/// TimedCount::new(&expiry).finish(&Ok::<u8, polyexec_core::TaskError>(1));
/// assert!(!expiry.expire()); // ended first: its result stands
/// assert_eq!(counters.snapshot(0).succeeded(), 1);
/// ```
#[derive(Debug)]
#[must_use = "a TimedCount dropped unfinished counts its task as cancelled or timed out"]
pub struct TimedCount(Expiry);

impl TimedCount {
    /// A count for a task whose handle holds `expiry`.
    pub fn new(expiry: &Expiry) -> Self {
        TimedCount(expiry.clone())
    }

    fn end(&self, outcome: impl FnOnce(Outcome) -> Outcome) {
        match self.0.end() {
            None => {}
            Some(true) => count_in_scope(|_| Outcome::TimedOut),
            Some(false) => count_in_scope(outcome),
        }
    }
}

impl TaskCounter for TimedCount {
    fn finish<T>(self, result: &Result<T, TaskError>) {
        self.end(|_| Outcome::of(result));
    }

    fn finish_in_place<T>(&mut self, result: &Result<T, TaskError>) {
        self.end(|_| Outcome::of(result));
    }
}

impl Drop for TimedCount {
    fn drop(&mut self) {
        self.end(|dropped| dropped);
    }
}
