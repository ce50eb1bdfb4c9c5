//! The pool's side of NATS, on its tokio runtime: publishing tasks, taking results, watching
//! for tasks that ran out of deliveries, and calling the roll of worker hosts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use polyexec_core::{TaskError, WorkerExit};
use tokio::sync::mpsc;

use super::Shared;
use crate::addr::Kind;
use crate::build_id::BuildId;
use crate::frame::{CancelNotice, Hello, Opened, Reply, kind};
use crate::settings::Settings;

/// What the pool's threads ask of its runtime.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish this sealed request for task `id`.
    Publish { id: u64, frame: Vec<u8>, kind: Kind },
    /// Task `id` is resolved without its result (cancelled, shut down, out of deliveries): delete
    /// it from the stream (at `seq`, or once its sequence is known) so no host starts it, and, if
    /// `notify`, tell the hosts to stop it if one runs it. `done` hears when that is done.
    Forget {
        id: u64,
        seq: Option<u64>,
        notify: bool,
        done: Option<std::sync::mpsc::Sender<()>>,
    },
    /// Flush and stop.
    Stop { done: std::sync::mpsc::Sender<()> },
}

/// The connection and subscriptions a pool needs, made before any task is accepted.
pub(crate) struct Io {
    pub(crate) client: async_nats::Client,
    stream: jetstream::stream::Stream,
    results: async_nats::Subscriber,
    advisories: async_nats::Subscriber,
}

impl Io {
    pub(crate) async fn connect(
        settings: &Settings,
        build: BuildId,
        reply_to: &str,
    ) -> Result<Io, String> {
        let client = crate::settings::connect(settings, "polyexec-cluster-pool").await?;
        let js = jetstream::new(client.clone());
        // The stream and consumer exist before the first task, so tasks published before any
        // host pulls are kept for it.
        for kind in [Kind::Blocking, Kind::Async] {
            crate::settings::ensure_consumer(&js, settings, build, kind).await?;
        }
        let stream = js
            .get_stream(settings.stream_name())
            .await
            .map_err(|e| format!("cannot open the JetStream stream: {e}"))?;
        let results = client
            .subscribe(reply_to.to_owned())
            .await
            .map_err(|e| format!("cannot subscribe to results: {e}"))?;
        let advisories = client
            .subscribe(settings.max_deliveries_advisories())
            .await
            .map_err(|e| format!("cannot subscribe to delivery advisories: {e}"))?;
        // The subscriptions are live on the server before the first task can be published.
        client
            .flush()
            .await
            .map_err(|e| format!("cannot reach the NATS server: {e}"))?;
        Ok(Io {
            client,
            stream,
            results,
            advisories,
        })
    }

    /// Starts the tasks that serve the pool; they end when the command channel does.
    pub(crate) fn run(
        self,
        shared: &Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        forget: mpsc::UnboundedSender<Command>,
    ) {
        let Io {
            client,
            stream,
            results,
            advisories,
        } = self;
        tokio::spawn(take_results(results, client.clone(), Arc::clone(shared)));
        tokio::spawn(take_advisories(advisories, Arc::clone(shared), forget));
        tokio::spawn(publish(commands, Arc::clone(shared), client, stream));
    }
}

async fn publish(
    mut commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
) {
    let blocking_subject =
        Subject::from(shared.settings.task_subject(shared.build, Kind::Blocking));
    let async_subject = Subject::from(shared.settings.task_subject(shared.build, Kind::Async));
    // Its own context, for a longer wait on each task's confirmation than API calls get.
    let publisher = jetstream::ContextBuilder::new()
        .timeout(STORE_ACK_WAIT)
        .build(client.clone());
    let cancel_subject = shared.settings.cancel_subject(shared.build);
    let mut acks = FuturesUnordered::new();
    let mut unacked: HashSet<u64> = HashSet::new();
    // Forgets of tasks whose sequence is not known yet: done when their ack comes.
    let mut waiting: HashMap<u64, Vec<Option<std::sync::mpsc::Sender<()>>>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Publish { id, frame, kind }) => {
                    let subject = match kind {
                        Kind::Blocking => blocking_subject.clone(),
                        Kind::Async => async_subject.clone(),
                    };
                    unacked.insert(id);
                    acks.push(store(&publisher, subject, frame.into(), id));
                }
                Some(Command::Forget { id, seq, notify, done }) => {
                    if notify {
                        let notice = shared.settings.key.seal(kind::CANCEL, &CancelNotice {
                            reply_to: shared.reply_to.clone(),
                            id,
                        });
                        let _ = client.publish(cancel_subject.clone(), notice.into()).await;
                    }
                    match seq {
                        Some(seq) => {
                            let _ = stream.delete_message(seq).await;
                            if let Some(done) = done {
                                let _ = done.send(());
                            }
                        }
                        None if unacked.contains(&id) => waiting.entry(id).or_default().push(done),
                        None => {
                            if let Some(done) = done {
                                let _ = done.send(());
                            }
                        }
                    }
                }
                Some(Command::Stop { done }) => {
                    if shared.private_queue {
                        // Its hosts are gone: nothing pulls from its consumers again.
                        for kind in [Kind::Blocking, Kind::Async] {
                            let name = shared.settings.consumer_name(shared.build, kind);
                            let _ = stream.delete_consumer(&name).await;
                        }
                    }
                    let _ = client.flush().await;
                    let _ = done.send(());
                    break;
                }
            },
            Some((id, stored)) = acks.next(), if !acks.is_empty() => {
                unacked.remove(&id);
                match stored {
                    Ok(seq) => {
                        let forgotten = waiting.remove(&id);
                        if forgotten.is_some() || !shared.record_seq(id, seq) {
                            // Resolved before its ack (cancelled or shut down): never to run.
                            let _ = stream.delete_message(seq).await;
                        }
                        for done in forgotten.into_iter().flatten().flatten() {
                            let _ = done.send(());
                        }
                    }
                    Err(err) => {
                        for done in waiting.remove(&id).into_iter().flatten().flatten() {
                            let _ = done.send(());
                        }
                        shared.finish(id, Err(TaskError::transport(err)));
                    }
                }
            }
        }
    }
}

