//! Data that cannot cross the boundary fails that task with a `Codec` error naming the stage:
//! encoding the input (parent), decoding it (worker), encoding the output (worker), decoding it
//! (parent).

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{CodecStage, Executor, TaskError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializing always fails.
#[derive(Debug, PartialEq)]
struct NoSer;

impl Serialize for NoSer {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("NoSer refuses to serialize"))
    }
}

impl<'de> Deserialize<'de> for NoSer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| NoSer)
    }
}

/// Deserializing always fails.
#[derive(Debug, PartialEq)]
struct NoDe;

impl Serialize for NoDe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ().serialize(s)
    }
}

impl<'de> Deserialize<'de> for NoDe {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("NoDe refuses to deserialize"))
    }
}

/// postcard keeps no custom message, so the error names the type instead.
fn stage(err: TaskError) -> (CodecStage, String) {
    match err {
        TaskError::Codec(codec) => (codec.stage, codec.message),
        other => panic!("not a codec error: {other:?}"),
    }
}

#[test]
fn each_stage_is_reported() {
    let pool = common::pool(1);
    let pid = pool.spawn((), |()| std::process::id()).join().unwrap();

    let h = pool.spawn(NoSer, |_: NoSer| 1u8);
    assert!(
        h.is_finished(),
        "an input that cannot be encoded fails at once"
    );
    let (s, m) = stage(h.join().unwrap_err());
    assert_eq!(s, CodecStage::EncodeInput);
    assert!(m.contains("NoSer"), "{m}");

    let (s, m) = stage(pool.spawn(NoDe, |_: NoDe| 1u8).join().unwrap_err());
    assert_eq!(s, CodecStage::DecodeInput);
    assert!(m.contains("NoDe"), "{m}");

    let (s, m) = stage(pool.spawn((), |()| NoSer).join().unwrap_err());
    assert_eq!(s, CodecStage::EncodeOutput);
    assert!(m.contains("NoSer"), "{m}");

    let (s, m) = stage(pool.spawn((), |()| NoDe).join().unwrap_err());
    assert_eq!(s, CodecStage::DecodeOutput);
    assert!(m.contains("NoDe"), "{m}");

    let (s, _) = stage(
        pool.spawn_async((), |()| async { NoSer })
            .join()
            .unwrap_err(),
    );
    assert_eq!(s, CodecStage::EncodeOutput);

    // None of it cost the worker.
    assert_eq!(pool.spawn((), |()| std::process::id()).join(), Ok(pid));
}
