//! Worker host mode: this executable, started with `--polyexec-cluster-worker` (or by a pool as
//! a local worker), pulls the tasks of its own build from JetStream and runs them.
//!
//! A host runs up to `slots` tasks at a time and pulls only as many as it has free slots, so a
//! queued task stays in the stream (where another host can take it, or a cancel can delete it)
//! until some host can start it. Blocking tasks run on tokio's blocking threads, async tasks on
//! the host's tokio runtime. While a task runs the host confirms progress every third of
//! `ack_wait`, so a long task keeps its lease; a host that dies stops confirming and JetStream
//! hands the task to another host after `ack_wait`. On SIGTERM a host stops pulling, hands back
//! what it pulled but did not start, finishes what runs, and exits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use polyexec_core::TaskError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::addr::Kind;
use crate::build_id::BuildId;
use crate::frame::{self, CancelNotice, Hello, Key, Refusal, Refused, Reply, kind};
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
        Ok(()) => {
            log(format_args!("stopped"));
            0
        }
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.slots.clamp(1, 4) as usize)
        .max_blocking_threads(settings.slots as usize + 1)
        .thread_name("polyexec-cluster-host")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(serve(settings, build))
}

/// What every task of a host shares.
struct Host {
    client: async_nats::Client,
    key: Key,
    build: BuildId,
    ack_wait: Duration,
    /// Async tasks running now, by (pool subject, task id), for cancel notices.
    running: Mutex<HashMap<(String, u64), tokio::task::AbortHandle>>,
}

