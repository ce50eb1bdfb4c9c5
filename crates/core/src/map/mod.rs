//! [`Map`], [`MapUnordered`] and [`MapStream`]: the lazy, bounded consumers behind
//! [`Executor::map`], [`Executor::map_unordered`] and [`Executor::map_stream`]. All three take
//! inputs from one [`Feed`], which chunks them and bounds how many are in flight; they differ in
//! the order they wait in and in how they wait.

mod chunking;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::iter::Fuse;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{FuturesOrdered, FuturesUnordered, Stream, StreamExt};

use crate::block::block_on;
use crate::executor::{Executor, MapOptions};
use crate::task::run_chunk;
use crate::{BlockingTask, Portable, TaskError, TaskHandle};
use chunking::Adaptive;

/// The submitting half of every map: takes inputs lazily, submits them one by one or in chunks,
/// and keeps at most `max_in_flight` inputs submitted but not yet settled.
struct Feed<'a, E, F, I: Iterator> {
    exec: &'a E,
    task: F,
    inputs: Fuse<I>,
    chunk_size: usize,
    max_in_flight: usize,
    /// Inputs submitted whose results have not been settled yet.
    in_flight: usize,
    /// Set when the chunk size follows the rate (no size given, and the backend adapts).
    adaptive: Option<Adaptive>,
    /// The caller's in-flight bound; without one, the bound follows the chunk size.
    bound_given: Option<usize>,
    workers: usize,
}

/// The in-flight bound when the caller gave none: eight chunks per worker, at least 1024 inputs
/// (enough that a worker never waits for the consumer to join the next result; still a fixed
/// bound).
fn default_bound(chunk_size: usize, workers: usize) -> usize {
    chunk_size
        .saturating_mul(workers)
        .saturating_mul(8)
        .max(1024)
}

