//! [`ProcessPoolBuilder`]: the pool's settings, and starting it.

use std::collections::{BinaryHeap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use polyexec_core::{BuildError, Portable, WorkerExit, assert_portable};
use serde::de::DeserializeOwned;

use super::{Config, Core, IdMap, ProcessPool, Shared, Slot, StartHook, State, StopHook, relock};
use crate::entry::{Key, TaskAddr};
use crate::error::HOOK_ADVICE;
use crate::process::{self, SpawnConfig};
use crate::protocol;
use crate::shm::Arena;

/// Configures a [`ProcessPool`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// polyexec_subprocess::init();
///
/// fn setup() {
///     // runs once in every worker before it takes a task
/// }
/// let pool = polyexec_subprocess::ProcessPool::builder()
///     .workers(2)
///     .initializer(setup)
///     .env("RUST_LOG", "info")
///     .task_timeout(Duration::from_secs(10))
///     .handshake_timeout(Duration::from_secs(5))
///     .build()?;
/// # Ok::<(), polyexec_core::BuildError>(())
/// ```
#[derive(Clone)]
pub struct ProcessPoolBuilder {
    workers: Option<usize>,
    max_tasks_per_worker: Option<u64>,
    task_timeout: Option<Duration>,
    initializer: Option<fn(&Key) -> TaskAddr>,
    /// The initializer's argument, encoded; or why it could not be.
    init_arg: Result<Vec<u8>, String>,
    on_worker_start: Option<StartHook>,
    on_worker_stop: Option<StopHook>,
    env: Vec<(OsString, OsString)>,
    handshake_timeout: Duration,
    crash_loop_limit: u32,
    pipeline_depth: usize,
    shared_memory: bool,
}

impl Default for ProcessPoolBuilder {
    fn default() -> Self {
        ProcessPoolBuilder {
            workers: None,
            max_tasks_per_worker: None,
            task_timeout: None,
            initializer: None,
            init_arg: Ok(Vec::new()),
            on_worker_start: None,
            on_worker_stop: None,
            env: Vec::new(),
            handshake_timeout: Duration::from_secs(5),
            crash_loop_limit: 5,
            pipeline_depth: 32,
            shared_memory: true,
        }
    }
}

fn init_addr<F: Fn() + Copy>(key: &Key) -> TaskAddr {
    key.init::<F>()
}

fn init_with_addr<F: Fn(A) + Copy, A: DeserializeOwned + 'static>(key: &Key) -> TaskAddr {
    key.init_with::<F, A>()
}

/// The longest encoded initializer argument: it travels in the handshake, whose frames are
/// bounded.
const MAX_INIT_ARG: usize = 512 << 10;

impl ProcessPoolBuilder {
    /// Number of worker processes. Default: [`std::thread::available_parallelism`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// A worker that has been given this many tasks exits once they are done and is replaced by a
    /// fresh process (a remedy for leaks in task code). Default: unlimited.
    pub fn max_tasks_per_worker(mut self, tasks: u64) -> Self {
        self.max_tasks_per_worker = Some(tasks.max(1));
        self
    }

    /// The longest a task may run, counted from when its worker starts it. A blocking task over
    /// the limit has its worker killed (and replaced) and resolves with
    /// [`TaskError::TimedOut`](polyexec_core::TaskError::TimedOut); an async task over the limit is dropped by its worker, which
    /// lives on (unless the task blocks the worker's thread, in which case the worker is killed
    /// one second later). Default: none.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Runs `init` in every worker process once, before it takes any task (also in the
    /// replacements of dead workers). `init` is a portable `fn()`: an `fn` item or a closure that
    /// captures nothing. If it panics, the worker refuses to serve: [`build`](Self::build) fails
    /// (and a replacement that fails counts toward the crash-loop limit).
    pub fn initializer<F>(mut self, init: F) -> Self
    where
        F: Fn() + Copy + Send + Sync + 'static,
    {
        assert_portable(&init);
        self.initializer = Some(init_addr::<F>);
        self.init_arg = Ok(Vec::new());
        self
    }

