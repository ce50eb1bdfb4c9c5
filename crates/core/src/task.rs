//! The portable task model: what a task is, and how it is run so that a panic becomes a value.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use futures::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TaskError;

/// Data that can travel to any backend, including across a process boundary.
///
/// Implemented for every `Serialize + DeserializeOwned + Send + 'static` type; task inputs and
/// outputs on the portable path must be `Portable`.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// fn takes_portable<T: polyexec::Portable>(_: T) {}
/// takes_portable((String::from("Task 1"), 2u64));
/// takes_portable(vec![1u8, 2, 3]);
/// ```
pub trait Portable: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Portable for T {}

/// A blocking portable task: a non-capturing closure or `fn` item from `In` to `Out`.
///
/// Automatically implemented for every matching closure; the executors check at compile time that
/// the closure captures nothing (see [`assert_portable`]).
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::BlockingTask;
/// fn check<F: BlockingTask<u64, u64>>(_: F) {}
/// check(|x: u64| x * x);
/// ```
pub trait BlockingTask<In, Out>: Fn(In) -> Out + Copy + Send + Sync + 'static {}

impl<F, In, Out> BlockingTask<In, Out> for F where F: Fn(In) -> Out + Copy + Send + Sync + 'static {}

/// An async portable task: a non-capturing closure or `fn` item from `In` to a future.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::AsyncTask;
/// fn check<F: AsyncTask<u64, Fut>, Fut: std::future::Future>(_: F) {}
/// check(|x: u64| async move { x + 1 });
/// ```
pub trait AsyncTask<In, Fut>: Fn(In) -> Fut + Copy + Send + Sync + 'static {}

impl<F, In, Fut> AsyncTask<In, Fut> for F where F: Fn(In) -> Fut + Copy + Send + Sync + 'static {}

/// Rejects, at compile time, a task closure that captures anything.
///
/// A portable task must carry all its data in its input, because the subprocess backend sends
/// only the input across the process boundary; the closure itself is named by its address in the
/// shared executable. A closure that captures nothing is zero-sized, so the check is on its size.
/// The check runs when the call is monomorphized, so `cargo check` does not report it but
/// `cargo build` does. A function *pointer* (`fn(u8) -> u8` as a value) is not zero-sized and is
/// refused too: pass the `fn` item itself.
///
/// Every backend calls this on every portable spawn.
///
/// # Examples
///
/// ```
/// polyexec_core::assert_portable::<fn(u8) -> u8>; // naming it is fine
/// polyexec_core::assert_portable(&|x: u8| x + 1); // captures nothing: compiles
/// ```
///
/// A capturing closure does not compile:
///
/// ```compile_fail,E0080
/// let offset = 5u8;
/// polyexec_core::assert_portable(&move |x: u8| x + offset);
/// ```
#[inline(always)]
pub fn assert_portable<F>(_task: &F) {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a portable task must not capture anything: pass data through the task input \
             (and pass `fn` items, not `fn` pointers)"
        )
    }
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the hook installed by
    /// [`install_panic_hook`]. Read only after `catch_unwind` returned `Err`, so a stale value
    /// from a panic caught elsewhere is overwritten before it can be read.
    static LAST_PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The backtrace of the last panic on this thread, when backtraces are enabled; read as
    /// the location is.
    static LAST_PANIC_BACKTRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, a panic hook that records the location of each panic so that
/// [`TaskError::Panicked`] can carry it. The previous hook still runs (by default it prints the
/// panic to stderr, as an uncaught panic in a thread would).
///
/// Backends call this when they start; calling it again is free.
///
/// # Examples
///
/// ```
/// polyexec_core::install_panic_hook();
/// let err = polyexec_core::catch_task(|| panic!("boom")).unwrap_err();
/// assert!(err.to_string().contains(".rs:"), "{err}");
/// ```
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if let Some(loc) = info.location() {
                let text = format!("{}:{}:{}", loc.file(), loc.line(), loc.column());
                // `try_with`: a panic during thread teardown must not panic again.
                let _ = LAST_PANIC_LOCATION.try_with(|slot| {
                    if let Ok(mut slot) = slot.try_borrow_mut() {
                        *slot = Some(text);
                    }
                });
            }
            // `capture` reads the environment once per process and is free when backtraces
            // are off; `Disabled` and `Unsupported` leave no text.
            let backtrace = Backtrace::capture();
            let text =
                (backtrace.status() == BacktraceStatus::Captured).then(|| backtrace.to_string());
            let _ = LAST_PANIC_BACKTRACE.try_with(|slot| {
                if let Ok(mut slot) = slot.try_borrow_mut() {
                    *slot = text;
                }
            });
            previous(info);
        }));
    });
}

