//! [`ThreadPool`] and its builder.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use async_task::Runnable;
use crossbeam_channel::{Receiver, Sender};
use pin_project_lite::pin_project;
use polyexec_core::{
    AsyncTask, BlockingTask, BuildError, Counters, Executor, Expiry, Metrics, Outcome, Portable,
    SpawnOptions, SubmitGate, TaskCount, TaskCounter, TaskError, TaskHandle, TimedCount,
    assert_portable, catch_async, catch_task,
};
use slab::Slab;

use crate::worker;
use polyexec_core::traced;

/// A message to the workers.
pub(crate) enum Msg {
    Run(Runnable),
    /// Exit after the messages queued before this one. One is sent per worker at shutdown.
    Stop,
}

/// State shared by the pool handle, its workers and the schedule functions of async tasks.
pub(crate) struct Shared {
    pub(crate) tx: Sender<Msg>,
    pub(crate) rx: Receiver<Msg>,
    /// Every submission passes through it, which counts them for `metrics()`.
    gate: SubmitGate,
    /// Set by an immediate shutdown: queued and woken tasks are dropped instead of run (their
    /// handles resolve with `ShutDown`).
    pub(crate) aborting: AtomicBool,
    /// Async tasks that have not finished, with a waker for each. Blocking tasks are not here:
    /// they are always either in the queue or on a worker, and both are drained at shutdown. An
    /// async task can be neither (waiting for a timer), so shutdown needs this list to find it.
    live_async: Mutex<Slab<Waker>>,
    async_done: Condvar,
    stop_sent: AtomicBool,
    workers: Mutex<Vec<JoinHandle<()>>>,
    size: usize,
    /// What `metrics()` reads; each worker counts into its own stripe.
    pub(crate) counters: Arc<Counters>,
    /// The runtime whose context every worker enters, so that tasks can use tokio types.
    #[cfg(feature = "tokio")]
    pub(crate) tokio: polyexec_core::TokioRuntime,
}

