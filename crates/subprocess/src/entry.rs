//! Task addressing: how a worker finds the code of a task the parent named.
//!
//! Every portable task `F` (a closure or `fn` item that captures nothing, so zero-sized) is run
//! through a *trampoline*, a function monomorphized for `(F, In, Out)` that decodes the input,
//! makes the zero-sized `F` out of nothing, runs it and encodes the output. A frame names the
//! trampoline by its distance from [`anchor`], a non-generic function of this crate: the worker
//! is the same executable (checked by the handshake's build fingerprint), and the loader moves
//! every function of the executable by the same amount, so `anchor + distance` is the same
//! trampoline in the worker.
//!
//! A frame's distance is only turned into a function pointer after its tag checks out: the tag is
//! SipHash-2-4, keyed with the pool's random 128-bit key, of the trampoline's kind and distance,
//! and only the parent (which computed the distance from a real trampoline) knows the key. A
//! corrupted or forged frame is refused with an error, never jumped into.
//!
//! This module, `shm`, `stop` and `inherited` are the only ones of the crate allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::future::Future;
use std::hash::Hasher;
use std::pin::Pin;

use polyexec_core::{CodecStage, TaskError, catch_async, catch_task};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher24;

use crate::payload::{self, Payload};
use crate::protocol;
use crate::shm::Slot;
use crate::shm::stream::Gone;

/// A blocking trampoline: decodes the input (then releases it), runs the task, and encodes the
/// output: into the shared-memory slot `place` hands out for its size, if any, or else appended
/// to `out`. On error `out` may hold a partial encoding; the caller truncates it.
pub(crate) type BlockingFn = fn(
    protocol::Input<'_>,
    &mut Vec<u8>,
    &mut dyn FnMut(usize) -> Option<Slot>,
) -> Result<Payload, TaskError>;

/// The future an async trampoline returns: the task's future, then its encoded output.
pub(crate) type AsyncRun = Pin<Box<dyn Future<Output = Result<Vec<u8>, TaskError>> + Send>>;

/// An async trampoline: decodes the input and makes the task's future.
pub(crate) type AsyncFn = fn(&[u8]) -> Result<AsyncRun, TaskError>;

/// A per-worker initializer's trampoline, given the initializer's encoded argument.
pub(crate) type InitFn = fn(&[u8]) -> Result<(), TaskError>;

/// Which of the three trampoline signatures an address names. Part of the tag, so a blocking
/// address can never be called as an async one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub(crate) enum Kind {
    Blocking = 0,
    Async = 1,
    Init = 2,
}

impl Kind {
    pub(crate) fn from_u8(byte: u8) -> Option<Kind> {
        match byte {
            0 => Some(Kind::Blocking),
            1 => Some(Kind::Async),
            2 => Some(Kind::Init),
            _ => None,
        }
    }
}

/// A trampoline named by kind and distance from [`anchor`], with its authentication tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskAddr {
    pub(crate) kind: Kind,
    pub(crate) offset: i64,
    pub(crate) tag: u64,
}

