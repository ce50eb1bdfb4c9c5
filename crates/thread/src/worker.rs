//! The worker thread's loop.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;
use polyexec_core::{Outcome, TaskError, catch_task};

use crate::pool::{Msg, Shared};

thread_local! {
    /// The address of the `Shared` of the pool this thread works for, or 0.
    static CURRENT_POOL: Cell<usize> = const { Cell::new(0) };
}

pub(crate) fn current_pool() -> usize {
    CURRENT_POOL.with(Cell::get)
}

/// The builder's lifecycle hooks, each called with the worker's index.
pub(crate) struct Hooks {
    pub(crate) start: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    pub(crate) stop: Option<Arc<dyn Fn(usize) + Send + Sync>>,
}

pub(crate) fn run(
    shared: Arc<Shared>,
    index: usize,
    hooks: Hooks,
    ready: Sender<Result<(), TaskError>>,
) {
    CURRENT_POOL.with(|c| c.set(Arc::as_ptr(&shared) as usize));
    // For the worker's whole life, initializer included: tasks make their tokio resources in
    // the pool's runtime, whose own thread drives them.
    // A handle of the worker's own, so that the runtime's descriptors go with the pool's
    // shutdown even if a stray waker keeps `shared` alive.
    #[cfg(feature = "tokio")]
    let tokio = shared.tokio.handle();
    #[cfg(feature = "tokio")]
    let _tokio = tokio.as_ref().map(polyexec_core::enter_tokio);
    let started = match &hooks.start {
        Some(init) => catch_task(|| init(index)),
        None => Ok(()),
    };
    let failed = started.is_err();
    if !failed {
        // Before `build()` hears of this worker: a pool it returns counts every worker alive.
        shared.counters.worker_started();
    }
    let _ = ready.send(started);
    drop(ready);
    if failed {
        return;
    }
    // Tasks that finish here, or are dropped here after a cancel, count on this worker's stripe
    // (inside the task, before its result is published).
    let _scope = shared.counters.enter(Some(index), Outcome::Cancelled);
    #[cfg(feature = "tracing")]
    tracing::info!(backend = "thread", worker = index, "worker started");
    serve(&shared, index);
    shared.counters.worker_stopped();
    #[cfg(feature = "tracing")]
    tracing::info!(backend = "thread", worker = index, "worker exited");
    if let Some(stop) = &hooks.stop {
        // A panic here ends nothing but the hook: the thread is exiting anyway.
        let _ = catch_task(|| stop(index));
    }
}

fn serve(shared: &Shared, index: usize) {
    while let Ok(msg) = shared.rx.recv() {
        match msg {
            Msg::Run(runnable) => {
                // Checked per task so that an immediate shutdown stops queued work even while
                // the draining thread races the workers for it.
                if shared.aborting.load(Ordering::Relaxed) {
                    let _scope = shared.counters.enter(Some(index), Outcome::ShutDown);
                    drop(runnable);
                } else {
                    // Never unwinds: every future the pool spawns catches its own panics.
                    runnable.run();
                }
            }
            Msg::Stop => break,
        }
    }
}
