//! [`ProcessPool`], its builder, and the parent side of the transport.
//!
//! # Threads
//!
//! - The submitting threads encode the task into a frame, queue it, and, if a worker has room,
//!   move it to that worker's outgoing list and write it themselves (one thread writes to a
//!   worker at a time; frames queued meanwhile go out with its next `sendmsg`): [`dispatch`].
//! - One *reader* thread per worker reads its frames, resolves handles directly (so a result is
//!   never blocked behind a slow joiner of another handle), refills the worker from the queue
//!   ([`reader`]), and when the worker dies, reaps it and settles its tasks ([`death`]). It
//!   decodes no output: each handle's joiner does ([`complete`]), so a slow `Deserialize` delays
//!   only its own task.
//! - One *supervisor* thread ([`supervisor`]) starts every worker (the parent-death signal is
//!   tied to the thread that started the child, so it must outlive the workers), replaces dead
//!   ones with backoff ([`respawn`]), and enforces per-task time limits ([`deadline`]).
//! - [`cancel`] and [`shutdown`] run on the caller's thread.
//!
//! # State
//!
//! One mutex ([`Shared::core`]) guards the queue, the task table and the per-worker slots; it is
//! never held across a system call that can block, nor while user code (wakers, a handle's
//! `Drop`) runs. Functions that take `core: &mut Core` run with it held and only change
//! state; the work they decide on (writes, kills, completions) is collected and done by their
//! caller after the guard is dropped. Each module's opening comment says where it takes the lock.
//!
//! # Invariants (kept by every module)
//!
//! - A task's entry stays in `Core::tasks` until its worker is done with it (a result or its
//!   death) or it leaves the queue; its [`Place`] says which worker (slot and generation) holds
//!   it, if any.
//! - A slot's counters (`unstarted`, `unstarted_bytes`, `running_blocking`, `in_flight`) count
//!   exactly the tasks whose place names that slot's current generation.
//! - Events of a worker are applied only if its [`Conn::generation`] is still its slot's: a late
//!   frame or death of a replaced process changes nothing.
//! - A task whose input is in the pool's shared region holds it ([`Entry::input`]) until its
//!   entry is dropped, so the region's space is reused only after the worker is done with it;
//!   the pool replaces its region only when no entry holds space in it.
//! - A task's completer is taken out of its entry exactly once (by its result, its worker's
//!   death, its deadline, a cancel or a shutdown), so every handle resolves exactly once.

mod builder;
mod cancel;
mod complete;
mod deadline;
mod death;
mod dispatch;
mod reader;
mod respawn;
mod shutdown;
mod supervisor;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polyexec_core::{
    AsyncTask, BlockingTask, BuildError, Counters, Executor, Metrics, Portable, TaskError,
    TaskHandle, assert_portable,
};

pub use builder::ProcessPoolBuilder;

use crate::entry::{Key, Kind};
use crate::process::SpawnConfig;
use crate::shm::{Arena, Lease};
use complete::Complete;
use dispatch::Outgoing;
use supervisor::Command;

/// Hashes task ids (sequential integers) with one multiplication.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In the pool's queue.
    Queued,
    /// Written (or being written) to a worker, which has not said it started.
    Sent { slot: usize, generation: u64 },
    /// The worker announced it is running the task's code.
    Started { slot: usize, generation: u64 },
}

