//! [`TaskHandle`]: the one handle type every backend returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_task::FallibleTask;

use self::sync::{AtomicBool, AtomicWaker, Mutex, SharedArc};
use crate::block;
use crate::spin;
use crate::{Expiry, TaskError};

/// The types of the hand-off between a [`Resolver`] and its handle. Built with
/// `--cfg polyexec_loom`, they are loom's, so the model in `loom_tests` checks this very code
/// under every interleaving: `RUSTFLAGS="--cfg polyexec_loom" cargo test -p polyexec-core
/// --release --lib loom`.
#[cfg(not(polyexec_loom))]
mod sync {
    pub(super) use futures::task::AtomicWaker;
    pub(super) use std::sync::Arc as SharedArc;
    pub(super) use std::sync::Mutex;
    pub(super) use std::sync::atomic::AtomicBool;
}

#[cfg(polyexec_loom)]
mod sync {
    pub(super) use loom::sync::Arc as SharedArc;
    pub(super) use loom::sync::Mutex;
    pub(super) use loom::sync::atomic::AtomicBool;

    /// loom's waker cell, with the method names of `futures`'.
    #[derive(Debug)]
    pub(super) struct AtomicWaker(loom::future::AtomicWaker);

    impl AtomicWaker {
        pub(super) fn new() -> Self {
            AtomicWaker(loom::future::AtomicWaker::new())
        }

        pub(super) fn register(&self, waker: &std::task::Waker) {
            self.0.register_by_ref(waker);
        }

        pub(super) fn wake(&self) {
            self.0.wake();
        }
    }
}

/// An owned permission to wait for a task's result.
///
/// Every backend's `spawn` returns one at once, before the task has run. A `TaskHandle<T>` is a
/// [`Future`] whose output is `Result<T, TaskError>`, so it can be `.await`ed from any async
/// runtime; from synchronous code, [`join`](Self::join) blocks and
/// [`join_timeout`](Self::join_timeout) blocks for at most a given time.
///
/// The task resolves exactly once: its value, or a [`TaskError`] saying why there is none.
///
/// # Dropping and detaching
///
/// Dropping a handle *detaches* the task: it still runs to completion (unless the executor shuts
/// down first), but its result is discarded. [`detach`](Self::detach) says so explicitly. This is
/// unlike dropping a future in async Rust, which usually cancels it; to stop a task, call
/// [`cancel`](Self::cancel).
///
/// # Cancellation
///
/// [`cancel`](Self::cancel) (which takes `&self`) and [`AbortHandle::abort`] (from any thread,
/// through [`abort_handle`](Self::abort_handle)) resolve the handle with
/// [`TaskError::Cancelled`] at once if the task has not finished. What happens to the task itself
/// depends on the backend: a task that has not started never runs; a running coroutine is dropped
/// at its next `.await`; a running thread-pool task cannot be interrupted, runs on, and has its
/// result discarded; a running subprocess task has its worker process killed (and replaced).
///
/// On the in-process backends (thread pool, event loop) the work is stopped by the handle: when
/// it is next polled, joined or dropped after the cancel (at once for `cancel` followed by
/// `join` or drop; a [`TaskSet`](crate::TaskSet) polls a handle as soon as its abort wakes it).
/// A task whose handle is cancelled from another thread and then left untouched may start
/// meanwhile; its result is discarded. The subprocess backend stops the work at the cancel
/// itself.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::TaskHandle;
///
/// let handle: TaskHandle<u32> = TaskHandle::ready(Ok(7));
/// assert!(handle.is_finished());
/// assert_eq!(handle.join(), Ok(7));
/// ```
#[must_use = "dropping a TaskHandle detaches the task and discards its result; call `.detach()` to say so"]
pub struct TaskHandle<T> {
    inner: Inner<T>,
    /// For a `Local` task only, made the first time it is cancelled through `&self` or asked
    /// for an [`AbortHandle`]: the one place where "cancelled" and "delivered" race, so that
    /// exactly one of them wins. Handles that are never cancelled only ever load its state.
    abort: OnceLock<Arc<LocalAbort>>,
}

/// The cancellation state of a `Local` task, shared by its handle and its [`AbortHandle`]s.
///
/// `state` moves once, from `OPEN` to `ABORTED` (a cancel won) or to `DELIVERED` (the handle
/// took the task's result first); whichever compare-exchange succeeds decides what the handle
/// returns. `waker` is the handle's poller, woken when another thread aborts.
#[derive(Debug)]
struct LocalAbort {
    state: AtomicU8,
    waker: AtomicWaker,
}

const OPEN: u8 = 0;
const ABORTED: u8 = 1;
const DELIVERED: u8 = 2;

impl LocalAbort {
    fn is_aborted(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABORTED
    }

    /// `true` if this call moved the task to `ABORTED`.
    fn abort(&self) -> bool {
        let won = self
            .state
            .compare_exchange(OPEN, ABORTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            self.waker.wake();
        }
        won
    }