impl<'a, E, F, I> Feed<'a, E, F, I>
where
    E: Executor,
    I: Iterator,
    I::Item: Portable,
{
    fn new<Out>(exec: &'a E, inputs: I, task: F, options: MapOptions) -> Self
    where
        F: BlockingTask<I::Item, Out>,
        Out: Portable,
    {
        crate::assert_portable(&task);
        let workers = exec.workers().max(1);
        let (adaptive, chunk_size) = match options.get_chunk_size() {
            Some(chunk_size) => (None, chunk_size),
            None if exec.adapts_chunk_size() => {
                let (adaptive, first) = Adaptive::start(workers, inputs.size_hint());
                (Some(adaptive), first)
            }
            None => (None, exec.preferred_chunk_size().max(1)),
        };
        let bound_given = options.get_max_in_flight();
        let max_in_flight = bound_given.unwrap_or_else(|| match adaptive {
            Some(_) => chunking::in_flight_bound(chunk_size, workers),
            None => default_bound(chunk_size, workers),
        });
        Feed {
            exec,
            task,
            inputs: inputs.fuse(),
            chunk_size,
            max_in_flight: max_in_flight.max(chunk_size),
            in_flight: 0,
            adaptive,
            bound_given,
            workers,
        }
    }

    /// Submits the next input or chunk if the bound allows it (always, when `idle`: at least
    /// one is kept in flight); `None` when there is no room or no input left.
    fn next_batch<Out>(&mut self, idle: bool) -> Option<Batch<Out>>
    where
        F: BlockingTask<I::Item, Out>,
        Out: Portable,
    {
        if !idle && self.in_flight + self.chunk_size > self.max_in_flight {
            return None;
        }
        if self.chunk_size == 1 {
            let input = self.inputs.next()?;
            self.in_flight += 1;
            return Some(Batch::One(self.exec.spawn(input, self.task)));
        }
        let chunk: Vec<I::Item> = self.inputs.by_ref().take(self.chunk_size).collect();
        if chunk.is_empty() {
            return None;
        }
        let len = chunk.len();
        let task = self.task;
        let handle = self
            .exec
            .spawn(chunk, move |chunk: Vec<I::Item>| run_chunk(chunk, task));
        self.in_flight += len;
        Some(Batch::Chunk(handle, len))
    }

    /// Moves a settled batch's results to `ready`.
    fn settle<Out>(&mut self, settled: Settled<Out>, ready: &mut VecDeque<Result<Out, TaskError>>) {
        let len = match &settled {
            Settled::One(_) => 1,
            Settled::Chunk(_, len) => *len,
        };
        if let Some(next) = self
            .adaptive
            .as_mut()
            .and_then(|adaptive| adaptive.settled(len, self.chunk_size))
        {
            self.chunk_size = next;
            let bound = self
                .bound_given
                .unwrap_or_else(|| chunking::in_flight_bound(next, self.workers));
            self.max_in_flight = bound.max(next);
        }
        match settled {
            Settled::One(result) => {
                self.in_flight -= 1;
                ready.push_back(result);
            }
            Settled::Chunk(result, len) => {
                self.in_flight -= len;
                match result {
                    Ok(results) if results.len() == len => ready.extend(results),
                    Ok(results) => {
                        let err = TaskError::transport(format!(
                            "a map chunk of {len} inputs returned {} results",
                            results.len()
                        ));
                        ready.extend((0..len).map(|_| Err(err.clone())));
                    }
                    Err(err) => ready.extend((0..len).map(|_| Err(err.clone()))),
                }
            }
        }
    }

    fn size_hint(&self, ready: usize) -> (usize, Option<usize>) {
        let (lo, hi) = self.inputs.size_hint();
        let known = ready + self.in_flight;
        (
            lo.saturating_add(known),
            hi.and_then(|h| h.checked_add(known)),
        )
    }
}

impl<E, F, I: Iterator> fmt::Debug for Feed<'_, E, F, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("chunk_size", &self.chunk_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// One submission of a map: a single input, or a chunk of `len` inputs.
enum Batch<Out> {
    One(TaskHandle<Out>),
    Chunk(TaskHandle<Vec<Result<Out, TaskError>>>, usize),
}

/// A batch's outcome.
enum Settled<Out> {
    One(Result<Out, TaskError>),
    Chunk(Result<Vec<Result<Out, TaskError>>, TaskError>, usize),
}

impl<Out> Batch<Out> {
    /// Blocks for the outcome (with [`TaskHandle::join`]'s short wait for remote results).
    fn join(self) -> Settled<Out> {
        match self {
            Batch::One(handle) => Settled::One(handle.join()),
            Batch::Chunk(handle, len) => Settled::Chunk(handle.join(), len),
        }
    }
}

impl<Out> Future for Batch<Out> {
    type Output = Settled<Out>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Settled<Out>> {
        match self.get_mut() {
            Batch::One(handle) => Pin::new(handle).poll(cx).map(Settled::One),
            Batch::Chunk(handle, len) => {
                let len = *len;
                Pin::new(handle).poll(cx).map(|r| Settled::Chunk(r, len))
            }
        }
    }
}

// A batch only holds a handle, which is `Unpin`.
impl<Out> Unpin for Batch<Out> {}

/// Iterator returned by [`Executor::map`]: one `Result` per input, in input order.
///
/// Dropping it detaches the chunks still in flight; they run on, and their results are discarded.
#[must_use = "iterators are lazy: nothing is submitted until the Map is consumed"]
pub struct Map<'a, E, F, I: Iterator, Out> {
    feed: Feed<'a, E, F, I>,
    pending: VecDeque<Batch<Out>>,
    ready: VecDeque<Result<Out, TaskError>>,
    _input: PhantomData<fn(I::Item)>,
}

impl<'a, E, F, I, Out> Map<'a, E, F, I, Out>
where
    E: Executor,
    I: Iterator,
    I::Item: Portable,
    F: BlockingTask<I::Item, Out>,
    Out: Portable,
{
    pub(crate) fn new(exec: &'a E, inputs: I, task: F, options: MapOptions) -> Self {
        Map {
            feed: Feed::new(exec, inputs, task, options),
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            _input: PhantomData,
        }
    }

    fn fill(&mut self) {
        while let Some(batch) = self.feed.next_batch(self.pending.is_empty()) {
            self.pending.push_back(batch);
        }
    }
}

impl<E, F, I, Out> Iterator for Map<'_, E, F, I, Out>
where
    E: Executor,
    I: Iterator,
    I::Item: Portable,
    F: BlockingTask<I::Item, Out>,
    Out: Portable,
{
    type Item = Result<Out, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(result) = self.ready.pop_front() {
                return Some(result);
            }
            self.fill();
            let settled = self.pending.pop_front()?.join();
            self.feed.settle(settled, &mut self.ready);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.size_hint(self.ready.len())
    }
}