    /// Runs `init(arg)` in every worker process once, before it takes any task: Python's
    /// `initializer` with `initargs`. `arg` is encoded here and decoded in each worker, so it
    /// must be [`Portable`] (and, encoded, at most 512 KiB); `init` is a portable `fn(A)`.
    /// Replaces an [`initializer`](Self::initializer) set before. If `init` panics, the worker
    /// refuses to serve, as with `initializer`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// polyexec_subprocess::init();
    /// fn connect((host, port): (String, u16)) {
    ///     // open a connection in this worker, keep it in a `static` for its tasks
    ///     # let _ = (host, port);
    /// }
    /// let pool = polyexec_subprocess::ProcessPool::builder()
    ///     .initializer_with(("db.local".to_string(), 5432), connect)
    ///     .build()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn initializer_with<F, A>(mut self, arg: A, init: F) -> Self
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Portable,
    {
        assert_portable(&init);
        self.initializer = Some(init_with_addr::<F, A>);
        let mut encoded = Vec::new();
        self.init_arg =
            match polyexec_core::catch_task(|| protocol::encode_into(&arg, &mut encoded)) {
                Ok(Ok(())) if encoded.len() <= MAX_INIT_ARG => Ok(encoded),
                Ok(Ok(())) => Err(format!(
                    "the initializer's argument is {} bytes encoded, more than the {MAX_INIT_ARG} \
                 a handshake carries",
                    encoded.len()
                )),
                Ok(Err(err)) => Err(format!(
                    "could not encode the initializer's argument: {}",
                    protocol::describe::<A>(err)
                )),
                Err(panic) => Err(format!(
                    "could not encode the initializer's argument: {}",
                    protocol::describe::<A>(panic)
                )),
            };
        self
    }

