//! The [`Executor`] trait: one interface over coroutines, threads and processes.

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::map::{Map, MapStream, MapUnordered};
use crate::{AsyncTask, BlockingTask, Metrics, Portable, TaskHandle};

/// Runs portable tasks; implemented by every backend.
///
/// Code written against `E: Executor` runs unchanged on the coroutine event loop, the thread pool
/// and the subprocess pool. A *portable task* is a closure or `fn` item that captures nothing
/// (data travels in its input) and whose input and output are [`Portable`]; the same closure
/// literal can be given to any backend. A capturing closure is refused at compile time.
///
/// Methods never block on the task: `spawn` returns a [`TaskHandle`] at once, and errors
/// (including submission after shutdown) arrive through the handle.
///
/// # Examples
///
/// A function generic over the backend:
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{Executor, TaskError};
///
/// fn sum_of_squares<E: Executor>(exec: &E, n: u64) -> Result<u64, TaskError> {
///     exec.map(1..=n, |x: u64| x * x).sum()
/// }
/// # let _ = sum_of_squares::<polyexec_core::Inline>;
/// ```
///
/// A capturing closure does not compile:
///
/// ```compile_fail,E0080
/// # extern crate polyexec_core as polyexec;
/// use polyexec::Executor;
/// fn bad<E: Executor>(exec: &E) {
///     let offset = 10u64;
///     let _ = exec.spawn(1u64, move |x: u64| x + offset).join();
/// }
/// # bad(&polyexec_core::Inline);
/// ```
pub trait Executor: Send + Sync {
    /// Submits a blocking task `task(input)`.
    ///
    /// Where it runs depends on the backend: on an event-loop thread (stalling it while it runs,
    /// as in asyncio), on a pool thread, or in a worker process.
    fn spawn<F, In, Out>(&self, input: In, task: F) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable;

    /// Submits an async task: `task(input)` makes a future, which the backend drives.
    ///
    /// Where `task(input)` itself is called depends on the backend: on the event loop, at
    /// submission on the calling thread (only the future goes to the loop); on a pool thread; or
    /// in a worker process. Keep a task's work inside its `async` block, and the call is only
    /// the making of a future everywhere. A panic in `task` is the task's
    /// [`TaskError::Panicked`](crate::TaskError::Panicked) on every backend.
    fn spawn_async<F, In, Fut>(&self, input: In, task: F) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable;

