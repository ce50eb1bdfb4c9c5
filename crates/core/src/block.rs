//! Blocking on a future from synchronous code: poll it with a waker that unparks this thread.
//!
//! Also the event-loop marker: a thread that drives an event loop (the coroutine backend's loop
//! threads) says so with [`enter_event_loop`], and blocking waits on it then panic instead of
//! stalling the loop, which would deadlock when the awaited task needs that very loop.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

thread_local! {
    /// How many [`EventLoopThread`] guards are alive on this thread.
    static EVENT_LOOP_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as an event-loop thread for as long as the returned guard lives.
///
/// For backend implementors. While a thread is marked, a blocking wait on it
/// ([`TaskHandle::join`](crate::TaskHandle::join), [`join_timeout`](crate::TaskHandle::join_timeout),
/// [`block_on`], [`join_all`](crate::join_all), [`wait_any`](crate::wait_any), the blocking
/// iterators) panics if it would have to block: the thread would stop running the loop's other
/// tasks, and if the awaited task needs that loop it would never finish. Inside a task, the panic
/// becomes [`TaskError::Panicked`](crate::TaskError::Panicked) for that task and the loop goes on.
/// A wait that is already satisfied (a finished handle) returns normally.
///
/// # Examples
///
/// ```
/// use polyexec_core::{TaskHandle, enter_event_loop, is_event_loop_thread};
///
/// std::thread::spawn(|| {
///     let _loop = enter_event_loop();
///     assert!(is_event_loop_thread());
///     // A finished handle can still be joined.
///     assert_eq!(TaskHandle::ready(Ok::<u8, polyexec_core::TaskError>(1)).join(), Ok(1));
///     // An unfinished one cannot: `.await` it instead.
///     let (_resolver, pending) = TaskHandle::<u8>::remote(None);
///     let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pending.join()));
///     assert!(caught.is_err());
/// })
/// .join()
/// .unwrap();
/// assert!(!is_event_loop_thread());
/// ```
pub fn enter_event_loop() -> EventLoopThread {
    EVENT_LOOP_DEPTH.with(|depth| depth.set(depth.get() + 1));
    EventLoopThread {
        _not_send: PhantomData,
    }
}

/// `true` while the current thread is marked by [`enter_event_loop`].
///
/// # Examples
///
/// ```
/// assert!(!polyexec_core::is_event_loop_thread());
/// ```
pub fn is_event_loop_thread() -> bool {
    EVENT_LOOP_DEPTH
        .try_with(|depth| depth.get() > 0)
        .unwrap_or(false)
}

/// Guard returned by [`enter_event_loop`]; the mark is lifted when it is dropped.
///
/// It stays on the thread that made it (it is neither `Send` nor `Sync`).
///
/// # Examples
///
/// ```
/// let guard = polyexec_core::enter_event_loop();
/// drop(guard);
/// assert!(!polyexec_core::is_event_loop_thread());
/// ```
#[must_use = "the thread is marked only while the guard lives"]
pub struct EventLoopThread {
    /// The mark is per thread, so the guard must be dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

impl Drop for EventLoopThread {
    fn drop(&mut self) {
        let _ = EVENT_LOOP_DEPTH.try_with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

impl fmt::Debug for EventLoopThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoopThread").finish()
    }
}

/// Where a blocking wait must not block, and why.
#[derive(Clone, Copy)]
enum NoBlocking {
    EventLoop,
    #[cfg(feature = "tokio")]
    TokioCurrentThread,
}

/// `Some` if a blocking wait on this thread must not block: an event-loop thread, or (feature
/// `tokio`) a thread running a current-thread tokio runtime, which the wait would stall.
#[inline]
fn must_not_block() -> Option<NoBlocking> {
    if is_event_loop_thread() {
        return Some(NoBlocking::EventLoop);
    }
    #[cfg(feature = "tokio")]
    if crate::runtime::on_current_thread_runtime() {
        return Some(NoBlocking::TokioCurrentThread);
    }
    None
}

/// The panic of a blocking wait where it must not block; `#[track_caller]` so that the reported
/// location is the user's `join()`, not this module.
#[cold]
#[track_caller]
fn refuse_blocking(why: NoBlocking) -> ! {
    match why {
        NoBlocking::EventLoop => panic!(
            "join() called on an event-loop thread: .await the handle instead \
             (a blocking wait here would stall the event loop, and deadlock if the awaited task \
             needs this loop; run blocking code on the thread or subprocess backend)"
        ),
        #[cfg(feature = "tokio")]
        NoBlocking::TokioCurrentThread => panic!(
            "a blocking wait (join, join_all, map, or dropping an executor with work left) was \
             called on a thread running a current-thread tokio runtime: .await the handle \
             instead (blocking here would stall that runtime, and deadlock if the task needs it)"
        ),
    }
}

/// `false` where a blocking wait must not block (see [`block_on`]): an event-loop thread, or
/// (feature `tokio`) a thread that runs a current-thread tokio runtime.
///
/// For executors whose shutdown or `Drop` waits for their tasks: where this is `false`, they
/// hand the wait to another thread and then call [`assert_may_block`].
///
/// # Examples
///
/// ```
/// assert!(polyexec_core::may_block());
/// let _loop = polyexec_core::enter_event_loop();
/// assert!(!polyexec_core::may_block());
/// ```
pub fn may_block() -> bool {
    must_not_block().is_none()
}

/// Panics, with advice to `.await` instead, where [`may_block`] is `false`.
///
/// # Examples
///
/// ```
/// // On an ordinary thread, waiting is fine.
/// polyexec_core::assert_may_block();
/// ```
#[track_caller]
pub fn assert_may_block() {
    if let Some(why) = must_not_block() {
        refuse_blocking(why);
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    // One waker per thread, made once: registering it with a task is then a reference-count
    // increment, not an allocation.
    static THREAD_WAKER: Waker = Arc::new(ThreadWaker(thread::current())).into();
}

fn with_thread_waker<R>(body: impl FnOnce(&Waker) -> R) -> R {
    let mut body = Some(body);
    match THREAD_WAKER.try_with(|w| (body.take().expect("called once"))(w)) {
        Ok(r) => r,
        // During thread-local destruction: fall back to a fresh waker.
        Err(_) => {
            let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
            (body.take().expect("not called by try_with"))(&waker)
        }
    }
}

/// Runs a future to completion on the current thread, parking between polls.
///
/// This is what [`TaskHandle::join`](crate::TaskHandle::join) and the blocking helpers use. It
/// does not drive timers or I/O itself; futures that need a reactor (such as
/// [`sleep`](crate::sleep)) bring their own.
///
/// # Panics
///
/// If `future` is not ready at once: on a thread marked with [`enter_event_loop`] (see there),
/// and, with the feature `tokio`, on a thread that runs a current-thread tokio runtime (inside
/// its `block_on` or a `#[tokio::main(flavor = "current_thread")]` body), which the wait would
/// stall; `.await` instead. On a multi-thread runtime's worker, wrap the wait in
/// `tokio::task::block_in_place`, which moves that thread's other tasks elsewhere first.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// assert_eq!(polyexec::block_on(async { 1 + 1 }), 2);
/// ```
#[track_caller]
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    if let Some(why) = must_not_block() {
        match poll_once(future.as_mut()) {
            Poll::Ready(v) => return v,
            Poll::Pending => refuse_blocking(why),
        }
    }
    with_thread_waker(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            // A spurious or stale unpark only costs one more poll.
            thread::park();
        }
    })
}

/// Polls `future` once with this thread's waker.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    with_thread_waker(|waker| future.poll(&mut Context::from_waker(waker)))
}

/// Polls `future` until it is ready or `deadline` passes; `None` on timeout, with the future
/// left intact so the caller can wait again.
///
/// On an event-loop thread it polls once: a deadline already passed returns `None` as usual,
/// anything that would block panics.
#[track_caller]
pub(crate) fn block_on_until<F: Future + Unpin>(
    future: &mut F,
    deadline: Instant,
) -> Option<F::Output> {
    if let Some(why) = must_not_block() {
        return match poll_once(Pin::new(&mut *future)) {
            Poll::Ready(v) => Some(v),
            Poll::Pending if Instant::now() >= deadline => None,
            Poll::Pending => refuse_blocking(why),
        };
    }
    with_thread_waker(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = std::pin::Pin::new(&mut *future).poll(&mut cx) {
                return Some(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            thread::park_timeout(deadline - now);
        }
    })
}
