//! [`EventLoop`] and its builder.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use futures::task::AtomicWaker;
use polyexec_core::{
    AsyncTask, BlockingTask, BuildError, Counters, Executor, Expiry, Metrics, Outcome, Portable,
    SpawnOptions, SubmitGate, TaskCount, TaskCounter, TaskError, TaskHandle, TimedCount,
    assert_portable, catch_task,
};
use slab::Slab;

use crate::runner;
use crate::task::{Guarded, OkOutput, Timeout, run_local};
use polyexec_core::traced;

/// Inputs per loop task in `map` (see `preferred_chunk_size`).
const MAP_CHUNK: usize = 64;

/// The loop runs tasks as they come.
const RUNNING: u8 = 0;
/// Graceful shutdown: the loop threads exit once no task is left.
const DRAINING: u8 = 1;
/// Immediate shutdown: every task's next poll resolves it with `ShutDown`; loop threads exit.
const STOPPING: u8 = 2;

/// State shared by the [`EventLoop`], its threads and its waiting tasks.
pub(crate) struct Shared {
    pub(crate) executor: async_executor::Executor<'static>,
    /// Every submission passes through it, which counts them for `metrics()` (except a task
    /// whose closure panicked at submission, counted in `counters`).
    gate: SubmitGate,
    phase: AtomicU8,
    /// Set by the first thread that finds nothing left to run while draining; the loop
    /// threads then exit.
    drained: AtomicBool,
    /// One per loop thread: the waker of that thread while it has no task to run, so that a
    /// shutdown reaches idle threads without going through the task queue.
    idle: Vec<AtomicWaker>,
    /// Wakers of the tasks that have returned `Pending` at least once, so that an immediate
    /// shutdown can reach a task wherever it waits (a timer, a channel, another task). Tasks
    /// that finish in their first poll are never here.
    waiting: Mutex<Slab<Waker>>,
    /// One per loop thread: set while that thread polls a task of the loop, for `metrics()`'s
    /// count of started tasks. Each in a cache line of its own, written by its thread only.
    pub(crate) polling: Box<[Polling]>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// This loop was added to / removed from `runner`'s count of stopping loops (each once).
    stop_counted: AtomicBool,
    stop_uncounted: AtomicBool,
    size: usize,
    /// What `metrics()` reads; each loop thread counts into its own stripe.
    pub(crate) counters: Arc<Counters>,
    /// The runtime whose context the loop threads (and `spawn_async`, while it makes a task's
    /// future) enter, so that tasks can use tokio types.
    #[cfg(feature = "tokio")]
    pub(crate) tokio: polyexec_core::TokioRuntime,
    task_timeout: Option<Duration>,
}

/// A loop thread's flag: it is polling a task now.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Polling(pub(crate) AtomicBool);

impl Shared {
    /// Tasks started and not finished, as far as the loop can tell without counting per task:
    /// those that have waited (registered) and one per loop thread polling now. A task that
    /// waited and is polled again counts twice while that poll lasts.
    fn started_estimate(&self) -> usize {
        let polling = self
            .polling
            .iter()
            .filter(|polling| polling.0.load(Ordering::Relaxed))
            .count();
        self.lock_waiting().len() + polling
    }