async fn serve(settings: Settings, build: BuildId) -> Result<(), String> {
    let client = settings::connect(&settings, "polyexec-cluster-host").await?;
    let js = jetstream::new(client.clone());
    let host = Arc::new(Host {
        client: client.clone(),
        key: settings.key.clone(),
        build,
        ack_wait: settings.ack_wait,
        running: Mutex::new(HashMap::new()),
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
    log(format_args!(
        "serving queue `{}` of build {build:?} with {} slots at {}",
        settings.queue, settings.slots, settings.url
    ));
    let _ = sigterm.recv().await;
    let _ = stop.send(true);
    // A stopping host answers no roll call: a pool built now must not count on it. Awaited,
    // so that once the host says it stops, it answers none.
    roll_call.abort();
    let _ = roll_call.await;
    log(format_args!(
        "SIGTERM: pulls no more tasks, finishes those it runs, then exits"
    ));
    for puller in pullers {
        let _ = puller.await;
    }
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

/// Tells the operator of a host started by hand (or by systemd, a container) that it serves
/// and that it stops, on stderr. A pool's local workers say nothing: their stderr is the
/// program's, and a pool stops them every time it shuts down.
fn log(message: std::fmt::Arguments<'_>) {
    if !std::env::var(env::WORKER).is_ok_and(|v| v.starts_with("parent:")) {
        eprintln!("polyexec cluster worker {}: {message}", std::process::id());
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

/// Pulls tasks of one kind, as many as there are free slots, until told to stop; then waits
/// until the tasks it started are done.
async fn pull(
    host: Arc<Host>,
    js: jetstream::Context,
    settings: Settings,
    kind: Kind,
    consumer: jetstream::consumer::PullConsumer,
    slots: u32,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let free = Arc::new(Semaphore::new(slots as usize));
    'pull: loop {
        // Biased, stop first: a slot that frees as the host is told to stop must not pull
        // (an unbiased select picks either when both are ready).
        let first = tokio::select! {
            biased;
            () = stopped(&mut stopping) => break 'pull,
            permit = Arc::clone(&free).acquire_owned() => permit.expect("never closed"),
        };
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&free).try_acquire_owned() {
            permits.push(permit);
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
            // Biased, stop first: once told to stop, no message of the batch starts.
            tokio::select! {
                biased;
                () = stopped(&mut stopping), if !stop => stop = true,
                next = batch.next() => match next {
                    None => break,
                    Some(Ok(message)) if stop => {
                        // Handed back at once, for another host.
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                    }
                    Some(Ok(message)) => {
                        let permit = permits.pop().expect("a batch never exceeds its permits");
                        tokio::spawn(run_one(Arc::clone(&host), message, permit));
                    }
                    Some(Err(_)) => break,
                },
            }
        }
        if stop {
            break;
        }
    }
    // Every slot back means every task finished and its result was sent.
    let _all = free.acquire_many(slots).await.expect("never closed");
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
            let running = host
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&(notice.reply_to, notice.id));
            if let Some(task) = running {
                task.abort();
            }
        }
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs one pulled task and sends its outcome; the slot is free again when this returns.
async fn run_one(host: Arc<Host>, message: jetstream::Message, permit: OwnedSemaphorePermit) {
    let request = match frame::open_request(&host.key, &message.payload, host.build) {
        Ok(request) => request,
        Err(refused) => {
            refuse(&host, &message, refused).await;
            // Never redelivered: no host of this build can run it either.
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let message = Arc::new(message);
    let progress = {
        let message = Arc::clone(&message);
        let every = host.ack_wait / 3;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let _ = message.ack_with(AckKind::Progress).await;
            }
        })
    };
    let input = request.input;
    let outcome = match request.addr.kind() {
        Kind::Blocking => {
            let run = request.addr.blocking().expect("kind checked");
            match tokio::task::spawn_blocking(move || run(&input)).await {
                Ok(outcome) => outcome,
                Err(err) => Err(TaskError::transport(format!(
                    "the worker host lost the task's thread: {err}"
                ))),
            }
        }
        Kind::Async => {
            let make = request.addr.asynchronous().expect("kind checked");
            match make(&input) {
                Err(err) => Err(err),
                Ok(future) => {
                    let task = tokio::spawn(future);
                    let slot = (request.reply_to.clone(), request.id);
                    host.running
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(slot.clone(), task.abort_handle());
                    let joined = task.await;
                    host.running
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&slot);
                    match joined {
                        Ok(outcome) => outcome,
                        Err(err) if err.is_cancelled() => {
                            // Cancelled by its pool, which resolved the handle already.
                            progress.abort();
                            let _ = message.ack_with(AckKind::Term).await;
                            return;
                        }
                        Err(err) => Err(TaskError::transport(format!(
                            "the worker host lost the task: {err}"
                        ))),
                    }
                }
            }
        }
    };
    progress.abort();
    let reply = host.key.seal(
        kind::REPLY,
        &Reply {
            id: request.id,
            outcome,
        },
    );
    // The result goes out before the ack on the same connection, so the server sees it first:
    // a task is never acked without its result sent.
    let _ = host.client.publish(request.reply_to, reply.into()).await;
    let _ = message.ack().await;
    drop(permit);
}

async fn refuse(host: &Host, message: &jetstream::Message, refused: Refused) {
    match refused {
        Refused::NotAuthenticated => {
            // Nothing in the frame can be trusted; the reply subject and id are read only to
            // tell a misconfigured submitter, never to run anything.
            if let Some((reply_to, id)) = frame::peek_request(&message.payload) {
                let refusal = Refusal {
                    id,
                    reason: "a worker host refused the task: its frame is not authenticated \
                             with the host's cluster key (POLYEXEC_CLUSTER_KEY differs)"
                        .into(),
                };
                let _ = host.client.publish(reply_to, refusal.encode().into()).await;
            }
        }
        Refused::OtherBuild {
            reply_to,
            id,
            theirs,
        } => {
            let reply = host.key.seal(
                kind::REPLY,
                &Reply {
                    id,
                    outcome: Err(TaskError::transport(format!(
                        "a worker host of build {:?} refused a task of build {theirs:?}: \
                         run the same executable on every machine",
                        host.build
                    ))),
                },
            );
            let _ = host.client.publish(reply_to, reply.into()).await;
        }
    }
}