/// How long one attempt to store a task waits for the server's confirmation. Generous: under
/// load (thousands of tasks submitted at once, on a busy machine) a confirmation can take
/// seconds, and a task stored twice runs twice.
const STORE_ACK_WAIT: Duration = Duration::from_secs(30);

/// How long a task may take to be stored, through reconnections and a server restart, before
/// its handle fails.
const STORE_WAIT: Duration = Duration::from_secs(120);

/// Stores task `id` in the stream; its sequence there, or why it could not be stored.
///
/// An attempt that was not confirmed (timed out, connection lost, JetStream not ready after a
/// server restart) is made again until [`STORE_WAIT`]. If the first attempt was stored after
/// all, the task is in the stream twice and may run twice: execution is at least once, and the
/// second result is dropped.
async fn store(
    js: &jetstream::Context,
    subject: Subject,
    frame: Bytes,
    id: u64,
) -> (u64, Result<u64, String>) {
    let deadline = Instant::now() + STORE_WAIT;
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = async { js.publish(subject.clone(), frame.clone()).await?.await };
        let err = match attempt.await {
            Ok(ack) => return (id, Ok(ack.sequence)),
            Err(err) => err,
        };
        let transient = matches!(
            err.kind(),
            PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::StreamNotFound
        );
        if !transient || Instant::now() + pause >= deadline {
            return (
                id,
                Err(format!("the NATS server did not store the task: {err}")),
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

async fn take_results(
    mut results: async_nats::Subscriber,
    client: async_nats::Client,
    shared: Arc<Shared>,
) {
    while let Some(message) = results.next().await {
        // Confirmed whatever it holds, a duplicate included: the host acknowledges the task
        // only then, and offers the result again until it is confirmed.
        if let Some(confirm) = &message.reply {
            let _ = client.publish(confirm.clone(), bytes::Bytes::new()).await;
        }
        match shared
            .settings
            .key
            .open::<Reply>(kind::REPLY, &message.payload)
        {
            Ok(reply) => shared.finish(reply.id, reply.outcome),
            Err(Opened::Refusal(refusal)) => {
                shared.finish(refusal.id, Err(TaskError::transport(refusal.reason)));
            }
            // Not from a holder of the key: ignored.
            Err(Opened::Invalid) => {}
        }
    }
}

async fn take_advisories(
    mut advisories: async_nats::Subscriber,
    shared: Arc<Shared>,
    forget: mpsc::UnboundedSender<Command>,
) {
    #[derive(serde::Deserialize)]
    struct MaxDeliveries {
        stream_seq: u64,
        deliveries: u64,
    }
    while let Some(message) = advisories.next().await {
        let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&message.payload) else {
            continue;
        };
        if let Some(id) = shared.id_of_seq(advisory.stream_seq) {
            let deliveries = advisory.deliveries.try_into().unwrap_or(u32::MAX);
            shared.finish(
                id,
                Err(TaskError::WorkerLost(WorkerExit::Deliveries(deliveries))),
            );
            // JetStream keeps a message that ran out of deliveries; it is of no use now.
            let _ = forget.send(Command::Forget {
                id,
                seq: Some(advisory.stream_seq),
                notify: false,
                done: None,
            });
        }
    }
}

/// Hosts that answered a roll call.
#[derive(Debug, Default)]
pub(crate) struct Roll {
    /// Hosts of this build on this queue, by pid and host name.
    pub(crate) ours: HashMap<(String, u32), u32>,
    /// Builds of the other hosts that answered.
    pub(crate) others: HashSet<String>,
}

impl Roll {
    pub(crate) fn slots(&self) -> usize {
        self.ours.values().map(|&s| s as usize).sum()
    }
}

/// Calls the roll until `enough(roll)` or `wait` passes; returns what answered.
pub(crate) async fn roll_call(
    client: &async_nats::Client,
    settings: &Settings,
    build: BuildId,
    wait: Duration,
    enough: impl Fn(&Roll) -> bool,
) -> Result<Roll, String> {
    let deadline = Instant::now() + wait;
    let mut roll = Roll::default();
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| format!("cannot call the roll of worker hosts: {e}"))?;
    loop {
        client
            .publish_with_reply(settings.hello_subject(), inbox.clone(), Vec::new().into())
            .await
            .map_err(|e| format!("cannot call the roll of worker hosts: {e}"))?;
        // Answers come within a round trip; a host still starting answers a later call.
        let round = Instant::now() + Duration::from_millis(200);
        let round = round.min(deadline);
        while let Ok(Some(answer)) = tokio::time::timeout_at(round.into(), answers.next()).await {
            let Ok(hello) = settings.key.open::<Hello>(kind::HELLO, &answer.payload) else {
                roll.others
                    .insert("(a host with another cluster key)".into());
                continue;
            };
            if hello.build == build && hello.queue == settings.queue {
                roll.ours.insert((hello.host, hello.pid), hello.slots);
            } else if hello.build != build {
                roll.others.insert(format!("{:?}", hello.build));
            }
        }
        if enough(&roll) || Instant::now() >= deadline {
            return Ok(roll);
        }
    }
}