    /// `true` if the handle may deliver the task's result (no cancel came first).
    fn deliver(&self) -> bool {
        self.state
            .compare_exchange(OPEN, DELIVERED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What an [`AbortHandle`] cancels: a `Local` task's [`LocalAbort`], or a remote task's
/// [`Shared`] slot.
trait AbortTarget: Send + Sync {
    fn abort(&self) -> bool;
}

impl AbortTarget for LocalAbort {
    fn abort(&self) -> bool {
        LocalAbort::abort(self)
    }
}

impl<T: Send> AbortTarget for Shared<T> {
    fn abort(&self) -> bool {
        Shared::abort(self)
    }
}

/// A remote task's slot as an abort target.
#[cfg(not(polyexec_loom))]
fn remote_target<T: Send + 'static>(shared: &SharedArc<Shared<T>>) -> Arc<dyn AbortTarget> {
    SharedArc::clone(shared) as Arc<dyn AbortTarget>
}

/// A remote task's slot as an abort target: loom's `Arc` does not coerce to a trait object, so
/// the loom build pays one wrapper allocation.
#[cfg(polyexec_loom)]
fn remote_target<T: Send + 'static>(shared: &SharedArc<Shared<T>>) -> Arc<dyn AbortTarget> {
    struct Slot<T>(SharedArc<Shared<T>>);
    impl<T: Send> AbortTarget for Slot<T> {
        fn abort(&self) -> bool {
            self.0.abort()
        }
    }
    Arc::new(Slot(SharedArc::clone(shared)))
}

/// Cancels a task from anywhere: a clonable, `Send + Sync` permission to call
/// [`TaskHandle::cancel`] without holding the handle.
///
/// Made by [`TaskHandle::abort_handle`]. Aborting resolves the task's handle with
/// [`TaskError::Cancelled`] unless the handle has already delivered its result (or the task was
/// already cancelled); what happens to the work is what [`TaskHandle::cancel`] describes.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{TaskError, TaskHandle};
///
/// let (_resolver, handle) = TaskHandle::<u32>::remote(None);
/// let abort = handle.abort_handle();
/// let from_elsewhere = abort.clone();
/// assert!(std::thread::spawn(move || from_elsewhere.abort()).join().unwrap());
/// assert!(!abort.abort()); // once only
/// assert_eq!(handle.join(), Err(TaskError::Cancelled));
/// ```
#[derive(Clone)]
pub struct AbortHandle {
    /// `None` for a handle resolved at submission: there is nothing left to cancel.
    target: Option<Arc<dyn AbortTarget>>,
}

impl AbortHandle {
    /// Cancels the task; `true` if its handle now resolves with [`TaskError::Cancelled`],
    /// `false` if it had already delivered its result, resolved at submission, or been
    /// cancelled before.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let handle = polyexec::TaskHandle::<u8>::ready(Ok(1));
    /// assert!(!handle.abort_handle().abort()); // resolved already: the value stays
    /// assert_eq!(handle.join(), Ok(1));
    /// ```
    pub fn abort(&self) -> bool {
        self.target.as_ref().is_some_and(|target| target.abort())
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle").finish_non_exhaustive()
    }
}

enum Inner<T> {
    /// An in-process task on `async-task`: one allocation holds the future and then the output.
    /// `None` from the task means the executor dropped it unrun, which only an immediate
    /// shutdown does (a user's cancel never polls the task again).
    Local(FallibleTask<Result<T, TaskError>>),
    /// A task whose result another thread delivers through a [`Resolver`].
    Remote(SharedArc<Shared<T>>),
    /// Resolved without waiting (refused at submission). Boxed: this path is rare, and a
    /// handle without an inline result stays the same size, whatever `T` is.
    Done(Box<Result<T, TaskError>>),
    /// A task with a time limit of its own ([`TaskHandle::with_deadline`]). Boxed: only tasks
    /// given one pay for the timer.
    Timed(Box<Timed<T>>),
    /// The result has been delivered. (A variant of its own rather than `Done(None)`: setting
    /// it on the hot path writes a tag, not a whole `Option<Result<T, TaskError>>`.)
    Taken,
}

/// A handle whose task must resolve by `deadline`, or be cancelled and resolve `TimedOut`.
struct Timed<T> {
    inner: TaskHandle<T>,
    deadline: Instant,
    limit: Duration,
    /// Shared with an in-process task's count ([`with_expiry`](TaskHandle::with_expiry)).
    expiry: Option<Expiry>,
    /// Made at the first poll that finds the task unfinished.
    timer: Option<async_io::Timer>,
}

/// State shared by a [`Resolver`] and its handle.
///
/// Invariant: `value` is written at most once, by the resolver, before `done` is set with
/// `Release`; the handle reads `value` only after observing `done` with `Acquire`. The mutex is
/// therefore never contended; it is there so the hand-off needs no `unsafe`.
struct Shared<T> {
    done: AtomicBool,
    value: Mutex<Option<Outcome<T>>>,
    waker: AtomicWaker,
    /// Told the task's id when the handle is cancelled (at most once: a cancelled handle is
    /// `Done`). Kept here rather than in the handle, so that a handle is one pointer; weak, so
    /// that a pending task's resolver, which the backend holds, does not keep the backend alive
    /// through this (a backend that is gone has nothing left to cancel).
    canceller: Option<(Weak<dyn Cancel>, u64)>,
}

/// What a resolver delivered.
enum Outcome<T> {
    /// The result itself.
    Ready(Result<T, TaskError>),
    /// Bytes that `finish` turns into the result on the thread that takes it (see
    /// [`Resolver::resolve_encoded`]).
    Encoded {
        bytes: Vec<u8>,
        finish: fn(Vec<u8>) -> Result<T, TaskError>,
    },
    /// A closure that makes the result on the thread that takes it (see
    /// [`Resolver::resolve_deferred`]).
    Deferred(Box<dyn FnOnce() -> Result<T, TaskError> + Send>),
}

impl<T> Shared<T> {
    /// Resolves the slot with `Cancelled` unless it is resolved already, then tells the
    /// backend. Decided under the value's lock, as the resolver's write is, so exactly one of
    /// the two lands.
    fn abort(&self) -> bool {
        self.stop(false)
    }

