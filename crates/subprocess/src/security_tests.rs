//! Security of the worker channel, tested from inside the crate, where the real protocol types,
//! key and fingerprint are at hand: a worker of another build is refused; a worker refuses a
//! `Hello` of another build; forged `RUN` frames are refused and the worker serves on; and a real
//! worker fed random frames after a real handshake never runs anything and never dies of a
//! signal (no undefined behaviour, no panic): it refuses, or exits with its "broken protocol"
//! code, or with 0 once the stream ends.
//!
//! The pure decoding functions are fuzzed in `protocol.rs` and `entry.rs`; the channel's lack of
//! a name and the hand-started worker are tested from outside, in `tests/channel_security.rs`.

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use polyexec_core::{BuildError, TaskError, WorkerExit};
use proptest::prelude::*;

use crate::entry::{Key, Kind, TaskAddr};
use crate::process::{self, EXIT_MISMATCH, EXIT_SETUP_FAILED, SpawnConfig, Spawned};
use crate::protocol::{self, FrameReader, Hello, PROTOCOL_VERSION};

/// Only a hang waits this long.
const HANG: Duration = Duration::from_secs(120);

/// Number of cases of the fuzzing properties: `POLYEXEC_FUZZ_CASES`, else `default`.
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("POLYEXEC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(key: &Key) -> SpawnConfig {
    SpawnConfig {
        env: vec![("RUST_BACKTRACE".into(), "0".into())],
        handshake_timeout: Duration::from_secs(30),
        key: key.bytes(),
        timeout: None,
        init: None,
        shared_memory: false,
        init_arg: Vec::new(),
    }
}

/// A real worker of this test binary, greeted with `key`.
fn worker(key: &Key) -> Spawned {
    process::spawn(&config(key), 0).expect("start a worker")
}

/// Reads every frame until the worker closes the channel; `(tag, body)` each.
fn read_all(mut stream: UnixStream) -> Vec<(u8, Vec<u8>)> {
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    loop {
        match reader.fill(&mut stream) {
            Ok(true) => {}
            Ok(false) => break,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!("reading the worker's frames: {err}"),
        }
        while let Ok(Some(frame)) = reader.next_frame() {
            frames.push((frame.tag, reader.body(&frame).to_vec()));
        }
    }
    frames
}

/// Waits for the worker to exit on its own (only a hang reaches the bound) and reaps it.
fn exit_status(mut spawned: Spawned) -> WorkerExit {
    assert!(
        process::wait_exit(&spawned.pidfd, HANG),
        "the worker did not exit"
    );
    process::reap(&mut spawned.child, &spawned.pidfd, Duration::ZERO)
}

fn run_frame(id: u64, addr: TaskAddr, input: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    let start = protocol::begin_run(&mut frame, id, addr);
    frame.extend_from_slice(input);
    assert!(protocol::end_frame(&mut frame, start));
    frame
}

fn exit_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    let start = protocol::begin_frame(&mut frame, protocol::EXIT);
    protocol::end_frame(&mut frame, start);
    frame
}

/// `true` if `bytes` end inside a frame, as the worker's reader will see them.
fn ends_inside_a_frame(bytes: &[u8]) -> bool {
    let mut reader = FrameReader::new();
    let mut stream = bytes;
    while let Ok(true) = reader.fill(&mut stream) {
        loop {
            match reader.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                // The worker exits at this frame; what follows does not matter.
                Err(_) => return false,
            }
        }
    }
    reader.in_frame()
}

fn blocking_addr<F: Fn(u32) -> u32 + Copy>(key: &Key, _: F) -> TaskAddr {
    key.blocking::<F, u32, u32>()
}

#[test]
fn a_worker_of_another_build_is_refused() {
    let err = crate::ProcessPool::builder()
        .workers(2)
        .env("POLYEXEC_TEST_FINGERPRINT_SALT", "another build")
        .build()
        .unwrap_err();
    let BuildError::Start(message) = &err else {
        panic!("unexpected error: {err:?}");
    };
    assert!(message.contains("not the same build"), "{message}");
}

