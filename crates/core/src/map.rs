//! [`Map`]: the lazy, ordered, bounded iterator behind [`Executor::map`].

use std::collections::VecDeque;
use std::fmt;
use std::iter::Fuse;
use std::marker::PhantomData;

use crate::executor::{Executor, MapOptions};
use crate::task::run_chunk;
use crate::{BlockingTask, Portable, TaskError, TaskHandle};

/// Iterator returned by [`Executor::map`]: one `Result` per input, in input order.
///
/// Dropping it detaches the chunks still in flight; they run on, and their results are discarded.
#[must_use = "iterators are lazy: nothing is submitted until the Map is consumed"]
pub struct Map<'a, E, F, I: Iterator, Out> {
    exec: &'a E,
    task: F,
    inputs: Fuse<I>,
    chunk_size: usize,
    max_in_flight: usize,
    /// Inputs submitted whose results have not been moved to `ready` yet.
    in_flight: usize,
    pending: VecDeque<Pending<Out>>,
    ready: VecDeque<Result<Out, TaskError>>,
    _input: PhantomData<fn(I::Item)>,
}

enum Pending<Out> {
    One(TaskHandle<Out>),
    Chunk(TaskHandle<Vec<Result<Out, TaskError>>>, usize),
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
        crate::assert_portable(&task);
        let chunk_size = options
            .get_chunk_size()
            .unwrap_or_else(|| exec.preferred_chunk_size().max(1));
        let max_in_flight = options.get_max_in_flight().unwrap_or_else(|| {
            chunk_size
                .saturating_mul(exec.workers().max(1))
                .saturating_mul(8)
                // At least 1024 inputs: enough that a worker never waits for the consumer to
                // join the next result; still a fixed bound.
                .max(1024)
        });
        Map {
            exec,
            task,
            inputs: inputs.fuse(),
            chunk_size,
            max_in_flight: max_in_flight.max(chunk_size),
            in_flight: 0,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            _input: PhantomData,
        }
    }

    fn fill(&mut self) {
        while self.in_flight + self.chunk_size <= self.max_in_flight || self.pending.is_empty() {
            if self.chunk_size == 1 {
                let Some(input) = self.inputs.next() else {
                    return;
                };
                self.pending
                    .push_back(Pending::One(self.exec.spawn(input, self.task)));
                self.in_flight += 1;
            } else {
                let chunk: Vec<I::Item> = self.inputs.by_ref().take(self.chunk_size).collect();
                if chunk.is_empty() {
                    return;
                }
                let len = chunk.len();
                let task = self.task;
                let handle = self
                    .exec
                    .spawn(chunk, move |chunk: Vec<I::Item>| run_chunk(chunk, task));
                self.pending.push_back(Pending::Chunk(handle, len));
                self.in_flight += len;
            }
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
            match self.pending.pop_front()? {
                Pending::One(handle) => {
                    self.in_flight -= 1;
                    return Some(handle.join());
                }
                Pending::Chunk(handle, len) => {
                    self.in_flight -= len;
                    match handle.join() {
                        Ok(results) if results.len() == len => self.ready.extend(results),
                        Ok(results) => {
                            let err = TaskError::transport(format!(
                                "a map chunk of {len} inputs returned {} results",
                                results.len()
                            ));
                            self.ready.extend((0..len).map(|_| Err(err.clone())));
                        }
                        Err(err) => self.ready.extend((0..len).map(|_| Err(err.clone()))),
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.inputs.size_hint();
        let known = self.ready.len() + self.in_flight;
        (
            lo.saturating_add(known),
            hi.and_then(|h| h.checked_add(known)),
        )
    }
}

impl<E, F, I: Iterator, Out> fmt::Debug for Map<'_, E, F, I, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("chunk_size", &self.chunk_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("in_flight", &self.in_flight)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}