    /// [`abort`](Self::abort), telling the backend that the task's time limit stopped it
    /// (`expired`) or a cancel.
    fn stop(&self, expired: bool) -> bool {
        {
            let mut value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
            if self.done.load(Ordering::Acquire) {
                return false;
            }
            *value = Some(Outcome::Ready(Err(TaskError::Cancelled)));
            self.done.store(true, Ordering::Release);
        }
        self.waker.wake();
        if let Some((canceller, id)) = &self.canceller {
            // A backend that is gone has resolved (or dropped) its tasks already.
            if let Some(canceller) = canceller.upgrade() {
                if expired {
                    canceller.expire(*id);
                } else {
                    canceller.cancel(*id);
                }
            }
        }
        true
    }

    fn take(&self) -> Option<Result<T, TaskError>> {
        if !self.done.load(Ordering::Acquire) {
            return None;
        }
        // The guard is dropped at the end of this statement: `finish` runs without it.
        let outcome = self
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(match outcome {
            Outcome::Ready(result) => result,
            // A panicking `finish` fails this task; it never unwinds into the joiner.
            Outcome::Encoded { bytes, finish } => {
                crate::catch_task(|| finish(bytes)).and_then(|result| result)
            }
            Outcome::Deferred(finish) => crate::catch_task(finish).and_then(|result| result),
        })
    }
}

/// Cancels a task held by a backend that resolves handles through [`Resolver`]s.
///
/// Implemented by such backends; called at most once per task, from [`TaskHandle::cancel`], with
/// the id given to [`TaskHandle::remote`]. The handle resolves with [`TaskError::Cancelled`]
/// whatever the backend does, so the backend only has to stop the work and may then drop or
/// resolve the task's [`Resolver`] as it likes.
pub trait Cancel: Send + Sync {
    /// Stops the task with this id, if it is still queued or running.
    fn cancel(&self, id: u64);

    /// Stops the task with this id, as [`cancel`](Self::cancel) does, because its time limit
    /// ([`TaskHandle::with_deadline`]) passed: a backend that counts tasks counts it as timed
    /// out rather than cancelled. By default, the same as `cancel`.
    fn expire(&self, id: u64) {
        self.cancel(id);
    }
}

/// The sending side of a [`TaskHandle`] made by [`TaskHandle::remote`].
///
/// Resolving consumes it. A resolver dropped without resolving resolves its handle with
/// [`TaskError::ShutDown`]: a backend that loses track of a task (because it is being torn down)
/// can never leave a handle waiting forever.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{TaskError, TaskHandle};
///
/// let (resolver, handle) = TaskHandle::<u8>::remote(None);
/// std::thread::spawn(move || resolver.resolve(Ok(5)));
/// assert_eq!(handle.join(), Ok(5));
///
/// let (resolver, handle) = TaskHandle::<u8>::remote(None);
/// drop(resolver);
/// assert_eq!(handle.join(), Err(TaskError::ShutDown));
/// ```
pub struct Resolver<T> {
    shared: Option<SharedArc<Shared<T>>>,
}

impl<T> Resolver<T> {
    /// Delivers the task's result to its handle.
    pub fn resolve(mut self, result: Result<T, TaskError>) {
        if let Some(shared) = self.shared.take() {
            Self::complete(&shared, Outcome::Ready(result));
        }
    }

