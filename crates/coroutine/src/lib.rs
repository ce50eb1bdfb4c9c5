//! polyexec's coroutine backend: portable tasks on an event loop, the asyncio model in Rust.
//!
//! [`EventLoop`] implements [`polyexec_core::Executor`] on an
//! [`async-executor`](https://docs.rs/async-executor) executor driven by one thread (by default)
//! or by several threads sharing it. The loop threads run the `async-io` reactor, so timers
//! (`polyexec::sleep`) and `async-io` I/O work inside tasks. Each task costs one allocation:
//! the task cell that holds the future and then the output.
//!
//! | task form | how it runs |
//! |---|---|
//! | async | polled on the loop; many tasks wait at once, and the loop runs whichever is ready |
//! | blocking | on a loop thread, stalling it until the task returns (as in asyncio) |
//!
//! A panic resolves the task's handle with [`TaskError::Panicked`](polyexec_core::TaskError)
//! and the loop goes on. The builder's per-task time limit drops an async task's future at its
//! next `.await`. Graceful shutdown runs every submitted task to the end, sleeping ones
//! included; immediate shutdown drops every unfinished task, and every handle resolves.
//!
//! Inside a task, wait for other tasks with `.await`: a blocking `join()` on a loop thread
//! panics (it would stall the loop, and a one-thread loop would deadlock).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use polyexec_core::Executor;
//! use polyexec_coroutine::EventLoop;
//!
//! let event_loop = EventLoop::new()?; // one loop thread
//! let handles: Vec<_> = (0..1_000u64)
//!     .map(|i| {
//!         event_loop.spawn_async(i, |i: u64| async move {
//!             polyexec_core::sleep(Duration::from_millis(10)).await;
//!             i * 2
//!         })
//!     })
//!     .collect();
//! // A thousand tasks sleep at the same time on one thread.
//! let total: u64 = polyexec_core::join_all(handles).into_iter().map(Result::unwrap).sum();
//! assert_eq!(total, 999 * 1000);
//! # Ok::<(), polyexec_core::BuildError>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod event_loop;
mod runner;
mod task;

pub use event_loop::{EventLoop, EventLoopBuilder};