impl<E, F, I: Iterator, Out> fmt::Debug for Map<'_, E, F, I, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("feed", &self.feed)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

/// Iterator returned by [`Executor::map_unordered`]: one `Result` per input, in the order the
/// work finishes (a chunk's results together, in their input order).
///
/// Lazy and bounded as [`Map`] is. Dropping it detaches the work still in flight.
#[must_use = "iterators are lazy: nothing is submitted until the MapUnordered is consumed"]
pub struct MapUnordered<'a, E, F, I: Iterator, Out> {
    feed: Feed<'a, E, F, I>,
    pending: FuturesUnordered<Batch<Out>>,
    ready: VecDeque<Result<Out, TaskError>>,
    _input: PhantomData<fn(I::Item)>,
}

impl<'a, E, F, I, Out> MapUnordered<'a, E, F, I, Out>
where
    E: Executor,
    I: Iterator,
    I::Item: Portable,
    F: BlockingTask<I::Item, Out>,
    Out: Portable,
{
    pub(crate) fn new(exec: &'a E, inputs: I, task: F, options: MapOptions) -> Self {
        MapUnordered {
            feed: Feed::new(exec, inputs, task, options),
            pending: FuturesUnordered::new(),
            ready: VecDeque::new(),
            _input: PhantomData,
        }
    }
}

impl<E, F, I, Out> Iterator for MapUnordered<'_, E, F, I, Out>
where
    E: Executor,
    I: Iterator,
    I::Item: Portable,
    F: BlockingTask<I::Item, Out>,
    Out: Portable,
{
    type Item = Result<Out, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(result) = self.ready.pop_front() {
                return Some(result);
            }
            while let Some(batch) = self.feed.next_batch(self.pending.is_empty()) {
                self.pending.push(batch);
            }
            let settled = block_on(self.pending.next())?;
            self.feed.settle(settled, &mut self.ready);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.size_hint(self.ready.len())
    }
}

impl<E, F, I: Iterator, Out> fmt::Debug for MapUnordered<'_, E, F, I, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("feed", &self.feed)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

/// Stream returned by [`Executor::map_stream`]: [`Map`] for async code, one `Result` per input
/// in input order, without ever blocking the polling thread.
///
/// Lazy and bounded as [`Map`] is: inputs are submitted as results are taken. Dropping it
/// detaches the work still in flight.
#[must_use = "streams are lazy: nothing is submitted until the MapStream is polled"]
pub struct MapStream<'a, E, F, I: Iterator, Out> {
    feed: Feed<'a, E, F, I>,
    pending: FuturesOrdered<Batch<Out>>,
    ready: VecDeque<Result<Out, TaskError>>,
    _input: PhantomData<fn(I::Item)>,
}

impl<'a, E, F, I, Out> MapStream<'a, E, F, I, Out>
where
    E: Executor,
    I: Iterator,
    I::Item: Portable,
    F: BlockingTask<I::Item, Out>,
    Out: Portable,
{
    pub(crate) fn new(exec: &'a E, inputs: I, task: F, options: MapOptions) -> Self {
        MapStream {
            feed: Feed::new(exec, inputs, task, options),
            pending: FuturesOrdered::new(),
            ready: VecDeque::new(),
            _input: PhantomData,
        }
    }
}

impl<E, F, I, Out> Stream for MapStream<'_, E, F, I, Out>
where
    E: Executor,
    I: Iterator,
    I::Item: Portable,
    F: BlockingTask<I::Item, Out>,
    Out: Portable,
{
    type Item = Result<Out, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(result) = this.ready.pop_front() {
                return Poll::Ready(Some(result));
            }
            while let Some(batch) = this.feed.next_batch(this.pending.is_empty()) {
                this.pending.push_back(batch);
            }
            match this.pending.poll_next_unpin(cx) {
                Poll::Ready(Some(settled)) => this.feed.settle(settled, &mut this.ready),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.size_hint(self.ready.len())
    }
}

// Nothing is pinned: the inputs are only ever moved out of the iterator, and the pending
// batches are `Unpin` handles.
impl<E, F, I: Iterator, Out> Unpin for MapStream<'_, E, F, I, Out> {}

impl<E, F, I: Iterator, Out> fmt::Debug for MapStream<'_, E, F, I, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapStream")
            .field("feed", &self.feed)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}
