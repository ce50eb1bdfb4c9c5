//! Submission and dispatch: encoding a task, choosing its worker, and writing frames.
//!
//! # Invariants
//!
//! - The queue holds tasks in submission order (requeued tasks of a dead worker go back to its
//!   front, oldest first); a worker gets a task only while it has fewer than the pipeline depth
//!   unstarted and the task's frame fits its [`BYTE_BUDGET`], so a write never waits for the
//!   worker to read.
//! - At most one thread writes to a worker at a time (`Slot::writing`); frames queued for it
//!   meanwhile are that thread's to write, in order.
//!
//! # Lock scope
//!
//! [`Shared::submit`] encodes the input before taking the lock. [`Shared::dispatch`] and
//! [`Shared::claim_writes`] run with it held and only move state; [`Shared::write`] runs without
//! it and takes it briefly after each `sendmsg` to pick up frames queued meanwhile.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use polyexec_core::{Cancel, CodecStage, Outcome, TaskError, TaskHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::complete::codec;
use super::{Conn, Core, Entry, Place, Shared, State, relock};
use crate::entry::TaskAddr;
use crate::payload::{self, Payload};
use crate::shm::Region;
use crate::{process, protocol};

/// Most bytes of unstarted task frames sent to one worker: below the socket's buffer (208 KiB by
/// default on Linux), so writing them never waits for the worker to read.
pub(super) const BYTE_BUDGET: usize = 128 << 10;

/// A frame waiting to be written to a worker.
pub(super) enum Outgoing {
    /// A `RUN` or `RUN_SHARED` frame; for the latter, the region its input is in, which the
    /// worker must have been sent before.
    Task(Arc<Vec<u8>>, Option<Arc<Region>>),
    Control(Vec<u8>),
}

impl AsRef<[u8]> for Outgoing {
    fn as_ref(&self) -> &[u8] {
        match self {
            Outgoing::Task(frame, _) => frame,
            Outgoing::Control(frame) => frame,
        }
    }
}

