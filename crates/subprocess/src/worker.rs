//! The worker process: greets its parent, then runs tasks until told to exit.
//!
//! Two threads. The *reader* reads frames from the parent and queues them, and records
//! cancellations as they arrive, so a cancel is seen even while a task runs. The *executor* (the
//! thread that called [`crate::init`]) runs a local async executor: async tasks interleave on it,
//! blocking tasks run on it to completion one at a time. Every task's code runs only after a
//! `STARTED` frame for it has been written, so when a worker dies the parent knows exactly which
//! of its tasks had started.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::future::poll_fn;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use async_executor::{LocalExecutor, Task};
use polyexec_core::TaskError;
use rustix::process::{Pid, Signal};

use crate::entry::{Key, Kind};
use crate::process::{self, EXIT_INIT_FAILED, EXIT_MISMATCH, EXIT_SETUP_FAILED};
use crate::protocol::{self, FrameReader, Hello, PROTOCOL_VERSION, Ready};

/// Set once this process serves as a worker: a worker never starts workers.
static SERVING: AtomicBool = AtomicBool::new(false);

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
        if let Err(err) = key.resolve_init(init).and_then(|init| init()) {
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
    if protocol::send_all(stream.as_fd(), &[&frame]).is_err() {
        return EXIT_SETUP_FAILED;
    }

    let shared = Arc::new(Shared::default());
    let Ok(read_half) = stream.try_clone() else {
        return EXIT_SETUP_FAILED;
    };
    let reader_shared = Arc::clone(&shared);
    let spawned = std::thread::Builder::new()
        .name("polyexec-worker-reader".into())
        .spawn(move || read_loop(read_half, &reader_shared));
    if spawned.is_err() {
        return EXIT_SETUP_FAILED;
    }
    execute(&stream, &key, &shared, hello.timeout);
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
    let _ = protocol::send_all(stream.as_fd(), &[&frame]);
}

/// A message from the reader thread to the executor.
enum Msg {
    Run(Vec<u8>),
    Cancel(u64),
    Exit,
}

#[derive(Default)]
struct Inbox {
    msgs: VecDeque<Msg>,
    /// Set to wake the executor with no message (an async task finished while exiting).
    poked: bool,
    waker: Option<Waker>,
}

/// State shared by the two threads of a worker.
#[derive(Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    /// Tasks cancelled by the parent that may not have started yet.
    cancelled: Mutex<HashSet<u64>>,
    /// `true` while `cancelled` may be non-empty: spares a lock per task when nothing is.
    any_cancelled: AtomicBool,
}

