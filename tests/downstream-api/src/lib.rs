//! The second-day API of polyexec, exercised the same way on any executor.

use std::time::Duration;

use futures::StreamExt;
use polyexec::{Executor, SpawnOptions, TaskError, TaskSet};

/// Runs every new piece of the API on `exec`; panics on the first wrong answer.
pub fn exercise<E: Executor>(exec: &E) {
    // TaskSet: a window of 4 over 40 inputs, refilled as results come in.
    let mut inputs = 0..40u64;
    let mut set = TaskSet::new();
    for x in inputs.by_ref().take(4) {
        set.push(exec.spawn(x, |x: u64| x * x));
    }
    let mut total = 0;
    while let Some(result) = set.join_next() {
        total += result.expect("a square");
        if let Some(x) = inputs.next() {
            set.push(exec.spawn(x, |x: u64| x * x));
        }
    }
    assert_eq!(total, (0..40u64).map(|x| x * x).sum());
    assert!(set.is_empty() && set.len() == 0);

    // A set's abort_all, its Stream, and join_next_async.
    let mut set: TaskSet<u64> = TaskSet::new();
    set.push(exec.spawn_async(3_600u64, |secs: u64| async move {
        polyexec::sleep(Duration::from_secs(secs)).await;
        secs
    }));
    set.abort_all();
    assert_eq!(set.join_next(), Some(Err(TaskError::Cancelled)));
    set.extend(exec.spawn_all(1..=3u64, |x: u64| x));
    let first = futures::executor::block_on(set.join_next_async()).expect("one");
    assert!(first.is_ok());
    let rest: Vec<_> = futures::executor::block_on(set.by_ref().collect::<Vec<_>>());
    assert_eq!(rest.len(), 2);

    // map_unordered and map_stream.
    let mut unordered: Vec<u32> = exec
        .map_unordered(0..500u32, |x: u32| x + 1)
        .collect::<Result<_, _>>()
        .expect("all succeed");
    unordered.sort_unstable();
    assert_eq!(unordered, (1..=500).collect::<Vec<_>>());
    let streamed: Vec<_> =
        futures::executor::block_on(exec.map_stream(0..100u32, |x: u32| x * 2).collect());
    assert_eq!(streamed, (0..100u32).map(|x| Ok(x * 2)).collect::<Vec<_>>());

    // cancel(&self) and an AbortHandle on another thread.
    let sleeper = |secs: u64| async move {
        polyexec::sleep(Duration::from_secs(secs)).await;
        secs
    };
    let handle = exec.spawn_async(3_600u64, sleeper);
    let abort = handle.abort_handle();
    assert!(std::thread::spawn(move || abort.abort()).join().unwrap());
    assert_eq!(handle.join(), Err(TaskError::Cancelled));
    let handle = exec.spawn_async(3_600u64, sleeper);
    let shared = &handle;
    assert!(shared.cancel());
    assert_eq!(handle.join(), Err(TaskError::Cancelled));

    // A per-task time limit, and unblock.
    let limit = Duration::from_millis(20);
    let late = exec.spawn_async_with(3_600u64, sleeper, SpawnOptions::new().timeout(limit));
    assert_eq!(late.join(), Err(TaskError::TimedOut(limit)));
    let generous = SpawnOptions::new().timeout(Duration::from_secs(600));
    assert_eq!(exec.spawn_with(6u8, |x: u8| x * 7, generous).join(), Ok(42));
    let offloaded = exec.spawn_async(21u32, |x: u32| async move {
        polyexec::unblock(move || x * 2).await
    });
    assert_eq!(offloaded.join(), Ok(42));

    // A bounded immediate shutdown of an idle executor.
    assert!(exec.shutdown_timeout(Duration::from_secs(60)));
    assert!(exec.spawn(1u8, |x: u8| x).join().unwrap_err().is_shutdown());
}