impl Shared {
    fn lock_live(&self) -> MutexGuard<'_, Slab<Waker>> {
        self.live_async
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The schedule function of async tasks: queue the task, or drop it (resolving its handle
    /// with `ShutDown`) once an immediate shutdown has begun.
    fn schedule(&self, runnable: Runnable) {
        if self.aborting.load(Ordering::Acquire) {
            let _scope = self.counters.enter(None, Outcome::ShutDown);
            drop(runnable);
        } else if let Err(err) = self.tx.send(Msg::Run(runnable)) {
            // Unreachable while `self` holds the receiver; dropping cancels the task anyway.
            drop(err);
        }
    }

    fn unregister(&self, key: usize) {
        let mut live = self.lock_live();
        live.remove(key);
        if live.is_empty() && self.gate.is_closed() {
            self.async_done.notify_all();
        }
    }

    /// `true` on the threads of this pool.
    fn is_own_worker(self: &Arc<Self>) -> bool {
        worker::current_pool() == Arc::as_ptr(self) as usize
    }

    /// `true` if a graceful shutdown would have to wait for tasks: some are queued or waiting.
    /// (A blocking task already running is not counted.)
    fn has_work(&self) -> bool {
        !self.rx.is_empty() || !self.lock_live().is_empty()
    }

    fn shutdown(self: &Arc<Self>, now: bool) {
        // Reported by the first call only (the gate closes once).
        #[cfg(feature = "tracing")]
        if !self.gate.is_closed() {
            tracing::info!(backend = "thread", immediate = now, "shutdown requested");
        }
        // Waiting here for queued or waiting tasks would stall an event loop or a current-thread
        // tokio runtime: the shutdown goes on without this thread, which then panics with advice.
        let refused =
            !now && !thread::panicking() && !polyexec_core::may_block() && self.has_work();
        if refused || self.is_own_worker() {
            // Waiting here for the workers would wait for this very thread. Close the gate so
            // the pool takes no more work, and let another thread finish the shutdown.
            self.gate.close();
            if now {
                self.abort_pending();
            }
            let shared = Arc::clone(self);
            let spawned = thread::Builder::new()
                .name("polyexec-thread-shutdown".into())
                .spawn(move || shared.finish_shutdown());
            if spawned.is_err() {
                // No thread to finish with: workers still stop once the stop messages arrive.
                self.send_stops();
            }
            if refused {
                polyexec_core::assert_may_block();
            }
            return;
        }
        self.gate.close();
        if now {
            self.abort_pending();
        }
        self.finish_shutdown();
    }

    /// The immediate part of `shutdown_now`: drop every queued task and wake every waiting async
    /// task so that its schedule function drops it too.
    fn abort_pending(&self) {
        self.aborting.store(true, Ordering::Release);
        // The tasks dropped here, and by the schedule calls the wake-ups below make, count as
        // shut down.
        let _scope = self.counters.enter(None, Outcome::ShutDown);
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Run(runnable) => drop(runnable),
                // A stop from an earlier shutdown: put it back for a worker.
                Msg::Stop => {
                    let _ = self.tx.send(Msg::Stop);
                    break;
                }
            }
        }
        let wakers: Vec<Waker> = self.lock_live().iter().map(|(_, w)| w.clone()).collect();
        // Woken outside the lock: waking drops the task, which unregisters it (and locks).
        for waker in wakers {
            waker.wake();
        }
    }

    fn finish_shutdown(&self) {
        {
            let mut live = self.lock_live();
            while !live.is_empty() {
                live = self
                    .async_done
                    .wait(live)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        self.send_stops();
        // Held while joining, so a concurrent shutdown returns only once the workers are gone.
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        #[cfg(feature = "tracing")]
        let joined = !workers.is_empty();
        for handle in workers.drain(..) {
            // A worker never panics (tasks are caught); if one did, it is gone all the same.
            let _ = handle.join();
        }
        // No task of the pool's can run any more; what tasks handed to `tokio::spawn` goes too.
        #[cfg(feature = "tokio")]
        self.tokio.shutdown();
        #[cfg(feature = "tracing")]
        if joined {
            tracing::info!(
                backend = "thread",
                "shutdown complete: the workers are gone"
            );
        }
    }

    fn send_stops(&self) {
        if !self.stop_sent.swap(true, Ordering::AcqRel) {
            for _ in 0..self.size {
                let _ = self.tx.send(Msg::Stop);
            }
        }
    }
}

/// A pool of OS threads running portable tasks; the thread backend of polyexec.
///
/// Build one with [`ThreadPool::builder`] (or [`ThreadPool::new`] for the defaults: one worker
/// per available CPU). Submit through the [`Executor`] trait; [`spawn_capturing`] and
/// [`spawn_capturing_async`] accept non-portable closures that capture their environment.
///
/// Dropping the pool shuts it down gracefully: it waits for every submitted task to finish.
///
/// [`spawn_capturing`]: ThreadPool::spawn_capturing
/// [`spawn_capturing_async`]: ThreadPool::spawn_capturing_async
///
/// # Examples
///
/// ```
/// use polyexec_core::Executor;
/// use polyexec_thread::ThreadPool;
///
/// let pool = ThreadPool::new()?;
/// let squares: Vec<u64> = pool.map(1..=5u64, |x: u64| x * x).collect::<Result<_, _>>()?;
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ThreadPool {
    shared: Arc<Shared>,
    /// Set when `shutdown_timeout` gave up waiting: the threads left finish detached, and
    /// dropping the executor must not wait for them after all.
    detached: AtomicBool,
}

impl ThreadPool {
    /// A pool with the default settings (see [`ThreadPoolBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = polyexec_thread::ThreadPool::new()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn new() -> Result<Self, BuildError> {
        Self::builder().build()
    }

    /// A builder to configure the pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = polyexec_thread::ThreadPool::builder()
    ///     .workers(4)
    ///     .thread_name("compute")
    ///     .stack_size(4 << 20)
    ///     .build()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// Submits a closure that may capture its environment: not portable, and not available on
    /// the subprocess backend. The output need not be serializable.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = polyexec_thread::ThreadPool::builder().workers(1).build()?;
    /// let data = vec![1, 2, 3];
    /// let handle = pool.spawn_capturing(move || data.iter().sum::<i32>());
    /// assert_eq!(handle.join()?, 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_capturing<T, F>(&self, task: F) -> TaskHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let count = TaskCount::new();
        self.submit_blocking(traced!(
            async move {
                let result = catch_task(task);
                count.finish(&result);
                result
            },
            "thread",
            "blocking",
            F
        ))
    }

    /// Submits a future that may capture its environment: not portable. It is polled on the
    /// worker threads.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = polyexec_thread::ThreadPool::builder().workers(1).build()?;
    /// let name = String::from("polyexec");
    /// let handle = pool.spawn_capturing_async(async move { name.len() });
    /// assert_eq!(handle.join()?, 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_capturing_async<T, Fut>(&self, future: Fut) -> TaskHandle<T>
    where
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_async(
            traced!(
                catch_async((), move |()| future_once(future)),
                "thread",
                "async",
                Fut
            ),
            TaskCount::new(),
        )
    }

    /// Queues a future that completes in its first poll (a blocking task). It is never woken,
    /// so its schedule function is never called: a zero-sized no-op, with no reference to the
    /// pool to count.
    #[inline]
    fn submit_blocking<T, Fut>(&self, future: Fut) -> TaskHandle<T>
    where
        Fut: Future<Output = Result<T, TaskError>> + Send + 'static,
        T: Send + 'static,
    {
        let shared = &*self.shared;
        // The gate counts the task submitted, refused or not.
        if !shared.gate.enter() {
            // The future's `TaskCount` counts the refusal, as a shutdown's.
            let _scope = shared.counters.enter(None, Outcome::ShutDown);
            drop(future);
            return TaskHandle::ready(Err(TaskError::ShutDown));
        }
        let (runnable, task) = async_task::spawn(future, drop_runnable);
        // Cannot fail: `shared` owns a receiver. If it ever did, the runnable is dropped with the
        // error and the handle resolves with `ShutDown`.
        let _ = shared.tx.send(Msg::Run(runnable));
        shared.gate.leave();
        TaskHandle::from_task(task)
    }

    /// Queues a future that may wait, which counts its end with `count`; it is registered so
    /// that shutdown can find it.
    fn submit_async<T, Fut, C>(&self, future: Fut, count: C) -> TaskHandle<T>
    where
        Fut: Future<Output = Result<T, TaskError>> + Send + 'static,
        T: Send + 'static,
        C: TaskCounter,
    {
        let shared = &self.shared;
        // The gate counts the task submitted, refused or not.
        if !shared.gate.enter() {
            return refused(shared, count);
        }
        let future = async move {
            let result = future.await;
            count.finish(&result);
            result
        };
        let (runnable, task) = {
            let mut live = shared.lock_live();
            let entry = live.vacant_entry();
            let registration = Registration {
                shared: Arc::clone(shared),
                key: entry.key(),
            };
            let future = Registered {
                future,
                registration,
            };
            let schedule_shared = Arc::clone(shared);
            let (runnable, task) = async_task::spawn(future, move |r| schedule_shared.schedule(r));
            entry.insert(runnable.waker());
            (runnable, task)
        };
        let _ = shared.tx.send(Msg::Run(runnable));
        shared.gate.leave();
        TaskHandle::from_task(task)
    }
}

