//! Blocking on a future from synchronous code: poll it with a waker that unparks this thread.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

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
/// # Examples
///
/// ```
/// assert_eq!(polyexec_core::block_on(async { 1 + 1 }), 2);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
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

/// Polls `future` until it is ready or `deadline` passes; `None` on timeout, with the future
/// left intact so the caller can wait again.
pub(crate) fn block_on_until<F: Future + Unpin>(
    future: &mut F,
    deadline: Instant,
) -> Option<F::Output> {
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
