//! Worker host mode: this executable, started with `--polyexec-cluster-worker` (or by a pool as
//! a local worker), pulls the tasks of its own build from JetStream and runs them.
//!
//! A host runs up to `slots` tasks at a time and, while its tasks take long, pulls only as many
//! as it has free slots, so a queued task stays in the stream (where another host can take it,
//! or a cancel can delete it) until some host can start it; while they are short it takes a
//! few ahead (see [`Queue`]). Blocking tasks run in a local process pool of `slots` worker
//! processes (the subprocess backend, this same executable), so a task that crashes ends one of
//! those and resolves `WorkerLost` at once, and a time limit or a cancel stops a running one by
//! ending its process; async tasks run on the host's tokio runtime (see `task`). While a task
//! is held the host confirms progress every third of `ack_wait`, so a long task keeps its
//! lease; a host that dies stops confirming and JetStream hands the task to another host after
//! `ack_wait`. A task is acknowledged only once its pool confirmed its result (see `task`). On
//! SIGTERM a host stops pulling, hands back what it took but did not start, finishes what runs,
//! and exits.

mod task;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use polyexec_core::Executor;
use polyexec_subprocess::ProcessPool;
use tokio::sync::{Semaphore, oneshot};

use crate::addr::Kind;
use crate::build_id::BuildId;
use crate::frame::{CancelNotice, Hello, Key, kind};
use crate::settings::{self, Settings, env};

/// How long one pull request waits for tasks; also the longest a SIGTERM waits for a pull.
const PULL_EXPIRES: Duration = Duration::from_millis(500);

/// Async tasks one host runs at a time at most.
const ASYNC_SLOTS: u32 = 1024;

/// How long a stopping host tries to hand its last results to the server.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// The command-line flag that starts a worker host.
pub(crate) const FLAG: &str = "--polyexec-cluster-worker";

/// Whether this process was started as a worker host: by the flag, by `POLYEXEC_CLUSTER_WORKER=1`,
/// or as a local worker of a pool whose process is this one's parent (a process a task starts
/// inherits the variable but has another parent, so it is not mistaken for a host).
pub(crate) fn is_worker() -> bool {
    if std::env::args_os().skip(1).any(|a| a == FLAG) {
        return true;
    }
    match std::env::var(env::WORKER) {
        Ok(value) if value == "1" => true,
        Ok(value) => value
            .strip_prefix("parent:")
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Some(pid) == parent_pid()),
        Err(_) => false,
    }
}

#[cfg(target_os = "linux")]
fn parent_pid() -> Option<u32> {
    rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get() as u32)
}

#[cfg(not(target_os = "linux"))]
fn parent_pid() -> Option<u32> {
    None
}

/// Serves as a worker host until SIGTERM, then exits the process: 0 after a clean stop, 2 if
/// the host could not start (the reason on stderr).
pub(crate) fn serve_and_exit() -> ! {
    #[cfg(target_os = "linux")]
    if std::env::var(env::WORKER).is_ok_and(|v| v.starts_with("parent:")) {
        // A local worker dies with its pool's process, whatever way that goes.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        if !is_worker() {
            // The pool's process died before the signal was armed.
            std::process::exit(0);
        }
    }
    let code = match run() {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("polyexec cluster worker: {message}");
            2
        }
    };
    std::process::exit(code)
}

