//! Running one pulled task on a host: where each kind runs, how a time limit and a cancel stop
//! it, and what the pool hears.
//!
//! | outcome on the host | the pool hears | the message |
//! |---|---|---|
//! | a value, a panic, a codec error | that, in a reply | acked |
//! | the worker process died (abort, segfault, `exit`) | `WorkerLost` with its signal or code | acked: a crash is the task's outcome, not the host's loss, so never redelivered |
//! | the time limit passed | `TimedOut` (the process pool ended the worker process running a blocking task; an async task's future was dropped) | acked |
//! | a cancel notice stopped it | nothing: the pool resolved the handle when it cancelled | terminated |
//! | the process pool was stopped under it | nothing | handed back (nak), for another host |

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use polyexec_core::{Executor, TaskError};
use tokio::sync::OwnedSemaphorePermit;

use super::Host;
use super::running::{Registration, Stopper};
use crate::addr::{self, Kind, Verified};
use crate::frame::{self, Refusal, Refused, Reply, kind};

/// How a task's run ended, for what is sent back.
enum Ran {
    /// The task's outcome, to reply with.
    Done(Result<Vec<u8>, TaskError>),
    /// Stopped by its pool's cancel notice.
    Cancelled,
    /// Not run to an outcome here: another host should run it.
    HandBack,
}

/// Runs one pulled task and sends its outcome; the slot is free again when this returns.
pub(super) async fn run_one(
    host: Arc<Host>,
    message: jetstream::Message,
    permit: OwnedSemaphorePermit,
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
    let registration = host
        .running
        .register((request.reply_to.clone(), request.id));
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
    let (addr, input, limit) = (request.addr, request.input, request.time_limit);
    let ran = match addr.kind() {
        Kind::Blocking => run_blocking(&host, &registration, addr, input, limit).await,
        Kind::Async => run_async(&registration, addr, &input, limit).await,
    };
    progress.abort();
    drop(registration);
    match ran {
        Ran::Done(outcome) => {
            let reply = host.key.seal(
                kind::REPLY,
                &Reply {
                    id: request.id,
                    outcome,
                },
            );
            // The result goes out before the ack on the same connection, so the server sees it
            // first: a task is never acked without its result sent.
            let _ = host.client.publish(request.reply_to, reply.into()).await;
            let _ = message.ack().await;
        }
        // Its pool resolved the handle when it cancelled; the message is of no use to anyone.
        Ran::Cancelled => {
            let _ = message.ack_with(AckKind::Term).await;
        }
        Ran::HandBack => {
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
    }
    drop(permit);
}

/// Runs a blocking task in one of the host's worker processes.
///
/// The process pool resolves the handle with `WorkerLost` the moment a worker dies; a time limit
/// or a cancel cancels the task there, which ends the worker process running it (the pool starts
/// another), since a running blocking task cannot be interrupted any other way.
async fn run_blocking(
    host: &Host,
    registration: &Registration<'_>,
    addr: Verified,
    input: Vec<u8>,
    limit: Option<Duration>,
) -> Ran {
    if registration.is_cancelled() {
        return Ran::Cancelled;
    }
    let handle = host
        .processes
        .spawn(addr.forward(input), addr::run_forwarded);
    let handle = match limit {
        Some(limit) => handle.with_deadline(limit),
        None => handle,
    };
    if !registration.attach(Stopper::Blocking(handle.abort_handle())) {
        return Ran::Cancelled;
    }
    match handle.await {
        Ok(outcome) => Ran::Done(outcome.map(serde_bytes::ByteBuf::into_vec)),
        // Only the stopper cancels it, on the pool's notice.
        Err(TaskError::Cancelled) => Ran::Cancelled,
        Err(TaskError::ShutDown) => Ran::HandBack,
        // `WorkerLost` with the worker process's signal or exit code, `TimedOut`, or a
        // transport failure of the process pool: the task's outcome, as on that backend.
        Err(err) => Ran::Done(Err(err)),
    }
}

/// Runs an async task on the host's runtime.
async fn run_async(
    registration: &Registration<'_>,
    addr: Verified,
    input: &[u8],
    limit: Option<Duration>,
) -> Ran {
    let make = addr.asynchronous().expect("kind checked");
    let future = match make(input) {
        Err(err) => return Ran::Done(Err(err)),
        Ok(future) => future,
    };
    let mut task = tokio::spawn(future);
    if !registration.attach(Stopper::Async(task.abort_handle())) {
        return Ran::Cancelled;
    }
    let joined = match limit {
        None => task.await,
        Some(limit) => match tokio::time::timeout(limit, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                // Dropped at its next `.await`.
                task.abort();
                return Ran::Done(Err(TaskError::TimedOut(limit)));
            }
        },
    };
    match joined {
        Ok(outcome) => Ran::Done(outcome),
        Err(err) if err.is_cancelled() => Ran::Cancelled,
        Err(err) => Ran::Done(Err(TaskError::transport(format!(
            "the worker host lost the task: {err}"
        )))),
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
