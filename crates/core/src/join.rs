//! Waiting on many handles: all of them, in completion order, or the first one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{FuturesOrdered, FuturesUnordered, Stream, StreamExt};

use crate::block::block_on;
use crate::{TaskError, TaskHandle};

/// Blocks until every task resolves; results in the order of `handles`.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{join_all, TaskHandle};
/// let handles = vec![TaskHandle::ready(Ok(1)), TaskHandle::ready(Ok(2))];
/// assert_eq!(join_all(handles), vec![Ok(1), Ok(2)]);
/// ```
pub fn join_all<T, I>(handles: I) -> Vec<Result<T, TaskError>>
where
    I: IntoIterator<Item = TaskHandle<T>>,
{
    block_on(join_all_async(handles))
}

/// A future of every task's result, in the order of the handles.
///
/// The async twin of [`join_all`].
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{join_all_async, TaskHandle};
/// let all = join_all_async([TaskHandle::ready(Ok(1)), TaskHandle::ready(Ok(2))]);
/// assert_eq!(futures::executor::block_on(all), vec![Ok(1), Ok(2)]);
/// ```
pub fn join_all_async<T, I>(handles: I) -> JoinAll<T>
where
    I: IntoIterator<Item = TaskHandle<T>>,
{
    JoinAll {
        pending: handles.into_iter().collect(),
        done: Vec::new(),
    }
}

/// Future returned by [`join_all_async`].
#[must_use = "futures do nothing unless polled"]
pub struct JoinAll<T> {
    pending: FuturesOrdered<TaskHandle<T>>,
    done: Vec<Result<T, TaskError>>,
}

// Nothing in a `JoinAll` is ever pinned: the handles are `Unpin` and results are only moved.
impl<T> Unpin for JoinAll<T> {}

impl<T> Future for JoinAll<T> {
    type Output = Vec<Result<T, TaskError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        while let Poll::Ready(next) = this.pending.poll_next_unpin(cx) {
            match next {
                Some(result) => this.done.push(result),
                None => return Poll::Ready(std::mem::take(&mut this.done)),
            }
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for JoinAll<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinAll")
            .field("pending", &self.pending.len())
            .field("done", &self.done.len())
            .finish()
    }
}

/// Yields each task's result as soon as it resolves, with the task's index in `handles`.
///
/// The returned [`AsCompleted`] is both a blocking [`Iterator`] and an async [`Stream`], the way
/// Python's `concurrent.futures.as_completed` and `asyncio.as_completed` are.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{as_completed, TaskHandle};
/// let handles = vec![TaskHandle::ready(Ok('a')), TaskHandle::ready(Ok('b'))];
/// let mut seen: Vec<_> = as_completed(handles).collect();
/// seen.sort_by_key(|(i, _)| *i);
/// assert_eq!(seen, vec![(0, Ok('a')), (1, Ok('b'))]);
/// ```
pub fn as_completed<T, I>(handles: I) -> AsCompleted<T>
where
    I: IntoIterator<Item = TaskHandle<T>>,
{
    AsCompleted {
        pending: handles
            .into_iter()
            .enumerate()
            .map(|(index, handle)| Indexed { index, handle })
            .collect(),
    }
}

/// Iterator and stream returned by [`as_completed`].
#[must_use = "iterators and streams do nothing unless consumed"]
pub struct AsCompleted<T> {
    pending: FuturesUnordered<Indexed<T>>,
}

impl<T> AsCompleted<T> {
    /// How many tasks have not been yielded yet.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let it = polyexec::as_completed([polyexec::TaskHandle::<u8>::ready(Ok(1))]);
    /// assert_eq!(it.remaining(), 1);
    /// ```
    pub fn remaining(&self) -> usize {
        self.pending.len()
    }
}

struct Indexed<T> {
    index: usize,
    handle: TaskHandle<T>,
}

impl<T> Future for Indexed<T> {
    type Output = (usize, Result<T, TaskError>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index;
        Pin::new(&mut self.handle).poll(cx).map(|r| (index, r))
    }
}

impl<T> Stream for AsCompleted<T> {
    type Item = (usize, Result<T, TaskError>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.pending.poll_next_unpin(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), Some(self.pending.len()))
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = (usize, Result<T, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        block_on(self.pending.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), Some(self.pending.len()))
    }
}

impl<T> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.pending.len())
            .finish()
    }
}

/// What [`wait_any`] and [`select_any`] return: the first task to resolve, and the rest.
#[derive(Debug)]
pub struct FirstResolved<T> {
    /// Index of the resolved task among the handles passed in.
    pub index: usize,
    /// Its result.
    pub result: Result<T, TaskError>,
    /// The other handles, still pending or not yet looked at, in their original order.
    pub rest: Vec<TaskHandle<T>>,
}

/// Blocks until any one task resolves.
///
/// # Panics
///
/// If `handles` is empty: there is nothing to wait for.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{wait_any, TaskHandle};
/// let first = wait_any(vec![TaskHandle::ready(Ok(1)), TaskHandle::ready(Ok(2))]);
/// assert_eq!(first.rest.len(), 1);
/// ```
pub fn wait_any<T>(handles: Vec<TaskHandle<T>>) -> FirstResolved<T> {
    block_on(select_any(handles))
}

/// A future of the first task to resolve; the async twin of [`wait_any`].
///
/// # Panics
///
/// If `handles` is empty.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{select_any, TaskHandle};
/// let first = futures::executor::block_on(select_any(vec![TaskHandle::<u8>::ready(Ok(1))]));
/// assert_eq!((first.index, first.result), (0, Ok(1)));
/// ```
pub fn select_any<T>(handles: Vec<TaskHandle<T>>) -> impl Future<Output = FirstResolved<T>> {
    assert!(
        !handles.is_empty(),
        "select_any/wait_any needs at least one handle"
    );
    let select = futures::future::select_all(handles);
    async move {
        let (result, index, rest) = select.await;
        FirstResolved {
            index,
            result,
            rest,
        }
    }
}