    /// [`spawn`](Self::spawn) with per-task options: a time limit
    /// ([`SpawnOptions::timeout`]).
    ///
    /// With a time limit, the handle resolves with
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut) once the limit, counted from
    /// submission (time in the queue included), passes, on every backend; the task is then
    /// cancelled as [`TaskHandle::cancel`] does. A blocking task already running on a thread (the
    /// thread pool, or a blocking task on the event loop, which stalls the loop meanwhile)
    /// cannot be interrupted: it runs on and its result is discarded. The subprocess backend
    /// kills the worker process running it and starts another.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use std::time::Duration;
    /// use polyexec::{Executor, SpawnOptions};
    /// # let exec = polyexec_core::Inline;
    /// let limited = SpawnOptions::new().timeout(Duration::from_secs(60));
    /// assert_eq!(exec.spawn_with(2u8, |x: u8| x * 2, limited).join(), Ok(4));
    /// ```
    fn spawn_with<F, In, Out>(&self, input: In, task: F, options: SpawnOptions) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        options.apply(self.spawn(input, task))
    }

    /// [`spawn_async`](Self::spawn_async) with per-task options; see
    /// [`spawn_with`](Self::spawn_with). A running async task over its limit is dropped at its
    /// next `.await` on every backend (in its worker process, for the subprocess backend).
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use std::time::Duration;
    /// use polyexec::{Executor, SpawnOptions};
    /// # let exec = polyexec_core::Inline;
    /// let options = SpawnOptions::new().timeout(Duration::from_secs(60));
    /// let quick = exec.spawn_async_with(5u64, |ms: u64| async move {
    ///     polyexec::sleep(Duration::from_millis(ms)).await;
    ///     ms
    /// }, options);
    /// assert_eq!(quick.join(), Ok(5)); // in time: the value, as without a limit
    /// ```
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
        options.apply(self.spawn_async(input, task))
    }

    /// Submits one blocking task per input, eagerly; handles in input order.
    ///
    /// For a lazy, bounded version that batches, use [`map`](Self::map).
    fn spawn_all<F, I, Out>(&self, inputs: I, task: F) -> Vec<TaskHandle<Out>>
    where
        F: BlockingTask<I::Item, Out>,
        I: IntoIterator,
        I::Item: Portable,
        Out: Portable,
    {
        inputs
            .into_iter()
            .map(|input| self.spawn(input, task))
            .collect()
    }

    /// Applies `task` to every input; results come back in input order.
    ///
    /// Lazy: inputs are taken from the iterator only as results are consumed, with a bounded
    /// number in flight, so an endless iterator is fine. Inputs are sent in chunks of
    /// [`preferred_chunk_size`](Self::preferred_chunk_size), or of a size the backend adapts to
    /// the task ([`adapts_chunk_size`](Self::adapts_chunk_size)); tune both with
    /// [`map_with`](Self::map_with). A panic in one element fails that element alone.
    fn map<F, I, Out>(&self, inputs: I, task: F) -> Map<'_, Self, F, I::IntoIter, Out>
    where
        F: BlockingTask<I::Item, Out>,
        I: IntoIterator,
        I::Item: Portable,
        Out: Portable,
        Self: Sized,
    {
        self.map_with(inputs, task, MapOptions::default())
    }

    /// [`map`](Self::map) with explicit chunk size and in-flight bound.
    fn map_with<F, I, Out>(
        &self,
        inputs: I,
        task: F,
        options: MapOptions,
    ) -> Map<'_, Self, F, I::IntoIter, Out>
    where
        F: BlockingTask<I::Item, Out>,
        I: IntoIterator,
        I::Item: Portable,
        Out: Portable,
        Self: Sized,
    {
        Map::new(self, inputs.into_iter(), task, options)
    }

    /// [`map`](Self::map) with results in the order the work finishes, not the input order.
    ///
    /// Lazy and bounded in flight as `map` is, with the same chunking (a chunk's results come
    /// out together, in their input order), so a slow input does not hold back the results
    /// behind it. Built on [`spawn`](Self::spawn): every backend has it.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::Executor;
    /// # let exec = polyexec_core::Inline;
    /// let mut squares: Vec<u64> = exec
    ///     .map_unordered(1..=100u64, |x: u64| x * x)
    ///     .collect::<Result<_, _>>()?;
    /// squares.sort_unstable();
    /// assert_eq!(squares[99], 10_000);
    /// # Ok::<(), polyexec::TaskError>(())
    /// ```
    fn map_unordered<F, I, Out>(
        &self,
        inputs: I,
        task: F,
    ) -> MapUnordered<'_, Self, F, I::IntoIter, Out>
    where
        F: BlockingTask<I::Item, Out>,
        I: IntoIterator,
        I::Item: Portable,
        Out: Portable,
        Self: Sized,
    {
        MapUnordered::new(self, inputs.into_iter(), task, MapOptions::default())
    }

    /// [`map`](Self::map) as a [`Stream`](futures::Stream) for async code: results in input
    /// order, inputs taken lazily as results are, a bounded number in flight, and no thread
    /// ever blocked waiting (the stream's task is woken when a result is ready).
    ///
    /// Built on [`spawn`](Self::spawn): every backend has it. On an event loop, `.await` it
    /// where `map` (which blocks) would be refused.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use futures::StreamExt;
    /// use polyexec::Executor;
    /// # let exec = polyexec_core::Inline;
    /// let doubled: Vec<_> = polyexec::block_on(exec.map_stream(0..5u32, |x: u32| x * 2).collect());
    /// assert_eq!(doubled, vec![Ok(0), Ok(2), Ok(4), Ok(6), Ok(8)]);
    /// ```
    fn map_stream<F, I, Out>(&self, inputs: I, task: F) -> MapStream<'_, Self, F, I::IntoIter, Out>
    where
        F: BlockingTask<I::Item, Out>,
        I: IntoIterator,
        I::Item: Portable,
        Out: Portable,
        Self: Sized,
    {
        MapStream::new(self, inputs.into_iter(), task, MapOptions::default())
    }

    /// How many tasks can run at the same time (threads, loop threads or worker processes).
    fn workers(&self) -> usize;

    /// What the executor has done so far: tasks submitted, waiting, running, and how they
    /// ended; workers alive and restarted. See [`Metrics`] for what each counter means.
    ///
    /// Cheap enough to call in a progress loop: it reads the counters without stopping the
    /// workers. The default, for backends that keep no counters, reports only
    /// [`workers`](Self::workers).
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::Executor;
    /// # let exec = polyexec_core::Inline;
    /// let before = exec.metrics();
    /// let _ = exec.spawn(1u8, |x: u8| x + 1).join();
    /// println!("{:?}", exec.metrics()); // one line
    /// assert!(exec.metrics().succeeded() >= before.succeeded());
    /// ```
    fn metrics(&self) -> Metrics {
        Metrics::uncounted(self.workers())
    }

    /// The backend's name, as accepted by the facade's runtime choice: `"coroutine"`,
    /// `"thread"` or `"subprocess"`.
    fn backend_name(&self) -> &'static str;

    /// The chunk size [`map`](Self::map) uses when none is given: 1 where each task is cheap to
    /// hand over, larger where a hand-over costs a message to another process.
    fn preferred_chunk_size(&self) -> usize {
        1
    }

    /// Whether [`map`](Self::map) and its kin pick the chunk size themselves when none is given,
    /// instead of using [`preferred_chunk_size`](Self::preferred_chunk_size): from the number of
    /// inputs when the iterator knows it exactly, then from the rate results come back at, so
    /// that a chunk carries some tens of microseconds of work (a slow task runs one input per
    /// chunk, a trivial one thousands). The thread pool does; the default is `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::Executor;
    /// assert!(!polyexec::Inline.adapts_chunk_size());
    /// ```
    fn adapts_chunk_size(&self) -> bool {
        false
    }

    /// Graceful shutdown: refuses new tasks, finishes every task already submitted, then stops
    /// the workers. Returns when the workers are gone. Idempotent.
    fn shutdown(&self);

    /// Immediate shutdown: refuses new tasks, resolves every task that has not started with
    /// [`TaskError::ShutDown`](crate::TaskError::ShutDown), stops what can be stopped, and
    /// returns when the workers are gone. Every handle resolves. Idempotent.
    fn shutdown_now(&self);

    /// [`shutdown_now`](Self::shutdown_now), waiting at most `limit` for the workers to be gone;
    /// `true` if they were.
    ///
    /// Every handle still resolves as with `shutdown_now`. What a `false` leaves behind: worker
    /// threads still running a blocking task that cannot be interrupted (on the thread pool or
    /// the event loop) finish that task and then exit on their own, detached; the executor's
    /// drop then no longer waits for them. The thread pool and the event loop bound the wait;
    /// the default implementation, which the subprocess pool uses (its immediate shutdown kills
    /// its workers rather than wait for them), calls `shutdown_now` and returns `true`.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use std::time::Duration;
    /// use polyexec::Executor;
    /// # let exec = polyexec_core::Inline;
    /// assert!(exec.shutdown_timeout(Duration::from_secs(5)));
    /// ```
    fn shutdown_timeout(&self, limit: std::time::Duration) -> bool {
        let _ = limit;
        self.shutdown_now();
        true
    }
}

