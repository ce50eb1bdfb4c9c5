//! [`ProcessPool`], its builder, and the parent side of the transport.
//!
//! # Threads
//!
//! - The submitting threads encode the task into a frame, queue it, and, if a worker has room,
//!   move it to that worker's outgoing list and write it themselves (one thread writes to a
//!   worker at a time; frames queued meanwhile go out with its next `sendmsg`).
//! - One *reader* thread per worker reads its frames, resolves handles directly (so a result is
//!   never blocked behind a slow joiner of another handle), refills the worker from the queue, and
//!   when the worker dies, reaps it and settles its tasks.
//! - One *supervisor* thread starts every worker (the parent-death signal is tied to the thread
//!   that started the child, so it must outlive the workers), replaces dead ones with backoff, and
//!   enforces per-task time limits (and the delayed kill of a cancelled running task).
//!
//! # State
//!
//! One mutex guards the queue, the task table and the per-worker slots; it is never held across
//! a system call that can block, nor while user code (decoding, wakers) runs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use polyexec_core::{
    AsyncTask, BlockingTask, BuildError, Cancel, CodecStage, Executor, Portable, Resolver,
    TaskError, TaskHandle, WorkerExit, assert_portable,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::{Key, Kind, TaskAddr};
use crate::error::HOOK_ADVICE;
use crate::process::{self, SpawnConfig, Spawned};
use crate::protocol::{self, FrameReader};
use crate::stop;

/// How long a worker that closed its channel gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Extra time an async task gets past its limit before the pool kills its worker: the worker
/// enforces the limit itself by dropping the future, unless the task blocks its thread.
const ASYNC_TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// Most bytes of unstarted task frames sent to one worker: below the socket's buffer (208 KiB by
/// default on Linux), so writing them never waits for the worker to read.
const BYTE_BUDGET: usize = 128 << 10;

/// How long a worker's reader polls without sleeping after the last frame it received.
const SPIN: Duration = Duration::from_micros(50);

/// Reader threads polling without sleeping, process-wide: at most half the processors' worth, so
/// a pool with many workers on few processors does not spend them polling.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

/// One reader's claim on a place among [`SPINNERS`], released when it stops (or exits).
#[derive(Default)]
struct Spinner {
    active: bool,
}

impl Spinner {
    /// Claims a place (or keeps the one held); `false` if all are taken.
    fn start(&mut self) -> bool {
        if self.active {
            return true;
        }
        static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let limit = *LIMIT
            .get_or_init(|| thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)));
        self.active = SPINNERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        self.active
    }

    fn stop(&mut self) {
        if std::mem::take(&mut self.active) {
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads without blocking (`MSG_DONTWAIT`) from a socket that is otherwise blocking.
struct NoWait<'a>(&'a UnixStream);

impl std::io::Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        rustix::net::recv(self.0, buf, rustix::net::RecvFlags::DONTWAIT)
            .map(|(n, _)| n)
            .map_err(Into::into)
    }
}

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

/// Delivers a task's encoded result to its typed handle.
trait Complete: Send {
    /// `ok`: `payload` is the encoded output; otherwise an encoded [`TaskError`].
    fn complete(self: Box<Self>, ok: bool, payload: &[u8]);
    fn fail(self: Box<Self>, err: TaskError);
}

impl<T: DeserializeOwned + Send + 'static> Complete for Resolver<T> {
    fn complete(self: Box<Self>, ok: bool, payload: &[u8]) {
        if self.is_abandoned() {
            // Nobody can see the value: skip decoding it.
            return;
        }
        let result = if ok {
            // A `Deserialize` impl that panics fails this task, not the reader thread.
            match polyexec_core::catch_task(|| protocol::decode::<T>(payload)) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(err)) => Err(codec(
                    CodecStage::DecodeOutput,
                    protocol::describe::<T>(err),
                )),
                Err(panic) => Err(codec(
                    CodecStage::DecodeOutput,
                    protocol::describe::<T>(panic),
                )),
            }
        } else {
            Err(
                protocol::decode::<TaskError>(payload).unwrap_or_else(|err| {
                    TaskError::transport(format!("could not decode the worker's error: {err}"))
                }),
            )
        };
        (*self).resolve(result);
    }

    fn fail(self: Box<Self>, err: TaskError) {
        (*self).resolve(Err(err));
    }
}

