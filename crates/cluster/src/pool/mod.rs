//! [`ClusterPool`]: the submitting side of the cluster backend.

mod builder;
pub(crate) mod io;
mod local;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use polyexec_core::{
    AsyncTask, BlockingTask, Cancel, CodecStage, Counters, Executor, Metrics, Outcome, Portable,
    SpawnOptions, TaskError, TaskHandle, assert_portable,
};
use tokio::sync::mpsc;

pub use builder::ClusterPoolBuilder;

use crate::addr::{self, TaskAddr};
use crate::build_id::BuildId;
use crate::frame::{Request, kind};
use crate::settings::Settings;
use io::Command;
use local::LocalWorkers;

/// How long an immediate shutdown or a cancel waits for NATS to confirm that queued tasks are
/// deleted (the handles are resolved at once either way).
const CONFIRM: Duration = Duration::from_secs(5);

/// How long a graceful stop gives local workers to finish before they are killed.
const LOCAL_GRACE: Duration = Duration::from_secs(10);

/// Runs portable tasks on worker hosts anywhere, through NATS JetStream.
///
/// Tasks are queued in a JetStream work-queue stream under a subject of this executable's build
/// fingerprint; worker hosts running the same executable pull them, run them and publish the
/// result to this pool's own subject. Every handle resolves exactly once: a task that two hosts
/// ran (after a redelivery) resolves with the first result and the other is dropped.
///
/// Build one with [`ClusterPool::builder`]; see the crate documentation for worker hosts and
/// `docs/cluster.md` for deployment and semantics.
///
/// # Examples
///
/// ```no_run
/// use polyexec_core::Executor;
/// use polyexec_cluster::ClusterPool;
///
/// polyexec_cluster::init();
/// let pool = ClusterPool::builder()
///     .url("nats://127.0.0.1:4222")
///     .local_workers(2)
///     .build()?;
/// assert_eq!(pool.spawn(20u64, |n: u64| n * 2).join()?, 40);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClusterPool {
    inner: Arc<Inner>,
}

/// The pool itself, shared with a thread that finishes a shutdown a dropping thread must not
/// wait for.
struct Inner {
    shared: Arc<Shared>,
    slots: usize,
    time_limit: Option<Duration>,
    stop: Mutex<Stop>,
}

/// What stopping the pool has to take down; emptied by the first shutdown.
struct Stop {
    runtime: Option<tokio::runtime::Runtime>,
    local: Option<LocalWorkers>,
}

/// Delivers a task's outcome to its typed handle.
type Deliver = Box<dyn FnOnce(Result<Vec<u8>, TaskError>) + Send>;

struct Pending {
    deliver: Deliver,
    seq: Option<u64>,
}

#[derive(Default)]
struct State {
    closed: bool,
    pending: HashMap<u64, Pending>,
    by_seq: HashMap<u64, u64>,
}

