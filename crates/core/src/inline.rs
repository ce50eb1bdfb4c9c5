//! [`Inline`]: runs each task on the calling thread, at submission.

use std::future::Future;

use crate::{AsyncTask, BlockingTask, Executor, Portable, TaskHandle, assert_portable};

/// An executor that runs each task to completion on the calling thread, inside `spawn`.
///
/// No concurrency at all: useful in unit tests and examples, and as the reference behaviour the
/// real backends are compared with. Async tasks are driven with [`block_on`](crate::block_on).
///
/// # Examples
///
/// ```
/// use polyexec_core::{Executor, Inline};
/// let exec = Inline;
/// assert_eq!(exec.spawn(21u32, |x: u32| x * 2).join(), Ok(42));
/// let squares: Vec<u32> = exec.map(1..=3u32, |x: u32| x * x).map(Result::unwrap).collect();
/// assert_eq!(squares, [1, 4, 9]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

impl Executor for Inline {
    fn spawn<F, In, Out>(&self, input: In, task: F) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        assert_portable(&task);
        TaskHandle::ready(crate::catch_task(|| task(input)))
    }

    fn spawn_async<F, In, Fut>(&self, input: In, task: F) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable,
    {
        assert_portable(&task);
        TaskHandle::ready(crate::block_on(crate::catch_async(input, task)))
    }

    fn workers(&self) -> usize {
        1
    }

    fn backend_name(&self) -> &'static str {
        "inline"
    }

    fn shutdown(&self) {}

    fn shutdown_now(&self) {}
}