fn codec(stage: CodecStage, message: impl ToString) -> TaskError {
    TaskError::codec(stage, message.to_string())
}

/// Runs a completion, containing a panic from a user's waker or `Drop`.
fn deliver(body: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
}

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
    /// `None` once the handle was resolved by the pool itself (cancel, timeout).
    completer: Option<Box<dyn Complete>>,
    place: Place,
}

/// A frame waiting to be written to a worker.
enum Outgoing {
    Task(Arc<Vec<u8>>),
    Control(Vec<u8>),
}

impl AsRef<[u8]> for Outgoing {
    fn as_ref(&self) -> &[u8] {
        match self {
            Outgoing::Task(frame) => frame,
            Outgoing::Control(frame) => frame,
        }
    }
}

fn control(tag: u8, id: Option<u64>) -> Outgoing {
    let mut frame = Vec::with_capacity(13);
    match id {
        Some(id) => protocol::push_id_frame(&mut frame, tag, id),
        None => {
            frame.extend_from_slice(&1u32.to_le_bytes());
            frame.push(tag);
        }
    }
    Outgoing::Control(frame)
}

/// A live worker process, shared by its reader thread and whoever writes to or kills it.
#[derive(Debug)]
pub(crate) struct Conn {
    slot: usize,
    generation: u64,
    pid: u32,
    pidfd: OwnedFd,
    stream: UnixStream,
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
    /// Bytes of those tasks' frames: bounded by [`BYTE_BUDGET`].
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

/// Writes to perform once the lock is released.
struct WriteJob {
    conn: Arc<Conn>,
    frames: Vec<Outgoing>,
}

#[derive(Debug)]
enum Command {
    Respawn { slot: usize, at: Instant },
    Wake,
    Stop,
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
}

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

