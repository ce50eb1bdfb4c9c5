//! A slow output `Deserialize` delays only its own task: the parent decodes an output on the
//! thread that takes it from its handle, not on the reader thread that resolves every handle of
//! that worker. Here the slow decode cannot finish before the other tasks' results have arrived
//! (it waits for them), so the test fails, rather than passes slowly, if they wait behind it.

polyexec_subprocess::test_hook!();

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use polyexec_core::{Executor, TaskError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Opened by the test once the other results are in; a decode of [`Gated`] waits for it.
static GATE: Mutex<bool> = Mutex::new(false);
static OPENED: Condvar = Condvar::new();
/// Decodes of [`Gated`] begun in this process.
static DECODES: AtomicUsize = AtomicUsize::new(0);

fn open_gate() {
    *GATE.lock().unwrap() = true;
    OPENED.notify_all();
}

/// An output whose decoding in the parent blocks until the gate opens (as a decode that takes
/// seconds would, for as long as the test needs). It fails, after [`common::HANG`], only if the
/// gate never opens: when the decode holds up the results the test waits for before opening it.
#[derive(Debug, PartialEq)]
struct Gated(u32);

impl Serialize for Gated {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Gated {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(d)?;
        DECODES.fetch_add(1, Ordering::SeqCst);
        let guard = GATE.lock().unwrap();
        let (guard, _) = OPENED
            .wait_timeout_while(guard, common::HANG, |open| !*open)
            .unwrap();
        if !*guard {
            return Err(serde::de::Error::custom(
                "the gate never opened: the other results waited behind this decode",
            ));
        }
        Ok(Gated(value))
    }
}

#[test]
fn a_slow_decode_delays_no_other_result_of_its_worker() {
    // One worker: every result comes through the same reader thread, the slow one first.
    let pool = common::pool(1);
    let slow = pool.spawn(7u32, |x: u32| Gated(x));
    let quick: Vec<_> = (0..20u32).map(|i| pool.spawn(i, |x: u32| x * 3)).collect();
    // The slow handle is joined on a thread of its own, which decodes it (and waits at the gate).
    let joiner = std::thread::spawn(move || common::join(slow));
    for (i, handle) in quick.into_iter().enumerate() {
        assert_eq!(common::join(handle), Ok(i as u32 * 3));
    }
    open_gate();
    assert_eq!(joiner.join().unwrap(), Ok(Gated(7)));
    assert_eq!(DECODES.load(Ordering::SeqCst), 1);
}

/// Decodes of [`Counted`] in this process.
static COUNTED: AtomicUsize = AtomicUsize::new(0);

/// An output that counts its decodes in the parent.
#[derive(Debug)]
struct Counted;

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        COUNTED.fetch_add(1, Ordering::SeqCst);
        Ok(Counted)
    }
}

#[test]
fn a_detached_output_is_never_decoded() {
    let pool = common::pool(1);
    pool.spawn((), |()| Counted).detach();
    // Behind the detached task on the same worker: once this result is in, so is the other's.
    assert_eq!(common::join(pool.spawn(2u32, |x: u32| x + 1)), Ok(3));
    pool.shutdown();
    assert_eq!(COUNTED.load(Ordering::SeqCst), 0, "nobody decoded it");
    // A joined one is decoded once.
    drop(pool);
    let pool = common::pool(1);
    assert!(common::join(pool.spawn((), |()| Counted)).is_ok());
    assert_eq!(COUNTED.load(Ordering::SeqCst), 1);
}

#[test]
fn a_result_resolved_but_not_yet_taken_reports_finished() {
    let pool = common::pool(1);
    let mut handle = pool.spawn(5u32, |x: u32| x.to_string());
    // Behind it on the same worker: its result has been delivered (still encoded) by now.
    assert_eq!(common::join(pool.spawn(0u8, |x: u8| x)), Ok(0));
    assert!(handle.is_finished());
    assert_eq!(
        handle.join_timeout(std::time::Duration::ZERO),
        Some(Ok::<_, TaskError>("5".to_owned()))
    );
}