impl Shared {
    fn push(&self, msgs: &mut Vec<Msg>) {
        let waker = {
            let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
            inbox.msgs.extend(msgs.drain(..));
            inbox.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poke(&self) {
        let waker = {
            let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
            inbox.poked = true;
            inbox.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits for messages (or a poke) and moves them all into `batch`.
    async fn next_batch(&self, batch: &mut VecDeque<Msg>) {
        poll_fn(|cx| {
            let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
            if !inbox.msgs.is_empty() || inbox.poked {
                inbox.poked = false;
                std::mem::swap(&mut inbox.msgs, batch);
                Poll::Ready(())
            } else {
                inbox.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    fn cancel(&self, id: u64) {
        let mut cancelled = self
            .cancelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cancelled.insert(id);
        self.any_cancelled.store(true, Ordering::Release);
    }

    /// Whether `id` was cancelled, forgetting it.
    fn take_cancelled(&self, id: u64) -> bool {
        if !self.any_cancelled.load(Ordering::Acquire) {
            return false;
        }
        let mut cancelled = self
            .cancelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let found = cancelled.remove(&id);
        if cancelled.is_empty() {
            self.any_cancelled.store(false, Ordering::Release);
        }
        found
    }
}

/// The reader thread: frames from the parent into the inbox. End of stream means the parent is
/// gone (or closed the channel): nobody can receive results any more, so the worker exits.
fn read_loop(mut stream: UnixStream, shared: &Shared) {
    let mut reader = FrameReader::new();
    let mut msgs = Vec::new();
    loop {
        match reader.fill(&mut stream) {
            Ok(true) => {}
            Ok(false) | Err(_) => std::process::exit(0),
        }
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => std::process::exit(EXIT_SETUP_FAILED),
            };
            let body = reader.body(&frame);
            match frame.tag {
                protocol::RUN => msgs.push(Msg::Run(body.to_vec())),
                protocol::CANCEL => match protocol::split_id(body) {
                    Some((id, _)) => {
                        // Recorded here at once, so a task queued behind a running one is
                        // skipped; the message then lets the executor drop a running async task.
                        shared.cancel(id);
                        msgs.push(Msg::Cancel(id));
                    }
                    None => std::process::exit(EXIT_SETUP_FAILED),
                },
                protocol::EXIT => msgs.push(Msg::Exit),
                _ => std::process::exit(EXIT_SETUP_FAILED),
            }
        }
        if !msgs.is_empty() {
            shared.push(&mut msgs);
        }
    }
}

/// Frames to the parent, written by the executor thread only.
struct Output<'a> {
    buf: RefCell<Vec<u8>>,
    stream: &'a UnixStream,
}

impl Output<'_> {
    fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        if protocol::send_all(self.stream.as_fd(), &[&buf[..]]).is_err() {
            // The parent is gone: nobody wants the results.
            std::process::exit(0);
        }
        buf.clear();
        if buf.capacity() > 16 << 20 {
            buf.shrink_to(64 << 10);
        }
    }

    fn push_error(&self, id: u64, err: &TaskError) {
        protocol::push_error(&mut self.buf.borrow_mut(), id, err);
    }

    /// Announces that `id` is about to run and makes sure the parent has the news before any of
    /// the task's code (including its input's `Deserialize`) runs.
    fn started(&self, id: u64) {
        protocol::push_id_frame(&mut self.buf.borrow_mut(), protocol::STARTED, id);
        self.flush();
    }

    fn push_output(&self, id: u64, output: Result<Vec<u8>, TaskError>) {
        match output {
            Ok(bytes) => {
                let mut buf = self.buf.borrow_mut();
                let start = protocol::begin_frame(&mut buf, protocol::DONE_OK);
                buf.extend_from_slice(&id.to_le_bytes());
                buf.extend_from_slice(&bytes);
                if !protocol::end_frame(&mut buf, start) {
                    buf.truncate(start);
                    drop(buf);
                    self.push_error(id, &too_large());
                }
            }
            Err(err) => self.push_error(id, &err),
        }
    }

    /// Runs a blocking trampoline, encoding its output straight into the output buffer.
    fn run_blocking(&self, id: u64, f: crate::entry::BlockingFn, input: &[u8]) {
        // Taken out of the cell while the task runs: nothing else touches it meanwhile, and no
        // borrow is held across user code.
        let mut buf = std::mem::take(&mut *self.buf.borrow_mut());
        let start = protocol::begin_frame(&mut buf, protocol::DONE_OK);
        buf.extend_from_slice(&id.to_le_bytes());
        let result = f(input, &mut buf);
        let result = match result {
            Ok(()) if protocol::end_frame(&mut buf, start) => Ok(()),
            Ok(()) => Err(too_large()),
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            buf.truncate(start);
            protocol::push_error(&mut buf, id, &err);
        }
        *self.buf.borrow_mut() = buf;
    }
}

fn too_large() -> TaskError {
    TaskError::Codec {
        stage: polyexec_core::CodecStage::EncodeOutput,
        message: "the encoded output is larger than 4 GiB".into(),
    }
}

/// The executor thread's loop; returns once told to exit and every task has finished.
fn execute(stream: &UnixStream, key: &Key, shared: &Shared, timeout: Option<Duration>) {
    let out = Output {
        buf: RefCell::new(Vec::with_capacity(64 << 10)),
        stream,
    };
    // Running async tasks, for cancellation.
    let live: RefCell<HashMap<u64, Task<()>>> = RefCell::new(HashMap::new());
    let exiting = std::cell::Cell::new(false);
    // Declared last so it is dropped first: its tasks borrow the state above.
    let ex = LocalExecutor::new();
    let main = async {
        let mut batch = VecDeque::new();
        loop {
            out.flush();
            if exiting.get() && live.borrow().is_empty() {
                return;
            }
            shared.next_batch(&mut batch).await;
            while let Some(msg) = batch.pop_front() {
                match msg {
                    Msg::Run(body) => {
                        let Some(run) = protocol::parse_run(&body) else {
                            std::process::exit(EXIT_SETUP_FAILED);
                        };
                        let id = run.id;
                        if shared.take_cancelled(id) {
                            out.push_error(id, &TaskError::Cancelled);
                            continue;
                        }
                        out.started(id);
                        match run.addr.kind {
                            Kind::Blocking => match key.resolve_blocking(run.addr) {
                                Ok(f) => out.run_blocking(id, f, run.input),
                                Err(err) => out.push_error(id, &err),
                            },
                            Kind::Async => {
                                let future = key.resolve_async(run.addr).and_then(|f| f(run.input));
                                let future = match future {
                                    Ok(future) => future,
                                    Err(err) => {
                                        out.push_error(id, &err);
                                        continue;
                                    }
                                };
                                let (out, live, exiting) = (&out, &live, &exiting);
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
                                    out.push_output(id, result);
                                    out.flush();
                                    if let Some(task) = live.borrow_mut().remove(&id) {
                                        // Our own handle: detaching does not cancel us.
                                        task.detach();
                                    }
                                    if exiting.get() && live.borrow().is_empty() {
                                        shared.poke();
                                    }
                                });
                                live.borrow_mut().insert(id, task);
                            }
                            Kind::Init => out.push_error(
                                id,
                                &TaskError::Transport("an initializer is not a task".into()),
                            ),
                        }
                    }
                    Msg::Cancel(id) => {
                        // Forget the record whatever happens: the task either ran already, was
                        // skipped, or is a running async task dropped now.
                        shared.take_cancelled(id);
                        let task = live.borrow_mut().remove(&id);
                        if let Some(task) = task {
                            drop(task);
                            out.push_error(id, &TaskError::Cancelled);
                        }
                    }
                    Msg::Exit => exiting.set(true),
                }
            }
            // Let the async tasks that were woken meanwhile make progress.
            futures_lite::future::yield_now().await;
        }
    };
    async_io::block_on(ex.run(main));
    out.flush();
}
