//! Fault injection at scale: thousands of submissions from several threads while workers keep
//! dying — tasks that abort, exit or segfault their worker, and a thread that kills workers from
//! outside as the work goes on. Every handle resolves once, with an outcome its task allows;
//! healthy blocking tasks are lost only to an outside kill of the worker running them; successes
//! plus errors equal submissions; the pool keeps serving; no process is left behind.
//!
//! One test in this file, so the final count of children is this test's alone.

polyexec_subprocess::test_hook!();

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use polyexec_core::{Executor, TaskError, TaskHandle, WorkerExit};
use rustix::process::{Pid, Signal};

const THREADS: u64 = 3;
const BATCHES: u64 = 20;
const BATCH: u64 = 100;
/// Outside kills, spread over the run by progress (one per so many results), not by time.
const KILLS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Value,
    AsyncValue,
    Panic,
    Abort,
    Exit,
    Segv,
}

fn kind_of(id: u64) -> Kind {
    match id % 80 {
        0 | 40 => Kind::Abort,
        20 | 60 => Kind::Exit,
        10 => Kind::Segv,
        7 | 47 => Kind::Panic,
        n if n % 5 == 1 => Kind::AsyncValue,
        _ => Kind::Value,
    }
}

fn submit(pool: &polyexec_subprocess::ProcessPool, id: u64) -> TaskHandle<u64> {
    match kind_of(id) {
        Kind::Value => pool.spawn(id, |id: u64| id * 3),
        Kind::AsyncValue => pool.spawn_async(id, |id: u64| async move { id * 3 }),
        Kind::Panic => pool.spawn(id, |id: u64| -> u64 { panic!("churn {id}") }),
        Kind::Abort => pool.spawn(id, |_: u64| -> u64 { std::process::abort() }),
        Kind::Exit => pool.spawn(id, |_: u64| -> u64 { std::process::exit(2) }),
        Kind::Segv => pool.spawn(id, |_: u64| -> u64 {
            let me = rustix::process::getpid();
            loop {
                let _ = rustix::process::kill_process(me, Signal::SEGV);
            }
        }),
    }
}

/// Checks that `result` is an outcome task `id` allows, and names it for the tally.
fn classify(id: u64, result: &Result<u64, TaskError>) -> &'static str {
    const KILLED: TaskError = TaskError::WorkerLost(WorkerExit::Signal(9));
    let kind = kind_of(id);
    match (kind, result) {
        (Kind::Value | Kind::AsyncValue, Ok(v)) => {
            assert_eq!(*v, id * 3, "task {id} got another task's value");
            "ok"
        }
        (Kind::Panic, Err(err)) if err.is_panic() => {
            assert_eq!(err.panic_message(), Some(&*format!("churn {id}")));
            "panicked"
        }
        (Kind::Abort, Err(TaskError::WorkerLost(WorkerExit::Signal(6))))
        | (Kind::Exit, Err(TaskError::WorkerLost(WorkerExit::Code(2))))
        | (Kind::Segv, Err(TaskError::WorkerLost(WorkerExit::Signal(11)))) => "lost (own crash)",
        // Any task may be running on a worker the killer kills.
        (_, Err(err)) if *err == KILLED => "lost (killed from outside)",
        // An async task running beside a crashing task on the same worker is lost with it.
        (Kind::AsyncValue, Err(TaskError::WorkerLost(_))) => "lost (async beside a crash)",
        _ => panic!("task {id} ({kind:?}): unexpected {result:?}"),
    }
}

#[test]
fn thousands_of_tasks_while_workers_keep_dying() {
    let pool = Arc::new(common::quiet_pool(3));
    let resolved = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let total = THREADS * BATCHES * BATCH;
    let started = std::time::Instant::now();

    let killer = {
        let pool = Arc::clone(&pool);
        let resolved = Arc::clone(&resolved);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut kills = 0;
            for k in 0..KILLS {
                let threshold = (k + 1) * total / (KILLS + 1);
                common::wait_for("progress", || {
                    done.load(Ordering::Acquire) || resolved.load(Ordering::Acquire) >= threshold
                });
                if done.load(Ordering::Acquire) {
                    break;
                }
                let pids = pool.worker_pids();
                if let Some(&pid) = pids.get(k as usize % pids.len().max(1)) {
                    // It may have died on its own meanwhile.
                    if rustix::process::kill_process(
                        Pid::from_raw(pid as i32).unwrap(),
                        Signal::KILL,
                    )
                    .is_ok()
                    {
                        kills += 1;
                    }
                }
            }
            kills
        })
    };

    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = Arc::clone(&pool);
            let resolved = Arc::clone(&resolved);
            std::thread::spawn(move || {
                let mut results = Vec::new();
                for b in 0..BATCHES {
                    let first = (t * BATCHES + b) * BATCH;
                    let handles: Vec<_> = (first..first + BATCH)
                        .map(|id| (id, submit(&pool, id)))
                        .collect();
                    for (id, handle) in handles {
                        results.push((id, common::join(handle)));
                        resolved.fetch_add(1, Ordering::Release);
                    }
                }
                results
            })
        })
        .collect();

    let mut tally: BTreeMap<(Kind, &'static str), u64> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let (mut successes, mut errors) = (0u64, 0u64);
    for submitter in submitters {
        for (id, result) in submitter.join().expect("a submitter panicked") {
            assert!(seen.insert(id), "task {id} reported twice");
            let outcome = classify(id, &result);
            *tally.entry((kind_of(id), outcome)).or_default() += 1;
            if result.is_ok() {
                successes += 1;
            } else {
                errors += 1;
            }
        }
    }
    done.store(true, Ordering::Release);
    let kills = killer.join().expect("the killer panicked");
    let elapsed = started.elapsed();
    eprintln!("{total} tasks, {kills} outside kills, in {elapsed:.2?}:");
    for ((kind, outcome), n) in &tally {
        eprintln!("  {kind:?} {outcome}: {n}");
    }
    assert_eq!(
        successes + errors,
        total,
        "successes plus errors equal submissions"
    );
    let own_crashes: u64 = tally
        .iter()
        .filter(|((_, o), _)| *o == "lost (own crash)")
        .map(|(_, n)| n)
        .sum();
    assert!(
        own_crashes > 100,
        "workers kept dying: {own_crashes} crashes"
    );
    common::assert_serves(&pool);
    drop(pool);
    assert_eq!(
        common::children(),
        Vec::<u32>::new(),
        "a worker was left behind"
    );
}