pub(super) fn control(tag: u8, id: Option<u64>) -> Outgoing {
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

/// Writes `frames` to the worker, preceded by the pool's input region if a frame names one the
/// worker has not been sent. Every region frame names the region current when its task was
/// submitted, and the pool replaces its region only when no task holds space in it, so all of a
/// batch's shared inputs are in one region: the newest one.
fn send_frames(conn: &Conn, frames: &mut Vec<Outgoing>) -> std::io::Result<()> {
    let newest = frames
        .iter()
        .filter_map(|frame| match frame {
            Outgoing::Task(_, region) => region.as_ref(),
            Outgoing::Control(_) => None,
        })
        .max_by_key(|region| region.generation());
    let announce = newest
        .filter(|region| region.generation() > conn.announced.load(Ordering::Relaxed))
        .map(Arc::clone);
    match announce {
        Some(region) => {
            let mut frame = Vec::with_capacity(13);
            protocol::push_region_frame(&mut frame, protocol::INPUT_REGION, region.generation());
            frames.insert(0, Outgoing::Control(frame));
            protocol::send_all(conn.stream.as_fd(), frames, region.fd())?;
            conn.announced.store(region.generation(), Ordering::Relaxed);
            Ok(())
        }
        None => protocol::send_all(conn.stream.as_fd(), frames, None),
    }
}

/// Writes to perform once the lock is released.
pub(super) struct WriteJob {
    conn: Arc<Conn>,
    frames: Vec<Outgoing>,
}

impl Shared {
    pub(super) fn submit<In: Serialize + 'static, Out: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        addr: TaskAddr,
        input: &In,
        task: &'static str,
    ) -> TaskHandle<Out> {
        #[cfg(not(feature = "tracing"))]
        let _ = task;
        self.counters.count_submitted();
        if !self.accepting.load(Ordering::Acquire) {
            return self.ended(self.refusal());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(64);
        let start = protocol::begin_run(&mut frame, id, addr);
        let shared = self.config.spawn.shared_memory;
        let place = |len: usize| {
            // Only the space is handed out under the lock; the input is written without it.
            shared
                .then(|| relock(self.inputs.lock()).alloc(len))
                .flatten()
                .map(|placed| placed.slot)
        };
        // A `Serialize` impl that panics fails this task with a codec error, as a panicking
        // `Serialize` of an output does in the worker: it must not unwind out of `spawn` (or out
        // of a `map` iterator halfway through), which the in-process backends, which never
        // serialize, would not do either (tests/fault_encode_input.rs).
        let mut input_lease = None;
        let mut streamed = None;
        match polyexec_core::catch_task(|| payload::encode_payload(input, &mut frame, place)) {
            Ok(Ok(Payload::Inline)) => {}
            Ok(Ok(Payload::Shared { slot, len })) => {
                // The same frame, with the input's place instead of the input.
                frame[start + protocol::HEADER - 1] = protocol::RUN_SHARED;
                payload::Place::of(&slot, len).push(&mut frame);
                input_lease = Some(slot.into_lease(len));
            }
            Ok(Ok(Payload::Streamed {
                slot, len, stream, ..
            })) => {
                // As above; the bytes are written once the frame is on its way (below).
                frame[start + protocol::HEADER - 1] = protocol::RUN_SHARED;
                payload::Place::of(&slot, len).push(&mut frame);
                input_lease = Some(slot.into_lease(len));
                streamed = Some(stream);
            }
            Ok(Err(err)) => {
                return self.ended(codec(
                    CodecStage::EncodeInput,
                    protocol::describe::<In>(err),
                ));
            }
            Err(panic) => {
                return self.ended(codec(
                    CodecStage::EncodeInput,
                    protocol::describe::<In>(panic),
                ));
            }
        }
        // The payload was measured first, so this is a frame that `encode_payload` accepted.
        if !protocol::end_frame(&mut frame, start) {
            return self.ended(codec(
                CodecStage::EncodeInput,
                "the encoded input is larger than 4 GiB",
            ));
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
                self.counters.count(Outcome::of_error(&err));
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
                    input: input_lease,
                    completer: Some(Box::new(resolver)),
                    place: Place::Queued,
                    #[cfg(feature = "tracing")]
                    span: tracing::debug_span!(
                        "task",
                        backend = "subprocess",
                        id,
                        task,
                        kind = if addr.kind == crate::entry::Kind::Async {
                            "async"
                        } else {
                            "blocking"
                        }
                    ),
                },
            );
            core.queue.push_back(id);
            self.dispatch(&mut core, &mut jobs);
        }
        self.write(&mut jobs);
        if let Some(stream) = streamed {
            // After the frame: the worker copies the input out while it is copied in. The entry
            // holds the record (and this stream, until it is written), so a task that ends
            // meanwhile cannot have it reused under the copy.
            let bytes = payload::byte_payload(input).expect("only byte payloads are streamed");
            payload::write_streamed(stream, bytes);
        }
        handle
    }

    /// The handle of a task that ended at submission, counted.
    #[cold]
    fn ended<Out>(&self, err: TaskError) -> TaskHandle<Out> {
        self.counters.count(Outcome::of_error(&err));
        TaskHandle::ready(Err(err))
    }

    /// Moves queued tasks to workers with room, least loaded first, and claims the writes that
    /// are due. Called with the lock held after anything that can make room or work.
    pub(super) fn dispatch(&self, core: &mut Core, jobs: &mut Vec<WriteJob>) {
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
            let region = entry.input.as_ref().map(|lease| Arc::clone(lease.region()));
            slot.outgoing.push(Outgoing::Task(frame, region));
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
    pub(super) fn claim_writes(core: &mut Core, jobs: &mut Vec<WriteJob>) {
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
    pub(super) fn write(&self, jobs: &mut Vec<WriteJob>) {
        for mut job in jobs.drain(..) {
            loop {
                let sent = send_frames(&job.conn, &mut job.frames).is_ok();
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
}