    /// Calls `start(worker_index, pid)` in this process each time a worker process has started
    /// and answered its handshake (the first ones and every replacement), as it is put to work
    /// (its first tasks may be on their way to it already). It runs on the pool's supervisor
    /// thread: keep it short, and do not wait on the
    /// pool's tasks in it. A panic in it is caught and ignored.
    ///
    /// The lifecycle hooks of this backend run in the parent, where they see every worker's
    /// start and end, a crash included (a worker that dies from a signal runs no code of its
    /// own on the way out). Code that must run *inside* each worker goes in an
    /// [`initializer`](Self::initializer) or [`initializer_with`](Self::initializer_with).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// polyexec_subprocess::init();
    /// let pool = polyexec_subprocess::ProcessPool::builder()
    ///     .on_worker_start(|index, pid| eprintln!("worker {index} started as pid {pid}"))
    ///     .on_worker_stop(|index, pid, exit| eprintln!("worker {index} (pid {pid}) {exit}"))
    ///     .build()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn on_worker_start(mut self, start: impl Fn(usize, u32) + Send + Sync + 'static) -> Self {
        self.on_worker_start = Some(Arc::new(start));
        self
    }

    /// Calls `stop(worker_index, pid, exit)` in this process each time a worker process has
    /// ended and been reaped (retired, crashed, killed for a time limit or a cancel, or stopped
    /// at shutdown), after its tasks were settled. It runs on that worker's reader thread; see
    /// [`on_worker_start`](Self::on_worker_start).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// polyexec_subprocess::init();
    /// let pool = polyexec_subprocess::ProcessPool::builder()
    ///     .on_worker_stop(|index, _pid, exit| eprintln!("worker {index} {exit}"))
    ///     .build()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn on_worker_stop(
        mut self,
        stop: impl Fn(usize, u32, WorkerExit) + Send + Sync + 'static,
    ) -> Self {
        self.on_worker_stop = Some(Arc::new(stop));
        self
    }

    /// Sets an environment variable in every worker (on top of this process's environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long a new worker has to start and answer the handshake before it is killed and the
    /// start counts as failed. Default: 5 s.
    pub fn handshake_timeout(mut self, limit: Duration) -> Self {
        self.handshake_timeout = limit;
        self
    }

    /// After this many workers in a row die before running any task (or fail to start), the pool
    /// stops taking tasks: queued and new ones fail with [`TaskError::Transport`](polyexec_core::TaskError::Transport) saying why.
    /// Default: 5.
    pub fn crash_loop_limit(mut self, workers: u32) -> Self {
        self.crash_loop_limit = workers.max(1);
        self
    }

    /// How many tasks each worker is sent ahead, beyond the one it runs, so it never waits for
    /// the parent between tasks. More helps many tiny tasks; fewer balances long tasks better
    /// across workers. Default: 32.
    pub fn pipeline_depth(mut self, tasks: usize) -> Self {
        self.pipeline_depth = tasks.max(1);
        self
    }

    /// Whether inputs and outputs of 64 KiB or more travel through shared memory (one region
    /// per direction, made on the first such payload and reused by every later one) instead of
    /// the socket: they are then serialized straight into memory the other process reads, and
    /// decoded from there. Where a region cannot be made (no `memfd`), payloads take the socket.
    /// Default: `true`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// polyexec_subprocess::init();
    /// let pool = polyexec_subprocess::ProcessPool::builder()
    ///     .shared_memory(false) // every payload through the socket
    ///     .build()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn shared_memory(mut self, enabled: bool) -> Self {
        self.shared_memory = enabled;
        self
    }

    /// Starts the workers and waits for each one's handshake.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidConfig`] for zero workers. [`BuildError::Start`] if a worker cannot
    /// be started, exits before its handshake (most often: the program did not call the entry
    /// hook first in `main`), does not answer in time, is not the same build, or its initializer
    /// fails; also when called inside a worker process (a worker never starts workers). Workers
    /// already started are stopped and reaped first.
    pub fn build(self) -> Result<ProcessPool, BuildError> {
        let size = match self.workers {
            Some(0) => {
                return Err(BuildError::InvalidConfig(
                    "workers must be at least 1".into(),
                ));
            }
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if crate::worker::is_serving() {
            return Err(BuildError::Start(
                "a worker process cannot start a process pool (tasks run in workers, and a \
                 worker never starts workers)"
                    .into(),
            ));
        }
        if process::worker_parent().is_some() {
            return Err(BuildError::Start(format!(
                "this process was started as a polyexec worker, but its main did not hand over \
                 to the worker first: {HOOK_ADVICE}"
            )));
        }
        let init_arg = self.init_arg.map_err(BuildError::InvalidConfig)?;
        polyexec_core::install_panic_hook();
        let key = Key::random()
            .map_err(|e| BuildError::Start(format!("could not get a random key: {e}")))?;
        let config = Config {
            spawn: SpawnConfig {
                env: self.env,
                handshake_timeout: self.handshake_timeout,
                key: key.bytes(),
                timeout: self.task_timeout,
                init: self.initializer.map(|addr| addr(&key)),
                shared_memory: self.shared_memory,
                init_arg,
            },
            timeout: self.task_timeout,
            max_tasks: self.max_tasks_per_worker,
            depth: self.pipeline_depth,
            crash_loop_limit: self.crash_loop_limit,
        };
        let (supervisor_tx, commands) = mpsc::channel();
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                state: State::Running,
                queue: VecDeque::new(),
                tasks: IdMap::default(),
                slots: (0..size).map(|_| Slot::default()).collect(),
                broken: None,
                failures_in_row: 0,
                deadlines: BinaryHeap::new(),
            }),
            idle: Condvar::new(),
            key,
            config,
            size,
            accepting: AtomicBool::new(true),
            next_id: AtomicU64::new(0),
            supervisor_tx,
            supervisor: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            finish: Mutex::new(()),
            inputs: Mutex::new(Arena::readers_only()),
            counters: polyexec_core::Counters::new(0),
            on_worker_start: self.on_worker_start,
            on_worker_stop: self.on_worker_stop,
        });
        let (started_tx, started_rx) = mpsc::channel();
        let supervisor_shared = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("polyexec-subprocess-supervisor".into())
            .spawn(move || supervisor_shared.supervise(&commands, started_tx))
            .map_err(|e| {
                BuildError::Start(format!("could not start the supervisor thread: {e}"))
            })?;
        *relock(shared.supervisor.lock()) = Some(handle);
        match started_rx.recv() {
            Ok(Ok(())) => Ok(ProcessPool { shared }),
            Ok(Err(err)) => {
                shared.shutdown(true);
                Err(err)
            }
            Err(_) => {
                shared.shutdown(true);
                Err(BuildError::Start("the supervisor thread stopped".into()))
            }
        }
    }
}

impl fmt::Debug for ProcessPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolBuilder")
            .field("workers", &self.workers)
            .field("max_tasks_per_worker", &self.max_tasks_per_worker)
            .field("task_timeout", &self.task_timeout)
            .field("initializer", &self.initializer.is_some())
            .field("on_worker_start", &self.on_worker_start.is_some())
            .field("on_worker_stop", &self.on_worker_stop.is_some())
            .field("env", &self.env)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("crash_loop_limit", &self.crash_loop_limit)
            .field("pipeline_depth", &self.pipeline_depth)
            .field("shared_memory", &self.shared_memory)
            .finish()
    }
}
