//! Fault injection, output deserialization in the parent: an output that the worker encodes
//! fine but the parent cannot decode — its `Deserialize` fails, or panics, only in the parent —
//! fails that task alone with `Codec(CodecError { stage: DecodeOutput, .. })`. The decoding runs on the thread that
//! joins the handle: neither the pool's reader thread for that worker nor the worker is affected,
//! and the tasks behind it on the same worker get their values.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{CodecStage, Executor, TaskError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Crosses to the worker fine (as an input) and back, but refuses to be decoded in the parent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ParentAllergic {
    Error,
    Panic,
}

impl Serialize for ParentAllergic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (*self == ParentAllergic::Panic).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ParentAllergic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let panic = bool::deserialize(d)?;
        if !common::in_worker() {
            if panic {
                panic!("output panics while deserializing in the parent");
            }
            return Err(serde::de::Error::custom("output refuses the parent"));
        }
        Ok(if panic {
            ParentAllergic::Panic
        } else {
            ParentAllergic::Error
        })
    }
}

fn assert_decode_output(result: Result<ParentAllergic, TaskError>) {
    match result {
        Err(TaskError::Codec(codec)) => {
            let (stage, message) = (codec.stage, &codec.message);
            assert_eq!(stage, CodecStage::DecodeOutput);
            assert!(
                message.contains("ParentAllergic"),
                "the type is named: {message}"
            );
        }
        other => panic!("expected a DecodeOutput error, got {other:?}"),
    }
}

#[test]
fn deserialize_error_in_the_parent_fails_that_task_only() {
    let pool = common::pool(2);
    let mut workers = pool.worker_pids();
    assert_decode_output(common::alongside(&pool, |pool| {
        pool.spawn(ParentAllergic::Error, |x: ParentAllergic| x)
    }));
    let mut after = pool.worker_pids();
    workers.sort_unstable();
    after.sort_unstable();
    assert_eq!(workers, after, "no worker was replaced");
}

#[test]
fn deserialize_panic_in_the_parent_fails_that_task_only() {
    let pool = common::pool(2);
    let mut workers = pool.worker_pids();
    assert_decode_output(common::alongside(&pool, |pool| {
        pool.spawn(ParentAllergic::Panic, |x: ParentAllergic| x)
    }));
    // Many of them, interleaved with healthy tasks: the reader thread survives every one.
    let handles: Vec<_> = (0..100u32)
        .map(|i| {
            let bad = pool.spawn(ParentAllergic::Panic, |x: ParentAllergic| x);
            let good = pool.spawn(i, |i: u32| i + 1);
            (bad, good)
        })
        .collect();
    for (i, (bad, good)) in handles.into_iter().enumerate() {
        assert_decode_output(common::join(bad));
        assert_eq!(common::join(good), Ok(i as u32 + 1));
    }
    let mut after = pool.worker_pids();
    workers.sort_unstable();
    after.sort_unstable();
    assert_eq!(workers, after, "no worker was replaced");
}
