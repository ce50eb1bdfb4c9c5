//! [`TaskSet`]: a growing, shrinking set of tasks, taken in the order they finish.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{FusedStream, FuturesUnordered, Stream, StreamExt};

use crate::block::block_on;
use crate::{TaskError, TaskHandle};

/// A set of tasks whose results are taken as they finish, while more are added: tokio's
/// `JoinSet`, for handles of any backend.
///
/// [`push`](Self::push) adds a handle (from any executor: sets may mix backends);
/// [`join_next`](Self::join_next) blocks for the next task to finish and removes it, and
/// [`join_next_async`](Self::join_next_async) or the set's [`Stream`] implementation do the same
/// from async code. Each completion costs O(1): only the handles that were woken are polled.
///
/// # Dropping cancels
///
/// Dropping a set cancels every task it still holds, as [`TaskHandle::cancel`] does (and
/// [`abort_all`](Self::abort_all) does while keeping the set): unlike a dropped [`TaskHandle`],
/// which detaches, a set owns its tasks. Take the results first, or keep the handles outside a
/// set, to let tasks run on.
///
/// # Examples
///
/// A window of at most four requests in flight over many inputs:
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{Executor, TaskSet};
/// # let exec = polyexec_core::Inline;
///
/// let mut inputs = 0..100u64;
/// let mut set = TaskSet::new();
/// let mut total = 0;
/// for x in inputs.by_ref().take(4) {
///     set.push(exec.spawn(x, |x: u64| x * 2));
/// }
/// while let Some(result) = set.join_next() {
///     total += result?;
///     if let Some(x) = inputs.next() {
///         set.push(exec.spawn(x, |x: u64| x * 2));
///     }
/// }
/// assert_eq!(total, 9_900);
/// assert!(set.is_empty());
/// # Ok::<(), polyexec::TaskError>(())
/// ```
#[must_use = "dropping a TaskSet cancels the tasks it holds"]
pub struct TaskSet<T> {
    tasks: FuturesUnordered<TaskHandle<T>>,
}

impl<T> TaskSet<T> {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let set = polyexec::TaskSet::<u8>::new();
    /// assert!(set.is_empty());
    /// ```
    pub fn new() -> Self {
        TaskSet {
            tasks: FuturesUnordered::new(),
        }
    }

    /// Adds a task to the set.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{TaskHandle, TaskSet};
    /// let mut set = TaskSet::new();
    /// set.push(TaskHandle::ready(Ok(1)));
    /// assert_eq!(set.len(), 1);
    /// ```
    pub fn push(&mut self, handle: TaskHandle<T>) {
        self.tasks.push(handle);
    }

    /// How many tasks the set holds (finished ones included, until they are taken).
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let set: polyexec::TaskSet<u8> = [polyexec::TaskHandle::ready(Ok(1))].into_iter().collect();
    /// assert_eq!(set.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// `true` if the set holds no task.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// assert!(polyexec::TaskSet::<u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Blocks until a task of the set finishes, removes it and returns its result; `None` if the
    /// set is empty.
    ///
    /// # Panics
    ///
    /// On an event-loop thread, if it would have to wait (as [`TaskHandle::join`]); use
    /// [`join_next_async`](Self::join_next_async) there.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{TaskHandle, TaskSet};
    /// let mut set = TaskSet::new();
    /// set.push(TaskHandle::ready(Ok(7)));
    /// assert_eq!(set.join_next(), Some(Ok(7)));
    /// assert_eq!(set.join_next(), None);
    /// ```
    #[track_caller]
    pub fn join_next(&mut self) -> Option<Result<T, TaskError>> {
        if self.tasks.is_empty() {
            return None;
        }
        block_on(self.tasks.next())
    }

    /// Waits, without blocking a thread, for a task of the set to finish; removes it and returns
    /// its result, or `None` if the set is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{TaskHandle, TaskSet};
    /// let mut set = TaskSet::new();
    /// set.push(TaskHandle::ready(Ok(7)));
    /// assert_eq!(polyexec::block_on(set.join_next_async()), Some(Ok(7)));
    /// ```
    pub fn join_next_async(&mut self) -> impl Future<Output = Option<Result<T, TaskError>>> + '_ {
        self.tasks.next()
    }

    /// Cancels every task in the set, as [`TaskHandle::cancel`] does. The tasks stay in the set:
    /// each is then taken as `Err(TaskError::Cancelled)`, or with its value if it had finished.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{TaskError, TaskHandle, TaskSet};
    /// let (_resolver, pending) = TaskHandle::<u8>::remote(None);
    /// let mut set: TaskSet<u8> = [pending, TaskHandle::ready(Ok(1))].into_iter().collect();
    /// set.abort_all();
    /// let mut results: Vec<_> = std::iter::from_fn(|| set.join_next()).collect();
    /// results.sort_by_key(|r| r.is_err());
    /// assert_eq!(results, vec![Ok(1), Err(TaskError::Cancelled)]);
    /// ```
    pub fn abort_all(&mut self) {
        // Taken out and pushed back: a fresh entry is polled by the next `join_next`, so a
        // cancelled handle is seen even if the cancel itself woke nobody (a handle's cancel
        // state is made on first use, after the set's waker was registered elsewhere).
        let tasks = std::mem::take(&mut self.tasks);
        for handle in tasks {
            handle.cancel();
            self.tasks.push(handle);
        }
    }
}

impl<T> Default for TaskSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for TaskSet<T> {
    fn drop(&mut self) {
        for handle in self.tasks.iter() {
            // A cancelled handle stops its task when it is dropped, just after this.
            handle.cancel();
        }
    }
}

impl<T> Stream for TaskSet<T> {
    type Item = Result<T, TaskError>;

    /// The next task to finish; the stream ends when the set is empty (and resumes if more are
    /// pushed).
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.tasks.poll_next_unpin(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.tasks.len(), Some(self.tasks.len()))
    }
}

impl<T> FusedStream for TaskSet<T> {
    fn is_terminated(&self) -> bool {
        self.tasks.is_terminated()
    }
}

impl<T> Extend<TaskHandle<T>> for TaskSet<T> {
    fn extend<I: IntoIterator<Item = TaskHandle<T>>>(&mut self, handles: I) {
        for handle in handles {
            self.push(handle);
        }
    }
}

impl<T> FromIterator<TaskHandle<T>> for TaskSet<T> {
    fn from_iter<I: IntoIterator<Item = TaskHandle<T>>>(handles: I) -> Self {
        let mut set = TaskSet::new();
        set.extend(handles);
        set
    }
}

// Nothing in a set is pinned: `FuturesUnordered` is `Unpin` and so are the handles.
impl<T> Unpin for TaskSet<T> {}

impl<T> fmt::Debug for TaskSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSet").field("len", &self.len()).finish()
    }
}