/// The pool's secret: authenticates task addresses.
#[derive(Clone)]
pub(crate) struct Key {
    bytes: [u8; 16],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh random key from the operating system.
    pub(crate) fn random() -> std::io::Result<Key> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Key { bytes })
    }

    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Key {
        Key { bytes }
    }

    pub(crate) fn bytes(&self) -> [u8; 16] {
        self.bytes
    }

    fn tag(&self, kind: Kind, offset: i64) -> u64 {
        let mut hasher = SipHasher24::new_with_key(&self.bytes);
        hasher.write_u8(kind as u8);
        hasher.write_i64(offset);
        hasher.finish()
    }

    /// An address with any distance, tagged with this key: for tests of the verification only
    /// (resolving such an address and calling it would jump to arbitrary code).
    #[cfg(test)]
    pub(crate) fn tagged(&self, kind: Kind, offset: i64) -> TaskAddr {
        TaskAddr {
            kind,
            offset,
            tag: self.tag(kind, offset),
        }
    }

    /// Names a trampoline: its distance from the anchor, tagged with this key.
    fn address(&self, kind: Kind, trampoline: *const ()) -> TaskAddr {
        let offset = (trampoline as usize).wrapping_sub(anchor_addr() as usize) as i64;
        TaskAddr {
            kind,
            offset,
            tag: self.tag(kind, offset),
        }
    }

    /// The blocking trampoline for task type `F`.
    pub(crate) fn blocking<F, In, Out>(&self) -> TaskAddr
    where
        F: Fn(In) -> Out + Copy,
        In: DeserializeOwned + 'static,
        Out: Serialize + 'static,
    {
        let f: BlockingFn = run_blocking::<F, In, Out>;
        self.address(Kind::Blocking, f as *const ())
    }

    /// The async trampoline for task type `F`.
    pub(crate) fn asynchronous<F, In, Fut>(&self) -> TaskAddr
    where
        F: Fn(In) -> Fut + Copy + Send + 'static,
        In: DeserializeOwned + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Serialize + 'static,
    {
        let f: AsyncFn = run_async::<F, In, Fut>;
        self.address(Kind::Async, f as *const ())
    }

    /// The initializer trampoline for `F`.
    pub(crate) fn init<F: Fn() + Copy>(&self) -> TaskAddr {
        self.address(Kind::Init, init_address::<F>())
    }

    /// The trampoline of an initializer `F` that takes an argument of type `A`.
    pub(crate) fn init_with<F, A>(&self) -> TaskAddr
    where
        F: Fn(A) + Copy,
        A: DeserializeOwned + 'static,
    {
        let f: InitFn = run_init_with::<F, A>;
        self.address(Kind::Init, f as *const ())
    }

    /// Checks a frame's address: its kind is the one expected and its tag was made with this
    /// key for this kind and distance.
    fn verify(&self, addr: TaskAddr, kind: Kind) -> Result<*const (), TaskError> {
        // Not constant-time: a forger would need to talk to the worker, which only the parent can.
        if addr.kind != kind || self.tag(addr.kind, addr.offset) != addr.tag {
            return Err(TaskError::Transport(
                "the worker refused a frame that names no task of this build".into(),
            ));
        }
        Ok(anchor_addr().wrapping_byte_offset(addr.offset as isize))
    }

    /// The blocking trampoline a verified address names.
    pub(crate) fn resolve_blocking(&self, addr: TaskAddr) -> Result<BlockingFn, TaskError> {
        let ptr = self.verify(addr, Kind::Blocking)?;
        // SAFETY: the tag proves this distance was computed by the parent from a `BlockingFn`
        // (`Key::blocking`, the only place that makes `Kind::Blocking` addresses): only the
        // parent holds the key. The handshake proved the worker runs the same executable (build
        // fingerprint), and relocation moves `anchor` and every trampoline of the executable by
        // the same amount, so `anchor + distance` is the entry of that very function here, and
        // it has the `BlockingFn` signature. Function and data pointers have the same size.
        Ok(unsafe { std::mem::transmute::<*const (), BlockingFn>(ptr) })
    }

    /// The async trampoline a verified address names.
    pub(crate) fn resolve_async(&self, addr: TaskAddr) -> Result<AsyncFn, TaskError> {
        let ptr = self.verify(addr, Kind::Async)?;
        // SAFETY: as in `resolve_blocking`; `Kind::Async` addresses are only made by
        // `Key::asynchronous` from an `AsyncFn`.
        Ok(unsafe { std::mem::transmute::<*const (), AsyncFn>(ptr) })
    }

    /// The initializer trampoline a verified address names.
    pub(crate) fn resolve_init(&self, addr: TaskAddr) -> Result<InitFn, TaskError> {
        let ptr = self.verify(addr, Kind::Init)?;
        // SAFETY: as in `resolve_blocking`; `Kind::Init` addresses are only made by `Key::init`
        // from an `InitFn`.
        Ok(unsafe { std::mem::transmute::<*const (), InitFn>(ptr) })
    }
}

/// The fixed point task addresses are measured from. Never inlined, so it has an address of its
/// own in every process running this executable.
#[inline(never)]
pub(crate) fn anchor() {
    // A body the optimizer cannot fold into another empty function is not needed: whichever
    // function the address ends up naming, it is the same in the parent and the worker.
    std::hint::black_box(());
}

fn anchor_addr() -> *const () {
    let f: fn() = anchor;
    f as *const ()
}

/// The distance of a function from the anchor, for the build fingerprint.
pub(crate) fn distance(f: *const ()) -> i64 {
    (f as usize).wrapping_sub(anchor_addr() as usize) as i64
}

/// Makes the zero-sized task value.
///
/// The executors accept a task only after [`polyexec_core::assert_portable`] checked at compile
/// time that `F` is zero-sized; this repeats the check for this function's own soundness.
#[inline(always)]
fn conjure<F: Copy>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "task types are zero-sized (checked by assert_portable)"
        )
    };
    // SAFETY: `F` is zero-sized (checked at compile time above), so it has no bytes and every
    // "bit pattern" of it, the empty one, is valid: zeroing writes nothing. `F` is inhabited: the
    // parent held a value of it to submit the task, and it runs this same executable. A
    // zero-sized closure or `fn` item carries no data, so its value is the same whether copied or
    // made here; the only way to hold data in a zero-sized `F` is to capture other zero-sized
    // values, which `Copy` allowed the parent to duplicate freely anyway. This is the documented
    // contract of portable tasks: a marker value captured by a task is recreated in the worker.
    unsafe { std::mem::zeroed::<F>() }
}