/// Runs `stop` on a thread of its own and waits at most `limit` for it: `true` if it returned
/// in time. For backend implementors of [`Executor::shutdown_timeout`]: `stop` is the backend's
/// immediate shutdown, which may wait for workers that are stuck. If no thread can be started,
/// `stop` runs on the calling thread, without a bound.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert!(polyexec_core::run_bounded(Duration::from_secs(5), || {}));
/// ```
pub fn run_bounded(limit: std::time::Duration, stop: impl FnOnce() + Send + 'static) -> bool {
    let (done, finished) = std::sync::mpsc::channel();
    // Shared, so that `stop` is still here to run if the thread cannot be started (a failed
    // spawn drops the closure it was given).
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(stop)));
    let theirs = std::sync::Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name("polyexec-shutdown".into())
        .spawn(move || {
            let stop = theirs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(stop) = stop {
                stop();
            }
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => finished.recv_timeout(limit).is_ok(),
        Err(_) => {
            let stop = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(stop) = stop {
                stop();
            }
            true
        }
    }
}

/// Tuning for [`Executor::map_with`].
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::MapOptions;
/// let options = MapOptions::new().chunk_size(256).max_in_flight(10_000);
/// assert_eq!(options.get_chunk_size(), Some(256));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    chunk_size: Option<NonZeroUsize>,
    max_in_flight: Option<NonZeroUsize>,
}

