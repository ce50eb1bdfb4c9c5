//! [`TaskSet`]: completion order, mixed sources, async use, `abort_all` and drop.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;

use super::{Gate, mark, marker, occupy_all, temp_dir};
use crate::{Executor, Inline, TaskError, TaskHandle, TaskSet};

/// A set yields every result once, in completion order, from this executor's handles mixed
/// with handles of another executor; it refills while draining, and works from async code.
pub fn task_set_completion_order<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let mut set = TaskSet::new();
    // A waiting async task holds no worker, so the blocking one finishes first.
    set.push(exec.spawn_async(3600u64, |secs: u64| async move {
        crate::sleep(Duration::from_secs(secs)).await;
        0u32
    }));
    set.push(exec.spawn(7u32, |x: u32| x));
    assert_eq!(set.len(), 2);
    assert_eq!(set.join_next(), Some(Ok(7)));
    assert_eq!(set.len(), 1);
    set.abort_all();
    assert_eq!(set.join_next(), Some(Err(TaskError::Cancelled)));
    assert_eq!(set.join_next(), None);
    assert!(set.is_empty());

    // Mixed sources, refilled while draining: 0..200 each seen once.
    let mut inputs = 0..200u32;
    for x in inputs.by_ref().take(8) {
        set.push(exec.spawn(x, |x: u32| x));
    }
    set.push(Inline.spawn(1_000u32, |x: u32| x));
    set.push(TaskHandle::ready(Ok(1_001)));
    let mut seen = Vec::new();
    while let Some(result) = set.join_next() {
        seen.push(result.expect("a task of the set failed"));
        if let Some(x) = inputs.next() {
            set.push(exec.spawn(x, |x: u32| x));
        }
    }
    seen.sort_unstable();
    let mut expected: Vec<u32> = (0..200).collect();
    expected.extend([1_000, 1_001]);
    assert_eq!(seen, expected);

    // From async code: `join_next_async` and the `Stream`.
    let mut set: TaskSet<u32> = exec
        .spawn_all(0..20u32, |x: u32| x * 2)
        .into_iter()
        .collect();
    let first = futures::executor::block_on(set.join_next_async());
    assert!(matches!(first, Some(Ok(x)) if x % 2 == 0 && x < 40));
    let rest: Vec<_> = futures::executor::block_on(set.by_ref().collect::<Vec<_>>());
    assert_eq!(rest.len(), 19);
    assert!(rest.iter().all(|r| r.is_ok()));
    exec.shutdown();
}

/// `abort_all` cancels the queued tasks of a set (each is then taken as `Cancelled`), and
/// dropping a set cancels what it holds: none of those tasks runs.
pub fn task_set_abort_all_and_drop<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let dir = temp_dir();
    let mut gate = Gate::new();
    let blockers = occupy_all(&exec, &mut gate);
    let paths: Vec<String> = (0..6)
        .map(|i| marker(dir.path(), &format!("set{i}")))
        .collect();
    let mut aborted: TaskSet<String> = paths[..3]
        .iter()
        .map(|p| exec.spawn(p.clone(), mark))
        .collect();
    aborted.abort_all();
    assert_eq!(aborted.len(), 3);
    for _ in 0..3 {
        assert_eq!(aborted.join_next(), Some(Err(TaskError::Cancelled)));
    }
    assert_eq!(aborted.join_next(), None);
    let dropped: TaskSet<String> = paths[3..]
        .iter()
        .map(|p| exec.spawn(p.clone(), mark))
        .collect();
    drop(dropped);
    gate.release();
    for b in blockers {
        assert_eq!(b.join(), Ok(gate.port()));
    }
    exec.shutdown();
    for path in &paths {
        assert!(
            !Path::new(path).exists(),
            "{path}: a cancelled task of a set ran"
        );
    }
}