    /// Delivers the task's result still encoded: `finish(bytes)` makes it on the thread that
    /// takes it from the handle (in [`join`](TaskHandle::join), `join_timeout` or `poll`), not
    /// on the resolving thread.
    ///
    /// For backends whose results arrive as bytes: a slow `Deserialize` then delays only the
    /// handle it belongs to, never the resolving thread's other handles. `finish` is not run at
    /// all if the handle is dropped first. A panic in `finish` resolves the handle with
    /// [`TaskError::Panicked`].
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::{TaskError, TaskHandle};
    ///
    /// fn parse(bytes: Vec<u8>) -> Result<u32, TaskError> {
    ///     String::from_utf8(bytes)
    ///         .ok()
    ///         .and_then(|text| text.parse().ok())
    ///         .ok_or_else(|| TaskError::transport("not a number"))
    /// }
    ///
    /// let (resolver, handle) = TaskHandle::<u32>::remote(None);
    /// resolver.resolve_encoded(b"42".to_vec(), parse); // `parse` has not run yet
    /// assert_eq!(handle.join(), Ok(42)); // it runs here, on the joining thread
    /// ```
    pub fn resolve_encoded(mut self, bytes: Vec<u8>, finish: fn(Vec<u8>) -> Result<T, TaskError>) {
        if let Some(shared) = self.shared.take() {
            Self::complete(&shared, Outcome::Encoded { bytes, finish });
        }
    }

    /// Delivers the task's result as a closure that makes it on the thread that takes it from
    /// the handle, as [`resolve_encoded`](Self::resolve_encoded) does, for results whose bytes
    /// are not a `Vec` (memory shared with another process, released when the closure is
    /// dropped). The closure is dropped without running if the handle is dropped first; a panic
    /// in it resolves the handle with [`TaskError::Panicked`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use polyexec_core::TaskHandle;
    ///
    /// let bytes: Arc<[u8]> = Arc::from(&b"42"[..]);
    /// let (resolver, handle) = TaskHandle::<usize>::remote(None);
    /// resolver.resolve_deferred(Box::new(move || Ok(bytes.len()))); // runs in `join`
    /// assert_eq!(handle.join(), Ok(2));
    /// ```
    pub fn resolve_deferred(mut self, finish: Box<dyn FnOnce() -> Result<T, TaskError> + Send>) {
        if let Some(shared) = self.shared.take() {
            Self::complete(&shared, Outcome::Deferred(finish));
        }
    }

    /// `true` if the handle is gone (dropped, detached or cancelled): the result would be
    /// discarded, so a backend may skip work that only produces it.
    pub fn is_abandoned(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|shared| SharedArc::strong_count(shared) == 1)
    }

    fn complete(shared: &Shared<T>, outcome: Outcome<T>) {
        {
            let mut value = shared.value.lock().unwrap_or_else(PoisonError::into_inner);
            // A cancelled handle was resolved already: its `Cancelled` stands.
            if shared.done.load(Ordering::Relaxed) {
                return;
            }
            *value = Some(outcome);
            shared.done.store(true, Ordering::Release);
        }
        shared.waker.wake();
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            Self::complete(&shared, Outcome::Ready(Err(TaskError::ShutDown)));
        }
    }
}

impl<T> fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("abandoned", &self.is_abandoned())
            .finish()
    }
}

impl<T> TaskHandle<T> {
    /// A handle for a task that runs on an `async-task` based executor.
    ///
    /// For backend implementors. The task's future must resolve to `Result<T, TaskError>` and
    /// must not panic (wrap it with [`catch_async`](crate::catch_async) or
    /// [`catch_task`](crate::catch_task)). If the executor drops the task without running it to
    /// completion, the handle resolves with [`TaskError::ShutDown`].
    pub fn from_task(task: async_task::Task<Result<T, TaskError>>) -> Self {
        TaskHandle {
            inner: Inner::Local(task.fallible()),
            abort: OnceLock::new(),
        }
    }

    /// A handle that is already resolved: for tasks refused at submission (for example after
    /// shutdown, or when the input cannot be encoded).
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{TaskError, TaskHandle};
    /// let h = TaskHandle::<()>::ready(Err(TaskError::ShutDown));
    /// assert!(h.join().unwrap_err().is_shutdown());
    /// ```
    pub fn ready(result: Result<T, TaskError>) -> Self {
        TaskHandle {
            inner: Inner::Done(Box::new(result)),
            abort: OnceLock::new(),
        }
    }