impl MapOptions {
    /// Defaults: the backend's preferred chunk size (or one it adapts to the task, see
    /// [`Executor::adapts_chunk_size`]), and eight chunks per worker (at least 1024 inputs) in
    /// flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inputs per message to a worker. Larger chunks amortize the hand-over; smaller ones balance
    /// load better. Zero is treated as one.
    pub fn chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = Some(NonZeroUsize::new(chunk_size).unwrap_or(NonZeroUsize::MIN));
        self
    }

    /// The most inputs submitted but not yet yielded. At least one chunk is always in flight.
    /// Zero is treated as one.
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = Some(NonZeroUsize::new(max_in_flight).unwrap_or(NonZeroUsize::MIN));
        self
    }

    /// The chunk size set with [`chunk_size`](Self::chunk_size), if any.
    pub fn get_chunk_size(&self) -> Option<usize> {
        self.chunk_size.map(NonZeroUsize::get)
    }

    /// The bound set with [`max_in_flight`](Self::max_in_flight), if any.
    pub fn get_max_in_flight(&self) -> Option<usize> {
        self.max_in_flight.map(NonZeroUsize::get)
    }
}

/// Per-task options for [`Executor::spawn_with`] and [`Executor::spawn_async_with`].
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use std::time::Duration;
/// use polyexec::SpawnOptions;
/// let options = SpawnOptions::new().timeout(Duration::from_secs(5));
/// assert_eq!(options.get_timeout(), Some(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpawnOptions {
    timeout: Option<Duration>,
}

impl SpawnOptions {
    /// No options: the same as [`Executor::spawn`].
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// assert_eq!(polyexec::SpawnOptions::new().get_timeout(), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The task's time limit, counted from submission: past it, the handle resolves with
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut) and the task is cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use std::time::Duration;
    /// let options = polyexec::SpawnOptions::new().timeout(Duration::from_millis(250));
    /// assert_eq!(options.get_timeout(), Some(Duration::from_millis(250)));
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The limit set with [`timeout`](Self::timeout), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// assert_eq!(polyexec::SpawnOptions::default().get_timeout(), None);
    /// ```
    pub fn get_timeout(&self) -> Option<std::time::Duration> {
        self.timeout
    }

    /// Applies the options to a handle just returned by a spawn.
    fn apply<T>(self, handle: TaskHandle<T>) -> TaskHandle<T> {
        match self.timeout {
            Some(limit) => handle.with_deadline(limit),
            None => handle,
        }
    }
}