    #[inline]
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.phase.load(Ordering::Acquire) != RUNNING
    }

    #[inline]
    pub(crate) fn is_stopping(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == STOPPING
    }

    fn lock_waiting(&self) -> MutexGuard<'_, Slab<Waker>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register_waiting(&self, waker: &Waker) -> usize {
        self.lock_waiting().insert(waker.clone())
    }

    pub(crate) fn unregister_waiting(&self, key: usize) {
        // Dropped outside the lock: dropping a waker may free its task.
        let waker = self.lock_waiting().try_remove(key);
        drop(waker);
    }

    /// Called by a loop thread after a task or a wake-up, once a shutdown has begun: `true` if
    /// the thread should exit now.
    pub(crate) fn should_exit(&self) -> bool {
        match self.phase.load(Ordering::SeqCst) {
            RUNNING => false,
            DRAINING => self.drained.load(Ordering::Acquire) || self.check_drained(),
            _ => true,
        }
    }

    /// While draining: if no task is left, marks the loop drained and wakes the idle loop
    /// threads so that they exit too. The gate is closed by then, so empty stays empty.
    fn check_drained(&self) -> bool {
        if !self.executor.is_empty() {
            return false;
        }
        if !self.drained.swap(true, Ordering::AcqRel) {
            self.wake_loop_threads();
        }
        true
    }

    /// `true` once an idle loop thread must look at the phase: it has to exit.
    pub(crate) fn exit_signalled(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == STOPPING || self.drained.load(Ordering::Acquire)
    }

    /// Registers an idle loop thread's waker, to be woken by [`exit_signalled`] turning true.
    pub(crate) fn register_idle(&self, index: usize, waker: &Waker) {
        self.idle[index].register(waker);
    }

    fn wake_loop_threads(&self) {
        for idle in &self.idle {
            idle.wake();
        }
    }

    /// Wakes every task that waits, so that its next poll ends it (the phase is `STOPPING`).
    fn wake_waiting(&self) {
        // Collected under the lock, woken outside it: waking a task may drop it, which
        // unregisters it.
        let wakers: Vec<Waker> = self.lock_waiting().iter().map(|(_, w)| w.clone()).collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves, on this thread, every task in the queue (the phase is `STOPPING`, so each is
    /// dropped unpolled). This is what resolves queued tasks while every loop thread is
    /// stalled in a blocking task.
    fn drain_here(self: &Arc<Self>) {
        let _scope = self.counters.enter(None, Outcome::ShutDown);
        runner::with_current(self, || while self.executor.try_tick() {});
    }

    fn shutdown(self: &Arc<Self>, now: bool) {
        // Reported by the first call only (the gate closes once).
        #[cfg(feature = "tracing")]
        if !self.gate.is_closed() {
            tracing::info!(backend = "coroutine", immediate = now, "shutdown requested");
        }
        // Waiting here for unfinished tasks would stall an event loop or a current-thread tokio
        // runtime: the shutdown goes on without this thread, which then panics with advice.
        let refused = !now
            && !thread::panicking()
            && !polyexec_core::may_block()
            && !runner::is_loop_thread_of(self)
            && !self.executor.is_empty();
        self.gate.close();
        if now {
            if !self.stop_counted.swap(true, Ordering::SeqCst) {
                runner::count_stopping_loop();
            }
            self.phase.store(STOPPING, Ordering::SeqCst);
            self.wake_waiting();
            self.wake_loop_threads();
        } else {
            // An immediate shutdown already under way stays immediate.
            let _ =
                self.phase
                    .compare_exchange(RUNNING, DRAINING, Ordering::SeqCst, Ordering::SeqCst);
            // Either this sees the last task gone, or the loop thread that finishes it sees
            // the phase (both sides order through the executor's task lock and `SeqCst`).
            self.check_drained();
        }
        if refused || runner::is_loop_thread_of(self) {
            // Joining here would wait for this very thread. Another thread finishes the job;
            // the loop threads (this one included, once its current task returns) exit on
            // their own, so the shutdown completes even if that thread cannot be started.
            let shared = Arc::clone(self);
            let _ = thread::Builder::new()
                .name("polyexec-loop-shutdown".into())
                .spawn(move || shared.finish_shutdown(now));
            if refused {
                polyexec_core::assert_may_block();
            }
            return;
        }
        if now {
            self.drain_here();
        }
        self.finish_shutdown(now);
    }

    fn finish_shutdown(self: &Arc<Self>, now: bool) {
        #[cfg(feature = "tracing")]
        let joined;
        {
            // Held while joining, so a concurrent shutdown returns only once the threads are gone.
            let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
            #[cfg(feature = "tracing")]
            {
                joined = !threads.is_empty();
            }
            for handle in threads.drain(..) {
                // A loop thread does not panic (tasks are caught); if one did, it is gone anyway.
                let _ = handle.join();
            }
        }
        if now || self.is_stopping() {
            // Tasks woken after the loop threads left (or never reached by them).
            self.wake_waiting();
            self.drain_here();
            // Every task has resolved: none of this loop's tasks is polled again.
            // (Counted before the phase became `STOPPING`, so it is counted here.)
            if !self.stop_uncounted.swap(true, Ordering::SeqCst) {
                runner::uncount_stopping_loop();
            }
        }
        // No task of the loop's can run any more; what tasks handed to `tokio::spawn` goes too.
        #[cfg(feature = "tokio")]
        self.tokio.shutdown();
        #[cfg(feature = "tracing")]
        if joined {
            tracing::info!(
                backend = "coroutine",
                "shutdown complete: the loop threads are gone"
            );
        }
    }
}

/// An event loop running portable tasks: the coroutine backend of polyexec, the asyncio model.
///
/// One thread by default (like asyncio's loop), or several threads sharing one
/// [`async_executor::Executor`](https://docs.rs/async-executor) (see
/// [`EventLoopBuilder::threads`]). The loop threads drive the `async-io` reactor, so
/// `polyexec::sleep` and other `async-io` timers and I/O work in tasks.
///
/// Async tasks ([`Executor::spawn_async`]) interleave on the loop: many wait at once and a
/// thread runs whichever is ready. Blocking tasks ([`Executor::spawn`], [`Executor::map`]) run
/// on a loop thread too and **stall it** until they return, exactly as a blocking call inside an
/// asyncio coroutine stalls the asyncio loop: nothing else runs on that thread meanwhile, timers
/// included. Give blocking or CPU-heavy work to the thread-pool or subprocess backend.
///
/// An async task's closure is called by `spawn_async` itself, on the submitting thread, to make
/// the task's future; the future runs on the loop (as with `tokio::spawn(f(x))`, where the caller
/// makes the future). Code in the closure before its `async` block therefore runs at
/// submission; put the task's work inside the `async` block. A panic in the closure resolves the
/// task's handle with [`TaskError::Panicked`], as a panic in the future does.
///
/// Non-portable extras: [`spawn_capturing`](Self::spawn_capturing) takes any `Send` future
/// (capturing its environment, output not serializable) and
/// [`spawn_local_capturing`](Self::spawn_local_capturing) runs a `!Send` future.
///
/// Inside a task, wait for another task with `.await`: a blocking `join()` on a loop thread
/// panics with an explanation (it would stall the loop, and deadlock a one-thread loop).
///
/// Dropping the loop shuts it down gracefully: it waits for every submitted task to finish.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use polyexec_core::{Executor, join_all};
/// use polyexec_coroutine::EventLoop;
///
/// let event_loop = EventLoop::new()?;
/// let task = |(name, ms): (String, u64)| async move {
///     polyexec_core::sleep(Duration::from_millis(ms)).await;
///     name
/// };
/// let slow = event_loop.spawn_async(("slow".to_string(), 20), task);
/// let fast = event_loop.spawn_async(("fast".to_string(), 10), task);
/// assert_eq!(join_all([slow, fast]), [Ok("slow".to_string()), Ok("fast".to_string())]);
/// # Ok::<(), polyexec_core::BuildError>(())
/// ```
pub struct EventLoop {
    shared: Arc<Shared>,
    /// The runtime's handle, entered by `spawn_async` while it makes a task's future (a handle
    /// of the loop's own, for the reason given in `runner::run`).
    #[cfg(feature = "tokio")]
    tokio: tokio::runtime::Handle,
    /// Set when `shutdown_timeout` gave up waiting: the loop threads left finish detached, and
    /// dropping the executor must not wait for them after all.
    detached: AtomicBool,
}

impl EventLoop {
    /// An event loop with the default settings: one loop thread (see [`EventLoopBuilder`]).
    ///
    /// # Errors
    ///
    /// [`BuildError::Start`] if the loop thread cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let event_loop = polyexec_coroutine::EventLoop::new()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn new() -> Result<Self, BuildError> {
        Self::builder().build()
    }

    /// A builder to configure the loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let event_loop = polyexec_coroutine::EventLoop::builder()
    ///     .threads(2)
    ///     .thread_name("io")
    ///     .task_timeout(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn builder() -> EventLoopBuilder {
        EventLoopBuilder::default()
    }

    /// Submits a future that may capture its environment: not portable, and not available on
    /// the subprocess backend. Its output need not be serializable.
    ///
    /// The future is polled on the loop threads like a portable async task, and the builder's
    /// [`task_timeout`](EventLoopBuilder::task_timeout) applies to it.
    ///
    /// # Examples
    ///
    /// ```
    /// let event_loop = polyexec_coroutine::EventLoop::new()?;
    /// let name = String::from("polyexec");
    /// let handle = event_loop.spawn_capturing(async move { name.len() });
    /// assert_eq!(handle.join()?, 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_capturing<T, Fut>(&self, future: Fut) -> TaskHandle<T>
    where
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_timed(async move { Ok(future.await) })
    }

    /// Runs a `!Send` future on a loop thread: `make` is sent to the loop and called there, and
    /// the future it returns stays on that thread until it finishes. Not portable.
    ///
    /// With several loop threads, the future is pinned to whichever thread picks the task up
    /// first; it then runs only when that thread is free. The output must be `Send`: it travels
    /// back to the handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// let event_loop = polyexec_coroutine::EventLoop::new()?;
    /// let handle = event_loop.spawn_local_capturing(|| {
    ///     let shared = Rc::new(20); // `Rc` is not `Send`
    ///     async move {
    ///         polyexec_core::sleep(std::time::Duration::from_millis(1)).await;
    ///         *shared + 1
    ///     }
    /// });
    /// assert_eq!(handle.join()?, 21);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_local_capturing<T, F, Fut>(&self, make: F) -> TaskHandle<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.submit_timed(run_local(make))
    }

    /// `true` if every task submitted to this loop has finished (none is queued, running or
    /// waiting).
    ///
    /// # Examples
    ///
    /// ```
    /// let event_loop = polyexec_coroutine::EventLoop::new()?;
    /// assert_eq!(event_loop.is_idle(), true);
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn is_idle(&self) -> bool {
        self.shared.executor.is_empty()
    }

    /// Spawns an async task's future, with the time limit if one is set.
    #[inline]
    fn submit_timed<T, Fut>(&self, future: Fut) -> TaskHandle<T>
    where
        Fut: Future<Output = Result<T, TaskError>> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_timed_counted(future, TaskCount::new())
    }

    /// [`submit_timed`](Self::submit_timed), the task counting its end with `count`.
    #[inline]
    fn submit_timed_counted<T, Fut, C>(&self, future: Fut, count: C) -> TaskHandle<T>
    where
        Fut: Future<Output = Result<T, TaskError>> + Send + 'static,
        T: Send + 'static,
        C: TaskCounter,
    {
        match self.shared.task_timeout {
            Some(limit) => self.submit_counted(Timeout::new(future, limit), count),
            None => self.submit_counted(future, count),
        }
    }

    /// Spawns a task: one allocation (the `async-task` cell that holds the future and then its
    /// output), and no lock of ours.
    #[inline]
    fn submit<T, Fut>(&self, future: Fut) -> TaskHandle<T>
    where
        Fut: Future<Output = Result<T, TaskError>> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_counted(future, TaskCount::new())
    }

    /// [`submit`](Self::submit), the task counting its end with `count`.
    #[inline]
    fn submit_counted<T, Fut, C>(&self, future: Fut, count: C) -> TaskHandle<T>
    where
        Fut: Future<Output = Result<T, TaskError>> + Send + 'static,
        T: Send + 'static,
        C: TaskCounter,
    {
        let shared = &*self.shared;
        // The gate counts the task submitted, refused or not.
        if !shared.gate.enter() {
            return refused_counted(shared, count);
        }
        let task = shared.executor.spawn(Guarded::with_count(future, count));
        shared.gate.leave();
        TaskHandle::from_task(task)
    }
}

