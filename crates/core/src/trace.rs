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
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    tracing::debug_span!("task", backend, id, task, kind)
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
        let future = $crate::__tracing::Instrument::instrument(
            $future,
            $crate::task_span($backend, $kind, ::std::any::type_name::<$task>()),
        );
        #[cfg(not(feature = "tracing"))]
        let future = $future;
        future
    }};
}
