//! The worker process: greets its parent, then runs tasks until told to exit.
//!
//! One thread, the one that called [`crate::init`], runs a local async executor: async tasks
//! interleave on it, blocking tasks run on it to completion one at a time. It reads the channel
//! itself (through the async-io reactor when idle, and between tasks), so a task reaches it with
//! no hand-over between threads. Cancellations read between tasks drop queued tasks before they
//! start; a running blocking task is stopped by the parent killing the worker. Every task's code
//! runs only after a `STARTED` frame for it has been written, so when a worker dies the parent
//! knows exactly which of its tasks had started.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use async_executor::{LocalExecutor, Task};
use async_io::Async;
use polyexec_core::TaskError;
use rustix::event::{PollFd, PollFlags};
use rustix::net::SendFlags;
use rustix::process::{Pid, Signal};

mod shared;

use crate::entry::{Key, Kind};
use crate::inherited;
use crate::payload::{self, Payload};
use crate::process::{self, EXIT_INIT_FAILED, EXIT_MISMATCH, EXIT_SETUP_FAILED};
use crate::protocol::{self, FdReader, FrameReader, Hello, PROTOCOL_VERSION, Ready};
use crate::shm::stream::Incoming;
use crate::shm::{Arena, Region};

/// Set once this process serves as a worker: a worker never starts workers.
static SERVING: AtomicBool = AtomicBool::new(false);

/// The pool's process id, in a worker process (0 elsewhere).
static PARENT: AtomicI32 = AtomicI32::new(0);

/// `true` while the pool that started this worker process lives (asked by a worker waiting
/// for the pool to write a task's input; see [`crate::shm::stream`]).
pub(crate) fn parent_alive() -> bool {
    Pid::as_raw(rustix::process::getppid()) == PARENT.load(Ordering::Relaxed)
}

/// `true` in a worker process that is serving tasks.
pub(crate) fn is_serving() -> bool {
    SERVING.load(Ordering::Relaxed)
}

/// Serves as the worker of the parent named in the environment; never returns.
pub(crate) fn serve_current() -> ! {
    let code = match process::worker_parent() {
        Some(parent) => serve(parent),
        None => EXIT_SETUP_FAILED,
    };
    std::process::exit(code)
}

/// How long a fresh worker waits for its parent's `Hello`: the parent sends it right after
/// starting the worker, so only a parent that is itself stuck takes this long.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