    /// A handle resolved from another thread through the returned [`Resolver`].
    ///
    /// For backend implementors whose results arrive out of band (for example from another
    /// process). `canceller` is told the task's id when the user cancels the handle, if it is
    /// still alive then: the handle keeps only a weak reference to it.
    pub fn remote(canceller: Option<(Arc<dyn Cancel>, u64)>) -> (Resolver<T>, Self) {
        let shared = SharedArc::new(Shared {
            done: AtomicBool::new(false),
            value: Mutex::new(None),
            waker: AtomicWaker::new(),
            canceller: canceller.map(|(canceller, id)| (Arc::downgrade(&canceller), id)),
        });
        let resolver = Resolver {
            shared: Some(SharedArc::clone(&shared)),
        };
        let handle = TaskHandle {
            inner: Inner::Remote(shared),
            abort: OnceLock::new(),
        };
        (resolver, handle)
    }

    /// Blocks the current thread until the task resolves.
    ///
    /// For a task whose result another thread delivers (the subprocess backend), the thread
    /// first waits awake for a short while (at most 40 µs, yielding the processor between checks)
    /// before it parks, because such results usually arrive within microseconds and a parked
    /// thread costs a wake-up on each side. The wait adapts per thread: after joins that take
    /// longer it shrinks to 2 µs, and one quick join restores it.
    ///
    /// # Panics
    ///
    /// On an event-loop thread (inside a task of the coroutine backend), if the task has not
    /// finished: the loop could not run the awaited task while this thread is blocked, so the
    /// wait would stall or deadlock. `.await` the handle there instead. See
    /// [`enter_event_loop`](crate::enter_event_loop).
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let h = polyexec::TaskHandle::ready(Ok::<_, polyexec::TaskError>("done"));
    /// assert_eq!(h.join(), Ok("done"));
    /// ```
    #[track_caller]
    pub fn join(self) -> Result<T, TaskError> {
        if let Inner::Remote(shared) = &self.inner {
            if !shared.done.load(Ordering::Acquire) && !block::is_event_loop_thread() {
                // A result from another process usually arrives within microseconds of the
                // call: wait for it awake, briefly, rather than park and make the resolving
                // thread pay for waking this one (see the `spin` module).
                let start = Instant::now();
                spin::wait(|| shared.done.load(Ordering::Acquire), start);
                let result = block::block_on(self);
                spin::learn(start.elapsed());
                return result;
            }
        }
        block::block_on(self)
    }

    /// Blocks for at most `timeout`; `None` if the task has not resolved by then.
    ///
    /// The handle stays valid after a timeout, so waiting can be retried (with another
    /// `join_timeout`, with [`join`](Self::join) or with `.await`). The task is unaffected.
    ///
    /// # Panics
    ///
    /// If the handle already delivered its result (a previous call returned `Some`). On an
    /// event-loop thread, if the task has not finished and `timeout` is not zero (as for
    /// [`join`](Self::join)).
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use std::time::Duration;
    /// let mut h = polyexec::TaskHandle::ready(Ok::<_, polyexec::TaskError>(1));
    /// assert_eq!(h.join_timeout(Duration::from_millis(1)), Some(Ok(1)));
    /// ```
    #[track_caller]
    pub fn join_timeout(&mut self, timeout: Duration) -> Option<Result<T, TaskError>> {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(far_future);
        block::block_on_until(self, deadline)
    }

