//! polyexec's thread-pool backend: portable tasks on a fixed pool of OS threads.
//!
//! [`ThreadPool`] implements [`polyexec_core::Executor`]. Submitted tasks go through one
//! crossbeam-channel queue to the worker threads; each task costs one allocation (an `async-task`
//! cell that holds the task and then its result) and no lock.
//!
//! | task form | where it runs |
//! |---|---|
//! | blocking | on a worker thread, to completion |
//! | async | polled on a worker thread; after each wake-up, on whichever worker is free |
//!
//! A panicking task resolves its handle with [`TaskError::Panicked`](polyexec_core::TaskError)
//! and leaves its worker alive. A thread cannot be killed: cancelling (or giving up on) a running
//! task detaches it, and its result is discarded when it finishes.
//!
//! # Examples
//!
//! ```
//! use polyexec_core::Executor;
//! use polyexec_thread::ThreadPool;
//!
//! let pool = ThreadPool::builder().workers(2).build()?;
//! let handle = pool.spawn(20u64, |n: u64| (1..=n).product::<u64>());
//! assert_eq!(handle.join()?, 2_432_902_008_176_640_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod pool;
mod worker;

pub use pool::{ThreadPool, ThreadPoolBuilder};
