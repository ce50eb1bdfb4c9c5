//! [`Metrics`]: what an executor has done, read at any time; and [`Counters`], the cheap,
//! striped counters backends keep it in.
//!
//! # Where a task is counted
//!
//! Every submitted task is counted once in `submitted` (as it is submitted) and once in
//! exactly one outcome, where its work ends:
//!
//! - `succeeded`, `panicked`, `shut_down`, `failed_other`: its future (or its worker process)
//!   produced that result. In-process backends count it on the worker thread that polled it to
//!   the end, before the handle can see the result, so a joiner that got the result also sees
//!   the count.
//! - `timed_out`: a time limit (the task's own, [`SpawnOptions::timeout`](crate::SpawnOptions),
//!   or the executor's) passed before it ended, whether it was then dropped, stopped with its
//!   worker process, or (a blocking task already running on a thread, which cannot be
//!   interrupted) ran on, its result discarded.
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
//! In-process backends pay, per task, nothing for `submitted` and one add for the outcome. A
//! submission is counted by the [`SubmitGate`](crate::SubmitGate) that every submission to the
//! thread pool or the event loop passes through anyway, for its shutdown: its two counters only
//! grow, and the number of tasks that entered is read off them. The outcome is one add on the
//! worker's own counters, in a cache line of its own: no lock, no shared counter, and not even
//! a locked instruction (a counter with one writer is bumped with a relaxed load and store).
//! The thread-local [scope](Counters::enter) tells a finishing task whose counters to add to,
//! so a task's future carries no pointer to them (a zero-sized [`TaskCount`]). Built with
//! `--cfg polyexec_no_metrics`, no outcome is counted (for measuring the cost; see
//! docs/benchmarks-notes.md).
//!
//! The modules: [`counters`] (the striped counters), [`count`] (how a task's end finds them).

use std::fmt;

use crate::TaskError;

mod count;
mod counters;

pub use count::{CountScope, Expiry, TaskCount, TaskCounter, TimedCount};
pub use counters::Counters;

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

    /// Tasks waiting to start. The event loop estimates it: the unfinished tasks, less those
    /// that have waited (returned `Pending`) and those its threads are polling now, so a task
    /// that waited and is being polled again is counted twice in `running`, for that poll.
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

    /// Tasks stopped unfinished by a cancel (through the handle or an
    /// [`AbortHandle`](crate::AbortHandle)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec_core::Metrics::default().cancelled(), 0);
    /// ```
    pub fn cancelled(&self) -> u64 {
        self.cancelled
    }

    /// Tasks whose time limit passed before they ended: a per-task
    /// [`SpawnOptions::timeout`](crate::SpawnOptions::timeout) or the executor's own (the
    /// builders' `task_timeout`, the cluster's time limit).
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

/// How a task ended, as counted.
///
/// Its discriminant indexes a stripe's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It returned a value.
    Succeeded = 0,
    /// It panicked.
    Panicked = 1,
    /// A cancel stopped it.
    Cancelled = 2,
    /// Its time limit passed first.
    TimedOut = 3,
    /// Its worker process died.
    WorkerLost = 4,
    /// The executor shut down first.
    ShutDown = 5,
    /// Anything else (codec, transport).
    Other = 6,
}

/// How many outcomes there are.
const OUTCOMES: usize = 7;

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