/// Turns an owned future into the `Fn(()) -> Fut` shape `catch_async` takes.
async fn future_once<Fut: Future>(future: Fut) -> Fut::Output {
    future.await
}

/// The handle of an async task refused at submission; its count, dropped unfinished here,
/// counts it as shut down.
#[cold]
fn refused<T, C: TaskCounter>(shared: &Shared, count: C) -> TaskHandle<T> {
    let _scope = shared.counters.enter(None, Outcome::ShutDown);
    drop(count);
    TaskHandle::ready(Err(TaskError::ShutDown))
}

fn drop_runnable(runnable: Runnable) {
    drop(runnable);
}

pin_project! {
    /// An async task's future with its entry in the live list.
    ///
    /// `abort_pending` sets `aborting` and then wakes every live task, so that each is
    /// rescheduled and dropped by `schedule`. A wake-up is lost, though, if it comes while the
    /// task is already scheduled: a worker that took the task from the queue just before
    /// `aborting` was set then polls it, the task returns `Pending`, and nothing would wake it
    /// again (and `finish_shutdown` would wait for it forever). So after every `Pending`, the task
    /// looks at `aborting` itself and, if set, wakes itself to be dropped. No wake-up can fall
    /// between the two checks: `abort_pending` stores `aborting` (`Release`) before its wake-ups,
    /// whose writes to the task's state the worker's `run` reads (`Acquire`) before this poll; a
    /// wake-up that comes after the load instead finds the task running or idle, and reschedules
    /// it.
    struct Registered<F> {
        #[pin]
        future: F,
        registration: Registration,
    }
}

