//! The reader thread of one worker: its `STARTED` and `DONE_*` frames, until it dies.
//!
//! # Invariants
//!
//! - Only frames of this worker's generation change a task's state ([`Shared::on_started`],
//!   [`Shared::on_done`] check the task's [`Place`]); anything else is ignored, and a frame that
//!   breaks the protocol gets the worker killed.
//! - A handle is resolved by this thread as soon as its result is read, never behind another
//!   handle's joiner.
//! - When the stream ends, the slot is marked closed before the (possibly slow) reap, so no task
//!   is sent to a dying worker; then [`Shared::on_death`] settles what it held.
//!
//! # Lock scope
//!
//! Taken once per batch of frames read: the frames are applied and the worker refilled under
//! it; completions, writes and stop requests run after it is dropped. Never held while reading
//! from the socket.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::complete::{Complete, ID_LEN, decode_error, deliver};
use super::shutdown::EXIT_GRACE;
use super::{Conn, Core, Place, Shared, relock};
use crate::entry::Kind;
use crate::protocol::{self, FdReader, FrameReader};
use crate::shm::{Lease, Region};
use crate::{payload, process, stop};
use polyexec_core::Outcome;

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

/// A result read, to deliver once the lock is released.
enum Delivery {
    /// A `DONE_OK` frame, in the reader.
    Output(protocol::FrameRef),
    /// A `DONE_ERR` frame, in the reader.
    Error(protocol::FrameRef),
    /// A `DONE_SHARED` frame's output, in the worker's region.
    Shared(Lease),
}

impl Shared {
    /// A `STARTED` frame. Returns `true` if the task must be stopped: a blocking task that was
    /// cancelled before the worker saw the cancel has started anyway. Sets `large_input` if
    /// the task's input is in the pool's region (its result is at least a copy away).
    fn on_started(
        &self,
        core: &mut Core,
        conn: &Conn,
        id: u64,
        now: Option<Instant>,
        large_input: &mut bool,
    ) -> bool {
        let slot = &mut core.slots[conn.slot];
        slot.served = true;
        core.failures_in_row = 0;
        let Some(entry) = core.tasks.get_mut(&id) else {
            return false;
        };
        *large_input |= entry.input.is_some();
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
        if let Some(now) = now {
            let kind = entry.kind;
            self.arm_deadline(core, id, kind, now);
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

    /// A worker's reader thread: resolves its results until it dies, then settles its tasks.
    pub(super) fn read_worker(self: Arc<Self>, conn: &Conn, mut child: Child) {
        let mut reader = FrameReader::new();
        let mut done: Vec<(Box<dyn Complete>, Delivery)> = Vec::new();
        // Descriptors received, until their region frame is parsed; the worker's region of
        // outputs. Outputs still held by handles keep their region mapped after this thread ends.
        let mut fds = VecDeque::new();
        let mut outputs: Option<Arc<Region>> = None;
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
            // (`FdReader` implements only `read`, so `read_to_end` would zero-fill it first).
            let filled = match spin_until {
                Some(until) if !reader.in_large_frame() => {
                    let mut nowait = FdReader {
                        socket: conn.stream.as_fd(),
                        fds: &mut fds,
                        wait: false,
                    };
                    match reader.fill(&mut nowait) {
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
                _ => reader.fill(&mut FdReader {
                    socket: conn.stream.as_fd(),
                    fds: &mut fds,
                    wait: true,
                }),
            };
            // Until end of stream (the worker exited or was killed) or a read error.
            if !matches!(filled, Ok(true)) {
                break;
            }
            // Set by a frame after which the next one is not due for a while: a large payload's
            // (its task's result comes after the payload's copies; the next task after the
            // joiner copies this output out). Polling then would only take a core from those
            // copies.
            let mut next_is_far = false;
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
                    let Some((id, rest)) = protocol::split_id(reader.body(&frame)) else {
                        broken = true;
                        break;
                    };
                    match frame.tag {
                        protocol::OUTPUT_REGION => {
                            // `id` is the region's generation. A worker whose region cannot be
                            // mapped (or is not sealed) cannot deliver outputs through it.
                            let region = fds
                                .pop_front()
                                .and_then(|fd| Region::open(fd, true, id).ok());
                            outputs = region.map(Arc::new);
                            if outputs.is_none() {
                                broken = true;
                                break;
                            }
                        }
                        protocol::DONE_SHARED => {
                            let lease = payload::Place::parse(rest).and_then(|place| {
                                let region = outputs
                                    .as_ref()
                                    .filter(|r| r.generation() == place.generation)?;
                                Lease::open(Arc::clone(region), place.offset, place.len)
                            });
                            let Some(lease) = lease else {
                                broken = true;
                                break;
                            };
                            next_is_far = true;
                            // Not wanted any more: dropping the lease releases the output.
                            if let Some(completer) = Self::on_done(&mut core, conn, id) {
                                done.push((completer, Delivery::Shared(lease)));
                            }
                        }
                        protocol::STARTED => {
                            if self.on_started(&mut core, conn, id, now, &mut next_is_far) {
                                stops.push(id);
                            }
                        }
                        protocol::DONE_OK | protocol::DONE_ERR => {
                            if let Some(completer) = Self::on_done(&mut core, conn, id) {
                                let delivery = if frame.tag == protocol::DONE_OK {
                                    Delivery::Output(frame)
                                } else {
                                    Delivery::Error(frame)
                                };
                                done.push((completer, delivery));
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
            spin_until = None;
            if next_is_far {
                spinner.stop();
            } else if spinner.start() {
                spin_until = Some(Instant::now() + SPIN);
            }
            for (completer, delivery) in done.drain(..) {
                if completer.is_abandoned() {
                    // Nobody can see the result: neither copy nor decode it (beyond its kind,
                    // for the counters; a shared output is released as the delivery is dropped).
                    self.counters.count(match &delivery {
                        Delivery::Output(_) | Delivery::Shared(_) => Outcome::Succeeded,
                        Delivery::Error(frame) => {
                            Outcome::of_error(&decode_error(&reader.body(frame)[ID_LEN..]))
                        }
                    });
                    deliver(|| drop(completer));
                    continue;
                }
                match delivery {
                    Delivery::Output(frame) => {
                        self.counters.count(Outcome::Succeeded);
                        // Decoded by the handle's joiner (see `complete`): a copy of a small
                        // body out of the shared buffer, a large one's own buffer moved.
                        let body = reader.take_body(&frame, Vec::new);
                        deliver(|| completer.succeed(body));
                    }
                    Delivery::Shared(lease) => {
                        self.counters.count(Outcome::Succeeded);
                        deliver(|| completer.succeed_shared(lease));
                    }
                    Delivery::Error(frame) => {
                        // `split_id` accepted this body above: it holds an id.
                        let err = decode_error(&reader.body(&frame)[ID_LEN..]);
                        self.counters.count(Outcome::of_error(&err));
                        deliver(|| completer.fail(err));
                    }
                }
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
        if let Some(region) = &outputs {
            // A joiner waiting for an output this worker was still writing gives up now.
            region.set_writer_exit(status);
        }
        self.on_death(conn, status);
    }
}
