//! The loop thread: what it runs, and the thread-local state tasks find their loop through.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use async_executor::{FallibleTask, LocalExecutor};

use crate::event_loop::{Hook, Shared};

thread_local! {
    /// The loop whose tasks this thread polls: set for a loop thread's whole life, and for the
    /// duration of a `shutdown_now` drain on the thread that drains.
    static CURRENT: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    /// This loop thread's executor for `!Send` tasks.
    static LOCAL: RefCell<Option<Rc<LocalExecutor<'static>>>> = const { RefCell::new(None) };
    /// Local tasks of this thread whose futures have not been dropped yet. The loop looks at
    /// its local executor only while there are some, so that a loop without local tasks (the
    /// usual case) pays nothing for it when it goes idle.
    static LOCAL_TASKS: Cell<usize> = const { Cell::new(0) };
}

fn has_local_tasks() -> bool {
    LOCAL_TASKS.with(Cell::get) != 0
}

/// Counts one local task for as long as its future lives (dropped on its thread, as the local
/// executor guarantees).
struct LocalTaskCount;

impl LocalTaskCount {
    fn new() -> Self {
        LOCAL_TASKS.with(|n| n.set(n.get() + 1));
        LocalTaskCount
    }
}

impl Drop for LocalTaskCount {
    fn drop(&mut self) {
        let _ = LOCAL_TASKS.try_with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Tasks run between two yields to the reactor (timers, I/O) and to the local executor; the
/// same batch as `async_executor::Executor::run` uses.
const TICKS_PER_YIELD: usize = 200;

/// How many loops of this process are in an immediate shutdown. Almost always zero, which
/// lets the check every task makes at every poll be one load of a static instead of a
/// thread-local lookup.
///
/// Invariant: a loop is counted from before its phase becomes `STOPPING` until every one of its
/// tasks has resolved, so a poll that reads zero comes before that loop's `shutdown_now` in the
/// `SeqCst` order, and would have read its phase as not stopping anyway.
static STOPPING_LOOPS: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn count_stopping_loop() {
    STOPPING_LOOPS.fetch_add(1, Ordering::SeqCst);
}

pub(crate) fn uncount_stopping_loop() {
    STOPPING_LOOPS.fetch_sub(1, Ordering::SeqCst);
}

/// `true` if the loop this thread polls for is being shut down immediately.
#[inline]
pub(crate) fn current_is_stopping() -> bool {
    if STOPPING_LOOPS.load(Ordering::SeqCst) == 0 {
        return false;
    }
    CURRENT.with(|current| {
        current
            .borrow()
            .as_ref()
            .is_some_and(|shared| shared.is_stopping())
    })
}

/// The loop this thread polls for, if any.
pub(crate) fn current() -> Option<Arc<Shared>> {
    CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten()
}

/// `true` on the threads of the loop `shared`.
pub(crate) fn is_loop_thread_of(shared: &Arc<Shared>) -> bool {
    LOCAL
        .try_with(|local| local.borrow().is_some())
        .unwrap_or(false)
        && CURRENT
            .try_with(|current| {
                // Compared in place: cloning the `Arc` would cost two atomic operations on
                // `spawn_async`'s path.
                current
                    .borrow()
                    .as_ref()
                    .is_some_and(|current| Arc::ptr_eq(current, shared))
            })
            .unwrap_or(false)
}

/// Makes `shared` the current loop of this thread while `body` runs (for a `shutdown_now`
/// drain), then restores the previous one, which is another loop's if this thread is a loop
/// thread of another loop.
pub(crate) fn with_current<R>(shared: &Arc<Shared>, body: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|current| current.replace(Some(Arc::clone(shared))));
    let result = body();
    CURRENT.with(|current| current.replace(previous));
    result
}

/// Spawns a `!Send` future on this loop thread's local executor; `None` off loop threads.
pub(crate) fn spawn_local<Fut>(future: Fut) -> Option<FallibleTask<Fut::Output>>
where
    Fut: Future + 'static,
    Fut::Output: 'static,
{
    LOCAL.with(|local| {
        local.borrow().as_ref().map(|executor| {
            let count = LocalTaskCount::new();
            executor
                .spawn(async move {
                    let _count = count;
                    future.await
                })
                .fallible()
        })
    })
}

/// The builder's lifecycle hooks, and where the thread reports that it started.
pub(crate) struct Hooks {
    pub(crate) start: Option<Hook>,
    pub(crate) stop: Option<Hook>,
    pub(crate) ready: std::sync::mpsc::Sender<Result<(), polyexec_core::TaskError>>,
}

/// The body of a loop thread.
pub(crate) fn run(shared: Arc<Shared>, index: usize, hooks: Hooks) {
    let _marker = polyexec_core::enter_event_loop();
    // For the thread's whole life: tasks make their tokio resources in the loop's runtime,
    // whose own thread drives them and wakes the tasks through their (async-executor) wakers.
    // A handle of the thread's own, so that the runtime's descriptors go with the loop's
    // shutdown even if a stray waker keeps `shared` alive.
    #[cfg(feature = "tokio")]
    let tokio = shared.tokio.handle();
    #[cfg(feature = "tokio")]
    let _tokio = tokio.as_ref().map(polyexec_core::enter_tokio);
    CURRENT.with(|current| *current.borrow_mut() = Some(Arc::clone(&shared)));
    let local = Rc::new(LocalExecutor::new());
    LOCAL.with(|slot| *slot.borrow_mut() = Some(Rc::clone(&local)));
    // In the loop's contexts (tokio, the loop marker), as the tasks will be.
    let started = match &hooks.start {
        Some(Hook(start)) => polyexec_core::catch_task(|| start(index)),
        None => Ok(()),
    };
    let failed = started.is_err();
    if !failed {
        // Before `build()` hears of this thread: a loop it returns counts every thread alive.
        shared.counters.worker_started();
    }
    let _ = hooks.ready.send(started);
    drop(hooks.ready);
    if failed {
        // `build()` fails and shuts the loop down; this thread never serves.
        LOCAL.with(|slot| slot.borrow_mut().take());
        CURRENT.with(|current| current.borrow_mut().take());
        return;
    }
    // Tasks that finish here, or are dropped here after a cancel, count on this thread's stripe
    // (inside the task, before its result is published).
    let scope = shared
        .counters
        .enter(Some(index), polyexec_core::Outcome::Cancelled);
    #[cfg(feature = "tracing")]
    tracing::info!(backend = "coroutine", worker = index, "loop thread started");
    // The reactor (timers, I/O) is driven by this `block_on` whenever the loop waits or yields.
    async_io::block_on(serve(&shared, &local, index));
    shared.counters.worker_stopped();
    #[cfg(feature = "tracing")]
    tracing::info!(backend = "coroutine", worker = index, "loop thread exited");
    LOCAL.with(|slot| slot.borrow_mut().take());
    // Local tasks still here were cancelled by an immediate shutdown; dropping the executor
    // drops their futures, on this thread as they require.
    drop(local);
    drop(scope);
    CURRENT.with(|current| current.borrow_mut().take());
    if let Some(Hook(stop)) = &hooks.stop {
        // A panic here ends nothing but the hook: the thread is exiting anyway.
        let _ = polyexec_core::catch_task(|| stop(index));
    }
}

/// Runs the loop's tasks until the loop is told to stop (immediate shutdown) or has nothing
/// left to run (graceful shutdown).
async fn serve(shared: &Shared, local: &LocalExecutor<'static>, index: usize) {
    let polling = &shared.polling[index].0;
    loop {
        for _ in 0..TICKS_PER_YIELD {
            let mut tick = pin!(shared.executor.tick());
            let mut local_tick = pin!(local.tick());
            // Runs one task, or waits for one; an idle thread also wakes for a shutdown.
            poll_fn(|cx| {
                // Set while the task runs, for `metrics()`: two stores to a line of this
                // thread's own, where counting each task's start would cost a thread-local
                // lookup in every task. (An idle thread sets it for the moment it takes to
                // find the queue empty.)
                if !cfg!(polyexec_no_metrics) {
                    polling.store(true, Ordering::Relaxed);
                }
                let ran = tick.as_mut().poll(cx).is_ready();
                if !cfg!(polyexec_no_metrics) {
                    polling.store(false, Ordering::Relaxed);
                }
                if ran {
                    return Poll::Ready(());
                }
                if has_local_tasks() && local_tick.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                if shared.exit_signalled() {
                    return Poll::Ready(());
                }
                shared.register_idle(index, cx.waker());
                // Checked again: a shutdown between the check above and the registration
                // woke the previous waker, not this one.
                if shared.exit_signalled() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            // One load per task on the fast path; the rest only while shutting down.
            if shared.is_shutting_down() && shared.should_exit() {
                return;
            }
        }
        // Local tasks run above only when no shared task is ready; here they get a turn even
        // on a busy loop.
        if has_local_tasks() {
            for _ in 0..TICKS_PER_YIELD {
                if !local.try_tick() {
                    break;
                }
            }
        }
        YieldNow(false).await;
    }
}

/// Returns `Pending` once, waking itself: lets `block_on` poll the reactor.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
