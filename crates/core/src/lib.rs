//! The shared core of polyexec: the [`Executor`] trait, the portable task model, [`TaskHandle`],
//! [`TaskError`] and the helpers that wait on many handles.
//!
//! Backends (`polyexec-coroutine`, `polyexec-thread`, `polyexec-subprocess`) depend on this crate
//! and on nothing of each other. Most users want the `polyexec` facade, which re-exports all of
//! this and picks a backend by cargo feature or at run time.
//!
//! # The task model
//!
//! A *portable task* is a closure or `fn` item that captures nothing, plus an input value; it
//! returns an output value. Input and output are [`Portable`]: `Serialize + DeserializeOwned +
//! Send + 'static`, because one backend runs the task in another process. Tasks come in two forms,
//! blocking (`Fn(In) -> Out`) and async (`Fn(In) -> impl Future<Output = Out>`), and the same
//! closure literal runs on every backend.
//!
//! ```
//! use polyexec_core::{Executor, Inline};
//!
//! fn run<E: Executor>(exec: &E) {
//!     let task = |(name, n): (String, u32)| format!("{name}: {}", n * 2);
//!     assert_eq!(exec.spawn(("x".to_string(), 4), task).join().unwrap(), "x: 8");
//! }
//! run(&Inline);
//! ```
//!
//! # For backend implementors
//!
//! A backend implements [`Executor`], calls [`assert_portable`] on every portable spawn, and
//! hands out handles made with [`TaskHandle::from_task`] (in-process backends on `async-task`),
//! [`TaskHandle::remote`] (results that arrive from elsewhere) or [`TaskHandle::ready`]. The
//! `conformance` feature provides [`conformance_suite!`], the tests every backend must pass.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod block;
mod error;
mod executor;
mod gate;
mod handle;
mod inline;
mod join;
mod map;
mod metrics;
mod offload;
#[cfg(feature = "tokio")]
mod runtime;
mod set;
mod spin;
mod task;
mod time;
mod trace;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

pub use block::{
    EventLoopThread, assert_may_block, block_on, enter_event_loop, is_event_loop_thread, may_block,
};
pub use error::{BuildError, CodecError, CodecStage, Panic, TaskError, WorkerExit};
pub use executor::{Executor, MapOptions, SpawnOptions, run_bounded};
pub use gate::SubmitGate;
pub use handle::{AbortHandle, Cancel, Resolver, TaskHandle};
pub use inline::Inline;
pub use join::{
    AsCompleted, FirstResolved, JoinAll, as_completed, join_all, join_all_async, select_any,
    wait_any,
};
pub use map::{Map, MapStream, MapUnordered};
pub use metrics::{
    CountScope, Counters, Expiry, Metrics, Outcome, TaskCount, TaskCounter, TimedCount,
};

pub use offload::unblock;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use runtime::{TokioContext, TokioRuntime, enter_tokio};
pub use set::TaskSet;
pub use task::{
    AsyncTask, BlockingTask, Portable, assert_portable, catch_async, catch_task,
    install_panic_hook, panic_error,
};
pub use time::sleep;
#[cfg(feature = "tracing")]
#[doc(hidden)]
pub use trace::Traced;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use trace::task_span;
/// The `tracing` crate, for [`traced!`]'s expansion in backend crates.
#[cfg(feature = "tracing")]
#[doc(hidden)]
pub use tracing as __tracing;