impl<F: Future> Future for Registered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let poll = this.future.poll(cx);
        if poll.is_pending() && this.registration.shared.aborting.load(Ordering::Acquire) {
            cx.waker().wake_by_ref();
        }
        poll
    }
}

/// Removes an async task from the live list when its future is dropped (finished or cancelled).
struct Registration {
    shared: Arc<Shared>,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.unregister(self.key);
    }
}

impl Executor for ThreadPool {
    #[inline]
    fn spawn<F, In, Out>(&self, input: In, task: F) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        assert_portable(&task);
        // Zero-sized: counting adds nothing to the task's cell.
        let count = TaskCount::new();
        self.submit_blocking(traced!(
            async move {
                let result = catch_task(move || task(input));
                count.finish(&result);
                result
            },
            "thread",
            "blocking",
            F
        ))
    }

    fn spawn_async<F, In, Fut>(&self, input: In, task: F) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable,
    {
        assert_portable(&task);
        self.submit_async(
            traced!(catch_async(input, task), "thread", "async", F),
            TaskCount::new(),
        )
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
        let count = TimedCount::new(&expiry);
        self.submit_blocking(traced!(
            async move {
                let result = catch_task(move || task(input));
                count.finish(&result);
                result
            },
            "thread",
            "blocking",
            F
        ))
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
        let expiry = Expiry::new();
        self.submit_async(
            traced!(catch_async(input, task), "thread", "async", F),
            TimedCount::new(&expiry),
        )
        .with_expiry(limit, expiry)
    }

    fn workers(&self) -> usize {
        self.shared.size
    }

    fn metrics(&self) -> Metrics {
        self.shared
            .counters
            .snapshot_gated(&self.shared.gate, self.shared.rx.len())
    }

    fn backend_name(&self) -> &'static str {
        "thread"
    }

    /// `true`: a hand-over to a thread is cheap enough that one input per task suits slow tasks,
    /// and costly enough that trivial ones need thousands per task, so `map` measures which it
    /// has.
    fn adapts_chunk_size(&self) -> bool {
        true
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

impl Drop for ThreadPool {
    fn drop(&mut self) {
        if !self.detached.load(Ordering::Acquire) {
            self.shared.shutdown(false);
        }
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("workers", &self.shared.size)
            .field("queued", &self.shared.rx.len())
            .field("shut_down", &self.shared.gate.is_closed())
            .finish()
    }
}

type Initializer = Arc<dyn Fn(usize) + Send + Sync + 'static>;

/// Configures a [`ThreadPool`].
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// static STARTED: AtomicUsize = AtomicUsize::new(0);
///
/// let pool = polyexec_thread::ThreadPool::builder()
///     .workers(3)
///     .on_worker_start(|_index| { STARTED.fetch_add(1, Ordering::SeqCst); })
///     .build()?;
/// assert_eq!(STARTED.load(Ordering::SeqCst), 3); // build() waits for every initializer
/// # Ok::<(), polyexec_core::BuildError>(())
/// ```
#[derive(Clone, Default)]
pub struct ThreadPoolBuilder {
    workers: Option<usize>,
    thread_name: Option<String>,
    stack_size: Option<usize>,
    on_worker_start: Option<Initializer>,
    on_worker_stop: Option<Initializer>,
    #[cfg(feature = "tokio")]
    tokio_handle: Option<tokio::runtime::Handle>,
}

impl ThreadPoolBuilder {
    /// Number of worker threads. Default: [`std::thread::available_parallelism`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Prefix of the worker threads' names; worker `i` is named `{prefix}-{i}`.
    /// Default: `polyexec-thread`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = Some(prefix.into());
        self
    }

    /// Stack size of each worker thread, in bytes. Default: the standard library's.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Runs `init(worker_index)` on each worker thread before it takes any task. `build()` waits
    /// for every initializer and fails if one panics.
    pub fn on_worker_start(mut self, init: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_start = Some(Arc::new(init));
        self
    }

    /// Runs `stop(worker_index)` on each worker thread as it exits, after its last task (at
    /// shutdown, graceful or immediate). A panic in it is caught and ignored: the thread exits
    /// all the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use polyexec_core::Executor;
    /// static STOPPED: AtomicUsize = AtomicUsize::new(0);
    ///
    /// let pool = polyexec_thread::ThreadPool::builder()
    ///     .workers(2)
    ///     .on_worker_stop(|_index| { STOPPED.fetch_add(1, Ordering::SeqCst); })
    ///     .build()?;
    /// pool.shutdown(); // returns once the workers are gone
    /// assert_eq!(STOPPED.load(Ordering::SeqCst), 2);
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn on_worker_stop(mut self, stop: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_stop = Some(Arc::new(stop));
        self
    }

    /// Runs tasks in the context of the caller's tokio runtime instead of one of the pool's own.
    ///
    /// Without this option the pool starts a runtime of its own (one tokio thread that drives
    /// I/O and timers). With it, the caller keeps the runtime running: a multi-thread runtime
    /// drives its drivers on its own threads; a current-thread runtime only while its
    /// `block_on` runs, so tasks that wait on tokio resources make progress only then.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec_core::Executor;
    ///
    /// let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    /// let pool = polyexec_thread::ThreadPool::builder()
    ///     .workers(1)
    ///     .tokio_handle(rt.handle().clone())
    ///     .build()?;
    /// let slept = pool.spawn_async(1u64, |ms: u64| async move {
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

    /// Starts the worker threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidConfig`] for zero workers; [`BuildError::Start`] if a thread cannot be
    /// spawned or an initializer panics (the threads already started are stopped first).
    pub fn build(self) -> Result<ThreadPool, BuildError> {
        let size = match self.workers {
            Some(0) => {
                return Err(BuildError::InvalidConfig(
                    "workers must be at least 1".into(),
                ));
            }
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, |n| n.get()),
        };
        polyexec_core::install_panic_hook();
        let prefix = self.thread_name.as_deref().unwrap_or("polyexec-thread");
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            tx,
            rx,
            gate: SubmitGate::default(),
            aborting: AtomicBool::new(false),
            live_async: Mutex::new(Slab::new()),
            async_done: Condvar::new(),
            stop_sent: AtomicBool::new(false),
            workers: Mutex::new(Vec::with_capacity(size)),
            size,
            counters: Counters::new(size),
            #[cfg(feature = "tokio")]
            tokio: match self.tokio_handle.clone() {
                Some(handle) => polyexec_core::TokioRuntime::from_handle(handle),
                None => polyexec_core::TokioRuntime::new(&format!("{prefix}-tokio"))?,
            },
        });
        let pool = ThreadPool {
            shared: Arc::clone(&shared),
            detached: AtomicBool::new(false),
        };
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<(), TaskError>>(size);
        for index in 0..size {
            let mut builder = thread::Builder::new().name(format!("{prefix}-{index}"));
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            let worker_shared = Arc::clone(&shared);
            let hooks = worker::Hooks {
                start: self.on_worker_start.clone(),
                stop: self.on_worker_stop.clone(),
            };
            let ready = ready_tx.clone();
            let spawned = builder.spawn(move || worker::run(worker_shared, index, hooks, ready));
            match spawned {
                Ok(handle) => shared
                    .workers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(handle),
                Err(err) => {
                    // Fewer workers than stop messages is harmless: extra stops stay queued.
                    return Err(BuildError::Start(format!(
                        "could not spawn worker thread {index}: {err}"
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
                        "a worker initializer failed: {err}"
                    )));
                }
                Err(_) => return Err(BuildError::Start("a worker thread exited early".into())),
            }
        }
        Ok(pool)
    }
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("workers", &self.workers)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .field("on_worker_start", &self.on_worker_start.is_some())
            .field("on_worker_stop", &self.on_worker_stop.is_some())
            .finish_non_exhaustive()
    }
}
