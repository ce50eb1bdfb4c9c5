//! One task on a worker host, from the pull that took it to the acknowledgement that removes it
//! from the stream.
//!
//! Invariants:
//! - A task is acknowledged only after its pool confirmed the result (the result goes as a
//!   request the pool answers). A result the pool never saw (it was reconnecting after a server
//!   restart, or the server lost the message) is sent again; the task is never acked without it,
//!   so a lost result cannot leave a handle waiting forever.
//! - While the host holds a task, waiting for a slot, running it or sending its result, it
//!   confirms progress every third of `ack_wait`: JetStream hands a task to another host only when
//!   this one stopped confirming, that is, when it died or lost the server.
//! - A task whose pool cancelled it (a cancel notice fired its entry in `Host::held`) is never
//!   started if it was waiting, and stopped if it runs: an async task's future is dropped, a
//!   blocking task's worker process ended (the host's process pool starts another). It is
//!   terminated in the stream, without a result (its handle resolved already).
//! - A blocking task runs in a worker process of the host, so whatever it does to its process
//!   (abort, a fatal signal, `exit`) is its outcome, `WorkerLost` with the signal or exit code,
//!   sent and acknowledged like any other: never a redelivery.
//! - A task with a time limit is stopped as a cancel stops it when the limit, counted from its
//!   start here, passes; its outcome is then `TimedOut`.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use polyexec_core::{CodecStage, Executor, TaskError, TaskHandle};
use serde_bytes::ByteBuf;
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use super::{Host, Queue, stopped};
use crate::addr::{self, Kind, Verified};
use crate::frame::{self, OpenRequest, Refusal, Refused, Reply, kind};

/// How long a host keeps offering a result its pool does not confirm before it gives the task
/// up (the pool is gone: nobody waits for the result). Long enough for a pool to reconnect
/// after the server restarted.
const RESULT_WAIT: Duration = Duration::from_secs(60);

/// The pause between two offers of an unconfirmed result.
const RESULT_RETRY: Duration = Duration::from_millis(250);

/// What became of a task on this host.
enum Ran {
    Finished(Result<Vec<u8>, TaskError>),
    /// Its pool cancelled it: no result is sent.
    Cancelled,
    /// The host is stopping and the task had not started (or its process pool was stopped
    /// under it): handed back for another host.
    HandedBack,
}