fn codec_error(stage: CodecStage, message: impl ToString) -> TaskError {
    TaskError::codec(stage, message.to_string())
}

/// Decodes a task input. A `Deserialize` impl that panics is a decoding failure, not a crash.
fn decode_input<In: DeserializeOwned + 'static>(input: &[u8]) -> Result<In, TaskError> {
    decoded_input::<In>(catch_task(|| payload::decode_payload::<In>(input)))
}

/// Decodes a task input in a frame, or in the pool's region as the pool writes it.
fn decode_task_input<In: DeserializeOwned + 'static>(
    input: &protocol::Input<'_>,
) -> Result<In, TaskError> {
    let record = match input {
        protocol::Input::Shared(record) => record,
        protocol::Input::Frame { body, start } => return decode_input(&body[*start..]),
    };
    match catch_task(|| payload::decode_record::<In>(record, &crate::worker::parent_alive)) {
        Ok(Ok(decoded)) => decoded_input::<In>(Ok(decoded)),
        Ok(Err(Gone)) => Err(input_gone()),
        Err(panic) => decoded_input::<In>(Err(panic)),
    }
}

fn decoded_input<In>(
    decoded: Result<Result<In, protocol::CodecError>, TaskError>,
) -> Result<In, TaskError> {
    match decoded {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(codec_error(
            CodecStage::DecodeInput,
            protocol::describe::<In>(err),
        )),
        Err(panic) => Err(codec_error(
            CodecStage::DecodeInput,
            protocol::describe::<In>(panic),
        )),
    }
}

/// The error of a task whose input the pool stopped writing into its region.
pub(crate) fn input_gone() -> TaskError {
    TaskError::transport("the pool stopped before it finished writing the task's input")
}

/// Encodes a task output, into a slot that `place` hands out or onto `out`. A `Serialize` impl
/// that panics is an encoding failure.
fn encode_output<Out: Serialize + 'static>(
    output: &Out,
    out: &mut Vec<u8>,
    place: &mut dyn FnMut(usize) -> Option<Slot>,
) -> Result<Payload, TaskError> {
    match catch_task(|| payload::encode_payload(output, out, place)) {
        Ok(Ok(payload)) => Ok(payload),
        Ok(Err(err)) => Err(codec_error(
            CodecStage::EncodeOutput,
            protocol::describe::<Out>(err),
        )),
        Err(panic) => Err(codec_error(
            CodecStage::EncodeOutput,
            protocol::describe::<Out>(panic),
        )),
    }
}

fn run_blocking<F, In, Out>(
    input: protocol::Input<'_>,
    out: &mut Vec<u8>,
    place: &mut dyn FnMut(usize) -> Option<Slot>,
) -> Result<Payload, TaskError>
where
    F: Fn(In) -> Out + Copy,
    In: DeserializeOwned + 'static,
    Out: Serialize + 'static,
{
    let decoded: Result<In, TaskError> = decode_task_input(&input);
    input.release();
    let input = decoded?;
    let task: F = conjure::<F>();
    let output = catch_task(move || task(input))?;
    let encoded = encode_output(&output, out, place);
    if let Ok(Payload::Streamed {
        slot,
        len,
        stream,
        bytes: None,
    }) = encoded
    {
        // Only a byte payload is streamed: the output is taken apart for the worker to write
        // after the frame naming it is sent.
        let Ok(bytes) = payload::into_bytes(output) else {
            unreachable!("a streamed output is a byte payload")
        };
        return Ok(Payload::Streamed {
            slot,
            len,
            stream,
            bytes: Some(bytes),
        });
    }
    // The output is dropped inside the catch: a `Drop` that panics fails this task only.
    catch_task(move || drop(output))?;
    encoded
}

fn run_async<F, In, Fut>(input: &[u8]) -> Result<AsyncRun, TaskError>
where
    F: Fn(In) -> Fut + Copy + Send + 'static,
    In: DeserializeOwned + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Serialize + 'static,
{
    let input: In = decode_input(input)?;
    let task: F = conjure::<F>();
    let future = catch_async(input, task);
    Ok(Box::pin(async move {
        let output = future.await?;
        let mut out = Vec::new();
        // Encoded off the worker's channel (a future is `Send`, the channel is not): the worker
        // moves a large output into its region afterwards.
        let encoded = encode_output(&output, &mut out, &mut |_| None);
        catch_task(move || drop(output))?;
        encoded.map(|_| out)
    }))
}