    /// `true` if the task has resolved and [`join`](Self::join) would not block.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let h = polyexec::TaskHandle::<u8>::ready(Ok(1));
    /// assert!(h.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            Inner::Local(task) => {
                task.is_finished() || self.abort.get().is_some_and(|abort| abort.is_aborted())
            }
            Inner::Remote(shared) => shared.done.load(Ordering::Acquire),
            Inner::Timed(timed) => timed.inner.is_finished() || Instant::now() >= timed.deadline,
            Inner::Done(_) | Inner::Taken => true,
        }
    }

    /// Cancels the task; returns `true` if the handle now resolves with
    /// [`TaskError::Cancelled`], `false` if the task had already finished (its result is kept)
    /// or was cancelled before.
    ///
    /// Takes `&self`, so a handle can be cancelled while it is shared, for example from a
    /// [`TaskSet`](crate::TaskSet) or through an [`AbortHandle`] on another thread. See the
    /// type's documentation for what each backend does to the work.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let h = polyexec::TaskHandle::<u8>::ready(Ok(1));
    /// assert!(!h.cancel()); // already finished: the value stays
    /// assert_eq!(h.join(), Ok(1));
    /// ```
    pub fn cancel(&self) -> bool {
        self.stop(false)
    }

    /// [`cancel`](Self::cancel); `expired` when the task's time limit stopped it, which a
    /// remote task's backend is told ([`Cancel::expire`]).
    fn stop(&self, expired: bool) -> bool {
        match &self.inner {
            Inner::Local(task) => {
                if task.is_finished() {
                    return false;
                }
                self.local_abort().abort()
            }
            Inner::Remote(shared) => shared.stop(expired),
            Inner::Timed(timed) => timed.inner.stop(expired),
            Inner::Done(_) | Inner::Taken => false,
        }
    }

    /// A handle that cancels this task from anywhere, as [`cancel`](Self::cancel) does: clonable,
    /// `Send` and `Sync`, and usable after this handle is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{TaskError, TaskHandle};
    ///
    /// let (_resolver, handle) = TaskHandle::<u8>::remote(None);
    /// let abort = handle.abort_handle();
    /// std::thread::spawn(move || abort.abort()).join().unwrap();
    /// assert_eq!(handle.join(), Err(TaskError::Cancelled));
    /// ```
    pub fn abort_handle(&self) -> AbortHandle
    where
        T: Send + 'static,
    {
        let target: Option<Arc<dyn AbortTarget>> = match &self.inner {
            Inner::Local(_) => Some(Arc::clone(self.local_abort()) as Arc<dyn AbortTarget>),
            Inner::Remote(shared) => Some(remote_target(shared)),
            Inner::Timed(timed) => return timed.inner.abort_handle(),
            Inner::Done(_) | Inner::Taken => None,
        };
        AbortHandle { target }
    }

    /// This handle with a time limit of `limit` from now: it resolves with
    /// [`TaskError::TimedOut`] once the limit passes, and the task is then cancelled as
    /// [`cancel`](Self::cancel) does (a blocking task that is running runs on, its result
    /// discarded; a subprocess worker running it is killed). A result that arrives in time is
    /// delivered as usual.
    ///
    /// For backend implementors: [`Executor::spawn_with`](crate::Executor::spawn_with) is the
    /// user's way to set a per-task limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use std::time::Duration;
    /// use polyexec::{TaskError, TaskHandle};
    ///
    /// let (_resolver, never) = TaskHandle::<u8>::remote(None);
    /// let limited = never.with_deadline(Duration::from_millis(5));
    /// assert_eq!(limited.join(), Err(TaskError::TimedOut(Duration::from_millis(5))));
    /// ```
    pub fn with_deadline(self, limit: Duration) -> Self {
        self.timed(limit, None)
    }

    /// [`with_deadline`](Self::with_deadline) for an in-process task whose future counts its
    /// end with a [`TimedCount`](crate::TimedCount) made from `expiry`: at the limit, the
    /// handle marks the task expired (so that it counts as timed out), unless it ended first,
    /// in which case its result is delivered.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use std::time::Duration;
    /// use polyexec::{Counters, Expiry, Outcome, TaskError, TaskHandle, TimedCount};
    ///
    /// let counters = Counters::new(1);
    /// let _scope = counters.enter(Some(0), Outcome::Cancelled);
    /// let expiry = Expiry::new();
    /// let count = TimedCount::new(&expiry); // what the task's future would carry
    /// let (_resolver, never) = TaskHandle::<u8>::remote(None);
    /// let limited = never.with_expiry(Duration::from_millis(5), expiry);
    /// assert_eq!(limited.join(), Err(TaskError::TimedOut(Duration::from_millis(5))));
    /// drop(count); // the task, dropped after its limit passed
    /// assert_eq!(counters.snapshot(0).timed_out(), 1);
    /// ```
    pub fn with_expiry(self, limit: Duration, expiry: Expiry) -> Self {
        self.timed(limit, Some(expiry))
    }

    fn timed(self, limit: Duration, expiry: Option<Expiry>) -> Self {
        if self.is_finished() {
            return self;
        }
        let deadline = Instant::now().checked_add(limit).unwrap_or_else(far_future);
        TaskHandle {
            inner: Inner::Timed(Box::new(Timed {
                inner: self,
                deadline,
                limit,
                expiry,
                timer: None,
            })),
            abort: OnceLock::new(),
        }
    }

    fn local_abort(&self) -> &Arc<LocalAbort> {
        self.abort.get_or_init(|| {
            Arc::new(LocalAbort {
                state: AtomicU8::new(OPEN),
                waker: AtomicWaker::new(),
            })
        })
    }

    /// Lets the task run on without anyone waiting for it; the same as dropping the handle.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// polyexec::TaskHandle::<u8>::ready(Ok(1)).detach();
    /// ```
    pub fn detach(self) {}
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(60 * 60 * 24 * 365 * 30)
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // The in-process backends' path, kept short: it is part of every task's cost.
        if matches!(this.inner, Inner::Local(_)) && this.abort.get().is_some() {
            return this.poll_abortable(cx);
        }
        if let Inner::Local(task) = &mut this.inner {
            return match Pin::new(task).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(result) => {
                    if let Inner::Local(task) = std::mem::replace(&mut this.inner, Inner::Taken) {
                        drop(task);
                    }
                    Poll::Ready(match result {
                        Some(result) => result,
                        None => Err(TaskError::ShutDown),
                    })
                }
            };
        }
        this.poll_other(cx)
    }
}

