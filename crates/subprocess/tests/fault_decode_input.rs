//! Fault injection, input deserialization in the worker: an input whose `Deserialize` fails in
//! the worker — with an error, a panic, a process exit or a crash — fails that task alone. An
//! error or a panic is `Codec(CodecError { stage: DecodeInput, .. })` and the worker keeps serving; an exit or a crash
//! is `WorkerLost` with the exit code or signal (the worker announced the task before decoding
//! its input, so the parent knows which task it was) and the worker is replaced. The tasks
//! queued behind it on that worker run elsewhere; nothing hangs.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{CodecStage, Executor, TaskError, WorkerExit};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An input that encodes fine and fails to decode, in a worker only, in the given way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Poison {
    Error,
    Panic,
    Exit(u8),
    Abort,
}

impl Serialize for Poison {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let code: u16 = match *self {
            Poison::Error => 0,
            Poison::Panic => 1,
            Poison::Abort => 2,
            Poison::Exit(code) => 0x100 | u16::from(code),
        };
        code.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Poison {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(d)?;
        assert!(common::in_worker(), "only a worker decodes inputs");
        match code {
            0 => Err(serde::de::Error::custom("input refuses to deserialize")),
            1 => panic!("input panics while deserializing"),
            2 => std::process::abort(),
            code => std::process::exit(i32::from(code as u8)),
        }
    }
}

fn poisoned(pool: &polyexec_subprocess::ProcessPool, poison: Poison) -> Result<u8, TaskError> {
    common::alongside(pool, |pool| pool.spawn(poison, |_: Poison| 1u8))
}

fn assert_decode_input(result: Result<u8, TaskError>) {
    match result {
        Err(TaskError::Codec(codec)) => {
            let (stage, message) = (codec.stage, &codec.message);
            assert_eq!(stage, CodecStage::DecodeInput);
            assert!(message.contains("Poison"), "the type is named: {message}");
        }
        other => panic!("expected a DecodeInput error, got {other:?}"),
    }
}

#[test]
fn deserialize_error_fails_that_task_and_the_worker_serves_on() {
    let pool = common::pool(2);
    let mut workers = pool.worker_pids();
    assert_decode_input(poisoned(&pool, Poison::Error));
    let mut after = pool.worker_pids();
    workers.sort_unstable();
    after.sort_unstable();
    assert_eq!(workers, after, "no worker was replaced");
}

#[test]
fn deserialize_panic_fails_that_task_and_the_worker_serves_on() {
    let pool = common::pool(2);
    let mut workers = pool.worker_pids();
    assert_decode_input(poisoned(&pool, Poison::Panic));
    let mut after = pool.worker_pids();
    workers.sort_unstable();
    after.sort_unstable();
    assert_eq!(workers, after, "no worker was replaced");
}

#[test]
fn exit_while_deserializing_loses_that_task_only() {
    let pool = common::pool(2);
    assert_eq!(
        poisoned(&pool, Poison::Exit(3)),
        Err(TaskError::WorkerLost(WorkerExit::Code(3)))
    );
}

#[test]
fn abort_while_deserializing_loses_that_task_only() {
    let pool = common::pool(2);
    assert_eq!(
        poisoned(&pool, Poison::Abort),
        Err(TaskError::WorkerLost(WorkerExit::Signal(6)))
    );
    // On a one-worker pool the tasks queued behind it wait for the replacement.
    let pool = common::pool(1);
    assert_eq!(
        poisoned(&pool, Poison::Abort),
        Err(TaskError::WorkerLost(WorkerExit::Signal(6)))
    );
}