fn run_init<F: Fn() + Copy>(_arg: &[u8]) -> Result<(), TaskError> {
    let init: F = conjure::<F>();
    catch_task(init)
}

fn run_init_with<F: Fn(A) + Copy, A: DeserializeOwned + 'static>(
    arg: &[u8],
) -> Result<(), TaskError> {
    let arg: A = decode_input(arg)?;
    let init: F = conjure::<F>();
    catch_task(move || init(arg))
}

fn init_address<F: Fn() + Copy>() -> *const () {
    let f: InitFn = run_init::<F>;
    f as *const ()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_round_trip_in_process() {
        let key = Key::from_bytes([7; 16]);
        let task = |x: u32| x * 3;
        fn addr_of<F: Fn(u32) -> u32 + Copy>(key: &Key, _: F) -> TaskAddr {
            key.blocking::<F, u32, u32>()
        }
        let addr = addr_of(&key, task);
        let f = key.resolve_blocking(addr).unwrap();
        let mut input = Vec::new();
        protocol::encode_into(&14u32, &mut input).unwrap();
        let mut out = Vec::new();
        f(protocol::Input::new(&mut input, 0), &mut out, &mut |_| None).unwrap();
        assert_eq!(protocol::decode::<u32>(&out).unwrap(), 42);
    }

    #[test]
    fn forged_or_mistyped_addresses_are_refused() {
        fn addr_of<F: Fn(u8) -> u8 + Copy>(key: &Key, _: F) -> TaskAddr {
            key.blocking::<F, u8, u8>()
        }
        let key = Key::from_bytes([1; 16]);
        let addr = addr_of(&key, |x: u8| x);
        let mut forged = addr;
        forged.offset += 16;
        assert!(key.resolve_blocking(forged).is_err());
        let mut wrong_kind = addr;
        wrong_kind.kind = Kind::Async;
        assert!(key.resolve_async(wrong_kind).is_err());
        let other = Key::from_bytes([2; 16]);
        assert!(other.resolve_blocking(addr).is_err());
    }
}

/// Property-based fuzzing of the address verification (proptest): forged tags, confused kinds
/// and other keys are refused; genuine addresses pass. Only [`Key::verify`] is called (it
/// returns a raw pointer), never a function made from a forged address. Cases:
/// `POLYEXEC_FUZZ_CASES` (default 1,000 per property).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![Just(Kind::Blocking), Just(Kind::Async), Just(Kind::Init)]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: crate::security_tests::fuzz_cases(1_000),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// An address whose tag was not made with the key, for its kind and distance, is
        /// refused whatever kind it is presented as.
        #[test]
        fn forged_tags_are_refused(
            key in any::<[u8; 16]>(),
            kind in kind(),
            offset in any::<i64>(),
            tag in any::<u64>(),
        ) {
            let key = Key::from_bytes(key);
            prop_assume!(tag != key.tag(kind, offset));
            let forged = TaskAddr { kind, offset, tag };
            for as_kind in [Kind::Blocking, Kind::Async, Kind::Init] {
                prop_assert!(key.verify(forged, as_kind).is_err());
            }
        }

        /// A genuine address presented as another kind, with its kind byte changed, or with
        /// another distance, is refused; as itself, it passes.
        #[test]
        fn genuine_addresses_pass_only_as_themselves(
            key in any::<[u8; 16]>(),
            kind in kind(),
            other_kind in kind(),
            offset in any::<i64>(),
            delta in any::<i64>(),
        ) {
            let key = Key::from_bytes(key);
            let genuine = key.tagged(kind, offset);
            prop_assert!(key.verify(genuine, kind).is_ok());
            if other_kind != kind {
                prop_assert!(key.verify(genuine, other_kind).is_err());
                let relabelled = TaskAddr { kind: other_kind, ..genuine };
                prop_assert!(key.verify(relabelled, other_kind).is_err());
            }
            if delta != 0 {
                let moved = TaskAddr { offset: offset.wrapping_add(delta), ..genuine };
                prop_assert!(key.verify(moved, kind).is_err());
            }
        }

        /// An address tagged with another pool's key is refused.
        #[test]
        fn another_keys_addresses_are_refused(
            ours in any::<[u8; 16]>(),
            theirs in any::<[u8; 16]>(),
            kind in kind(),
            offset in any::<i64>(),
        ) {
            prop_assume!(ours != theirs);
            let (ours, theirs) = (Key::from_bytes(ours), Key::from_bytes(theirs));
            let foreign = theirs.tagged(kind, offset);
            prop_assume!(foreign.tag != ours.tag(kind, offset));
            prop_assert!(ours.verify(foreign, kind).is_err());
        }
    }
}