impl<T> TaskHandle<T> {
    /// [`Future::poll`] for a `Local` handle that has been cancelled or has given out an
    /// [`AbortHandle`]: a cancel that won drops the task (so `async-task` never polls it again)
    /// and resolves `Cancelled`; a result is delivered only if no cancel came first.
    #[inline(never)]
    fn poll_abortable(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, TaskError>> {
        let Some(abort) = self.abort.get() else {
            unreachable!("called for handles with an abort state")
        };
        let Inner::Local(task) = &mut self.inner else {
            unreachable!("called for `Local` handles")
        };
        if !abort.is_aborted() {
            abort.waker.register(cx.waker());
            // Checked again after registering: an abort in between woke the old waker.
            if !abort.is_aborted() {
                let result = match Pin::new(task).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result,
                };
                self.inner = Inner::Taken;
                if abort.deliver() {
                    return Poll::Ready(result.unwrap_or(Err(TaskError::ShutDown)));
                }
                return Poll::Ready(Err(TaskError::Cancelled));
            }
        }
        // Dropping an `async-task` handle cancels the task: a scheduled one is never polled
        // again, a running one is dropped when its current poll returns.
        self.inner = Inner::Taken;
        Poll::Ready(Err(TaskError::Cancelled))
    }

    /// [`Future::poll`] for handles that are not `Local`.
    #[inline(never)]
    fn poll_other(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, TaskError>> {
        let this = self;
        match &mut this.inner {
            Inner::Local(_) => unreachable!("polled by `poll`"),
            Inner::Remote(shared) => {
                if let Some(result) = shared.take() {
                    this.inner = Inner::Taken;
                    return Poll::Ready(result);
                }
                shared.waker.register(cx.waker());
                // Checked again after registering: a resolver that finished in between has
                // already called `wake` on the old (or no) waker.
                match shared.take() {
                    Some(result) => {
                        this.inner = Inner::Taken;
                        Poll::Ready(result)
                    }
                    None => Poll::Pending,
                }
            }
            Inner::Timed(timed) => {
                if let Poll::Ready(result) = Pin::new(&mut timed.inner).poll(cx) {
                    this.inner = Inner::Taken;
                    return Poll::Ready(result);
                }
                let deadline = timed.deadline;
                let timer = timed
                    .timer
                    .get_or_insert_with(|| async_io::Timer::at(deadline));
                if Pin::new(timer).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let limit = timed.limit;
                if let Some(expiry) = &timed.expiry {
                    if !expiry.expire() {
                        // The task ended first and counted its result, which it publishes
                        // next: the poll of `inner` above registered for its wake-up.
                        return Poll::Pending;
                    }
                }
                #[cfg(feature = "tracing")]
                tracing::warn!(?limit, "task time limit reached: cancelling the task");
                // Cancelled before it is dropped, so that a local task is stopped, not detached,
                // and a remote one's worker is told.
                if !timed.inner.stop(true) && timed.inner.is_finished() {
                    // Finished between the two polls: its result wins.
                    if let Poll::Ready(result) = Pin::new(&mut timed.inner).poll(cx) {
                        this.inner = Inner::Taken;
                        return Poll::Ready(result);
                    }
                }
                this.inner = Inner::Taken;
                Poll::Ready(Err(TaskError::TimedOut(limit)))
            }
            Inner::Done(_) => match std::mem::replace(&mut this.inner, Inner::Taken) {
                Inner::Done(result) => Poll::Ready(*result),
                _ => unreachable!("matched above"),
            },
            Inner::Taken => panic!("TaskHandle polled after it returned its result"),
        }
    }
}

// The handle never pins its contents: `Local` and `Remote` are `Unpin`, and a result in `Done` is
// only moved out, never pinned.
impl<T> Unpin for TaskHandle<T> {}

impl<T> Drop for TaskHandle<T> {
    fn drop(&mut self) {
        // Dropping an `async-task` handle would cancel the task; ours detaches instead. (Checked
        // before replacing: most handles are dropped after delivering their result, and then
        // there is nothing to move.)
        if matches!(self.inner, Inner::Local(_)) {
            if let Inner::Local(task) = std::mem::replace(&mut self.inner, Inner::Taken) {
                if self.abort.get().is_some_and(|abort| abort.is_aborted()) {
                    // Cancelled: dropping the `async-task` handle stops the task.
                    drop(task);
                } else {
                    task.detach();
                }
            }
        }
    }
}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::Taken => "taken",
            _ if self.is_finished() => "finished",
            _ => "pending",
        };
        f.debug_struct("TaskHandle").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every submitted task's handle is moved into the caller's collections: keep it small,
    /// whatever the output type (an inline result would make it as large as `T`).
    #[test]
    fn a_handle_is_four_words() {
        assert_eq!(std::mem::size_of::<TaskHandle<u64>>(), 32);
        assert_eq!(std::mem::size_of::<TaskHandle<String>>(), 32);
        assert_eq!(std::mem::size_of::<TaskHandle<[u8; 1024]>>(), 32);
    }

    #[test]
    fn ready_and_cancelled_handles_deliver_once() {
        let h = TaskHandle::<u8>::ready(Ok(3));
        assert!(h.is_finished());
        assert!(!h.cancel());
        assert_eq!(h.join(), Ok(3));
        let (_resolver, h) = TaskHandle::<u8>::remote(None);
        assert!(h.cancel());
        assert!(!h.cancel());
        assert_eq!(h.join(), Err(TaskError::Cancelled));
    }

    #[test]
    fn an_encoded_result_is_finished_on_the_taking_thread() {
        static RAN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn finish(bytes: Vec<u8>) -> Result<usize, TaskError> {
            RAN.fetch_add(1, Ordering::SeqCst);
            Ok(bytes.len())
        }
        fn explode(_: Vec<u8>) -> Result<usize, TaskError> {
            panic!("finish panics")
        }
        let (resolver, h) = TaskHandle::<usize>::remote(None);
        resolver.resolve_encoded(vec![0; 3], finish);
        assert!(h.is_finished());
        assert_eq!(
            RAN.load(Ordering::SeqCst),
            0,
            "not before the result is taken"
        );
        assert_eq!(h.join(), Ok(3));
        assert_eq!(RAN.load(Ordering::SeqCst), 1);

        let (resolver, h) = TaskHandle::<usize>::remote(None);
        resolver.resolve_encoded(vec![0; 3], finish);
        drop(h);
        assert_eq!(
            RAN.load(Ordering::SeqCst),
            1,
            "a dropped handle never finishes it"
        );

        let (resolver, h) = TaskHandle::<usize>::remote(None);
        resolver.resolve_encoded(Vec::new(), explode);
        assert!(matches!(h.join(), Err(TaskError::Panicked(_))));
    }
}