/// A hand-started worker (this binary with the worker argument and variable, its parent this
/// process) sent a `Hello` whose fingerprint or protocol is not its own: it refuses with a
/// `REFUSED` frame and exits with [`EXIT_MISMATCH`], before running anything.
#[test]
fn a_worker_refuses_a_hello_of_another_build() {
    for (protocol, fingerprint) in [
        (PROTOCOL_VERSION, process::fingerprint() ^ 1),
        (PROTOCOL_VERSION + 1, process::fingerprint()),
    ] {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg(process::WORKER_ARG)
            .env(process::WORKER_ENV, std::process::id().to_string())
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .spawn()
            .unwrap();
        let hello = Hello {
            protocol,
            fingerprint,
            index: 0,
            key: [0; 16],
            timeout: None,
            init: None,
            shared_memory: false,
            init_arg: Vec::new(),
        };
        let mut frame = Vec::new();
        protocol::push_message(&mut frame, protocol::HELLO, &hello);
        ours.write_all(&frame).unwrap();
        let frames = read_all(ours);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].0, protocol::REFUSED);
        let reason: String = protocol::decode(&frames[0].1).unwrap();
        assert!(reason.contains("not the same build"), "{reason}");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(EXIT_MISMATCH));
    }
}

/// `RUN` frames that name no task of this build — a wrong tag, an address tagged with another
/// key, a blocking address presented as async, an initializer presented as a task — are each
/// refused with an error; the worker runs none of them and then serves a genuine task.
#[test]
fn forged_run_frames_are_refused_and_the_worker_serves_on() {
    let key = Key::random().unwrap();
    let spawned = worker(&key);
    let genuine = blocking_addr(&key, |x: u32| x + 1);
    let mut input = Vec::new();
    protocol::encode_into(&41u32, &mut input).unwrap();
    let other_key = Key::from_bytes(key.bytes().map(|b| b ^ 0x5a));
    let forgeries = [
        TaskAddr {
            tag: genuine.tag ^ 1,
            ..genuine
        },
        TaskAddr {
            offset: genuine.offset + 16,
            ..genuine
        },
        blocking_addr(&other_key, |x: u32| x + 1),
        TaskAddr {
            kind: Kind::Async,
            ..genuine
        },
        TaskAddr {
            kind: Kind::Init,
            ..genuine
        },
    ];
    let mut stream = spawned.stream.try_clone().unwrap();
    for (id, forged) in forgeries.iter().enumerate() {
        stream
            .write_all(&run_frame(id as u64, *forged, &input))
            .unwrap();
    }
    stream.write_all(&run_frame(99, genuine, &input)).unwrap();
    // Finish what you hold, then exit. (Closing the stream instead would make the worker exit
    // at once: a parent that closed its end is gone, and nobody would read the answers.)
    stream.write_all(&exit_frame()).unwrap();
    let frames = read_all(spawned.stream.try_clone().unwrap());
    let mut refused = 0;
    let mut value = None;
    for (tag, body) in frames {
        let (id, rest) = protocol::split_id(&body).unwrap();
        match tag {
            protocol::STARTED => {}
            protocol::DONE_ERR => {
                let err: TaskError = protocol::decode(rest).unwrap();
                assert!(
                    matches!(&err, TaskError::Transport(m) if m.contains("refused") || m.contains("not a task")),
                    "task {id}: {err:?}"
                );
                refused += 1;
            }
            protocol::DONE_OK => {
                assert_eq!(id, 99, "a forged frame ran");
                value = Some(protocol::decode::<u32>(rest).unwrap());
            }
            other => panic!("unexpected frame {other:#x}"),
        }
    }
    assert_eq!(refused, forgeries.len());
    assert_eq!(value, Some(42), "the worker did not serve the genuine task");
    // End of stream: the worker exits normally.
    assert_eq!(exit_status(spawned), WorkerExit::Code(0));
}

/// One frame of the fuzzing property: well-formed, or not.
#[derive(Debug, Clone)]
enum Fuzz {
    /// A frame with a correct length, any tag and any body.
    Frame(u8, Vec<u8>),
    /// A `RUN` frame with a correct layout: any id, kind byte, offset, tag and input.
    Run(u64, u8, i64, u64, Vec<u8>),
    /// A `CANCEL` frame for any id.
    Cancel(u64),
    /// Raw bytes: any length prefix, truncated frames, noise.
    Raw(Vec<u8>),
}

/// Well-formed frames the worker must refuse one by one: `RUN` frames of a valid layout and
/// kind naming random addresses, and cancellations of random ids.
fn refusable() -> impl Strategy<Value = Fuzz> {
    prop_oneof![
        4 => (
            any::<u64>(),
            0u8..3,
            any::<i64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..32),
        )
            .prop_map(|(id, kind, offset, tag, input)| Fuzz::Run(id, kind, offset, tag, input)),
        1 => any::<u64>().prop_map(Fuzz::Cancel),
    ]
}

