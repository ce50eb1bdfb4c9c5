//! The `tracing` feature's task spans: one per task, entered whenever the task is polled.

#[cfg(feature = "tracing")]
use std::sync::atomic::{AtomicU64, Ordering};

/// Instruments a task's future with its span when the feature `tracing` is on; the future
/// itself otherwise (nothing is compiled in).
macro_rules! traced {
    ($future:expr, $kind:expr, $task:ty) => {{
        #[cfg(feature = "tracing")]
        let future = tracing::Instrument::instrument(
            $future,
            crate::trace::task_span($kind, std::any::type_name::<$task>()),
        );
        #[cfg(not(feature = "tracing"))]
        let future = $future;
        future
    }};
}
pub(crate) use traced;

/// Task ids of this backend's spans, unique in the process.
#[cfg(feature = "tracing")]
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A task's span: the backend, an id, the task function's type and whether it is blocking or
/// async. At `DEBUG`: one per task is too many for `INFO`.
#[cfg(feature = "tracing")]
pub(crate) fn task_span(kind: &'static str, task: &'static str) -> tracing::Span {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    tracing::debug_span!("task", backend = "thread", id, task, kind)
}