/// The hand-off between a [`Resolver`] on one thread and its [`TaskHandle`] on another, under
/// every interleaving loom can find (the handle's `Shared` runs on loom's types in this build):
/// `RUSTFLAGS="--cfg polyexec_loom" cargo test -p polyexec-core --release --lib loom`.
///
/// Checked: the handle gets exactly the value resolved (or `ShutDown` for a dropped resolver),
/// a waiting handle is always woken (a lost wake-up is a deadlock, which loom reports), a handle
/// that says it is finished has its result at once, and `cancel` racing the result yields one
/// outcome or the other, never both or none.
#[cfg(all(test, polyexec_loom))]
mod loom_tests {
    use std::task::{Context, Waker};

    use super::*;

    /// Polls once with a waker that does nothing.
    fn poll_now<T>(handle: &mut TaskHandle<T>) -> Poll<Result<T, TaskError>> {
        Pin::new(handle).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn loom_resolve_races_a_waiting_handle() {
        loom::model(|| {
            let (resolver, handle) = TaskHandle::<u32>::remote(None);
            let resolving = loom::thread::spawn(move || resolver.resolve(Ok(7)));
            assert_eq!(loom::future::block_on(handle), Ok(7));
            resolving.join().unwrap();
        });
    }

    #[test]
    fn loom_dropped_resolver_wakes_the_handle_with_shutdown() {
        loom::model(|| {
            let (resolver, handle) = TaskHandle::<u32>::remote(None);
            let dropping = loom::thread::spawn(move || drop(resolver));
            assert_eq!(loom::future::block_on(handle), Err(TaskError::ShutDown));
            dropping.join().unwrap();
        });
    }

    #[test]
    fn loom_finished_means_the_result_is_there() {
        loom::model(|| {
            let (resolver, mut handle) = TaskHandle::<u32>::remote(None);
            let resolving = loom::thread::spawn(move || resolver.resolve(Ok(7)));
            if handle.is_finished() {
                assert_eq!(poll_now(&mut handle), Poll::Ready(Ok(7)));
            } else {
                assert_eq!(loom::future::block_on(handle), Ok(7));
            }
            resolving.join().unwrap();
        });
    }

    #[test]
    fn loom_cancel_races_the_result() {
        loom::model(|| {
            let (resolver, handle) = TaskHandle::<u32>::remote(None);
            let resolving = loom::thread::spawn(move || {
                // The backend skips work for a handle nobody waits on any more.
                if !resolver.is_abandoned() {
                    resolver.resolve(Ok(7));
                }
            });
            let cancelled = handle.cancel();
            let result = loom::future::block_on(handle);
            if cancelled {
                assert_eq!(result, Err(TaskError::Cancelled));
            } else {
                assert_eq!(result, Ok(7));
            }
            resolving.join().unwrap();
        });
    }

    #[test]
    fn loom_handle_dropped_while_resolving() {
        loom::model(|| {
            let (resolver, handle) = TaskHandle::<u32>::remote(None);
            let resolving = loom::thread::spawn(move || resolver.resolve(Ok(7)));
            drop(handle);
            resolving.join().unwrap();
        });
    }
}