/// The handle of a task refused at submission; its count, dropped unfinished here, counts it
/// as shut down.
#[cold]
fn refused_counted<T, C: TaskCounter>(shared: &Shared, count: C) -> TaskHandle<T> {
    let _scope = shared.counters.enter(None, Outcome::ShutDown);
    drop(count);
    TaskHandle::ready(Err(TaskError::ShutDown))
}

/// The handle of a task that ended at submission (refused, or its closure panicked), counted.
#[cold]
fn refused<T>(shared: &Shared, err: TaskError) -> TaskHandle<T> {
    shared.counters.count(Outcome::of_error(&err));
    TaskHandle::ready(Err(err))
}

impl Executor for EventLoop {
    /// Submits a blocking task. It runs on a loop thread and stalls that thread until it
    /// returns (see the type's documentation). The builder's time limit does not apply: a
    /// blocking task cannot be interrupted.
    #[inline]
    fn spawn<F, In, Out>(&self, input: In, task: F) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        assert_portable(&task);
        // `Guarded` catches a panic of `task`: it is called inside the first poll.
        self.submit(traced!(
            async move { Ok(task(input)) },
            "coroutine",
            "blocking",
            F
        ))
    }

    #[inline]
    fn spawn_async<F, In, Fut>(&self, input: In, task: F) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable,
    {
        assert_portable(&task);
        // The closure is called here, on the submitting thread, and only its future goes to the
        // loop: a task's cell then holds the future alone, not the input beside it until the
        // first poll, which keeps it in the same allocator size class as a blocking task's
        // (measured: about 5% of spawn + await on the loop; docs/benchmarks.md). A panic while
        // making the future is still the task's result.
        // In the runtime's context, as on the loop threads: a closure that makes a tokio
        // resource before its `async` block (`|d| tokio::time::sleep(d)`) works here too. A
        // thread of this loop is in that context for its whole life already, and entering it
        // again would cost two atomic operations and four thread-local writes per task.
        #[cfg(feature = "tokio")]
        let _tokio = (!crate::runner::is_loop_thread_of(&self.shared))
            .then(|| polyexec_core::enter_tokio(&self.tokio));
        match catch_task(|| task(input)) {
            Ok(future) => {
                self.submit_timed(traced!(OkOutput::new(future), "coroutine", "async", F))
            }
            Err(err) => {
                self.shared.counters.count_submitted();
                refused(&self.shared, err)
            }
        }
    }

    /// Submits every task in one batch: one pass through the submission gate and one lock of
    /// the executor per few hundred tasks, instead of one each.
    fn spawn_all<F, I, Out>(&self, inputs: I, task: F) -> Vec<TaskHandle<Out>>
    where
        F: BlockingTask<I::Item, Out>,
        I: IntoIterator,
        I::Item: Portable,
        Out: Portable,
    {
        assert_portable(&task);
        // Collected first: the executor's task lock is held while spawning the batch, so no
        // user code (the input iterator) may run then.
        let inputs: Vec<I::Item> = inputs.into_iter().collect();
        let shared = &*self.shared;
        // The gate counts the tasks submitted, refused or not.
        let n = u64::try_from(inputs.len()).unwrap_or(u64::MAX);
        if !shared.gate.enter_many(n) {
            return inputs
                .iter()
                .map(|_| refused(shared, TaskError::ShutDown))
                .collect();
        }
        let mut tasks = Vec::with_capacity(inputs.len());
        shared.executor.spawn_many(
            inputs
                .into_iter()
                .map(|input| Guarded::new(async move { Ok(task(input)) })),
            &mut tasks,
        );
        shared.gate.leave_many(n);
        tasks.into_iter().map(TaskHandle::from_task).collect()
    }

    /// [`spawn`](Executor::spawn) with a time limit: past it, the handle resolves with
    /// `TimedOut` and the task counts as timed out, whether it is then dropped from the queue
    /// or runs on (a running blocking task cannot be interrupted).
    fn spawn_with<F, In, Out>(&self, input: In, task: F, options: SpawnOptions) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        let Some(limit) = options.get_timeout() else {
            return self.spawn(input, task);
        };
        assert_portable(&task);
        let expiry = Expiry::new();
        self.submit_counted(
            traced!(async move { Ok(task(input)) }, "coroutine", "blocking", F),
            TimedCount::new(&expiry),
        )
        .with_expiry(limit, expiry)
    }

    /// [`spawn_async`](Executor::spawn_async) with a time limit: past it, the handle resolves
    /// with `TimedOut`, the task is dropped at its next `.await`, and it counts as timed out.
    fn spawn_async_with<F, In, Fut>(
        &self,
        input: In,
        task: F,
        options: SpawnOptions,
    ) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable,
    {
        let Some(limit) = options.get_timeout() else {
            return self.spawn_async(input, task);
        };
        assert_portable(&task);
        // As in `spawn_async`.
        #[cfg(feature = "tokio")]
        let _tokio = (!crate::runner::is_loop_thread_of(&self.shared))
            .then(|| polyexec_core::enter_tokio(&self.tokio));
        match catch_task(|| task(input)) {
            Ok(future) => {
                let expiry = Expiry::new();
                self.submit_timed_counted(
                    traced!(OkOutput::new(future), "coroutine", "async", F),
                    TimedCount::new(&expiry),
                )
                .with_expiry(limit, expiry)
            }
            Err(err) => {
                self.shared.counters.count_submitted();
                refused(&self.shared, err)
            }
        }
    }

    fn workers(&self) -> usize {
        self.shared.size
    }

    /// Started tasks are those that have waited (they are in the registry of waiting tasks)
    /// and those the loop threads are polling now; the other unfinished ones are queued.
    fn metrics(&self) -> Metrics {
        self.shared
            .counters
            .snapshot_started_gated(&self.shared.gate, self.shared.started_estimate())
    }

    /// 64: `map` runs 64 inputs per loop task. A loop task is cheap, but with one input each,
    /// `map`'s default bound on inputs in flight (eight chunks per loop thread) keeps the
    /// caller and the loop waking each other for every few inputs. The price: each chunk holds
    /// its loop thread for 64 inputs in a row; pass `MapOptions::chunk_size(1)` to interleave
    /// other tasks between single inputs.
    fn preferred_chunk_size(&self) -> usize {
        MAP_CHUNK
    }

    fn backend_name(&self) -> &'static str {
        "coroutine"
    }

    fn shutdown(&self) {
        self.shared.shutdown(false);
    }

    fn shutdown_now(&self) {
        self.shared.shutdown(true);
    }

    fn shutdown_timeout(&self, limit: Duration) -> bool {
        let shared = Arc::clone(&self.shared);
        let done = polyexec_core::run_bounded(limit, move || shared.shutdown(true));
        if !done {
            self.detached.store(true, Ordering::Release);
        }
        done
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        if !self.detached.load(Ordering::Acquire) {
            self.shared.shutdown(false);
        }
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.shared.phase.load(Ordering::Acquire) {
            RUNNING => "running",
            DRAINING => "draining",
            _ => "stopping",
        };
        f.debug_struct("EventLoop")
            .field("threads", &self.shared.size)
            .field("phase", &phase)
            .field("accepting", &!self.shared.gate.is_closed())
            .field("task_timeout", &self.shared.task_timeout)
            .finish_non_exhaustive()
    }
}

