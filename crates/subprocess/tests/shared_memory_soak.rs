//! 10,000 large tasks in a row, through shared memory, in lockstep and in batches (so records
//! are released out of order and the rings wrap): every result is right, and once the regions
//! have grown to the largest payload, descriptors and mappings stay constant in the parent and
//! in the worker: no region, descriptor or mapping per task.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::Executor;
use polyexec_subprocess::ProcessPool;
use serde_bytes::ByteBuf;

const TASKS: usize = 10_000;
/// Tasks in flight at once in the batched half.
const BATCH: usize = 8;

/// Lines of `/proc/<pid>/maps`: all, and those of payload regions.
fn mappings(pid: u32) -> (usize, usize) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let regions = maps
        .lines()
        .filter(|line| line.contains("memfd:polyexec-payload"))
        .count();
    (maps.lines().count(), regions)
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fds")
        .count()
}

/// Sizes from 64 KiB to 320 KiB, all through the regions.
fn size(i: usize) -> usize {
    (64 << 10) + (i * 7919) % (256 << 10)
}

fn submit(pool: &ProcessPool, i: usize) -> (usize, polyexec_core::TaskHandle<ByteBuf>) {
    let input = ByteBuf::from(vec![i as u8; size(i)]);
    let handle = pool.spawn(input, |mut b: ByteBuf| {
        let first = b[0];
        b.push(first);
        b
    });
    (i, handle)
}

#[track_caller]
fn check((i, handle): (usize, polyexec_core::TaskHandle<ByteBuf>)) {
    let back = common::join(handle).expect("a large task failed");
    assert_eq!(back.len(), size(i) + 1);
    assert!(
        back.iter().all(|&b| b == i as u8),
        "task {i} came back wrong"
    );
}

#[test]
fn ten_thousand_large_tasks_leave_descriptors_and_mappings_constant() {
    let pool = common::pool(1);
    let worker = pool.worker_pids()[0];
    let me = std::process::id();
    // Warm up: the largest payload comes early, so the regions reach their final size.
    check(submit(&pool, 31)); // size(31) is near the largest
    for i in 0..200 {
        check(submit(&pool, i));
    }
    let before = (
        descriptors(me),
        mappings(me),
        descriptors(worker),
        mappings(worker),
    );
    assert_eq!(before.1.1, 2, "the pool's region and the worker's");
    assert_eq!(before.3.1, 2);

    for i in 0..TASKS / 2 {
        check(submit(&pool, i));
    }
    for batch in (TASKS / 2..TASKS).collect::<Vec<_>>().chunks(BATCH) {
        let handles: Vec<_> = batch.iter().map(|&i| submit(&pool, i)).collect();
        // Joined newest first: released out of order.
        for handle in handles.into_iter().rev() {
            check(handle);
        }
    }

    let after = (
        descriptors(me),
        mappings(me),
        descriptors(worker),
        mappings(worker),
    );
    assert_eq!(pool.worker_pids(), [worker], "the worker served them all");
    assert_eq!(
        after, before,
        "(parent fds, (maps, regions), worker fds, (maps, regions))"
    );
}
