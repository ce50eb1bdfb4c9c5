//! Task addressing across machines: how a worker host finds the code of a task a pool named.
//!
//! The scheme is the subprocess backend's (see `docs/subprocess.md`): every portable task `F` (a
//! closure or `fn` item that captures nothing, so zero-sized) runs through a *trampoline*, a
//! function monomorphized for `(F, In, Out)` that decodes the input, makes `F` out of nothing,
//! runs it and encodes the output. A frame names the trampoline by its distance from [`anchor`]:
//! the loader moves every function of an executable by the same amount, so in any process
//! running the *same file*, `anchor + distance` is the same trampoline.
//!
//! What makes that true across machines is the build check. A distance is turned into a
//! function only through a [`Verified`] address, which `frame::open_request` makes after the
//! frame's HMAC checked out under the cluster key *and* the frame's build fingerprint (a hash of
//! the executable's contents, `build_id`) equals this process's. A frame from another build, or
//! forged by someone without the key, is refused and never jumped into.
//!
//! A host does not call a blocking trampoline itself: it hands the verified address and the
//! input to a worker process of its own (the subprocess backend, same executable), as the
//! portable task [`run_forwarded`], so that a crash or a kill ends that process and not the
//! host. [`run_forwarded`] is the one other maker of a [`Verified`]; why that holds is argued
//! there.
//!
//! This is the only module of the crate allowed to use `unsafe`. The subprocess backend has
//! similar lines for its own frames; the two schemes stay apart because they authenticate
//! differently and polyexec-core forbids `unsafe` (docs/cluster.md says more).
#![allow(unsafe_code)]

use std::future::Future;
use std::pin::Pin;

use polyexec_core::{CodecStage, TaskError, catch_async, catch_task};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The future an async trampoline returns: the task's future, then its encoded output.
pub(crate) type AsyncRun = Pin<Box<dyn Future<Output = Result<Vec<u8>, TaskError>> + Send>>;

/// A blocking trampoline: decodes the input, runs the task, encodes the output.
pub(crate) type BlockingFn = fn(&[u8]) -> Result<Vec<u8>, TaskError>;

/// An async trampoline: decodes the input and makes the task's future.
pub(crate) type AsyncFn = fn(&[u8]) -> Result<AsyncRun, TaskError>;

/// Which trampoline signature an address names. Inside the authenticated frame, so a blocking
/// address can never be called as an async one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Blocking,
    Async,
}

/// A trampoline named by kind and distance from [`anchor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskAddr {
    pub(crate) kind: Kind,
    pub(crate) offset: i64,
}

/// An address from a frame that was authenticated with the cluster key and names this build.
///
/// Invariant: made only by `frame::open_request`, after both checks, and by [`run_forwarded`],
/// from an address a host made that way and handed to its own worker process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verified(TaskAddr);

impl Verified {
    /// Marks an address as checked. Only `frame::open_request` calls this, after the HMAC and
    /// the build fingerprint of the frame it came in were checked.
    pub(crate) fn after_checks(addr: TaskAddr) -> Verified {
        Verified(addr)
    }

    pub(crate) fn kind(&self) -> Kind {
        self.0.kind
    }

    /// The input of [`run_forwarded`] that runs this (blocking) address on `input`.
    pub(crate) fn forward(self, input: Vec<u8>) -> Forwarded {
        (self.0, ByteBuf::from(input))
    }

    fn target(&self) -> *const () {
        anchor_addr().wrapping_byte_offset(self.0.offset as isize)
    }

    /// The blocking trampoline this address names, if it names one.
    pub(crate) fn blocking(&self) -> Option<BlockingFn> {
        if self.0.kind != Kind::Blocking {
            return None;
        }
        // SAFETY: the address came in a frame whose HMAC, under the cluster key, checked out, so
        // a submitter holding the key made it, and `blocking_addr` (the only maker of
        // `Kind::Blocking` addresses) computed the distance from a real `BlockingFn`. The frame
        // named this build's content fingerprint, so this process runs the same executable file,
        // where relocation moves `anchor` and every trampoline by the same amount: `anchor +
        // distance` is the entry of that very function, with the `BlockingFn` signature. In a
        // host's worker process (`run_forwarded`) the same holds: the address is one the host
        // verified so, and the worker runs the host's executable file (see there).
        Some(unsafe { std::mem::transmute::<*const (), BlockingFn>(self.target()) })
    }

    /// The async trampoline this address names, if it names one.
    pub(crate) fn asynchronous(&self) -> Option<AsyncFn> {
        if self.0.kind != Kind::Async {
            return None;
        }
        // SAFETY: as in `blocking`; `Kind::Async` addresses are only made by `async_addr` from
        // an `AsyncFn`.
        Some(unsafe { std::mem::transmute::<*const (), AsyncFn>(self.target()) })
    }
}

/// What a host sends its worker process to run a blocking task: the verified address and the
/// task's encoded input (a byte string, copied as one slice).
pub(crate) type Forwarded = (TaskAddr, ByteBuf);