/// Configures an [`EventLoop`].
///
/// # Examples
///
/// ```
/// use polyexec_core::Executor;
/// let event_loop = polyexec_coroutine::EventLoop::builder().threads(2).build()?;
/// assert_eq!(event_loop.workers(), 2);
/// # Ok::<(), polyexec_core::BuildError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventLoopBuilder {
    threads: Option<usize>,
    thread_name: Option<String>,
    stack_size: Option<usize>,
    task_timeout: Option<Duration>,
    on_worker_start: Option<Hook>,
    on_worker_stop: Option<Hook>,
    #[cfg(feature = "tokio")]
    tokio_handle: Option<tokio::runtime::Handle>,
}

/// A lifecycle hook of the builder, called with the loop thread's index.
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Arc<dyn Fn(usize) + Send + Sync>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook")
    }
}

impl EventLoopBuilder {
    /// Runs `init(thread_index)` on each loop thread before it runs any task. `build()` waits
    /// for every one and fails if one panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// static STARTED: AtomicUsize = AtomicUsize::new(0);
    ///
    /// let event_loop = polyexec_coroutine::EventLoop::builder()
    ///     .threads(2)
    ///     .on_worker_start(|_index| { STARTED.fetch_add(1, Ordering::SeqCst); })
    ///     .build()?;
    /// assert_eq!(STARTED.load(Ordering::SeqCst), 2);
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn on_worker_start(mut self, init: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_start = Some(Hook(Arc::new(init)));
        self
    }

