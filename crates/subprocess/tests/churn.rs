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

use polyexec_core::{Executor, TaskError, TaskHandle, WorkerExit};
use rustix::process::{Pid, Signal};

const THREADS: u64 = 3;
const BATCHES: u64 = 20;
const BATCH: u64 = 100;
/// A submitter kills a worker from outside before submitting every task whose id is this many
/// apart (30 kills in all), wherever the other threads are at.
const KILL_EVERY: u64 = 200;

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

/// Sends `SIGKILL` to one of the pool's live workers, as an operator or the OOM killer would;
/// `false` if there was none (all being replaced) or it died on its own first.
fn kill_a_worker(pool: &polyexec_subprocess::ProcessPool, id: u64) -> bool {
    let pids = pool.worker_pids();
    let Some(&pid) = pids.get(id as usize % pids.len().max(1)) else {
        return false;
    };
    rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).is_ok()
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
    let total = THREADS * BATCHES * BATCH;
    let started = std::time::Instant::now();

    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut results = Vec::new();
                let mut kills = 0u64;
                for b in 0..BATCHES {
                    let first = (t * BATCHES + b) * BATCH;
                    let mut handles = Vec::new();
                    for id in first..first + BATCH {
                        if id % KILL_EVERY == KILL_EVERY / 2 {
                            kills += u64::from(kill_a_worker(&pool, id));
                        }
                        handles.push((id, submit(&pool, id)));
                    }
                    for (id, handle) in handles {
                        results.push((id, common::join(handle)));
                    }
                }
                (results, kills)
            })
        })
        .collect();

    let mut tally: BTreeMap<(Kind, &'static str), u64> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let (mut successes, mut errors) = (0u64, 0u64);
    let mut kills = 0;
    for submitter in submitters {
        let (results, killed) = submitter.join().expect("a submitter panicked");
        kills += killed;
        for (id, result) in results {
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