/// Takes a pulled task through to its acknowledgement. `permit` is the host's hold on it (of
/// `queue.held` or `queue.prefetch`), returned once its result is offered.
pub(super) async fn handle(
    host: Arc<Host>,
    queue: Arc<Queue>,
    message: jetstream::Message,
    permit: OwnedSemaphorePermit,
    mut stopping: watch::Receiver<bool>,
) {
    let request = match frame::open_request(&host.key, &message.payload, host.build) {
        Ok(request) => request,
        Err(refused) => {
            refuse(&host, &message, refused).await;
            // Never redelivered: no host of this build can run it either.
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let OpenRequest {
        reply_to,
        id,
        addr,
        input,
        time_limit,
    } = request;
    let slot = (reply_to, id);
    let (cancel, cancelled) = oneshot::channel();
    let again = {
        let mut held = host
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match held.entry(slot.clone()) {
            Entry::Occupied(_) => true,
            Entry::Vacant(entry) => {
                entry.insert(cancel);
                false
            }
        }
    };
    if again {
        // Delivered again while this host still holds it (its progress acks were lost, say,
        // in a reconnection): the delivery already here answers the pool, so this one is
        // terminated rather than run twice side by side.
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }

    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + host.ack_wait / 3,
        host.ack_wait / 3,
    );
    let ran = {
        let work = wait_and_run(&host, &queue, addr, input, time_limit, &mut stopping);
        tokio::pin!(work);
        tokio::pin!(cancelled);
        loop {
            tokio::select! {
                ran = &mut work => break ran,
                // Fired by a cancel notice. Dropping `work` drops the task's future (an async
                // task is aborted with it).
                _ = &mut cancelled => break Ran::Cancelled,
                _ = progress.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        }
    };
    host.held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&slot);
    let outcome = match ran {
        Ran::Finished(outcome) => outcome,
        Ran::Cancelled => {
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
        Ran::HandedBack => {
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return;
        }
    };
    let mut reply = host.key.seal(kind::REPLY, &Reply { id, outcome });
    if reply.len() > host.max_payload {
        // The server would close this host's connection on it.
        let outcome = Err(crate::pool::too_large(
            CodecStage::EncodeOutput,
            reply.len(),
            host.max_payload,
        ));
        reply = host.key.seal(kind::REPLY, &Reply { id, outcome });
    }
    let reply = Bytes::from(reply);
    let reply_to = slot.0;
    if offer(&host, &reply_to, reply.clone()).await {
        let _ = message.ack().await;
        return;
    }
    // Not confirmed yet: the host takes new work meanwhile and keeps offering.
    drop(permit);
    let deadline = Instant::now() + RESULT_WAIT;
    let mut retry = tokio::time::interval(RESULT_RETRY);
    retry.tick().await;
    loop {
        tokio::select! {
            _ = retry.tick() => {
                if offer(&host, &reply_to, reply.clone()).await {
                    let _ = message.ack().await;
                    return;
                }
                if Instant::now() >= deadline {
                    // No pool took it for a minute: its submitter is gone.
                    let _ = message.ack_with(AckKind::Term).await;
                    return;
                }
            }
            _ = progress.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

/// Sends a result to its pool; whether the pool confirmed it.
async fn offer(host: &Host, reply_to: &str, reply: Bytes) -> bool {
    host.client
        .request(reply_to.to_owned(), reply)
        .await
        .is_ok()
}

/// Waits for a run slot (handing the task back if the host stops first), then runs the task.
async fn wait_and_run(
    host: &Host,
    queue: &Queue,
    addr: Verified,
    input: Vec<u8>,
    limit: Option<Duration>,
    stopping: &mut watch::Receiver<bool>,
) -> Ran {
    let _run = tokio::select! {
        biased;
        permit = Arc::clone(&queue.run).acquire_owned() => permit.expect("never closed"),
        () = stopped(stopping) => return Ran::HandedBack,
    };
    let started = Instant::now();
    let ran = match addr.kind() {
        Kind::Blocking => run_blocking(host, addr, input, limit).await,
        Kind::Async => Ran::Finished(run_async(addr, &input, limit).await),
    };
    queue.ran_for(started.elapsed());
    ran
}

/// Runs a blocking task in one of the host's worker processes, within its time limit.
///
/// The process pool resolves the task `WorkerLost` the moment its worker process dies. At the
/// time limit the pool's handle cancels the task there, and so does dropping this future (a
/// cancel notice): a running blocking task cannot be interrupted, so its worker process is
/// ended and replaced.
async fn run_blocking(host: &Host, addr: Verified, input: Vec<u8>, limit: Option<Duration>) -> Ran {
    let handle = host
        .processes
        .spawn(addr.forward(input), addr::run_forwarded);
    let mut handle = CancelOnDrop(match limit {
        Some(limit) => handle.with_deadline(limit),
        None => handle,
    });
    match (&mut handle.0).await {
        Ok(outcome) => Ran::Finished(outcome.map(ByteBuf::into_vec)),
        // The process pool was stopped under it: another host can run it.
        Err(TaskError::ShutDown) => Ran::HandedBack,
        // `WorkerLost` with the worker process's signal or exit code, `TimedOut`, or a
        // transport failure of the process pool: the task's outcome, as on that backend.
        Err(err) => Ran::Finished(Err(err)),
    }
}

/// Runs an async task on the host's runtime, within its time limit.
async fn run_async(
    addr: Verified,
    input: &[u8],
    limit: Option<Duration>,
) -> Result<Vec<u8>, TaskError> {
    let make = addr.asynchronous().expect("kind checked");
    let future = make(input)?;
    // Aborted when this future is dropped (a cancel of the running task), or at the limit.
    let mut task = AbortOnDrop(tokio::spawn(future));
    let joined = match limit {
        None => (&mut task.0).await,
        Some(limit) => match tokio::time::timeout(limit, &mut task.0).await {
            Ok(joined) => joined,
            Err(_) => return Err(TaskError::TimedOut(limit)),
        },
    };
    joined.unwrap_or_else(|err| {
        Err(TaskError::transport(format!(
            "the worker host lost the task: {err}"
        )))
    })
}

/// A spawned task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A task of the host's process pool that is cancelled when its handle is dropped (a handle
/// that already has its result is left alone).
struct CancelOnDrop<T>(TaskHandle<T>);

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        self.0.cancel();
    }
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