    /// Runs `stop(thread_index)` on each loop thread as it exits at shutdown, after its last
    /// task. A panic in it is caught and ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use polyexec_core::Executor;
    /// static STOPPED: AtomicUsize = AtomicUsize::new(0);
    ///
    /// let event_loop = polyexec_coroutine::EventLoop::builder()
    ///     .on_worker_stop(|_index| { STOPPED.fetch_add(1, Ordering::SeqCst); })
    ///     .build()?;
    /// event_loop.shutdown(); // returns once the loop threads are gone
    /// assert_eq!(STOPPED.load(Ordering::SeqCst), 1);
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn on_worker_stop(mut self, stop: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_stop = Some(Hook(Arc::new(stop)));
        self
    }

    /// Number of loop threads sharing the loop's task queue. Default: 1, the asyncio model.
    ///
    /// With more than one, ready tasks run in parallel and a blocking task stalls only its
    /// own thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = polyexec_coroutine::EventLoop::builder().threads(4);
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Prefix of the loop threads' names; thread `i` is named `{prefix}-{i}`.
    /// Default: `polyexec-loop`.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = polyexec_coroutine::EventLoop::builder().thread_name("net");
    /// ```
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = Some(prefix.into());
        self
    }

    /// Stack size of each loop thread, in bytes. Default: the standard library's.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = polyexec_coroutine::EventLoop::builder().stack_size(4 << 20);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Time limit for each async task, counted from its first poll. A task still unfinished
    /// then is dropped at its next `.await` and resolves with
    /// [`TaskError::TimedOut`]. Blocking tasks cannot be interrupted and are not limited.
    /// Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use polyexec_core::Executor;
    ///
    /// let event_loop = polyexec_coroutine::EventLoop::builder()
    ///     .task_timeout(Duration::from_millis(10))
    ///     .build()?;
    /// let handle = event_loop.spawn_async(3600u64, |secs: u64| async move {
    ///     polyexec_core::sleep(Duration::from_secs(secs)).await;
    /// });
    /// assert!(handle.join().unwrap_err().is_timeout());
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Runs tasks in the context of the caller's tokio runtime instead of one of the loop's own.
    ///
    /// Without this option the loop starts a runtime of its own (one tokio thread that drives
    /// I/O and timers, docs/tokio.md says why). With it, the caller keeps the runtime running:
    /// a multi-thread runtime drives its drivers on its own threads; a current-thread runtime
    /// only while its `block_on` runs, so tasks that wait on tokio resources progress only then.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::Executor;
    ///
    /// let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    /// let event_loop = polyexec_coroutine::EventLoop::builder()
    ///     .tokio_handle(rt.handle().clone())
    ///     .build()?;
    /// let slept = event_loop.spawn_async(1u64, |ms: u64| async move {
    ///     tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    ///     ms
    /// });
    /// assert_eq!(slept.join()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn tokio_handle(mut self, handle: tokio::runtime::Handle) -> Self {
        self.tokio_handle = Some(handle);
        self
    }

    /// Starts the loop threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidConfig`] for zero threads or a zero time limit;
    /// [`BuildError::Start`] if a thread cannot be spawned or an
    /// [`on_worker_start`](Self::on_worker_start) hook panics (the threads already started are
    /// stopped first).
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::BuildError;
    /// let err = polyexec_coroutine::EventLoop::builder().threads(0).build().unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidConfig(_)));
    /// ```
    pub fn build(self) -> Result<EventLoop, BuildError> {
        let size = match self.threads {
            Some(0) => {
                return Err(BuildError::InvalidConfig(
                    "an event loop needs at least 1 thread".into(),
                ));
            }
            Some(n) => n,
            None => 1,
        };
        if self.task_timeout == Some(Duration::ZERO) {
            return Err(BuildError::InvalidConfig(
                "task_timeout must be longer than zero".into(),
            ));
        }
        polyexec_core::install_panic_hook();
        let prefix = self.thread_name.as_deref().unwrap_or("polyexec-loop");
        let shared = Arc::new(Shared {
            executor: async_executor::Executor::new(),
            gate: SubmitGate::default(),
            phase: AtomicU8::new(RUNNING),
            drained: AtomicBool::new(false),
            idle: (0..size).map(|_| AtomicWaker::new()).collect(),
            waiting: Mutex::new(Slab::new()),
            polling: (0..size).map(|_| Polling::default()).collect(),
            threads: Mutex::new(Vec::with_capacity(size)),
            stop_counted: AtomicBool::new(false),
            stop_uncounted: AtomicBool::new(false),
            size,
            counters: Counters::new(size),
            task_timeout: self.task_timeout,
            #[cfg(feature = "tokio")]
            tokio: match self.tokio_handle.clone() {
                Some(handle) => polyexec_core::TokioRuntime::from_handle(handle),
                None => polyexec_core::TokioRuntime::new(&format!("{prefix}-tokio"))?,
            },
        });
        // Made first, so that a failed start below shuts the started threads down on drop.
        let event_loop = EventLoop {
            shared: Arc::clone(&shared),
            #[cfg(feature = "tokio")]
            tokio: shared
                .tokio
                .handle()
                .expect("the runtime stops only at shutdown"),
            detached: AtomicBool::new(false),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for index in 0..size {
            let mut builder = thread::Builder::new().name(format!("{prefix}-{index}"));
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            let thread_shared = Arc::clone(&shared);
            let hooks = runner::Hooks {
                start: self.on_worker_start.clone(),
                stop: self.on_worker_stop.clone(),
                ready: ready_tx.clone(),
            };
            match builder.spawn(move || runner::run(thread_shared, index, hooks)) {
                Ok(handle) => shared
                    .threads
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(handle),
                Err(err) => {
                    return Err(BuildError::Start(format!(
                        "could not spawn event-loop thread {index}: {err}"
                    )));
                }
            }
        }
        drop(ready_tx);
        for _ in 0..size {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    return Err(BuildError::Start(format!(
                        "an event-loop thread's start hook failed: {err}"
                    )));
                }
                Err(_) => {
                    return Err(BuildError::Start(
                        "an event-loop thread exited early".into(),
                    ));
                }
            }
        }
        Ok(event_loop)
    }
}