/// What the pool's threads and its runtime's tasks share.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) build: BuildId,
    /// The subject this pool's results are published on.
    pub(crate) reply_to: String,
    /// The queue is this pool's own: its consumers are deleted when the pool stops.
    pub(crate) private_queue: bool,
    state: Mutex<State>,
    drained: Condvar,
    next_id: AtomicU64,
    commands: mpsc::UnboundedSender<Command>,
    /// The largest message the server takes (its `max_payload`, 1 MiB unless configured).
    pub(crate) max_payload: usize,
    /// What `metrics()` reads: each task's outcome is counted where its pending entry is taken.
    /// Its workers are the pool's slots, counted alive until the pool stops.
    counters: Arc<Counters>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves task `id` with `outcome`, unless it was resolved already (a duplicate result
    /// after a redelivery, or a result after a cancel): each handle resolves exactly once.
    pub(crate) fn finish(&self, id: u64, outcome: Result<Vec<u8>, TaskError>) {
        let pending = {
            let mut state = self.lock();
            let pending = state.pending.remove(&id);
            if let Some(seq) = pending.as_ref().and_then(|p| p.seq) {
                state.by_seq.remove(&seq);
            }
            if state.pending.is_empty() {
                self.drained.notify_all();
            }
            pending
        };
        if let Some(pending) = pending {
            self.counters.count(Outcome::of(&outcome));
            (pending.deliver)(outcome);
        }
    }

    /// Records the stream sequence of task `id`; `false` if the task is resolved already.
    pub(crate) fn record_seq(&self, id: u64, seq: u64) -> bool {
        let mut state = self.lock();
        match state.pending.get_mut(&id) {
            Some(pending) => {
                pending.seq = Some(seq);
                state.by_seq.insert(seq, id);
                true
            }
            None => false,
        }
    }

    pub(crate) fn id_of_seq(&self, seq: u64) -> Option<u64> {
        self.lock().by_seq.get(&seq).copied()
    }

    /// Takes task `id` out of the pending ones without resolving it, counting it as `outcome`;
    /// its sequence if known.
    fn take(&self, id: u64, outcome: Outcome) -> Option<Option<u64>> {
        let mut state = self.lock();
        let pending = state.pending.remove(&id)?;
        if let Some(seq) = pending.seq {
            state.by_seq.remove(&seq);
        }
        if state.pending.is_empty() {
            self.drained.notify_all();
        }
        // Dropping `deliver` drops the resolver: a handle still waiting reads `ShutDown`, but
        // the one cancelling is resolved `Cancelled` already.
        drop(pending.deliver);
        self.counters.count(outcome);
        Some(pending.seq)
    }

    fn submit<Out: Portable>(
        self: &Arc<Self>,
        addr: TaskAddr,
        input: Vec<u8>,
        time_limit: Option<Duration>,
    ) -> TaskHandle<Out> {
        self.counters.count_submitted();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let canceller: Arc<dyn Cancel> = Arc::clone(self) as Arc<dyn Cancel>;
        let (resolver, handle) = TaskHandle::<Out>::remote(Some((canceller, id)));
        let deliver: Deliver = Box::new(move |outcome| match outcome {
            Ok(bytes) => resolver.resolve_encoded(bytes, decode_output::<Out>),
            Err(err) => resolver.resolve(Err(err)),
        });
        let frame = self.settings.key.seal(
            kind::REQUEST,
            &Request {
                build: self.build,
                reply_to: self.reply_to.clone(),
                id,
                addr,
                input,
                time_limit,
            },
        );
        if frame.len() > self.max_payload {
            // The server would close the connection on it, failing every task in flight.
            let err = too_large(CodecStage::EncodeInput, frame.len(), self.max_payload);
            self.counters.count(Outcome::of_error(&err));
            return TaskHandle::ready(Err(err));
        }
        {
            let mut state = self.lock();
            if state.closed {
                drop(state);
                self.counters.count(Outcome::ShutDown);
                return TaskHandle::ready(Err(TaskError::ShutDown));
            }
            state.pending.insert(id, Pending { deliver, seq: None });
        }
        let kind = addr.kind;
        if self
            .commands
            .send(Command::Publish { id, frame, kind })
            .is_err()
        {
            self.finish(id, Err(TaskError::ShutDown));
        }
        handle
    }

    /// Asks the runtime to forget `ids` (delete them from the stream, stop them on their
    /// hosts) and waits, at most [`CONFIRM`], until it did.
    fn forget(&self, tasks: Vec<(u64, Option<u64>)>, notify: bool) {
        let (done, confirmed) = std::sync::mpsc::channel();
        let mut sent = 0;
        for (id, seq) in tasks {
            let command = Command::Forget {
                id,
                seq,
                notify,
                done: Some(done.clone()),
            };
            if self.commands.send(command).is_ok() {
                sent += 1;
            }
        }
        drop(done);
        let deadline = std::time::Instant::now() + CONFIRM;
        for _ in 0..sent {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if confirmed.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

impl Cancel for Shared {
    fn cancel(&self, id: u64) {
        self.stop_task(id, Outcome::Cancelled);
    }

    /// A time limit (the pool's, or `spawn_with`'s) passed: stopped as a cancel, counted
    /// timed out.
    fn expire(&self, id: u64) {
        self.stop_task(id, Outcome::TimedOut);
    }
}

impl Shared {
    /// Stops task `id` if it is still pending, counting it as `outcome`.
    fn stop_task(&self, id: u64, outcome: Outcome) {
        if let Some(seq) = self.take(id, outcome) {
            // Deleted from the stream before this returns, so a queued task never starts; a
            // running one is stopped on its host.
            self.forget(vec![(id, seq)], true);
        }
    }
}

/// The error of a task whose input or output does not fit in one NATS message.
pub(crate) fn too_large(stage: CodecStage, len: usize, max: usize) -> TaskError {
    let what = match stage {
        CodecStage::EncodeInput => "input",
        _ => "output",
    };
    TaskError::codec(
        stage,
        format!(
            "the task's {what} takes {len} bytes in its message, more than the NATS server's \
             max_payload of {max} bytes; raise max_payload in the server's configuration, or \
             pass large data out of band (an object store) and send its name"
        ),
    )
}

fn decode_output<Out: Portable>(bytes: Vec<u8>) -> Result<Out, TaskError> {
    postcard::from_bytes(&bytes)
        .map_err(|e| TaskError::codec(CodecStage::DecodeOutput, e.to_string()))
}

impl ClusterPool {
    /// A builder, with the settings of the `POLYEXEC_CLUSTER_*` environment variables.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = polyexec_cluster::ClusterPool::builder().local_workers(2);
    /// # let _ = builder;
    /// ```
    pub fn builder() -> ClusterPoolBuilder {
        ClusterPoolBuilder::new()
    }

    /// The pids of the local workers running now (empty without local workers).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// polyexec_cluster::init();
    /// let pool = polyexec_cluster::ClusterPool::builder().local_workers(1).build()?;
    /// assert_eq!(pool.local_worker_pids().len(), 1);
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn local_worker_pids(&self) -> Vec<u32> {
        let stop = self
            .inner
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        stop.local
            .as_ref()
            .map(LocalWorkers::pids)
            .unwrap_or_default()
    }
}

impl Inner {
    fn close(&self) {
        self.shared.lock().closed = true;
    }

    /// Stops local workers (with `grace` to finish), then the runtime.
    fn stop(&self, grace: Duration) {
        let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut local) = stop.local.take() {
            local.stop(grace);
        }
        if let Some(runtime) = stop.runtime.take() {
            for _ in 0..self.slots {
                self.shared.counters.worker_stopped();
            }
            let (done, stopped) = std::sync::mpsc::channel();
            if self.shared.commands.send(Command::Stop { done }).is_ok() {
                let _ = stopped.recv_timeout(CONFIRM);
            }
            // On a thread of its own: a runtime cannot be shut down from a thread that drives
            // another one, and the pool may be dropped on one.
            std::thread::scope(|scope| {
                scope.spawn(move || runtime.shutdown_timeout(CONFIRM));
            });
        }
    }

    /// Submits the task at `addr` with its encoded `input` and time limit `limit`: the limit
    /// travels in the frame (the host stops the work when it expires) and holds the handle.
    fn submit<Out: Portable>(
        &self,
        addr: TaskAddr,
        input: Result<Vec<u8>, TaskError>,
        limit: Option<Duration>,
    ) -> TaskHandle<Out> {
        match input {
            Ok(bytes) => {
                let handle = self.shared.submit(addr, bytes, limit);
                match limit {
                    Some(limit) => handle.with_deadline(limit),
                    None => handle,
                }
            }
            Err(err) => {
                self.shared.counters.count_submitted();
                self.shared.counters.count(Outcome::of_error(&err));
                TaskHandle::ready(Err(err))
            }
        }
    }

    /// The earlier of the pool's time limit and a task's own.
    fn limit_with(&self, options: SpawnOptions) -> Option<Duration> {
        match (self.time_limit, options.get_timeout()) {
            (Some(pool), Some(task)) => Some(pool.min(task)),
            (pool, task) => pool.or(task),
        }
    }

    fn shutdown(&self) {
        self.close();
        {
            let mut state = self.shared.lock();
            while !state.pending.is_empty() {
                state = self
                    .shared
                    .drained
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        self.stop(LOCAL_GRACE);
    }

    fn shutdown_now(&self) {
        let taken: Vec<(u64, Option<u64>, Deliver)> = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.by_seq.clear();
            self.shared.drained.notify_all();
            state
                .pending
                .drain()
                .map(|(id, p)| (id, p.seq, p.deliver))
                .collect()
        };
        let mut forget = Vec::with_capacity(taken.len());
        for (id, seq, deliver) in taken {
            self.shared.counters.count(Outcome::ShutDown);
            deliver(Err(TaskError::ShutDown));
            forget.push((id, seq));
        }
        // Local workers first: killed, they start nothing more; then the queued tasks are
        // deleted and hosts elsewhere told to stop what they run of this pool.
        {
            let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(mut local) = stop.local.take() {
                local.stop(Duration::ZERO);
            }
        }
        if !forget.is_empty() {
            self.shared.forget(forget, true);
        }
        self.stop(Duration::ZERO);
    }
}

fn encode_input<In: Portable>(input: &In) -> Result<Vec<u8>, TaskError> {
    postcard::to_allocvec(input)
        .map_err(|e| TaskError::codec(CodecStage::EncodeInput, e.to_string()))
}

impl Executor for ClusterPool {
    fn spawn<F, In, Out>(&self, input: In, task: F) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        assert_portable(&task);
        self.inner.submit(
            addr::blocking_addr::<F, In, Out>(),
            encode_input(&input),
            self.inner.time_limit,
        )
    }

    fn spawn_async<F, In, Fut>(&self, input: In, task: F) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable,
    {
        assert_portable(&task);
        self.inner.submit(
            addr::async_addr::<F, In, Fut>(),
            encode_input(&input),
            self.inner.time_limit,
        )
    }

    /// The time limit (the earlier of the options' and the pool's) travels with the task, so its
    /// host stops a running blocking task when it expires.
    fn spawn_with<F, In, Out>(&self, input: In, task: F, options: SpawnOptions) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        assert_portable(&task);
        self.inner.submit(
            addr::blocking_addr::<F, In, Out>(),
            encode_input(&input),
            self.inner.limit_with(options),
        )
    }

    /// As [`spawn_with`](Self::spawn_with): the host drops the future when the limit expires.
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
        assert_portable(&task);
        self.inner.submit(
            addr::async_addr::<F, In, Fut>(),
            encode_input(&input),
            self.inner.limit_with(options),
        )
    }

    fn workers(&self) -> usize {
        self.inner.slots
    }

    fn metrics(&self) -> Metrics {
        // Which pending tasks wait in the stream and which run on a host is known only to the
        // server: all count as running.
        self.inner.shared.counters.snapshot(0)
    }

    fn backend_name(&self) -> &'static str {
        "cluster"
    }

    /// Each hand-over is a message through the NATS server, so `map` sends inputs in chunks.
    fn preferred_chunk_size(&self) -> usize {
        256
    }

    fn shutdown(&self) {
        self.inner.shutdown();
    }

    fn shutdown_now(&self) {
        self.inner.shutdown_now();
    }
}

impl Drop for ClusterPool {
    /// A graceful shutdown. Where this thread must not wait for unfinished tasks (it would
    /// stall an event loop or a current-thread tokio runtime), the shutdown goes on on another
    /// thread and this one panics with advice to `.await` instead.
    fn drop(&mut self) {
        let busy = !self.inner.shared.lock().pending.is_empty();
        if busy && !std::thread::panicking() && !polyexec_core::may_block() {
            let inner = Arc::clone(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("polyexec-cluster-shutdown".into())
                .spawn(move || inner.shutdown());
            if spawned.is_ok() {
                polyexec_core::assert_may_block();
                return;
            }
        }
        self.inner.shutdown();
    }
}

impl fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        let state = shared.lock();
        f.debug_struct("ClusterPool")
            .field("url", &shared.settings.url)
            .field("queue", &shared.settings.queue)
            .field("build", &shared.build)
            .field("slots", &self.inner.slots)
            .field("pending", &state.pending.len())
            .field("closed", &state.closed)
            .finish()
    }
}