struct Entry {
    kind: Kind,
    /// Length of the `RUN` frame, counted against the worker's byte budget until it starts.
    bytes: usize,
    /// Position in its worker's dispatch order (the order the worker starts tasks in).
    seq: u64,
    /// The `RUN` frame, kept until the task starts so it can be sent to another worker if this
    /// one dies first.
    frame: Option<Arc<Vec<u8>>>,
    /// The input, when it is in the pool's shared region: held until the worker is done with the
    /// task (the entry is dropped), which is after it decoded the input.
    input: Option<Lease>,
    /// `None` once the handle was resolved by the pool itself (cancel, timeout).
    completer: Option<Box<dyn Complete>>,
    place: Place,
    /// The task's span (feature `tracing`), from submission until its entry goes.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// A live worker process, shared by its reader thread and whoever writes to or kills it.
#[derive(Debug)]
pub(crate) struct Conn {
    slot: usize,
    generation: u64,
    pid: u32,
    pidfd: OwnedFd,
    stream: UnixStream,
    /// The generation of the pool's input region this worker was last sent (0: none). Written by
    /// the one thread writing to the worker at a time.
    announced: AtomicU64,
}

/// One worker position of the pool; its process is replaced when it dies.
#[derive(Default)]
struct Slot {
    conn: Option<Arc<Conn>>,
    /// Bumped whenever the process in this slot changes, so late events of a dead process are
    /// recognized.
    generation: u64,
    outgoing: Vec<Outgoing>,
    /// A thread is writing to this worker; frames added to `outgoing` meanwhile are its to write.
    writing: bool,
    /// Tasks sent that have not started: bounded by the pipeline depth.
    unstarted: usize,
    /// Bytes of those tasks' frames: bounded by [`dispatch::BYTE_BUDGET`].
    unstarted_bytes: usize,
    /// Blocking tasks running (0 or 1): the worker reads nothing until the task ends.
    running_blocking: usize,
    /// Tasks sent that have not finished.
    in_flight: usize,
    dispatched: u64,
    /// Takes no more tasks (it reached `max_tasks_per_worker`); exits once idle.
    retiring: bool,
    exit_sent: bool,
    /// The pool killed this worker (timeout, cancel, shutdown): its death is not a crash.
    killed: bool,
    /// Some task started on this worker: its death is not part of a crash loop.
    served: bool,
    /// Its channel reached its end or a write to it failed: the worker is dead or dying, so it
    /// takes no more tasks (they wait for its replacement instead of being written to a dead
    /// channel, where the oldest would count as possibly started and be lost with it).
    closed: bool,
}

impl Slot {
    fn reset(&mut self) {
        let generation = self.generation + 1;
        *self = Slot {
            generation,
            ..Slot::default()
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Graceful shutdown: refuses new tasks, finishes the others.
    Draining,
    /// Workers are told to exit or killed; none is started any more.
    Stopping,
}

struct Core {
    state: State,
    queue: VecDeque<u64>,
    tasks: IdMap<Entry>,
    slots: Vec<Slot>,
    /// Set when workers kept dying before serving: the pool refuses work with this message.
    broken: Option<String>,
    failures_in_row: u32,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
}

#[derive(Debug, Clone)]
struct Config {
    spawn: SpawnConfig,
    timeout: Option<Duration>,
    max_tasks: Option<u64>,
    depth: usize,
    crash_loop_limit: u32,
}

pub(crate) struct Shared {
    core: Mutex<Core>,
    /// Notified when the task table becomes empty (graceful shutdown waits for it).
    idle: Condvar,
    key: Key,
    config: Config,
    size: usize,
    /// Cleared by shutdown or a crash loop: lets a refused submission skip encoding.
    accepting: AtomicBool,
    next_id: AtomicU64,
    supervisor_tx: mpsc::Sender<Command>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    /// Serializes the end of shutdown: a second caller returns only once the workers are gone.
    finish: Mutex<()>,
    /// The region that carries large inputs to every worker. Locked only to hand out space.
    inputs: Mutex<Arena>,
    /// What `metrics()` reads. Every outcome is counted where the pool takes a task's completer
    /// out of its entry, which happens exactly once per task.
    counters: Arc<Counters>,
    on_worker_start: Option<StartHook>,
    on_worker_stop: Option<StopHook>,
}

/// The builder's hook for a worker that started: `(index, pid)`.
type StartHook = Arc<dyn Fn(usize, u32) + Send + Sync>;
/// The builder's hook for a worker that ended: `(index, pid, exit)`.
type StopHook = Arc<dyn Fn(usize, u32, polyexec_core::WorkerExit) + Send + Sync>;

fn relock<T>(result: Result<T, PoisonError<T>>) -> T {
    result.unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        relock(self.core.lock())
    }

    /// The error for a submission the pool does not accept.
    fn refusal(&self) -> TaskError {
        match &self.lock().broken {
            Some(message) => TaskError::transport(message.as_str()),
            None => TaskError::ShutDown,
        }
    }

    fn notify_if_idle(&self, core: &Core) {
        if core.tasks.is_empty() {
            self.idle.notify_all();
        }
    }
}

/// A pool of worker processes running portable tasks; the subprocess backend of polyexec.
///
/// The workers are this program's own executable, started again in worker mode: the program
/// must call [`polyexec_subprocess::init`](crate::init) (or `polyexec::init()`) first thing in
/// `main`, and test files must contain [`test_hook!`](crate::test_hook). They are started once and
/// reused; a worker that dies is replaced.
///
/// Build one with [`ProcessPool::builder`] (or [`ProcessPool::new`] for the defaults: one worker
/// per available CPU). Submit through the [`Executor`] trait. Dropping the pool shuts it down
/// gracefully: every submitted task finishes, then the workers exit and are reaped.
///
/// # Examples
///
/// ```
/// use polyexec_core::Executor;
/// use polyexec_subprocess::ProcessPool;
///
/// polyexec_subprocess::init(); // a worker started from this program serves here
/// let pool = ProcessPool::builder().workers(2).build()?;
/// let pid = pool.spawn((), |()| std::process::id()).join()?;
/// assert_ne!(pid, std::process::id()); // it ran in another process
/// let squares: Vec<u64> = pool.map(1..=4u64, |x: u64| x * x).collect::<Result<_, _>>()?;
/// assert_eq!(squares, [1, 4, 9, 16]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProcessPool {
    shared: Arc<Shared>,
}

impl ProcessPool {
    /// A pool with the default settings (see [`ProcessPoolBuilder`]).
    ///
    /// # Errors
    ///
    /// As [`ProcessPoolBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// polyexec_subprocess::init();
    /// let pool = polyexec_subprocess::ProcessPool::new()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn new() -> Result<Self, BuildError> {
        Self::builder().build()
    }