    fn submit<In: Serialize, Out: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        addr: TaskAddr,
        input: &In,
    ) -> TaskHandle<Out> {
        if !self.accepting.load(Ordering::Acquire) {
            return TaskHandle::ready(Err(self.refusal()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(64);
        let start = protocol::begin_run(&mut frame, id, addr);
        // A `Serialize` impl that panics fails this task with a codec error, as a panicking
        // `Serialize` of an output does in the worker: it must not unwind out of `spawn` (or out
        // of a `map` iterator halfway through), which the in-process backends, which never
        // serialize, would not do either (tests/fault_encode_input.rs).
        match polyexec_core::catch_task(|| protocol::encode_into(input, &mut frame)) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                return TaskHandle::ready(Err(codec(
                    CodecStage::EncodeInput,
                    protocol::describe::<In>(err),
                )));
            }
            Err(panic) => {
                return TaskHandle::ready(Err(codec(
                    CodecStage::EncodeInput,
                    protocol::describe::<In>(panic),
                )));
            }
        }
        if !protocol::end_frame(&mut frame, start) {
            return TaskHandle::ready(Err(codec(
                CodecStage::EncodeInput,
                "the encoded input is larger than 4 GiB",
            )));
        }
        let canceller: Arc<dyn Cancel> = Arc::clone(self) as Arc<dyn Cancel>;
        let (resolver, handle) = TaskHandle::<Out>::remote(Some((canceller, id)));
        let mut jobs = Vec::new();
        {
            let mut core = self.lock();
            if core.state != State::Running || core.broken.is_some() {
                let err = match &core.broken {
                    Some(message) => TaskError::transport(message.as_str()),
                    None => TaskError::ShutDown,
                };
                drop(core);
                resolver.resolve(Err(err));
                return handle;
            }
            let bytes = frame.len();
            core.tasks.insert(
                id,
                Entry {
                    kind: addr.kind,
                    bytes,
                    seq: 0,
                    frame: Some(Arc::new(frame)),
                    completer: Some(Box::new(resolver)),
                    place: Place::Queued,
                },
            );
            core.queue.push_back(id);
            self.dispatch(&mut core, &mut jobs);
        }
        self.write(&mut jobs);
        handle
    }

    /// Moves queued tasks to workers with room, least loaded first, and claims the writes that
    /// are due. Called with the lock held after anything that can make room or work.
    fn dispatch(&self, core: &mut Core, jobs: &mut Vec<WriteJob>) {
        let depth = self.config.depth;
        let Core {
            queue,
            tasks,
            slots,
            ..
        } = core;
        while let Some(&id) = queue.front() {
            let Some(entry) = tasks.get_mut(&id).filter(|e| e.place == Place::Queued) else {
                // Cancelled while queued: its entry is gone.
                queue.pop_front();
                continue;
            };
            let bytes = entry.bytes;
            let mut best: Option<(usize, usize)> = None;
            for (index, slot) in slots.iter().enumerate() {
                // What is written to a worker must fit in its channel until the worker reads
                // it, or the writing thread (often a caller of `spawn`) would block. A frame
                // over the budget goes only to a worker that holds nothing else unstarted and
                // runs no blocking task, so it reads the frame at once.
                let fits = slot.unstarted_bytes + bytes <= BYTE_BUDGET
                    || (slot.unstarted == 0 && slot.running_blocking == 0);
                if slot.conn.is_some()
                    && !slot.retiring
                    && !slot.closed
                    && slot.unstarted < depth
                    && fits
                    && best.is_none_or(|(_, load)| slot.in_flight < load)
                {
                    best = Some((index, slot.in_flight));
                }
            }
            // Without room anywhere, the queue waits (in order) for a worker to make room.
            let Some((index, _)) = best else { break };
            queue.pop_front();
            let slot = &mut slots[index];
            entry.place = Place::Sent {
                slot: index,
                generation: slot.generation,
            };
            entry.seq = slot.dispatched;
            let frame = entry.frame.clone().expect("a queued task keeps its frame");
            slot.outgoing.push(Outgoing::Task(frame));
            slot.unstarted += 1;
            slot.unstarted_bytes += bytes;
            slot.in_flight += 1;
            slot.dispatched += 1;
            if self
                .config
                .max_tasks
                .is_some_and(|max| slot.dispatched >= max)
            {
                slot.retiring = true;
            }
        }
        Self::claim_writes(core, jobs);
    }

    /// Hands every slot's pending frames to the caller to write, unless a thread is already
    /// writing to that worker (it will pick them up). Also tells idle retiring workers to exit.
    fn claim_writes(core: &mut Core, jobs: &mut Vec<WriteJob>) {
        for slot in &mut core.slots {
            let Some(conn) = &slot.conn else { continue };
            if slot.retiring && slot.in_flight == 0 && !slot.exit_sent {
                slot.outgoing.push(control(protocol::EXIT, None));
                slot.exit_sent = true;
            }
            if !slot.outgoing.is_empty() && !slot.writing {
                slot.writing = true;
                jobs.push(WriteJob {
                    conn: Arc::clone(conn),
                    frames: std::mem::take(&mut slot.outgoing),
                });
            }
        }
    }

    /// Performs claimed writes, then whatever was queued for the same workers meanwhile.
    fn write(&self, jobs: &mut Vec<WriteJob>) {
        for mut job in jobs.drain(..) {
            loop {
                let sent = protocol::send_all(job.conn.stream.as_fd(), &job.frames).is_ok();
                job.frames.clear();
                if !sent {
                    // The worker is gone or going: make sure, and let its reader settle it.
                    process::kill(&job.conn.pidfd);
                }
                let mut core = self.lock();
                let slot = &mut core.slots[job.conn.slot];
                if slot.generation != job.conn.generation {
                    // Replaced meanwhile: the new process has its own writer state.
                    break;
                }
                if !sent || slot.outgoing.is_empty() {
                    slot.writing = false;
                    if !sent {
                        slot.outgoing.clear();
                        slot.closed = true;
                    }
                    break;
                }
                // Swap, so the emptied vector is reused by the slot.
                std::mem::swap(&mut slot.outgoing, &mut job.frames);
            }
        }
    }

    fn notify_if_idle(&self, core: &Core) {
        if core.tasks.is_empty() {
            self.idle.notify_all();
        }
    }

    /// A `STARTED` frame. Returns `true` if the task must be stopped: a blocking task that was
    /// cancelled before the worker saw the cancel has started anyway.
    fn on_started(&self, core: &mut Core, conn: &Conn, id: u64, now: Option<Instant>) -> bool {
        let slot = &mut core.slots[conn.slot];
        slot.served = true;
        core.failures_in_row = 0;
        let Some(entry) = core.tasks.get_mut(&id) else {
            return false;
        };
        if entry.place
            != (Place::Sent {
                slot: conn.slot,
                generation: conn.generation,
            })
        {
            return false;
        }
        entry.place = Place::Started {
            slot: conn.slot,
            generation: conn.generation,
        };
        slot.unstarted -= 1;
        slot.unstarted_bytes -= entry.bytes;
        if entry.kind == Kind::Blocking {
            slot.running_blocking += 1;
        }
        entry.frame = None;
        if entry.completer.is_none() {
            return entry.kind == Kind::Blocking;
        }
        if let (Some(limit), Some(now)) = (self.config.timeout, now) {
            let grace = match entry.kind {
                Kind::Async => ASYNC_TIMEOUT_GRACE,
                _ => Duration::ZERO,
            };
            let deadline = now + limit + grace;
            let earliest = core.deadlines.peek().is_none_or(|d| deadline < d.0.0);
            core.deadlines.push(Reverse((deadline, id)));
            if earliest {
                let _ = self.supervisor_tx.send(Command::Wake);
            }
        }
        false
    }

    /// A `DONE_*` frame: the task's completer, if its handle still waits.
    fn on_done(core: &mut Core, conn: &Conn, id: u64) -> Option<Box<dyn Complete>> {
        let entry = core.tasks.get(&id)?;
        let started = match entry.place {
            Place::Sent { slot, generation }
                if slot == conn.slot && generation == conn.generation =>
            {
                false
            }
            Place::Started { slot, generation }
                if slot == conn.slot && generation == conn.generation =>
            {
                true
            }
            // Not this worker's task: a confused frame, ignored.
            _ => return None,
        };
        let entry = core.tasks.remove(&id)?;
        let slot = &mut core.slots[conn.slot];
        // A result proves the worker served, as a `STARTED` frame does: a worker that served dies
        // no crash-loop death, however idle it was when it died
        // (tests/crash_loop_counts_only_idle_deaths.rs).
        slot.served = true;
        core.failures_in_row = 0;
        slot.in_flight -= 1;
        if !started {
            slot.unstarted -= 1;
            slot.unstarted_bytes -= entry.bytes;
        } else if entry.kind == Kind::Blocking {
            slot.running_blocking -= 1;
        }
        entry.completer
    }

    /// Settles everything a dead worker held, and asks for its replacement.
    fn on_death(&self, conn: &Conn, status: WorkerExit) {
        let mut lost = Vec::new();
        let mut failed = Vec::new();
        let mut jobs = Vec::new();
        let mut respawn = None;
        let broken_message;
        {
            let mut core = self.lock();
            let core = &mut *core;
            let slot = &mut core.slots[conn.slot];
            if slot.generation != conn.generation {
                return;
            }
            let expected = slot.exit_sent || core.state == State::Stopping;
            let killed = slot.killed;
            let served = slot.served;
            slot.reset();
            // Every task announces its start before any of its code runs (the worker's
            // `started`), and every frame the worker wrote before dying has been read: a task
            // without a `STARTED` frame certainly had not started.
            let crash = !expected && !killed && !served;
            let mut requeue = Vec::new();
            core.tasks.retain(|&id, entry| match entry.place {
                Place::Sent { slot, generation }
                    if slot == conn.slot && generation == conn.generation =>
                {
                    if entry.completer.is_some() {
                        // Never started: safe to run elsewhere.
                        entry.place = Place::Queued;
                        requeue.push(id);
                        true
                    } else {
                        false
                    }
                }
                Place::Started { slot, generation }
                    if slot == conn.slot && generation == conn.generation =>
                {
                    lost.extend(entry.completer.take());
                    false
                }
                _ => true,
            });
            requeue.sort_unstable();
            for id in requeue.into_iter().rev() {
                core.queue.push_front(id);
            }
            if crash {
                core.failures_in_row += 1;
            }
            if core.broken.is_none() && core.failures_in_row >= self.config.crash_loop_limit {
                core.broken = Some(format!(
                    "the pool stopped taking tasks: {} worker processes in a row died before \
                     running any task (the last one {status}); check the worker initializer \
                     and the entry hook ({HOOK_ADVICE})",
                    core.failures_in_row
                ));
                self.accepting.store(false, Ordering::Release);
                for id in core.queue.drain(..) {
                    if let Some(entry) = core.tasks.remove(&id) {
                        failed.extend(entry.completer);
                    }
                }
            }
            broken_message = core.broken.clone();
            if core.state != State::Stopping && core.broken.is_none() {
                respawn = Some(Instant::now() + backoff(core.failures_in_row));
            }
            self.dispatch(core, &mut jobs);
            self.notify_if_idle(core);
        }
        for completer in lost {
            deliver(|| completer.fail(TaskError::WorkerLost(status)));
        }
        if let Some(message) = broken_message {
            for completer in failed {
                deliver(|| completer.fail(TaskError::transport(message.as_str())));
            }
        }
        self.write(&mut jobs);
        if let Some(at) = respawn {
            let _ = self.supervisor_tx.send(Command::Respawn {
                slot: conn.slot,
                at,
            });
        }
    }

    /// Resolves timed-out tasks and kills their workers; returns the next deadline.
    fn expire_deadlines(&self) -> Option<Instant> {
        let limit = self.config.timeout?;
        let mut fired = Vec::new();
        let mut kills = Vec::new();
        let mut stops = Vec::new();
        let next = {
            let mut core = self.lock();
            let core = &mut *core;
            let now = Instant::now();
            while let Some(&Reverse((at, id))) = core.deadlines.peek() {
                if at > now {
                    break;
                }
                core.deadlines.pop();
                let Some(entry) = core.tasks.get_mut(&id) else {
                    continue;
                };
                let Place::Started { slot, generation } = entry.place else {
                    continue;
                };
                fired.extend(entry.completer.take());
                let kind = entry.kind;
                let slot = &mut core.slots[slot];
                if slot.generation == generation {
                    if let Some(conn) = &slot.conn {
                        if kind == Kind::Blocking {
                            // The worker exits only if it is still running this very task.
                            stops.push((conn.pid, id));
                        } else {
                            // The worker drops an async task at its own deadline; this later one
                            // is reached only if it could not (its thread stuck inside the task).
                            slot.killed = true;
                            kills.push(Arc::clone(conn));
                        }
                    }
                }
            }
            core.deadlines.peek().map(|d| d.0.0)
        };
        // Stopped first: the task cannot go on running once its handle says it timed out.
        for (pid, id) in stops {
            stop::request_stop(pid, id);
        }
        for conn in &kills {
            process::kill(&conn.pidfd);
        }
        for completer in fired {
            deliver(|| completer.fail(TaskError::TimedOut(limit)));
        }
        next
    }

    /// Puts a freshly started worker into its slot and starts its reader.
    fn install(self: &Arc<Self>, slot: usize, spawned: Spawned) {
        let Spawned {
            mut child,
            pidfd,
            stream,
            pid,
        } = spawned;
        let mut jobs = Vec::new();
        let conn = {
            let mut core = self.lock();
            if core.state == State::Stopping {
                drop(core);
                process::reap(&mut child, &pidfd, Duration::ZERO);
                return;
            }
            let slot_state = &mut core.slots[slot];
            let conn = Arc::new(Conn {
                slot,
                generation: slot_state.generation,
                pid,
                pidfd,
                stream,
            });
            slot_state.conn = Some(Arc::clone(&conn));
            self.dispatch(&mut core, &mut jobs);
            conn
        };
        self.write(&mut jobs);
        let shared = Arc::clone(self);
        let reader_conn = Arc::clone(&conn);
        let spawned = thread::Builder::new()
            .name(format!("polyexec-subprocess-reader-{slot}"))
            .spawn(move || shared.read_worker(&reader_conn, child));
        match spawned {
            Ok(handle) => relock(self.readers.lock()).push(handle),
            Err(_) => {
                // No thread to read this worker: it cannot serve. Its tasks go elsewhere. The
                // child was moved into the failed closure and dropped unreaped, so reap by pid.
                process::kill(&conn.pidfd);
                let _ = rustix::process::waitpid(
                    rustix::process::Pid::from_raw(conn.pid as i32),
                    rustix::process::WaitOptions::empty(),
                );
                self.on_death(&conn, WorkerExit::Unknown);
            }
        }
    }

    /// A worker's reader thread: resolves its results until it dies, then settles its tasks.
    fn read_worker(self: Arc<Self>, conn: &Conn, mut child: Child) {
        let mut reader = FrameReader::new();
        let mut done: Vec<(Box<dyn Complete>, bool, protocol::FrameRef)> = Vec::new();
        let mut jobs = Vec::new();
        let timed = self.config.timeout.is_some();
        let mut spin_until: Option<Instant> = None;
        let mut spinner = Spinner::default();
        loop {
            // For a short while after activity, poll without sleeping: the next frame usually
            // follows within microseconds (a task's result after its STARTED, the next task of a
            // caller that waits for each result), and a sleeping reader costs a wake-up each.
            // Not inside a large frame: its sender is writing the rest, so a blocking read waits
            // no longer than the transfer, and reads into the frame's uninitialized capacity
            // (`NoWait` implements only `read`, so `read_to_end` would zero-fill it first).
            let filled = match spin_until {
                Some(until) if !reader.in_large_frame() => {
                    match reader.fill(&mut NoWait(&conn.stream)) {
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            if Instant::now() >= until {
                                spin_until = None;
                                spinner.stop();
                            }
                            thread::yield_now();
                            continue;
                        }
                        other => other,
                    }
                }
                _ => reader.fill(&mut &conn.stream),
            };
            // Until end of stream (the worker exited or was killed) or a read error.
            if !matches!(filled, Ok(true)) {
                break;
            }
            spin_until = spinner.start().then(|| Instant::now() + SPIN);
            let mut stops = Vec::new();
            let mut broken = false;
            {
                let mut core = self.lock();
                let now = timed.then(Instant::now);
                loop {
                    let frame = match reader.next_frame() {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    };
                    let Some((id, _)) = protocol::split_id(reader.body(&frame)) else {
                        broken = true;
                        break;
                    };
                    match frame.tag {
                        protocol::STARTED => {
                            if self.on_started(&mut core, conn, id, now) {
                                stops.push(id);
                            }
                        }
                        protocol::DONE_OK | protocol::DONE_ERR => {
                            if let Some(completer) = Self::on_done(&mut core, conn, id) {
                                done.push((completer, frame.tag == protocol::DONE_OK, frame));
                            }
                        }
                        _ => {
                            broken = true;
                            break;
                        }
                    }
                }
                self.dispatch(&mut core, &mut jobs);
                self.notify_if_idle(&core);
            }
            for (completer, ok, frame) in done.drain(..) {
                // `split_id` accepted this body above: it holds an id.
                let payload = &reader.body(&frame)[8..];
                deliver(|| completer.complete(ok, payload));
            }
            self.write(&mut jobs);
            for id in stops.drain(..) {
                stop::request_stop(conn.pid, id);
            }
            if broken {
                // A worker that breaks the protocol cannot be trusted with more tasks.
                relock(self.core.lock()).slots[conn.slot].killed = true;
                process::kill(&conn.pidfd);
            }
        }
        // From now on no task is sent to this worker (reaping may take up to `EXIT_GRACE`):
        // a task submitted meanwhile waits for the replacement
        // (tests/crash_loop_counts_only_idle_deaths.rs).
        {
            let mut core = self.lock();
            let slot = &mut core.slots[conn.slot];
            if slot.generation == conn.generation {
                slot.closed = true;
            }
        }
        let status = process::reap(&mut child, &conn.pidfd, EXIT_GRACE);
        self.on_death(conn, status);
    }

    /// The supervisor thread: starts the initial workers, then replaces dead ones and enforces
    /// time limits until told to stop.
    fn supervise(
        self: Arc<Self>,
        commands: &mpsc::Receiver<Command>,
        started: mpsc::Sender<Result<(), BuildError>>,
    ) {
        match self.start_initial() {
            Ok(()) => {
                let _ = started.send(Ok(()));
            }
            Err(err) => {
                let _ = started.send(Err(err));
                return;
            }
        }
        drop(started);
        let mut pending: Vec<(Instant, usize)> = Vec::new();
        loop {
            let next_deadline = self.expire_deadlines();
            let now = Instant::now();
            let mut due = Vec::new();
            pending.retain(|&(at, slot)| {
                if at <= now {
                    due.push(slot);
                    false
                } else {
                    true
                }
            });
            for slot in due {
                if let Some(retry) = self.respawn(slot) {
                    pending.push((retry, slot));
                }
            }
            let wake_at = pending.iter().map(|&(at, _)| at).chain(next_deadline).min();
            let command = match wake_at {
                Some(at) => {
                    match commands.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Ok(command) => Some(command),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => Some(Command::Stop),
                    }
                }
                None => Some(commands.recv().unwrap_or(Command::Stop)),
            };
            match command {
                Some(Command::Respawn { slot, at }) => pending.push((at, slot)),
                Some(Command::Wake) | None => {}
                Some(Command::Stop) => return,
            }
        }
    }

    /// Starts every worker at once, then greets each; on any failure, stops them all.
    fn start_initial(self: &Arc<Self>) -> Result<(), BuildError> {
        let mut started = Vec::with_capacity(self.size);
        for index in 0..self.size {
            match process::start(&self.config.spawn, index as u32) {
                Ok(worker) => started.push(worker),
                Err(err) => {
                    for worker in started {
                        worker.abandon(Duration::ZERO);
                    }
                    return Err(err.into());
                }
            }
        }
        let mut greeted = Vec::with_capacity(self.size);
        let mut failure = None;
        for worker in started {
            if failure.is_some() {
                worker.abandon(Duration::ZERO);
                continue;
            }
            match worker.greet() {
                Ok(spawned) => greeted.push(spawned),
                Err(err) => failure = Some(err),
            }
        }
        if let Some(err) = failure {
            for mut spawned in greeted {
                process::reap(&mut spawned.child, &spawned.pidfd, Duration::ZERO);
            }
            return Err(err.into());
        }
        for (slot, spawned) in greeted.into_iter().enumerate() {
            self.install(slot, spawned);
        }
        Ok(())
    }

    /// Starts a replacement for `slot`; on failure returns when to retry (or `None` if the pool
    /// gave up or is stopping).
    fn respawn(self: &Arc<Self>, slot: usize) -> Option<Instant> {
        if self.lock().state == State::Stopping {
            return None;
        }
        match process::spawn(&self.config.spawn, slot as u32) {
            Ok(spawned) => {
                self.install(slot, spawned);
                None
            }
            Err(err) => {
                let mut failed = Vec::new();
                let (retry, message) = {
                    let mut core = self.lock();
                    core.failures_in_row += 1;
                    if core.broken.is_none() && core.failures_in_row >= self.config.crash_loop_limit
                    {
                        core.broken = Some(format!(
                            "the pool stopped taking tasks: {} worker processes in a row failed \
                             to start; the last: {err}",
                            core.failures_in_row
                        ));
                        self.accepting.store(false, Ordering::Release);
                        let core = &mut *core;
                        for id in core.queue.drain(..) {
                            if let Some(entry) = core.tasks.remove(&id) {
                                failed.extend(entry.completer);
                            }
                        }
                        self.notify_if_idle(core);
                    }
                    let retry = (core.broken.is_none() && core.state != State::Stopping)
                        .then(|| Instant::now() + backoff(core.failures_in_row));
                    (retry, core.broken.clone())
                };
                if let Some(message) = message {
                    for completer in failed {
                        deliver(|| completer.fail(TaskError::transport(message.as_str())));
                    }
                }
                retry
            }
        }
    }

    fn shutdown(&self, now: bool) {
        let mut dropped = Vec::new();
        let mut kills = Vec::new();
        let mut jobs = Vec::new();
        {
            let mut core = self.lock();
            self.accepting.store(false, Ordering::Release);
            if core.state == State::Running {
                core.state = State::Draining;
            }
            if now {
                core.state = State::Stopping;
                core.queue.clear();
                for (_, entry) in core.tasks.drain() {
                    dropped.extend(entry.completer);
                }
                for slot in &mut core.slots {
                    if let Some(conn) = &slot.conn {
                        slot.killed = true;
                        kills.push(Arc::clone(conn));
                    }
                }
                self.idle.notify_all();
            } else {
                while !core.tasks.is_empty() {
                    core = relock(self.idle.wait(core));
                }
                core.state = State::Stopping;
                for slot in &mut core.slots {
                    if slot.conn.is_some() && !slot.exit_sent {
                        slot.outgoing.push(control(protocol::EXIT, None));
                        slot.exit_sent = true;
                    }
                }
                Self::claim_writes(&mut core, &mut jobs);
            }
        }
        for conn in &kills {
            process::kill(&conn.pidfd);
        }
        // Only once the workers are dead: no task they held can run after its handle resolved.
        for conn in &kills {
            process::wait_exit(&conn.pidfd, EXIT_GRACE);
        }
        // Resolves every dropped handle with `ShutDown`.
        drop(dropped);
        self.write(&mut jobs);

        let _finish = relock(self.finish.lock());
        let _ = self.supervisor_tx.send(Command::Stop);
        let me = thread::current().id();
        if let Some(handle) = relock(self.supervisor.lock()).take() {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
        // Each reader returns once its worker is reaped; no new reader starts once the
        // supervisor is gone.
        loop {
            let handles = std::mem::take(&mut *relock(self.readers.lock()));
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                if handle.thread().id() != me {
                    let _ = handle.join();
                }
            }
        }
    }
}

