//! Submissions racing a shutdown: every handle resolves exactly once (a value, or `ShutDown`
//! for work refused or cancelled), nothing hangs, and graceful shutdown runs everything it
//! accepted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use polyexec_core::{Executor, TaskError, TaskHandle};
use polyexec_coroutine::EventLoop;

const SUBMITTERS: usize = 3;

/// Submissions made so far, by all submitters of the current race.
static SUBMITTED: AtomicU64 = AtomicU64::new(0);

/// Submits blocking and sleeping async tasks until the loop refuses work; returns every
/// handle.
fn submit_until_refused(event_loop: &EventLoop, start: &Barrier) -> Vec<TaskHandle<u64>> {
    start.wait();
    let mut handles = Vec::new();
    for i in 0u64.. {
        let handle = if i % 2 == 0 {
            event_loop.spawn(i, |i: u64| i)
        } else {
            event_loop.spawn_async(i, |i: u64| async move {
                polyexec_core::sleep(Duration::from_millis(i % 3)).await;
                i
            })
        };
        // A refused handle is resolved at once; an accepted one may be too (it ran already),
        // so a resolved handle is confirmed as refused by the gate's state.
        let refused = handle.is_finished() && is_refusing(event_loop);
        handles.push(handle);
        SUBMITTED.fetch_add(1, Ordering::SeqCst);
        if refused {
            break;
        }
    }
    handles
}

/// `true` once the loop refuses new work (a probe task comes back resolved with `ShutDown`).
fn is_refusing(event_loop: &EventLoop) -> bool {
    let probe = event_loop.spawn(0u8, |x: u8| x);
    probe.is_finished() && probe.join() == Err(TaskError::ShutDown)
}

fn race(threads: usize, now: bool) {
    let event_loop = Arc::new(
        EventLoop::builder()
            .threads(threads)
            .build()
            .expect("build"),
    );
    let start = Arc::new(Barrier::new(SUBMITTERS + 1));
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let event_loop = Arc::clone(&event_loop);
            let start = Arc::clone(&start);
            std::thread::spawn(move || submit_until_refused(&event_loop, &start))
        })
        .collect();
    SUBMITTED.store(0, Ordering::SeqCst);
    start.wait();
    // Condition wait: let the submitters get going before the shutdown races them.
    while SUBMITTED.load(Ordering::SeqCst) < 300 {
        std::thread::yield_now();
    }
    if now {
        event_loop.shutdown_now();
    } else {
        event_loop.shutdown();
    }
    let ok = AtomicU64::new(0);
    for s in submitters {
        for (i, h) in s.join().expect("submitter").into_iter().enumerate() {
            // Resolved by now: shutdown returned, so nothing is left to run.
            assert!(h.is_finished(), "handle {i} unresolved after shutdown");
            match h.join() {
                Ok(v) => {
                    assert_eq!(v, i as u64);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                // Refused at submission, or (immediate shutdown) dropped unfinished.
                Err(TaskError::ShutDown) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }
    if !now {
        // Graceful: the first submissions were accepted before the shutdown began, and ran.
        assert!(ok.load(Ordering::Relaxed) > 0);
    }
}

#[test]
fn graceful_shutdown_racing_submitters() {
    for threads in [1, 2] {
        race(threads, false);
    }
}

#[test]
fn immediate_shutdown_racing_submitters() {
    for threads in [1, 2] {
        race(threads, true);
    }
}

#[test]
fn graceful_shutdown_runs_everything_it_accepted() {
    static RAN: AtomicU64 = AtomicU64::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    let event_loop = Arc::new(EventLoop::builder().threads(2).build().expect("build"));
    let submitter = {
        let event_loop = Arc::clone(&event_loop);
        std::thread::spawn(move || {
            let mut accepted = 0u64;
            while !STOP.load(Ordering::SeqCst) {
                let h = event_loop.spawn_async((), |()| async {
                    polyexec_core::sleep(Duration::from_millis(1)).await;
                    RAN.fetch_add(1, Ordering::SeqCst);
                });
                if h.is_finished() && h.join() == Err(TaskError::ShutDown) {
                    break;
                }
                accepted += 1;
            }
            accepted
        })
    };
    while RAN.load(Ordering::SeqCst) < 10 {
        std::thread::yield_now();
    }
    event_loop.shutdown();
    STOP.store(true, Ordering::SeqCst);
    let accepted = submitter.join().expect("submitter");
    // Every accepted task ran before shutdown returned (the handles were dropped, so this
    // counts detached tasks too).
    assert_eq!(RAN.load(Ordering::SeqCst), accepted);
}