fn serve(parent: Pid) -> i32 {
    SERVING.store(true, Ordering::Relaxed);
    PARENT.store(parent.as_raw_nonzero().get(), Ordering::Relaxed);
    // First, before this process opens anything of its own (see the module's invariant).
    inherited::close_inherited();
    // The protocol socket arrived as stdin. Move it to a close-on-exec descriptor (so processes
    // that tasks start do not inherit it) and give fd 0 to /dev/null (so a task that reads stdin
    // reads nothing instead of the protocol).
    let Ok(fd) = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3) else {
        return EXIT_SETUP_FAILED;
    };
    let Ok(null) = File::open("/dev/null") else {
        return EXIT_SETUP_FAILED;
    };
    if rustix::stdio::dup2_stdin(&null).is_err() {
        return EXIT_SETUP_FAILED;
    }
    drop(null);
    // Die with the parent. The signal is tied to the parent *thread* that started us, which is
    // the pool's long-lived supervisor. Re-check the parent afterwards: it may have died first.
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err()
        || rustix::process::getppid() != Some(parent)
    {
        return EXIT_SETUP_FAILED;
    }
    polyexec_core::install_panic_hook();
    let mut stream = UnixStream::from(fd);

    let hello = match read_hello(&mut stream) {
        Some(hello) => hello,
        None => return EXIT_SETUP_FAILED,
    };
    if hello.protocol != PROTOCOL_VERSION || hello.fingerprint != process::fingerprint() {
        refuse(
            &stream,
            "the worker is not the same build as its parent (the executable changed on disk, or \
             another program started it)",
        );
        return EXIT_MISMATCH;
    }
    let key = Key::from_bytes(hello.key);
    if let Some(init) = hello.init {
        if let Err(err) = key
            .resolve_init(init)
            .and_then(|init| init(&hello.init_arg))
        {
            refuse(&stream, &format!("the worker initializer failed: {err}"));
            return EXIT_INIT_FAILED;
        }
    }
    let ready = Ready {
        protocol: PROTOCOL_VERSION,
        fingerprint: process::fingerprint(),
        pid: std::process::id(),
    };
    let mut frame = Vec::new();
    protocol::push_message(&mut frame, protocol::READY, &ready);
    if protocol::send_all(stream.as_fd(), &[&frame], None).is_err() {
        return EXIT_SETUP_FAILED;
    }

    // Bounds each blocking wait for room to write (see `Channel::send`).
    if stream.set_write_timeout(Some(SEND_WAIT)).is_err() {
        return EXIT_SETUP_FAILED;
    }
    // Before the first task: the parent stops a running blocking task through it.
    if crate::stop::install().is_err() {
        return EXIT_SETUP_FAILED;
    }
    let Ok(stream) = Async::new(stream) else {
        return EXIT_SETUP_FAILED;
    };
    // A runtime of the worker's own, made here on purpose: the same whether `init()` was
    // called from a plain `main` or inside the parent program's `#[tokio::main]` (whose runtime
    // this process then also has, unused by tasks). Its thread drives tasks' I/O and timers;
    // this thread, which polls the tasks, stays in its context.
    #[cfg(feature = "tokio")]
    let Ok(tokio) = polyexec_core::TokioRuntime::new("polyexec-worker-tokio") else {
        return EXIT_SETUP_FAILED;
    };
    #[cfg(feature = "tokio")]
    let Some(handle) = tokio.handle() else {
        return EXIT_SETUP_FAILED;
    };
    #[cfg(feature = "tokio")]
    let _context = polyexec_core::enter_tokio(&handle);
    execute(stream, &key, hello.timeout, hello.shared_memory);
    0
}

fn read_hello(stream: &mut UnixStream) -> Option<Hello> {
    stream.set_read_timeout(Some(HELLO_TIMEOUT)).ok()?;
    let (tag, body) = process::read_one_frame(stream).ok()?;
    if tag != protocol::HELLO {
        return None;
    }
    let hello = protocol::decode(&body).ok()?;
    stream.set_read_timeout(None).ok()?;
    Some(hello)
}

fn refuse(stream: &UnixStream, reason: &str) {
    let mut frame = Vec::new();
    protocol::push_message(&mut frame, protocol::REFUSED, &reason);
    let _ = protocol::send_all(stream.as_fd(), &[&frame], None);
}

/// The worker's end of the channel. Used by the executor thread only: reading happens between
/// tasks (and while a write waits for room), so no other thread and no hand-over is involved.
struct Channel {
    stream: Async<UnixStream>,
    reader: RefCell<FrameReader>,
    out: RefCell<Vec<u8>>,
    /// `RUN` and `RUN_SHARED` bodies (with their tag) read and not yet started, in arrival order.
    pending: RefCell<VecDeque<(u8, Vec<u8>)>>,
    /// Descriptors received with region frames, not yet claimed by their frame.
    fds: RefCell<VecDeque<OwnedFd>>,
    /// The pool's region of inputs, as last sent; `None` before that, or if it could not be
    /// mapped (then tasks whose input is in it fail with an error).
    inputs: RefCell<Option<Arc<Region>>>,
    /// Large outputs go through a region of this worker's own.
    shared_memory: bool,
    outputs: RefCell<Arena>,
    /// A region made for outputs, whose descriptor the parent must get before the next frame.
    announce: RefCell<Option<Arc<Region>>>,
    /// Emptied `RUN` buffers, reused: a fresh large allocation per task costs page faults.
    spare: RefCell<Vec<Vec<u8>>>,
    /// Running async tasks, for cancellation.
    live: RefCell<HashMap<u64, Task<()>>>,
    exiting: Cell<bool>,
    /// Wakes the main loop when the last async task finishes during exit.
    idle_waker: RefCell<Option<Waker>>,
}

