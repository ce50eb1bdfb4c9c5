//! Fault injection: a worker dies while a large payload is half-way through shared memory, in
//! either direction: killed while it decodes an input from the pool's region, or while it
//! serializes an output into its own region. The task fails with `WorkerLost`; nothing hangs;
//! the replacement gets the pool's region and serves large payloads as before; the dead
//! worker's region is unmapped and its descriptor closed.
//!
//! "Half-way" is made certain: the payload's `Deserialize` (or `Serialize`) stops at a gate
//! after its bytes, and the test kills the worker only once the gate says it is there.

polyexec_subprocess::test_hook!();

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use polyexec_core::conformance::{Gate, gated};
use polyexec_core::{Executor, TaskError, WorkerExit};
use rustix::process::{Pid, Signal};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

const BIG: usize = 4 << 20;

/// Lines of `/proc/<pid>/maps` that map a payload region.
fn region_mappings(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("read maps")
        .lines()
        .filter(|line| line.contains("memfd:polyexec-payload"))
        .count()
}

/// An input whose decoding, in the worker, stops at a gate after reading its large bytes.
#[derive(Debug, Serialize)]
struct StallsDecoding {
    port: u16,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

impl<'de> Deserialize<'de> for StallsDecoding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (port, bytes) = <(u16, ByteBuf)>::deserialize(d)?;
        gated(port);
        Ok(StallsDecoding {
            port,
            bytes: bytes.into_vec(),
        })
    }
}

/// Serializations of a [`StallsEncoding`] begun in this process.
static ENCODES: AtomicUsize = AtomicUsize::new(0);

/// An output whose serialization, in the worker, writes its large bytes and then stops at a
/// gate. A large output is serialized twice (its size is measured, then it is written into the
/// region): the gate is on the second pass, when half of it is in the region.
#[derive(Debug)]
struct StallsEncoding {
    port: u16,
}

impl Serialize for StallsEncoding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut tuple = s.serialize_tuple(2)?;
        tuple.serialize_element(serde_bytes::Bytes::new(&vec![5u8; BIG]))?;
        if ENCODES.fetch_add(1, Ordering::SeqCst) == 1 {
            gated(self.port);
        }
        tuple.serialize_element(&self.port)?;
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for StallsEncoding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (_, port) = <(ByteBuf, u16)>::deserialize(d)?;
        Ok(StallsEncoding { port })
    }
}

fn kill(pid: u32) {
    rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
}

/// A large round trip through both regions, checked.
#[track_caller]
fn large_round_trip(pool: &polyexec_subprocess::ProcessPool, seed: u8) {
    let input = ByteBuf::from(vec![seed; BIG]);
    let back = common::join(pool.spawn(input, |mut b: ByteBuf| {
        b.iter_mut().for_each(|x| *x = x.wrapping_add(1));
        b
    }))
    .expect("a large round trip");
    assert!(back.iter().all(|&x| x == seed.wrapping_add(1)));
}

/// One test, so that no other pool of this process maps regions or opens descriptors meanwhile.
#[test]
fn a_worker_killed_half_way_through_a_shared_payload() {
    // First: its listening socket stays open until the test ends.
    let mut gate = Gate::new();
    let pool = common::pool(1);
    // Both regions made and mapped.
    large_round_trip(&pool, 1);
    let fds = common::open_fds();
    assert_eq!(region_mappings(std::process::id()), 2);

    // Half-way through decoding an input from the pool's region.
    let pid = pool.worker_pids()[0];
    let stalled = pool.spawn(
        StallsDecoding {
            port: gate.port(),
            bytes: vec![3u8; BIG],
        },
        |input: StallsDecoding| input.bytes.len(),
    );
    gate.wait_started(1);
    kill(pid);
    assert_eq!(
        common::join(stalled),
        Err(TaskError::WorkerLost(WorkerExit::Signal(9)))
    );
    // The replacement is sent the pool's region with its first large input.
    large_round_trip(&pool, 2);
    let pid = pool.worker_pids()[0];

    // Half-way through serializing an output into the worker's region.
    let stalled = pool.spawn(gate.port(), |port: u16| StallsEncoding { port });
    gate.wait_started(1);
    kill(pid);
    assert!(matches!(
        common::join(stalled),
        Err(TaskError::WorkerLost(WorkerExit::Signal(9)))
    ));
    large_round_trip(&pool, 3);
    // Closes the killed tasks' connections to it.
    gate.release();

    // The dead workers' regions are gone, the pool's region and the new worker's remain; as
    // many descriptors as before (the worker's socket and pidfd are new ones).
    assert_eq!(region_mappings(std::process::id()), 2);
    assert_eq!(region_mappings(pool.worker_pids()[0]), 2);
    let regions = |fds: &[String]| fds.iter().filter(|fd| fd.contains("memfd:")).count();
    let now = common::open_fds();
    assert_eq!(now.len(), fds.len(), "{now:?} against {fds:?}");
    // The pool's region; a region received from a worker has its descriptor closed once mapped.
    assert_eq!(regions(&now), 1);
    common::assert_serves(&pool);
    drop(pool);
    assert_eq!(region_mappings(std::process::id()), 0);
}