/// The portable task a worker host submits to its local process pool: runs, in a worker process
/// of the host, the blocking task the host verified, and returns its encoded output.
///
/// This makes a [`Verified`] without checking a cluster frame, which is sound because of where
/// its input can come from:
/// - Only a host submits it, only from `worker::task`, and only with [`Verified::forward`] of a
///   verified address: no other code of the crate names this function as a task.
/// - The subprocess backend runs a task only from its parent's frames: the worker's channel is a
///   socket pair inherited by that child alone (no name anyone can connect to), each task
///   address is tagged under a random key only the parent and its workers hold, and the worker
///   checked in its handshake that it runs the parent's build (docs/subprocess.md, "Security
///   model"). So the input reaching this function is exactly what the host sent.
/// - The worker runs the same executable file as the host (the subprocess backend starts
///   `/proc/self/exe`), so a distance from [`anchor`] names the same function in both.
pub(crate) fn run_forwarded((addr, input): Forwarded) -> Result<ByteBuf, TaskError> {
    let addr = Verified(addr);
    let run = addr.blocking().ok_or_else(|| {
        TaskError::transport("a worker host forwarded an async task address as a blocking one")
    })?;
    run(&input).map(ByteBuf::from)
}

/// The fixed point addresses are measured from. Never inlined, so it has an address of its own.
#[inline(never)]
pub(crate) fn anchor() {
    std::hint::black_box(());
}

fn anchor_addr() -> *const () {
    let f: fn() = anchor;
    f as *const ()
}

fn distance(f: *const ()) -> i64 {
    (f as usize).wrapping_sub(anchor_addr() as usize) as i64
}

/// The address of the blocking trampoline for task type `F`.
pub(crate) fn blocking_addr<F, In, Out>() -> TaskAddr
where
    F: Fn(In) -> Out + Copy,
    In: DeserializeOwned,
    Out: Serialize,
{
    let f: BlockingFn = run_blocking::<F, In, Out>;
    TaskAddr {
        kind: Kind::Blocking,
        offset: distance(f as *const ()),
    }
}

/// The address of the async trampoline for task type `F`.
pub(crate) fn async_addr<F, In, Fut>() -> TaskAddr
where
    F: Fn(In) -> Fut + Copy + Send + 'static,
    In: DeserializeOwned + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Serialize,
{
    let f: AsyncFn = run_async::<F, In, Fut>;
    TaskAddr {
        kind: Kind::Async,
        offset: distance(f as *const ()),
    }
}

/// Makes the zero-sized task value (the executors checked `F` with `assert_portable`).
#[inline(always)]
fn conjure<F: Copy>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "task types are zero-sized (checked by assert_portable)"
        )
    };
    // SAFETY: `F` is zero-sized (checked at compile time above): it has no bytes, so the empty
    // bit pattern is its only one and is valid. `F` is inhabited: the submitter held a value of
    // it, in the same executable. A zero-sized closure or `fn` item carries no data, so a value
    // made here is the one the submitter had; this is the documented contract of portable tasks.
    unsafe { std::mem::zeroed::<F>() }
}

fn decode_input<In: DeserializeOwned>(input: &[u8]) -> Result<In, TaskError> {
    match catch_task(|| postcard::from_bytes::<In>(input)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(TaskError::codec(CodecStage::DecodeInput, err.to_string())),
        Err(panic) => Err(TaskError::codec(CodecStage::DecodeInput, panic.to_string())),
    }
}

fn encode_output<Out: Serialize>(output: &Out) -> Result<Vec<u8>, TaskError> {
    match catch_task(|| postcard::to_allocvec(output)) {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(err)) => Err(TaskError::codec(CodecStage::EncodeOutput, err.to_string())),
        Err(panic) => Err(TaskError::codec(
            CodecStage::EncodeOutput,
            panic.to_string(),
        )),
    }
}

fn run_blocking<F, In, Out>(input: &[u8]) -> Result<Vec<u8>, TaskError>
where
    F: Fn(In) -> Out + Copy,
    In: DeserializeOwned,
    Out: Serialize,
{
    let input: In = decode_input(input)?;
    let task: F = conjure::<F>();
    let output = catch_task(move || task(input))?;
    let encoded = encode_output(&output);
    // Dropped inside the catch: a `Drop` that panics fails this task only.
    catch_task(move || drop(output))?;
    encoded
}

fn run_async<F, In, Fut>(input: &[u8]) -> Result<AsyncRun, TaskError>
where
    F: Fn(In) -> Fut + Copy + Send + 'static,
    In: DeserializeOwned + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Serialize,
{
    let input: In = decode_input(input)?;
    let task: F = conjure::<F>();
    let future = catch_async(input, task);
    Ok(Box::pin(async move {
        let output = future.await?;
        let encoded = encode_output(&output);
        catch_task(move || drop(output))?;
        encoded
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr_of<F: Fn(u32) -> u32 + Copy>(_: F) -> TaskAddr {
        blocking_addr::<F, u32, u32>()
    }

    #[test]
    fn a_verified_blocking_address_runs_its_task() {
        let addr = addr_of(|x: u32| x * 3);
        let f = Verified::after_checks(addr)
            .blocking()
            .expect("a blocking address");
        let out = f(&postcard::to_allocvec(&14u32).unwrap()).unwrap();
        assert_eq!(postcard::from_bytes::<u32>(&out).unwrap(), 42);
    }

    #[test]
    fn a_forwarded_address_runs_its_task() {
        let addr = Verified::after_checks(addr_of(|x: u32| x + 1));
        let out = run_forwarded(addr.forward(postcard::to_allocvec(&41u32).unwrap())).unwrap();
        assert_eq!(postcard::from_bytes::<u32>(&out).unwrap(), 42);
    }

    #[test]
    fn a_blocking_address_is_never_resolved_as_async() {
        let addr = addr_of(|x: u32| x);
        assert!(Verified::after_checks(addr).asynchronous().is_none());
    }
}
