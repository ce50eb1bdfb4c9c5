//! Fault injection, input serialization in the parent: an input whose `Serialize` fails (with an
//! error, or by panicking) fails that task alone, at once, with `Codec(CodecError { stage: EncodeInput, .. })`; nothing
//! reaches a worker, the caller of `spawn` is not unwound, and the pool goes on.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{CodecStage, Executor, TaskError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How serializing this input fails.
#[derive(Debug, Clone, Copy)]
enum Refuse {
    Error,
    Panic,
}

impl Serialize for Refuse {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match self {
            Refuse::Error => Err(serde::ser::Error::custom("input refuses to serialize")),
            Refuse::Panic => panic!("input panics while serializing"),
        }
    }
}

impl<'de> Deserialize<'de> for Refuse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Refuse::Error)
    }
}

fn assert_encode_input(result: Result<u8, TaskError>) {
    match result {
        Err(TaskError::Codec(codec)) => {
            let (stage, message) = (codec.stage, &codec.message);
            assert_eq!(stage, CodecStage::EncodeInput);
            assert!(message.contains("Refuse"), "the type is named: {message}");
        }
        other => panic!("expected an EncodeInput error, got {other:?}"),
    }
}

#[test]
fn serialize_error_fails_that_task_at_once() {
    let pool = common::pool(2);
    let result = common::alongside(&pool, |pool| {
        let handle = pool.spawn(Refuse::Error, |_: Refuse| 1u8);
        assert!(handle.is_finished(), "refused at submission");
        handle
    });
    assert_encode_input(result);
    // Through `map`: postcard cannot tell which element failed, so the chunk holding it fails
    // as a whole (every element gets the error) and the other chunks are unaffected.
    let results: Vec<_> = pool
        .map(
            vec![None, Some(Refuse::Error), None],
            |r: Option<Refuse>| u8::from(r.is_none()),
        )
        .collect();
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(TaskError::is_codec))
    );
    // With chunks of one, only that element fails.
    let results: Vec<_> = pool
        .map_with(
            vec![None, Some(Refuse::Error), None],
            |r: Option<Refuse>| u8::from(r.is_none()),
            polyexec_core::MapOptions::new().chunk_size(1),
        )
        .collect();
    assert_eq!(results[0], Ok(1));
    assert!(results[1].as_ref().is_err_and(TaskError::is_codec));
    assert_eq!(results[2], Ok(1));
}

#[test]
fn serialize_panic_fails_that_task_not_the_caller() {
    let pool = common::pool(2);
    let result = common::alongside(&pool, |pool| {
        let handle = pool.spawn(Refuse::Panic, |_: Refuse| 1u8);
        assert!(handle.is_finished(), "refused at submission");
        handle
    });
    assert_encode_input(result);
}