fn run() -> Result<(), String> {
    polyexec_core::install_panic_hook();
    let settings = Settings::from_env()?;
    let build = BuildId::current()?;
    // Started before the host answers any roll call: a pool that sees the host can use it.
    let processes = ProcessPool::builder()
        .workers(settings.slots as usize)
        .build()
        .map(Arc::new)
        .map_err(|e| format!("cannot start the host's worker processes: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.slots.clamp(1, 4) as usize)
        .thread_name("polyexec-cluster-host")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let served = runtime.block_on(serve(settings, build, Arc::clone(&processes)));
    // Every task is done (`serve` waited for them); the runtime's leftovers go first, so the
    // process pool is stopped here, on a thread that may wait, and its workers exit cleanly.
    drop(runtime);
    processes.shutdown();
    served
}

/// What every task of a host shares.
struct Host {
    client: async_nats::Client,
    key: Key,
    build: BuildId,
    ack_wait: Duration,
    /// The largest message the server takes.
    max_payload: usize,
    /// Runs the blocking tasks, one worker process per slot.
    processes: Arc<ProcessPool>,
    /// The tasks this host holds (waiting for a slot or running), by (pool subject, task id):
    /// a cancel notice takes a task's entry out and fires it, which stops the task.
    held: Mutex<HashMap<(String, u64), oneshot::Sender<()>>>,
}

/// Average run time below which a host takes tasks ahead of its free slots.
const SHORT_TASK: Duration = Duration::from_millis(2);

/// Tasks per slot a host takes ahead while its tasks are short.
const PREFETCH_PER_SLOT: u32 = 16;

/// The tasks of one kind a host holds, and how long they took of late.
///
/// Invariant: a task holds one permit of `held` or of `prefetch` from the pull that took it
/// until its result is sent (or it is handed back), and one of `run` while it runs, so at most
/// `slots` tasks run and at most `slots` (or, while tasks are short, `slots * (1 +
/// PREFETCH_PER_SLOT)`) are held.
pub(crate) struct Queue {
    held: Arc<Semaphore>,
    prefetch: Arc<Semaphore>,
    prefetch_permits: u32,
    run: Arc<Semaphore>,
    /// Moving average of recent run times in nanoseconds; `u64::MAX` before the first.
    recent_nanos: AtomicU64,
}

impl Queue {
    fn new(slots: u32) -> Queue {
        let prefetch_permits = slots.saturating_mul(PREFETCH_PER_SLOT);
        Queue {
            held: Arc::new(Semaphore::new(slots as usize)),
            prefetch: Arc::new(Semaphore::new(prefetch_permits as usize)),
            prefetch_permits,
            run: Arc::new(Semaphore::new(slots as usize)),
            recent_nanos: AtomicU64::new(u64::MAX),
        }
    }

    fn tasks_are_short(&self) -> bool {
        self.recent_nanos.load(Ordering::Relaxed) < SHORT_TASK.as_nanos() as u64
    }

    /// Folds one task's run time into the average (weight 1/8). Only pulls read it, and a lost
    /// update between two finishing tasks changes nothing that matters.
    pub(crate) fn ran_for(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX - 1);
        let recent = self.recent_nanos.load(Ordering::Relaxed);
        let next = if recent == u64::MAX {
            took
        } else {
            recent - recent / 8 + took / 8
        };
        self.recent_nanos.store(next, Ordering::Relaxed);
    }
}

async fn serve(
    settings: Settings,
    build: BuildId,
    processes: Arc<ProcessPool>,
) -> Result<(), String> {
    let client = settings::connect(&settings, "polyexec-cluster-host").await?;
    let js = jetstream::new(client.clone());
    let host = Arc::new(Host {
        client: client.clone(),
        key: settings.key.clone(),
        build,
        ack_wait: settings.ack_wait,
        max_payload: client.server_info().max_payload,
        processes,
        held: Mutex::new(HashMap::new()),
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    // Blocking tasks take one of `slots`; async tasks, which mostly wait, up to ASYNC_SLOTS.
    let mut pullers = Vec::new();
    for (kind, slots) in [(Kind::Blocking, settings.slots), (Kind::Async, ASYNC_SLOTS)] {
        let consumer = settings::ensure_consumer(&js, &settings, build, kind).await?;
        pullers.push(tokio::spawn(pull(
            Arc::clone(&host),
            js.clone(),
            settings.clone(),
            kind,
            consumer,
            slots,
            stopping.clone(),
        )));
    }
    let roll_call = answer_roll_calls(&settings, &host).await?;
    let cancels = follow_cancel_notices(&settings, &host).await?;
    let _ = sigterm.recv().await;
    let _ = stop.send(true);
    for puller in pullers {
        let _ = puller.await;
    }
    roll_call.abort();
    cancels.abort();
    // Bounded: with the server gone for good, the results are lost either way (and their
    // tasks, never acked, are delivered again once it is back).
    match tokio::time::timeout(FLUSH_LIMIT, client.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("cannot flush the last results: {err}")),
        Err(_) => Err(format!(
            "the NATS server did not take the last results within {FLUSH_LIMIT:?}"
        )),
    }
}

/// Returns once the host is told to stop (or the one telling it is gone).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let stop = *stopping.borrow_and_update();
        if stop || stopping.changed().await.is_err() {
            return;
        }
    }
}

