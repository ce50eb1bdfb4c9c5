//! A payload larger than any frame or region can carry (more than 4 GiB) fails its task with a
//! clear codec error, at once and in either direction, without the pool allocating or copying
//! it: its size is measured before any byte is written. The pool serves on.
//!
//! The values claim five times the same 1 GiB buffer, which is allocated zeroed and never
//! touched (the kernel maps such pages only when they are written or read), so the test needs
//! no memory to speak of.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{CodecStage, Executor, TaskError};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const GIB: usize = 1 << 30;

/// Serializes as `copies` times the bytes of one untouched 1 GiB buffer.
#[derive(Debug)]
struct Huge {
    copies: usize,
}

impl Serialize for Huge {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Zeroed and never touched: no page of it is ever mapped.
        let buffer = vec![0u8; GIB];
        let mut tuple = s.serialize_tuple(self.copies)?;
        for _ in 0..self.copies {
            tuple.serialize_element(serde_bytes::Bytes::new(&buffer))?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Huge {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("a Huge value is never decoded"))
    }
}

#[track_caller]
fn assert_too_large<T: std::fmt::Debug>(result: Result<T, TaskError>, stage: CodecStage) {
    match result {
        Err(TaskError::Codec(codec)) => {
            assert_eq!(codec.stage, stage);
            assert!(
                codec.message.contains("more than the 4 GiB") && codec.message.contains("Huge"),
                "the message says why and names the type: {}",
                codec.message
            );
        }
        other => panic!("expected a {stage:?} codec error, got {other:?}"),
    }
}

#[test]
fn an_input_over_every_limit_fails_at_once() {
    let pool = common::pool(1);
    let handle = pool.spawn(Huge { copies: 5 }, |_: Huge| 0u8);
    // Resolved before `spawn` returned: nothing was sent.
    assert!(handle.is_finished());
    assert_too_large(common::join(handle), CodecStage::EncodeInput);
    common::assert_serves(&pool);
}

#[test]
fn an_output_over_every_limit_fails_its_task_alone() {
    let pool = common::pool(1);
    let worker = pool.worker_pids();
    let result = common::alongside(&pool, |pool| {
        pool.spawn(5usize, |copies: usize| Huge { copies })
    });
    assert_too_large(result, CodecStage::EncodeOutput);
    assert_eq!(pool.worker_pids(), worker, "the worker served on");
}