impl Channel {
    /// Reads whatever has arrived, without blocking, and acts on it: `RUN` frames are queued,
    /// `CANCEL` drops a queued task or a running async task, `EXIT` starts the exit. End of
    /// stream means the parent is gone: nobody can receive results, so the worker exits.
    fn drain(&self) {
        loop {
            let filled = self.reader.borrow_mut().fill(&mut FdReader {
                socket: self.stream.get_ref().as_fd(),
                fds: &mut self.fds.borrow_mut(),
                wait: false,
            });
            match filled {
                Ok(true) => {
                    self.parse();
                    let reader = self.reader.borrow();
                    if reader.drained() && !reader.in_frame() {
                        // A short read with no partial frame: nothing more has arrived; skip
                        // the read that would only say so.
                        return;
                    }
                }
                Ok(false) => std::process::exit(0),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if !self.reader.borrow().in_frame() {
                        return;
                    }
                    // The parent is writing the rest of this frame right now: wait for it here
                    // rather than through the executor's reactor, which would cost a round of
                    // wake-ups for every chunk of a large frame.
                    self.wait_readable();
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => std::process::exit(0),
            }
        }
    }

    fn parse(&self) {
        loop {
            let mut reader = self.reader.borrow_mut();
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(_) => std::process::exit(EXIT_SETUP_FAILED),
            };
            match frame.tag {
                protocol::RUN | protocol::RUN_SHARED => {
                    let body = reader
                        .take_body(&frame, || self.spare.borrow_mut().pop().unwrap_or_default());
                    self.pending.borrow_mut().push_back((frame.tag, body));
                }
                protocol::INPUT_REGION => {
                    let Some((generation, _)) = protocol::split_id(reader.body(&frame)) else {
                        std::process::exit(EXIT_SETUP_FAILED);
                    };
                    // Every task that named the previous region has been answered (the pool
                    // replaces it only then), so it can go.
                    let region = self
                        .fds
                        .borrow_mut()
                        .pop_front()
                        .and_then(|fd| Region::open(fd, false, generation).ok().map(Arc::new));
                    *self.inputs.borrow_mut() = region;
                }
                protocol::CANCEL => {
                    let Some((id, _)) = protocol::split_id(reader.body(&frame)) else {
                        std::process::exit(EXIT_SETUP_FAILED);
                    };
                    drop(reader);
                    self.cancel(id);
                }
                protocol::EXIT => self.exiting.set(true),
                _ => std::process::exit(EXIT_SETUP_FAILED),
            }
        }
    }

    /// A `CANCEL` frame. Its `RUN` came first on the stream, so the task is queued here, running
    /// as an async task, or finished (then there is nothing to do). It cannot be a running
    /// blocking task: frames are read between tasks; the parent kills the worker for those.
    fn cancel(&self, id: u64) {
        let queued = {
            let mut pending = self.pending.borrow_mut();
            let position = pending
                .iter()
                .position(|(_, body)| protocol::split_id(body).is_some_and(|(run, _)| run == id));
            position.and_then(|i| pending.remove(i)).is_some()
        };
        let running = self.live.borrow_mut().remove(&id);
        if queued || running.is_some() {
            drop(running);
            protocol::push_error(&mut self.out.borrow_mut(), id, &TaskError::Cancelled);
        }
    }

    /// Writes every pending output frame, blocking if the parent is slow to read; while blocked,
    /// keeps reading, so a parent blocked writing to us is never deadlocked against us.
    fn flush(&self) {
        // Before any frame that names it, and after every frame that named the region it
        // replaces (a region is replaced only once the parent released everything in it).
        let announce = self.announce.borrow_mut().take();
        if let Some(region) = announce {
            let mut frame = Vec::with_capacity(13);
            protocol::push_region_frame(&mut frame, protocol::OUTPUT_REGION, region.generation());
            self.send(&frame, region.fd());
        }
        loop {
            let mut buf = std::mem::take(&mut *self.out.borrow_mut());
            if buf.is_empty() {
                *self.out.borrow_mut() = buf;
                return;
            }
            self.send(&buf, None);
            buf.clear();
            let mut out = self.out.borrow_mut();
            if out.is_empty() {
                if buf.capacity() > 16 << 20 {
                    buf.shrink_to(64 << 10);
                }
                *out = buf;
                return;
            }
            // Frames added while sending (cancellations read meanwhile): send them next.
            drop(out);
        }
    }

    /// Writes `bytes`, and `pass` with the first of them.
    fn send(&self, mut bytes: &[u8], mut pass: Option<BorrowedFd<'_>>) {
        let stream = self.stream.get_ref();
        let fd = stream.as_fd();
        let mut blocking = false;
        while !bytes.is_empty() {
            let sent = match pass {
                Some(passed) => protocol::send_with_fd(fd, bytes, passed),
                None => rustix::net::send(fd, bytes, SendFlags::NOSIGNAL),
            };
            match sent {
                Ok(n) => {
                    pass = None;
                    bytes = &bytes[n..];
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) if !blocking => {
                    // No room: wait in `send` itself, which resumes as soon as any room frees
                    // up (`poll` would report writable only once most of the buffer drained,
                    // leaving the channel idle in between). The send timeout bounds each wait
                    // so incoming frames are read meanwhile.
                    blocking = stream.set_nonblocking(false).is_ok();
                    if !blocking {
                        std::process::exit(0);
                    }
                }
                Err(rustix::io::Errno::AGAIN) => {
                    let _ = stream.set_nonblocking(true);
                    self.drain();
                    let _ = stream.set_nonblocking(false);
                }
                // The parent is gone: nobody wants the results.
                Err(_) => std::process::exit(0),
            }
        }
        if blocking && stream.set_nonblocking(true).is_err() {
            std::process::exit(0);
        }
    }

    fn push_error(&self, id: u64, err: &TaskError) {
        protocol::push_error(&mut self.out.borrow_mut(), id, err);
    }

    /// Called before any of task `id`'s code (including its input's `Deserialize`) runs: makes
    /// sure the parent can tell, should this worker die, which tasks had started.
    ///
    /// Every earlier result is flushed first, together with a `STARTED` frame for this task.
    /// The frame is written for every task, also for one that runs alone on an otherwise idle
    /// worker: without it the parent could not tell, should the worker die (or be killed to stop
    /// another task), whether that task had started, and would have to fail it without cause.
    fn started(&self, id: u64) {
        protocol::push_id_frame(&mut self.out.borrow_mut(), protocol::STARTED, id);
        self.flush();
    }

    fn push_output(&self, id: u64, output: Result<Vec<u8>, TaskError>) {
        match output {
            Ok(bytes) => {
                if !self.push_encoded_shared(id, &bytes) {
                    self.push_inline(id, &bytes);
                }
            }
            Err(err) => self.push_error(id, &err),
        }
    }

    fn push_inline(&self, id: u64, bytes: &[u8]) {
        let mut buf = self.out.borrow_mut();
        let start = protocol::begin_frame(&mut buf, protocol::DONE_OK);
        buf.extend_from_slice(&id.to_le_bytes());
        buf.extend_from_slice(bytes);
        if !protocol::end_frame(&mut buf, start) {
            buf.truncate(start);
            drop(buf);
            self.push_error(id, &too_large());
        }
    }

    /// Runs a blocking trampoline, encoding its output straight into the output buffer.
    fn run_blocking(&self, id: u64, f: crate::entry::BlockingFn, input: protocol::Input<'_>) {
        // Taken out of the cell while the task runs: no borrow is held across user code.
        let mut buf = std::mem::take(&mut *self.out.borrow_mut());
        let start = protocol::begin_frame(&mut buf, protocol::DONE_OK);
        buf.extend_from_slice(&id.to_le_bytes());
        // Also out of its cell while the task runs (the output's `Serialize` is user code).
        let mut arena = std::mem::take(&mut *self.outputs.borrow_mut());
        let outcome = f(input, &mut buf, &mut |len| {
            self.place_output(&mut arena, len)
        });
        *self.outputs.borrow_mut() = arena;
        // Before the result frame can be written: a stop request for this task is now stale.
        crate::stop::finished();
        let mut streamed = None;
        let result = match outcome {
            Ok(Payload::Inline) if protocol::end_frame(&mut buf, start) => Ok(()),
            Ok(Payload::Inline) => Err(too_large()),
            Ok(Payload::Shared { slot, len }) => {
                buf.truncate(start);
                Self::push_shared(&mut buf, id, slot, len);
                Ok(())
            }
            Ok(Payload::Streamed {
                slot,
                len,
                stream,
                bytes: Some(bytes),
            }) => {
                buf.truncate(start);
                Self::push_shared(&mut buf, id, slot, len);
                streamed = Some((stream, bytes));
                Ok(())
            }
            Ok(Payload::Streamed { bytes: None, .. }) => Err(TaskError::transport(
                "a streamed output came without its bytes",
            )),
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            buf.truncate(start);
            protocol::push_error(&mut buf, id, &err);
        }
        {
            let mut out = self.out.borrow_mut();
            buf.extend_from_slice(&out);
            *out = buf;
        }
        if let Some((stream, bytes)) = streamed {
            // The frame first: the pool copies the output out while it is copied in.
            self.flush();
            payload::write_streamed(stream, &bytes);
        }
    }

    /// Blocks until the channel is readable (or closed).
    fn wait_readable(&self) {
        let fd = self.stream.get_ref().as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => std::process::exit(0),
        }
    }

    fn recycle(&self, mut buf: Vec<u8>) {
        let mut spare = self.spare.borrow_mut();
        // Spares receive the bodies of frames up to `LARGE` only (larger ones arrive in their
        // own buffer): keeping bigger ones would hold memory that no frame reuses.
        if spare.len() < 8 && buf.capacity() <= 2 * protocol::LARGE {
            buf.clear();
            spare.push(buf);
        }
    }

    fn wake_if_idle(&self) {
        if self.exiting.get() && self.live.borrow().is_empty() {
            if let Some(waker) = self.idle_waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

fn too_large() -> TaskError {
    TaskError::codec(
        polyexec_core::CodecStage::EncodeOutput,
        "the encoded output is larger than 4 GiB",
    )
}

/// Longest a blocked write waits before the worker reads incoming frames and tries again.
const SEND_WAIT: Duration = Duration::from_millis(2);

/// After a task that ran at least this long, the worker reads the channel again before starting
/// the next one, so a cancel sent meanwhile is seen in time.
const DRAIN_AFTER: Duration = Duration::from_micros(50);

/// The executor thread's loop; returns once told to exit and every task has finished.
fn execute(stream: Async<UnixStream>, key: &Key, timeout: Option<Duration>, shared_memory: bool) {
    let chan = Channel {
        stream,
        reader: RefCell::new(FrameReader::new()),
        out: RefCell::new(Vec::with_capacity(64 << 10)),
        pending: RefCell::new(VecDeque::new()),
        fds: RefCell::new(VecDeque::new()),
        inputs: RefCell::new(None),
        shared_memory,
        outputs: RefCell::new(Arena::default()),
        announce: RefCell::new(None),
        spare: RefCell::new(Vec::new()),
        live: RefCell::new(HashMap::new()),
        exiting: Cell::new(false),
        idle_waker: RefCell::new(None),
    };
    // Declared last so it is dropped first: its tasks borrow `chan`.
    let ex = LocalExecutor::new();
    let main = async {
        loop {
            chan.drain();
            let mut last_drain = Instant::now();
            loop {
                let Some((tag, mut body)) = chan.pending.borrow_mut().pop_front() else {
                    break;
                };
                run(&chan, &ex, key, timeout, tag, &mut body);
                chan.recycle(body);
                if last_drain.elapsed() >= DRAIN_AFTER {
                    chan.drain();
                    last_drain = Instant::now();
                }
            }
            chan.flush();
            if chan.exiting.get() && chan.live.borrow().is_empty() {
                return;
            }
            if chan.live.borrow().is_empty() {
                // Nothing else to run: wait for frames right here. Cheaper than a round through
                // the reactor (which also re-arms its notifier), and on the latency path.
                chan.wait_readable();
                continue;
            }
            // Wait for frames, letting the async tasks run meanwhile; during exit, also for the
            // last async task to finish.
            let readable = async {
                let _ = chan.stream.readable().await;
            };
            let idle = poll_fn(|cx| {
                if chan.exiting.get() && chan.live.borrow().is_empty() {
                    Poll::Ready(())
                } else {
                    *chan.idle_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            });
            futures_lite::future::or(readable, idle).await;
        }
    };
    async_io::block_on(ex.run(main));
    chan.flush();
}

/// Starts one task: a blocking one runs to completion here, an async one is spawned.
fn run<'a>(
    chan: &'a Channel,
    ex: &LocalExecutor<'a>,
    key: &Key,
    timeout: Option<Duration>,
    tag: u8,
    body: &mut Vec<u8>,
) {
    let (run, place) = if tag == protocol::RUN_SHARED {
        match protocol::parse_run_shared(body) {
            Some((run, place)) => (run, Some(place)),
            None => std::process::exit(EXIT_SETUP_FAILED),
        }
    } else {
        match protocol::parse_run(body) {
            Some(run) => (run, None),
            None => std::process::exit(EXIT_SETUP_FAILED),
        }
    };
    let id = run.id;
    let addr = run.addr;
    let input_start = body.len() - run.input.len();
    if addr.kind == Kind::Blocking {
        // Before `STARTED` is written: from then on the parent may ask to stop this task.
        crate::stop::running(id);
    }
    chan.started(id);
    // Held while the input is decoded (a region frame read meanwhile cannot unmap it).
    let region = match place.map(|place| chan.shared_input(place).map(|r| (r, place))) {
        Some(Err(err)) => {
            crate::stop::finished();
            return chan.push_error(id, &err);
        }
        Some(Ok(found)) => Some(found),
        None => None,
    };
    let input = match &region {
        Some((region, place)) => {
            protocol::Input::Shared(Incoming::new(region, place.offset, place.len))
        }
        None => protocol::Input::new(body, input_start),
    };
    match addr.kind {
        Kind::Blocking => match key.resolve_blocking(addr) {
            Ok(f) => chan.run_blocking(id, f, input),
            Err(err) => {
                crate::stop::finished();
                chan.push_error(id, &err);
            }
        },
        Kind::Async => {
            let bytes = input
                .bytes(&parent_alive)
                .map_err(|_| crate::entry::input_gone());
            let future =
                match bytes.and_then(|bytes| key.resolve_async(addr).and_then(|f| f(bytes))) {
                    Ok(future) => future,
                    Err(err) => return chan.push_error(id, &err),
                };
            let task = ex.spawn(async move {
                let result = match timeout {
                    Some(limit) => {
                        futures_lite::future::or(future, async move {
                            async_io::Timer::after(limit).await;
                            Err(TaskError::TimedOut(limit))
                        })
                        .await
                    }
                    None => future.await,
                };
                // Out of the live set before the result is written, so a cancel read while
                // writing finds nothing to cancel.
                if let Some(task) = chan.live.borrow_mut().remove(&id) {
                    // Our own handle: detaching does not cancel us.
                    task.detach();
                }
                chan.push_output(id, result);
                chan.flush();
                chan.wake_if_idle();
            });
            chan.live.borrow_mut().insert(id, task);
        }
        Kind::Init => chan.push_error(id, &TaskError::transport("an initializer is not a task")),
    }
}