/// Delay before starting a replacement after `failures` workers in a row died without serving.
fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => Duration::from_millis(10u64 << (n - 1).min(6)),
    }
}

impl Cancel for Shared {
    fn cancel(&self, id: u64) {
        let dropped;
        let mut stop = None;
        let mut jobs = Vec::new();
        {
            let mut core = self.lock();
            let core = &mut *core;
            let Some(entry) = core.tasks.get_mut(&id) else {
                return;
            };
            match entry.place {
                Place::Queued => {
                    // Its id stays in the queue and is skipped there.
                    dropped = core.tasks.remove(&id).and_then(|e| e.completer);
                }
                Place::Sent { slot, generation } => {
                    // Not started: the worker drops it when it reads the cancel, before it starts
                    // its next task. Should its `STARTED` frame cross the cancel, `on_started`
                    // kills the worker then (a blocking task cannot be stopped otherwise).
                    dropped = entry.completer.take();
                    let slot = &mut core.slots[slot];
                    if slot.generation == generation && slot.conn.is_some() {
                        slot.outgoing.push(control(protocol::CANCEL, Some(id)));
                    }
                }
                Place::Started { slot, generation } => {
                    dropped = entry.completer.take();
                    let kind = entry.kind;
                    let slot = &mut core.slots[slot];
                    if slot.generation == generation {
                        if let Some(conn) = &slot.conn {
                            if kind == Kind::Async {
                                // The worker drops the future; others on it are unaffected.
                                slot.outgoing.push(control(protocol::CANCEL, Some(id)));
                            } else {
                                // A running blocking task cannot be interrupted: its worker
                                // exits (and is replaced) if it is still running this task.
                                stop = Some((conn.pid, id));
                            }
                        }
                    }
                }
            }
            Self::claim_writes(core, &mut jobs);
            self.notify_if_idle(core);
        }
        drop(dropped);
        self.write(&mut jobs);
        if let Some((pid, id)) = stop {
            stop::request_stop(pid, id);
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
        self.shared.submit(addr, &input)
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
        self.shared.submit(addr, &input)
    }

    fn workers(&self) -> usize {
        self.shared.size
    }

    fn backend_name(&self) -> &'static str {
        "subprocess"
    }