/// Pulls tasks of one kind until told to stop; then waits until the tasks it took are done.
///
/// A host holds at most `slots` tasks of a kind while its recent tasks were long, so a queued
/// task stays in the stream until some host can start it. While they were short (under
/// [`SHORT_TASK`] on average) it also holds up to `PREFETCH_PER_SLOT` tasks per slot waiting for
/// one: a pull request per started task would otherwise bound throughput by the round trip to
/// the server.
async fn pull(
    host: Arc<Host>,
    js: jetstream::Context,
    settings: Settings,
    kind: Kind,
    consumer: jetstream::consumer::PullConsumer,
    slots: u32,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let queue = Arc::new(Queue::new(slots));
    'pull: loop {
        let first = tokio::select! {
            permit = Arc::clone(&queue.held).acquire_owned() => permit.expect("never closed"),
            () = stopped(&mut stopping) => break 'pull,
        };
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&queue.held).try_acquire_owned() {
            permits.push(permit);
        }
        if queue.tasks_are_short() {
            while let Ok(permit) = Arc::clone(&queue.prefetch).try_acquire_owned() {
                permits.push(permit);
            }
        }
        let batch = consumer
            .batch()
            .max_messages(permits.len())
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(err) => {
                // The server restarts or the consumer is being recreated: try again shortly.
                eprintln!("polyexec cluster worker: pulling tasks failed ({err}); retrying");
                drop(permits);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stopped(&mut stopping) => break 'pull,
                }
                let _ = settings::ensure_consumer(&js, &settings, host.build, kind).await;
                continue;
            }
        };
        let mut stop = false;
        loop {
            tokio::select! {
                next = batch.next() => match next {
                    None => break,
                    Some(Ok(message)) if stop => {
                        // Handed back at once, for another host.
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                    }
                    Some(Ok(message)) => {
                        let permit = permits.pop().expect("a batch never exceeds its permits");
                        tokio::spawn(task::handle(
                            Arc::clone(&host),
                            Arc::clone(&queue),
                            message,
                            permit,
                            stopping.clone(),
                        ));
                    }
                    Some(Err(_)) => break,
                },
                () = stopped(&mut stopping), if !stop => stop = true,
            }
        }
        if stop {
            break;
        }
    }
    // Every permit back means every task taken finished and its result was sent.
    let _held = queue.held.acquire_many(slots).await.expect("never closed");
    let _prefetched = queue
        .prefetch
        .acquire_many(queue.prefetch_permits)
        .await
        .expect("never closed");
}

async fn answer_roll_calls(
    settings: &Settings,
    host: &Arc<Host>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut calls = host
        .client
        .subscribe(settings.hello_subject())
        .await
        .map_err(|e| format!("cannot subscribe to roll calls: {e}"))?;
    let hello = host.key.seal(
        kind::HELLO,
        &Hello {
            build: host.build,
            queue: settings.queue.clone(),
            slots: settings.slots,
            host: hostname(),
            pid: std::process::id(),
        },
    );
    let client = host.client.clone();
    Ok(tokio::spawn(async move {
        while let Some(call) = calls.next().await {
            if let Some(reply) = call.reply {
                let _ = client.publish(reply, hello.clone().into()).await;
            }
        }
    }))
}

async fn follow_cancel_notices(
    settings: &Settings,
    host: &Arc<Host>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut notices = host
        .client
        .subscribe(settings.cancel_subject(host.build))
        .await
        .map_err(|e| format!("cannot subscribe to cancel notices: {e}"))?;
    let host = Arc::clone(host);
    Ok(tokio::spawn(async move {
        while let Some(notice) = notices.next().await {
            let Ok(notice) = host.key.open::<CancelNotice>(kind::CANCEL, &notice.payload) else {
                continue;
            };
            let held = host
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&(notice.reply_to, notice.id));
            if let Some(stop) = held {
                let _ = stop.send(());
            }
        }
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