/// Anything at all: frames with any tag and body (malformed `RUN` and `CANCEL` bodies, unknown
/// tags, `EXIT`, a `HELLO` again), `RUN` frames with any kind byte, and raw bytes (any length
/// prefix, zero lengths, truncated frames).
fn anything() -> impl Strategy<Value = Fuzz> {
    let tag = prop_oneof![
        Just(protocol::RUN),
        Just(protocol::CANCEL),
        Just(protocol::EXIT),
        Just(protocol::HELLO),
        any::<u8>(),
    ];
    prop_oneof![
        2 => (tag, proptest::collection::vec(any::<u8>(), 0..48))
            .prop_map(|(tag, body)| Fuzz::Frame(tag, body)),
        1 => (any::<u64>(), any::<u8>(), any::<i64>(), any::<u64>())
            .prop_map(|(id, kind, offset, tag)| Fuzz::Run(id, kind, offset, tag, Vec::new())),
        2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Fuzz::Raw),
    ]
}

/// A stream the worker reads far into: refusable frames, sprinkled with anything.
fn fuzz_strategy() -> impl Strategy<Value = Vec<Fuzz>> {
    (
        proptest::collection::vec(refusable(), 0..16),
        proptest::collection::vec(anything(), 0..3),
        proptest::collection::vec(refusable(), 0..4),
    )
        .prop_map(|(mut items, tail, more)| {
            items.extend(tail);
            items.extend(more);
            items
        })
}

fn encode_fuzz(items: &[Fuzz]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for item in items {
        match item {
            Fuzz::Frame(tag, body) => {
                let start = protocol::begin_frame(&mut bytes, *tag);
                bytes.extend_from_slice(body);
                protocol::end_frame(&mut bytes, start);
            }
            Fuzz::Run(id, kind, offset, tag, input) => {
                let start = protocol::begin_frame(&mut bytes, protocol::RUN);
                bytes.extend_from_slice(&id.to_le_bytes());
                bytes.push(*kind);
                bytes.extend_from_slice(&offset.to_le_bytes());
                bytes.extend_from_slice(&tag.to_le_bytes());
                bytes.extend_from_slice(input);
                protocol::end_frame(&mut bytes, start);
            }
            Fuzz::Cancel(id) => protocol::push_id_frame(&mut bytes, protocol::CANCEL, *id),
            Fuzz::Raw(raw) => bytes.extend_from_slice(raw),
        }
    }
    bytes
}

/// Feeds `bytes` to a freshly greeted worker, then an `EXIT` frame (finish what you hold, then
/// exit) if the bytes end on a frame boundary, or the end of the stream if they end inside a
/// frame (which the worker would otherwise wait to complete); returns its answers and how it
/// exited.
fn feed_worker(bytes: &[u8]) -> (Vec<(u8, Vec<u8>)>, WorkerExit) {
    let key = Key::random().unwrap();
    let spawned = worker(&key);
    let stream = spawned.stream.try_clone().unwrap();
    let reader = {
        let stream = spawned.stream.try_clone().unwrap();
        std::thread::spawn(move || read_all(stream))
    };
    // The worker may exit half-way (a malformed frame): the rest cannot be written.
    let end = if ends_inside_a_frame(bytes) {
        Vec::new()
    } else {
        exit_frame()
    };
    if protocol::send_all(stream.as_fd(), &[bytes, &end], None).is_ok() && end.is_empty() {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let frames = reader.join().expect("the reader panicked");
    (frames, exit_status(spawned))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: fuzz_cases(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random frames after a real handshake: the worker runs nothing (no `DONE_OK`, and every
    /// error is a refusal or a cancellation) and exits normally (0 at the end of the stream, or
    /// its "broken protocol" code on a malformed frame), never of a signal or a panic.
    #[test]
    fn a_worker_fed_random_frames_runs_nothing_and_never_crashes(
        items in fuzz_strategy()
    ) {
        let bytes = encode_fuzz(&items);
        let (frames, status) = feed_worker(&bytes);
        prop_assert!(
            matches!(status, WorkerExit::Code(0) | WorkerExit::Code(EXIT_SETUP_FAILED)),
            "the worker ended with {status}"
        );
        for (tag, body) in &frames {
            match *tag {
                protocol::STARTED => {}
                protocol::DONE_ERR => {
                    let (_, rest) = protocol::split_id(body).expect("an id");
                    let err: TaskError = protocol::decode(rest).expect("an error");
                    prop_assert!(
                        matches!(&err, TaskError::Cancelled)
                            || matches!(&err, TaskError::Transport(m)
                                if m.contains("refused") || m.contains("not a task")),
                        "unexpected error {err:?}"
                    );
                }
                other => prop_assert!(false, "the worker answered frame {other:#x}: something ran"),
            }
        }
    }
}
