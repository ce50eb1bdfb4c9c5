//! Fault injection, output serialization in the worker: an output whose `Serialize` fails — with
//! an error, a panic, a process exit or a crash — fails that task alone. An error or a panic is
//! `Codec(CodecError { stage: EncodeOutput, .. })` and the worker keeps serving (no partial frame reaches the parent);
//! an exit or a crash is `WorkerLost` with the exit code or signal and the worker is replaced.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{CodecStage, Executor, TaskError, WorkerExit};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An output that fails to encode in the given way. It writes part of itself first, so a
/// failure leaves a partial encoding behind in the worker's output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Mode {
    Error,
    Panic,
    Exit(u8),
    Abort,
}

#[derive(Debug)]
struct Spoiled(Mode);

impl Serialize for Spoiled {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        assert!(common::in_worker(), "only a worker encodes outputs");
        let mut tuple = s.serialize_tuple(2)?;
        tuple.serialize_element(&[0xAAu8; 32])?;
        match self.0 {
            Mode::Error => return Err(serde::ser::Error::custom("output refuses to serialize")),
            Mode::Panic => panic!("output panics while serializing"),
            Mode::Exit(code) => std::process::exit(i32::from(code)),
            Mode::Abort => std::process::abort(),
        }
        #[allow(unreachable_code)]
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Spoiled {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <([u8; 32], Mode)>::deserialize(d).map(|(_, mode)| Spoiled(mode))
    }
}

fn spoiled(pool: &polyexec_subprocess::ProcessPool, mode: Mode) -> Result<Spoiled, TaskError> {
    common::alongside(pool, |pool| pool.spawn(mode, Spoiled))
}

fn assert_encode_output(result: Result<Spoiled, TaskError>) {
    match result {
        Err(TaskError::Codec(codec)) => {
            let (stage, message) = (codec.stage, &codec.message);
            assert_eq!(stage, CodecStage::EncodeOutput);
            assert!(message.contains("Spoiled"), "the type is named: {message}");
        }
        other => panic!("expected an EncodeOutput error, got {other:?}"),
    }
}

#[test]
fn serialize_error_fails_that_task_and_the_worker_serves_on() {
    let pool = common::pool(2);
    let mut workers = pool.worker_pids();
    assert_encode_output(spoiled(&pool, Mode::Error));
    // Async tasks encode their output on another path.
    assert_encode_output(common::join(
        pool.spawn_async(Mode::Error, |mode: Mode| async move { Spoiled(mode) }),
    ));
    let mut after = pool.worker_pids();
    workers.sort_unstable();
    after.sort_unstable();
    assert_eq!(workers, after, "no worker was replaced");
}

#[test]
fn serialize_panic_fails_that_task_and_the_worker_serves_on() {
    let pool = common::pool(2);
    let mut workers = pool.worker_pids();
    assert_encode_output(spoiled(&pool, Mode::Panic));
    assert_encode_output(common::join(
        pool.spawn_async(Mode::Panic, |mode: Mode| async move { Spoiled(mode) }),
    ));
    let mut after = pool.worker_pids();
    workers.sort_unstable();
    after.sort_unstable();
    assert_eq!(workers, after, "no worker was replaced");
}

#[test]
fn exit_while_serializing_loses_that_task_only() {
    let pool = common::pool(2);
    assert_eq!(
        spoiled(&pool, Mode::Exit(4)).map(|s| s.0),
        Err(TaskError::WorkerLost(WorkerExit::Code(4)))
    );
}

#[test]
fn abort_while_serializing_loses_that_task_only() {
    let pool = common::pool(2);
    assert_eq!(
        spoiled(&pool, Mode::Abort).map(|s| s.0),
        Err(TaskError::WorkerLost(WorkerExit::Signal(6)))
    );
}