/// Part of tokio's panic message when a tokio resource is made outside a runtime context.
#[cfg(not(feature = "tokio"))]
const NO_REACTOR: &str = "there is no reactor running";

/// Appended to that message.
#[cfg(not(feature = "tokio"))]
const TOKIO_HINT: &str = " (hint: this task uses a tokio-based library; enable polyexec's `tokio` \
     feature so that portable tasks run inside a tokio runtime on every backend)";

/// Turns a panic payload into [`TaskError::Panicked`], taking the location recorded by the hook.
///
/// # Examples
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("bad {}", 1)).unwrap_err();
/// let err = polyexec_core::panic_error(payload);
/// assert_eq!(err.panic_message(), Some("bad 1"));
/// ```
pub fn panic_error(payload: Box<dyn Any + Send>) -> TaskError {
    #[allow(unused_mut)] // mutated only without the feature `tokio`
    let mut message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    };
    // Tokio's panic when a tokio resource is made outside a runtime context: the task uses a
    // tokio-based library, which needs the feature that gives tasks a runtime.
    #[cfg(not(feature = "tokio"))]
    if message.contains(NO_REACTOR) {
        message.push_str(TOKIO_HINT);
    }
    let location = LAST_PANIC_LOCATION
        .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten();
    let backtrace = LAST_PANIC_BACKTRACE
        .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten();
    // The payload is dropped here, inside the caller's frame: a payload whose `Drop` panics would
    // otherwise escape from the executor. Such a payload is pathological; we let it abort.
    drop(payload);
    let err = TaskError::panicked(message, location);
    match backtrace {
        Some(backtrace) => err.with_backtrace(backtrace),
        None => err,
    }
}

/// Runs a blocking task body, turning a panic into [`TaskError::Panicked`].
///
/// # Examples
///
/// ```
/// assert_eq!(polyexec_core::catch_task(|| 2 + 2), Ok(4));
/// assert!(polyexec_core::catch_task(|| -> u8 { panic!("no") }).unwrap_err().is_panic());
/// ```
#[inline]
pub fn catch_task<R>(body: impl FnOnce() -> R) -> Result<R, TaskError> {
    panic::catch_unwind(AssertUnwindSafe(body)).map_err(panic_error)
}

/// Wraps an async task so that a panic while creating or polling its future becomes
/// [`TaskError::Panicked`].
///
/// # Examples
///
/// ```
/// let fut = polyexec_core::catch_async(3u8, |x: u8| async move { x * 2 });
/// assert_eq!(futures::executor::block_on(fut), Ok(6));
/// ```
pub fn catch_async<F, In, Fut>(
    input: In,
    task: F,
) -> impl Future<Output = Result<Fut::Output, TaskError>> + Send + 'static
where
    F: FnOnce(In) -> Fut + Send + 'static,
    In: Send + 'static,
    Fut: Future + Send + 'static,
{
    AssertUnwindSafe(async move { task(input).await })
        .catch_unwind()
        .map(|r| r.map_err(panic_error))
}

/// The body of one `map` chunk: runs `task` on each input, catching each element's panic on its
/// own so that one bad element does not fail its neighbours.
pub(crate) fn run_chunk<F, In, Out>(inputs: Vec<In>, task: F) -> Vec<Result<Out, TaskError>>
where
    F: Fn(In) -> Out,
{
    inputs
        .into_iter()
        .map(|input| catch_task(|| task(input)))
        .collect()
}

#[cfg(all(test, not(feature = "tokio")))]
mod tests {
    #[test]
    fn no_reactor_panics_name_the_tokio_feature() {
        let err = super::catch_task(|| {
            panic!(
                "there is no reactor running, must be called from the context of a Tokio 1.x \
                 runtime"
            )
        })
        .unwrap_err();
        let message = err.panic_message().unwrap();
        assert!(
            message.starts_with("there is no reactor running"),
            "{message}"
        );
        assert!(
            message.contains("enable polyexec's `tokio` feature"),
            "{message}"
        );
        let other = super::catch_task(|| panic!("unrelated")).unwrap_err();
        assert_eq!(other.panic_message(), Some("unrelated"));
    }
}
