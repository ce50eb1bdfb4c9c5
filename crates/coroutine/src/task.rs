//! The wrappers of the loop's tasks: [`Guarded`] around every task (panics, immediate
//! shutdown), [`OkOutput`] around an async task's future, [`Timeout`] around async
//! tasks when the builder sets a time limit, and [`run_local`] for `!Send` tasks.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::Timer;
use futures::FutureExt;
use pin_project_lite::pin_project;
use polyexec_core::{TaskCount, TaskCounter, TaskError, panic_error};

use crate::event_loop::Shared;
use crate::runner;

pin_project! {
    /// The one layer around every task's future, doing three jobs in a single poll:
    ///
    /// - once an immediate shutdown of the task's loop has begun, the next poll drops the
    ///   future unpolled and resolves the task with [`TaskError::ShutDown`];
    /// - a panic while polling (which includes calling the task closure, since that happens in
    ///   the first poll) resolves the task with [`TaskError::Panicked`];
    /// - the first time the future returns `Pending`, its waker is registered with the loop, so
    ///   that `shutdown_now` can wake (and so end) it wherever it waits. Tasks that finish in
    ///   their first poll never touch that registry: the fast path takes no lock and counts no
    ///   reference.
    pub(crate) struct Guarded<F, C = TaskCount> {
        // First, so that it is dropped first (see `TaskCount::finish_in_place`). Zero-sized,
        // unless the task has a time limit of its own (a `TimedCount`).
        count: C,
        #[pin]
        inner: F,
        // Boxed: only tasks that wait have one, and inline it would make every task's cell
        // 16 bytes larger (a size class up from a raw task's), which measured 6-8% of the time
        // of spawn + await on the loop; a waiting task pays one small allocation instead.
        registration: Option<Box<Registration>>,
    }
}

impl<F> Guarded<F> {
    #[inline]
    pub(crate) fn new(inner: F) -> Self {
        Guarded::with_count(inner, TaskCount::new())
    }
}

impl<F, C> Guarded<F, C> {
    #[inline]
    pub(crate) fn with_count(inner: F, count: C) -> Self {
        Guarded {
            count,
            inner,
            registration: None,
        }
    }
}

impl<F, T, C> Future for Guarded<F, C>
where
    F: Future<Output = Result<T, TaskError>>,
    C: TaskCounter,
{
    type Output = Result<T, TaskError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Tasks are polled only by their loop's threads, or by a thread draining that loop in
        // `shutdown_now`; both have the loop in `runner::current`.
        if runner::current_is_stopping() {
            return Poll::Ready(finished(this.count, Err(TaskError::ShutDown)));
        }
        let mut inner = this.inner;
        let poll = match panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(result)) => return Poll::Ready(finished(this.count, result)),
            Ok(poll) => poll,
            Err(payload) => return Poll::Ready(finished(this.count, Err(panic_error(payload)))),
        };
        if this.registration.is_none() {
            if let Some(shared) = runner::current() {
                let key = shared.register_waiting(cx.waker());
                let stopping = shared.is_stopping();
                *this.registration = Some(Box::new(Registration { shared, key }));
                // `shutdown_now` sets the flag before it takes the registry's wakers: if it
                // took them before this task registered, the flag is visible here.
                if stopping {
                    cx.waker().wake_by_ref();
                }
            }
        }
        poll
    }
}

/// Counts a task's result as it leaves the loop (`async-task` drops the future next).
#[inline]
fn finished<T, C: TaskCounter>(
    count: &mut C,
    result: Result<T, TaskError>,
) -> Result<T, TaskError> {
    count.finish_in_place(&result);
    result
}

/// A task's entry in its loop's registry of waiting tasks; removed when the task's future is
/// dropped (finished, cancelled, timed out or shut down).
pub(crate) struct Registration {
    shared: Arc<Shared>,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.unregister_waiting(self.key);
    }
}

pin_project! {
    /// An async task's future, its output wrapped in `Ok`: the wrapper adds no byte to it.
    pub(crate) struct OkOutput<Fut> {
        #[pin]
        future: Fut,
    }
}

impl<Fut> OkOutput<Fut> {
    #[inline]
    pub(crate) fn new(future: Fut) -> Self {
        OkOutput { future }
    }
}

impl<Fut: Future> Future for OkOutput<Fut> {
    type Output = Result<Fut::Output, TaskError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map(Ok)
    }
}

pin_project! {
    /// Enforces the builder's per-task time limit on an async task. The clock starts at the
    /// first poll; when it runs out, the task's future is dropped at once (returning `Ready`
    /// makes `async-task` drop it before the handle can see the result).
    pub(crate) struct Timeout<F> {
        #[pin]
        inner: F,
        timer: Option<Timer>,
        limit: Duration,
    }
}

impl<F> Timeout<F> {
    pub(crate) fn new(inner: F, limit: Duration) -> Self {
        Timeout {
            inner,
            timer: None,
            limit,
        }
    }
}

impl<F, T> Future for Timeout<F>
where
    F: Future<Output = Result<T, TaskError>>,
{
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let limit = *this.limit;
        // Started before the first poll of the task, so a first poll that blocks the loop counts.
        let timer = this.timer.get_or_insert_with(|| Timer::after(limit));
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(?limit, "task time limit reached: dropping the task");
                Poll::Ready(Err(TaskError::TimedOut(limit)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs a non-`Send` future made by `make` on the current loop thread's local executor, and
/// waits for it. The returned future is `Send`: it holds only `make` (before its first poll)
/// and then the local task's handle.
pub(crate) async fn run_local<F, Fut, T>(make: F) -> Result<T, TaskError>
where
    F: FnOnce() -> Fut + 'static,
    Fut: Future<Output = T> + 'static,
    T: 'static,
{
    // `make` runs inside the local task, so the `!Send` future is built on the thread that
    // polls it, and a panic in `make` is caught like one in the future.
    let local = AssertUnwindSafe(async move { make().await })
        .catch_unwind()
        .map(|r| r.map_err(panic_error));
    // (This path has its own catch: the local task is polled by the local executor, outside
    // of `Guarded`.)
    match runner::spawn_local(local) {
        // `None` when the local executor dropped the task unfinished: only at immediate
        // shutdown, when the loop thread exits.
        Some(task) => task.await.unwrap_or(Err(TaskError::ShutDown)),
        // Only loop threads poll tasks outside of an immediate shutdown, and they all have a
        // local executor; be explicit rather than panic if that ever changes.
        None => Err(TaskError::transport(
            "a local task was polled outside of its event loop",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_val<T>(_: &T) -> usize {
        std::mem::size_of::<T>()
    }

    /// Every async task's cell holds this wrapper around the task's future: it must add
    /// nothing to it.
    #[test]
    fn ok_output_adds_no_byte() {
        async fn plus_one(x: u64) -> u64 {
            x + 1
        }
        let future = plus_one(1);
        let bare = size_of_val(&future);
        assert_eq!(size_of_val(&OkOutput::new(future)), bare);
    }
}