    /// Each hand-over costs a message to another process, so `map` sends inputs in chunks.
    fn preferred_chunk_size(&self) -> usize {
        PREFERRED_CHUNK
    }

    fn shutdown(&self) {
        self.shared.shutdown(false);
    }

    fn shutdown_now(&self) {
        self.shared.shutdown(true);
    }
}

/// `map`'s default chunk size on this backend.
const PREFERRED_CHUNK: usize = 128;

impl Drop for ProcessPool {
    fn drop(&mut self) {
        self.shared.shutdown(false);
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
    env: Vec<(OsString, OsString)>,
    handshake_timeout: Duration,
    crash_loop_limit: u32,
    pipeline_depth: usize,
}

impl Default for ProcessPoolBuilder {
    fn default() -> Self {
        ProcessPoolBuilder {
            workers: None,
            max_tasks_per_worker: None,
            task_timeout: None,
            initializer: None,
            env: Vec::new(),
            handshake_timeout: Duration::from_secs(5),
            crash_loop_limit: 5,
            pipeline_depth: 32,
        }
    }
}

fn init_addr<F: Fn() + Copy>(key: &Key) -> TaskAddr {
    key.init::<F>()
}

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
    /// [`TaskError::TimedOut`]; an async task over the limit is dropped by its worker, which
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
    /// stops taking tasks: queued and new ones fail with [`TaskError::Transport`] saying why.
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
            .field("env", &self.env)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("crash_loop_limit", &self.crash_loop_limit)
            .field("pipeline_depth", &self.pipeline_depth)
            .finish()
    }
}
