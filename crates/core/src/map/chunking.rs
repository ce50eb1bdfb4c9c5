//! How a map picks its chunk size when the caller gave none and the backend adapts it (the thread
//! pool, where a hand-over is cheap but not free): from the input count when the iterator knows
//! it, then from the rate results come back at.
//!
//! Invariants: the size is always in `1..=MAX_CHUNK`; the clock is read once per window, never
//! per input; a window spans at least two chunks per worker, so the jitter of one result does not
//! steer the size; the size grows at most `MAX_GROWTH`-fold per window and may shrink to 1 at
//! once (a task that turns slow is followed at once, a fast one is trusted gradually).

use std::time::{Duration, Instant};

/// The work one chunk should carry. A thread-pool hand-over costs a fraction of a microsecond,
/// so a chunk this long spends a few percent of its time in the hand-over; and because no chunk
/// runs much longer, the last chunks of a map finish close together.
const TARGET: Duration = Duration::from_micros(25);

/// The largest chunk: beyond it the hand-over is already negligible for any task, and the
/// inputs and results held per chunk only grow.
const MAX_CHUNK: usize = 16 * 1024;

/// Chunks per worker for a map of known length, before any rate is known: few enough that a
/// trivial task's first chunks are already large, enough that the work splits evenly if it is
/// never adapted.
const CHUNKS_PER_WORKER: usize = 8;

/// Chunks per worker in flight while the size adapts. Fewer than a fixed-size map keeps, so
/// that a new size reaches the workers soon: what is already submitted runs at the old size.
const IN_FLIGHT_PER_WORKER: usize = 4;

/// The most a chunk grows from one window to the next.
const MAX_GROWTH: usize = 16;

/// The rate-based chunk size of one map.
#[derive(Debug)]
pub(crate) struct Adaptive {
    workers: usize,
    window_start: Instant,
    /// Inputs settled since `window_start`.
    window_settled: usize,
    /// Inputs that end the window.
    window_len: usize,
}

impl Adaptive {
    /// Starts adapting for `workers` workers; also returns the first chunk size, from the
    /// inputs' `size_hint` when it is exact (1 when it is not: the task may be slow).
    pub(crate) fn start(workers: usize, size_hint: (usize, Option<usize>)) -> (Self, usize) {
        let workers = workers.max(1);
        let chunk = match size_hint {
            (lo, Some(hi)) if lo == hi => (lo / (workers * CHUNKS_PER_WORKER)).clamp(1, MAX_CHUNK),
            _ => 1,
        };
        let adaptive = Adaptive {
            workers,
            window_start: Instant::now(),
            window_settled: 0,
            window_len: window_len(chunk, workers),
        };
        (adaptive, chunk)
    }

    /// Counts `settled` more inputs of a map now chunked by `chunk`; at the end of a window,
    /// the chunk size for the inputs still to be submitted.
    pub(crate) fn settled(&mut self, settled: usize, chunk: usize) -> Option<usize> {
        self.window_settled += settled;
        if self.window_settled < self.window_len {
            return None;
        }
        let now = Instant::now();
        let next = next_chunk(
            now - self.window_start,
            self.window_settled,
            self.workers,
            chunk,
        );
        self.window_start = now;
        self.window_settled = 0;
        self.window_len = window_len(next, self.workers);
        Some(next)
    }
}

/// The chunk that carries about `TARGET` of work, given that `settled` inputs took `elapsed` on
/// `workers` workers.
///
/// The worker time per input assumes every worker was busy with this map. When they were not
/// (other work, or a consumer slower than the workers) it is an overestimate, which only makes
/// chunks smaller: the hand-over then costs more, but it is not what limits the map.
fn next_chunk(elapsed: Duration, settled: usize, workers: usize, chunk: usize) -> usize {
    let per_input = (elapsed.as_nanos() * workers as u128 / settled.max(1) as u128).max(1);
    let fits = usize::try_from(TARGET.as_nanos() / per_input).unwrap_or(MAX_CHUNK);
    fits.clamp(1, chunk.saturating_mul(MAX_GROWTH).clamp(1, MAX_CHUNK))
}

/// The in-flight bound of an adapting map without one given: a few chunks per worker, never
/// fewer than a window's worth of single inputs.
pub(crate) fn in_flight_bound(chunk: usize, workers: usize) -> usize {
    chunk
        .saturating_mul(workers.max(1))
        .saturating_mul(IN_FLIGHT_PER_WORKER)
        .max(16)
}

fn window_len(chunk: usize, workers: usize) -> usize {
    chunk.saturating_mul(workers).saturating_mul(2).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_length_starts_with_even_chunks() {
        assert_eq!(Adaptive::start(2, (10_000, Some(10_000))).1, 625);
        assert_eq!(
            Adaptive::start(2, (1_000_000, Some(1_000_000))).1,
            MAX_CHUNK
        );
        assert_eq!(Adaptive::start(2, (100, Some(100))).1, 6);
        assert_eq!(Adaptive::start(2, (10, Some(10))).1, 1);
        assert_eq!(
            Adaptive::start(2, (usize::MAX, Some(usize::MAX))).1,
            MAX_CHUNK
        );
    }

    #[test]
    fn unknown_length_starts_at_one() {
        assert_eq!(Adaptive::start(2, (usize::MAX, None)).1, 1);
        assert_eq!(Adaptive::start(4, (10, Some(20))).1, 1);
    }

    #[test]
    fn slow_inputs_fall_to_one_at_once() {
        // 1 ms per input on 2 workers.
        assert_eq!(next_chunk(Duration::from_millis(500), 1000, 2, 4096), 1);
    }

    #[test]
    fn fast_inputs_grow_by_a_bounded_factor() {
        // 10 ns of worker time per input: 2,500 would carry the target, but from 8 the next
        // window may only reach 8 × MAX_GROWTH.
        let elapsed = Duration::from_nanos(5 * 1000);
        assert_eq!(next_chunk(elapsed, 1000, 2, 8), 8 * MAX_GROWTH);
        assert_eq!(next_chunk(elapsed, 1000, 2, 1024), 2500);
    }

    #[test]
    fn never_beyond_the_largest_chunk() {
        assert_eq!(
            next_chunk(Duration::ZERO, 1_000_000, 2, MAX_CHUNK),
            MAX_CHUNK
        );
        assert_eq!(next_chunk(Duration::from_nanos(1), 1, 1, 0), 1);
    }

    #[test]
    fn a_window_spans_two_chunks_per_worker() {
        let (mut a, chunk) = Adaptive::start(2, (10_000, Some(10_000)));
        assert_eq!(chunk, 625);
        assert_eq!(a.settled(625 * 4 - 1, chunk), None);
        let next = a.settled(1, chunk).expect("the window is full");
        assert!((1..=625 * MAX_GROWTH).contains(&next));
    }

    #[test]
    fn an_adapting_map_keeps_a_few_chunks_per_worker_in_flight() {
        assert_eq!(in_flight_bound(1, 2), 16);
        assert_eq!(in_flight_bound(625, 2), 5000);
        assert_eq!(in_flight_bound(usize::MAX, 2), usize::MAX);
    }
}
