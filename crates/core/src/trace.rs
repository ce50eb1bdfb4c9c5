//! The `tracing` feature's task spans, shared by the in-process backends: one span per task,
//! entered whenever the task is polled.

#[cfg(feature = "tracing")]
use std::sync::atomic::{AtomicU64, Ordering};

/// Task ids of every backend's spans, unique in the process.
#[cfg(feature = "tracing")]
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A task's span: its backend, an id unique in the process, the task function's type and
/// whether it is `"blocking"` or `"async"`. At `DEBUG`: one per task is too many for `INFO`.
///
/// For backend implementors; users see these spans through their `tracing` subscriber.
///
/// # Examples
///
/// ```
/// let span = polyexec_core::task_span("thread", "blocking", "my_crate::work");
/// let _entered = span.enter();
/// ```
#[cfg(feature = "tracing")]
pub fn task_span(backend: &'static str, kind: &'static str, task: &'static str) -> tracing::Span {
    // The id is taken only for a span some subscriber wants: the macro evaluates field values
    // only then, so a disabled span costs no shared atomic.
    tracing::debug_span!(
        "task",
        backend,
        id = NEXT_ID.fetch_add(1, Ordering::Relaxed),
        task,
        kind
    )
}

#[cfg(feature = "tracing")]
pin_project_lite::pin_project! {
    /// A task's future and its [`task_span`], entered whenever the future is polled; made by
    /// [`traced!`](crate::traced).
    ///
    /// The span is boxed, and kept only if some subscriber wants it: a `Span` is five words,
    /// and carried inline by every task it made the event loop's task cells a size class
    /// larger, which measured 15% of spawn + await with no subscriber at `DEBUG`; a disabled
    /// span now costs one word and no allocation.
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct Traced<F> {
        #[pin]
        future: F,
        span: Option<Box<tracing::Span>>,
    }
}

#[cfg(feature = "tracing")]
impl<F> Traced<F> {
    /// `future` in the span of a task of `backend`, of `kind`, running the function `task`.
    #[doc(hidden)]
    pub fn new(future: F, backend: &'static str, kind: &'static str, task: &'static str) -> Self {
        let span = task_span(backend, kind, task);
        Traced {
            future,
            span: (!span.is_disabled()).then(|| Box::new(span)),
        }
    }
}

#[cfg(feature = "tracing")]
impl<F: std::future::Future> std::future::Future for Traced<F> {
    type Output = F::Output;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.as_deref().map(tracing::Span::enter);
        this.future.poll(cx)
    }
}

/// Instruments a task's future with [`task_span`] when the calling crate's feature `tracing` is
/// on; gives the future back unchanged otherwise, so nothing is compiled in.
///
/// For backend implementors: `traced!(future, "thread", "async", TaskFn)`.
#[doc(hidden)]
#[macro_export]
macro_rules! traced {
    ($future:expr, $backend:expr, $kind:expr, $task:ty) => {{
        #[cfg(feature = "tracing")]
        let future =
            $crate::Traced::new($future, $backend, $kind, ::std::any::type_name::<$task>());
        #[cfg(not(feature = "tracing"))]
        let future = $future;
        future
    }};
}
