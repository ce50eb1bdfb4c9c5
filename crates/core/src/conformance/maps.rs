//! [`Executor::map_unordered`] and [`Executor::map_stream`]: every input once, the promised
//! order, laziness, and a stream that never blocks its poller.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use futures::{Stream, StreamExt};

use super::{Gate, gated};
use crate::{Executor, TaskError};

/// The task of these tests: waits at the gate on `port` first, unless `port` is 0.
fn maybe_gated((port, value): (u16, u32)) -> u32 {
    if port != 0 {
        gated(port);
    }
    value
}

/// `map_unordered` yields every input's result once, with per-element panics; is lazy over an
/// endless iterator; and, with two workers or more, yields results that are ready before one
/// that is held up.
pub fn map_unordered_completion_order<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let mut seen: Vec<u32> = exec
        .map_unordered(0..2_000u32, |x: u32| x * 3)
        .collect::<Result<_, _>>()
        .expect("no task of the map fails");
    seen.sort_unstable();
    assert_eq!(seen, (0..2_000u32).map(|x| x * 3).collect::<Vec<_>>());

    let results: Vec<Result<u32, TaskError>> = exec
        .map_unordered(0..50u32, |x: u32| {
            assert!(x != 7, "seven");
            x
        })
        .collect();
    assert_eq!(results.len(), 50);
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].as_ref().unwrap_err().panic_message(),
        Some("seven")
    );

    // Lazy and bounded: an endless iterator is fine.
    assert_eq!(
        exec.map_unordered(0u32.., |x: u32| x).take(100).count(),
        100
    );

    if exec.workers() >= 2 {
        let mut gate = Gate::new();
        // The first input (and whatever shares its chunk) is held at the gate; thousands of
        // inputs after it make chunks of their own, which another worker finishes first.
        let inputs = std::iter::once((gate.port(), u32::MAX)).chain((0..4_000u32).map(|x| (0, x)));
        let mut results = exec.map_unordered(inputs, maybe_gated);
        let first = results
            .next()
            .expect("a first result")
            .expect("it succeeds");
        assert_ne!(first, u32::MAX, "the held-up input came first");
        gate.wait_started(1);
        gate.release();
        let rest: Vec<u32> = results.collect::<Result<_, _>>().expect("all succeed");
        assert_eq!(rest.len(), 4_000);
        assert!(rest.contains(&u32::MAX));
    }
    exec.shutdown();
}

/// `map_stream` yields results in input order from async code, and a poll whose result is not
/// ready returns `Pending` at once rather than blocking.
pub fn map_stream_in_order_without_blocking<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let all: Vec<_> =
        futures::executor::block_on(exec.map_stream(0..1_000u32, |x: u32| x + 1).collect());
    assert_eq!(all, (1..=1_000u32).map(Ok).collect::<Vec<_>>());

    let mut gate = Gate::new();
    let inputs = std::iter::once((gate.port(), 0u32)).chain((1..100u32).map(|x| (0, x)));
    let mut stream = pin!(exec.map_stream(inputs, maybe_gated));
    let mut cx = Context::from_waker(Waker::noop());
    // The first result waits at the gate: the poll must not wait for it.
    assert!(matches!(stream.as_mut().poll_next(&mut cx), Poll::Pending));
    gate.wait_started(1);
    gate.release();
    let rest: Vec<_> = futures::executor::block_on(stream.collect::<Vec<_>>());
    assert_eq!(rest, (0..100u32).map(Ok).collect::<Vec<_>>());

    // Lazy over an endless iterator.
    let first: Vec<_> =
        futures::executor::block_on(exec.map_stream(0u32.., |x: u32| x).take(10).collect());
    assert_eq!(first, (0..10u32).map(Ok).collect::<Vec<_>>());
    exec.shutdown();
}