    /// A builder to configure the pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// polyexec_subprocess::init();
    /// let pool = polyexec_subprocess::ProcessPool::builder()
    ///     .workers(4)
    ///     .task_timeout(Duration::from_secs(30))
    ///     .max_tasks_per_worker(10_000)
    ///     .build()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::default()
    }

    /// The process ids of the live workers (a worker being replaced is missing).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// polyexec_subprocess::init();
    /// let pool = polyexec_subprocess::ProcessPool::builder().workers(2).build()?;
    /// assert_eq!(pool.worker_pids().len(), 2);
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared
            .lock()
            .slots
            .iter()
            .filter_map(|slot| slot.conn.as_ref().map(|conn| conn.pid))
            .collect()
    }
}

impl Executor for ProcessPool {
    fn spawn<F, In, Out>(&self, input: In, task: F) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        assert_portable(&task);
        let addr = self.shared.key.blocking::<F, In, Out>();
        self.shared.submit(addr, &input, std::any::type_name::<F>())
    }

    fn spawn_async<F, In, Fut>(&self, input: In, task: F) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable,
    {
        assert_portable(&task);
        let addr = self.shared.key.asynchronous::<F, In, Fut>();
        self.shared.submit(addr, &input, std::any::type_name::<F>())
    }

    fn workers(&self) -> usize {
        self.shared.size
    }

    fn metrics(&self) -> Metrics {
        let queued = self.shared.lock().queue.len();
        self.shared.counters.snapshot(queued)
    }

    fn backend_name(&self) -> &'static str {
        "subprocess"
    }

    /// Each hand-over costs a message to another process, so `map` sends inputs in chunks.
    fn preferred_chunk_size(&self) -> usize {
        PREFERRED_CHUNK
    }

    fn shutdown(&self) {
        shutdown_gracefully(&self.shared);
    }

    fn shutdown_now(&self) {
        self.shared.shutdown(true);
    }
}

/// A graceful shutdown; where this thread must not wait for unfinished tasks (it would stall
/// an event loop or a current-thread tokio runtime), the shutdown goes on on another thread and
/// this one panics with advice to `.await` instead.
fn shutdown_gracefully(shared: &Arc<Shared>) {
    if !std::thread::panicking() && !polyexec_core::may_block() && !shared.lock().tasks.is_empty() {
        let finisher = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("polyexec-pool-shutdown".into())
            .spawn(move || finisher.shutdown(false));
        if spawned.is_ok() {
            polyexec_core::assert_may_block();
            return;
        }
    }
    shared.shutdown(false);
}

/// `map`'s default chunk size on this backend.
const PREFERRED_CHUNK: usize = 128;

impl Drop for ProcessPool {
    fn drop(&mut self) {
        shutdown_gracefully(&self.shared);
    }
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.shared.lock();
        f.debug_struct("ProcessPool")
            .field("workers", &self.shared.size)
            .field(
                "live",
                &core.slots.iter().filter(|s| s.conn.is_some()).count(),
            )
            .field("queued", &core.queue.len())
            .field("tasks", &core.tasks.len())
            .field("state", &core.state)
            .field("broken", &core.broken)
            .finish()
    }
}
