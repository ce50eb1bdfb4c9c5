//! `errors`: what a task's handle says when the task panics, crashes, takes too long, or is no
//! longer wanted, and what the rest of the executor makes of it.
//!
//! 1. **panic**: the handle resolves with `TaskError::Panicked`, carrying the message and the
//!    location; the executor goes on.
//! 2. **crash** (`std::process::abort()`): where tasks run in worker processes, the handle
//!    resolves with `TaskError::WorkerLost` and the worker is replaced. Where tasks run in this
//!    process, an abort ends the whole program, so that part is skipped unless you pass
//!    `--really-crash`.
//! 3. **timeout**: `join_timeout` stops *waiting*; `cancel` then stops the task. A per-task time
//!    limit that kills the task needs a worker process that can be killed.
//! 4. **cancellation** of a task still in the queue: it never runs.
//!
//! ```text
//! cargo run --release --example errors
//! cargo run --release --all-features --example errors -- --backend subprocess
//! cargo run --release --example errors --no-default-features --features thread -- --quick
//! cargo run --release --example errors -- --really-crash     # watch an in-process crash
//! ```

use std::time::{Duration, Instant};

use polyexec::{Backend, Executor, TaskError};

mod common;

const USAGE: &str = "\
usage: errors [options]

Shows what a panic, a crash, a timeout and a cancellation do.

options:
  --really-crash   also crash when tasks run in this process (the program dies)";

fn main() -> common::Res {
    polyexec::init();
    let mut args = common::Common::parse(USAGE)?;
    let really_crash = args.flag("--really-crash")?;
    args.finish()?;
    let exec = args.build()?;
    let backend = exec.backend_name();
    println!("backend: {backend} (workers: {})", exec.workers());

    // 1. A panic becomes a value.
    println!("\n1. a task panics");
    let handle = exec.spawn(13u32, |x: u32| -> u32 {
        if x == 13 {
            panic!("{x} is unlucky");
        }
        x
    });
    match handle.join() {
        Err(e @ TaskError::Panicked(_)) => {
            println!("   the handle says: {e}");
            println!("   e.panic_message() = {:?}", e.panic_message());
            println!("   (the panic hook also printed it on stderr, as for any panic)");
        }
        other => println!("   unexpected: {other:?}"),
    }
    let next = exec.spawn(20u32, |x: u32| x + 1).join()?;
    println!("   the executor goes on: the next task returned {next}");

    // 2. A crash. Whether it can be contained depends on where tasks run: ask a task.
    println!("\n2. a task crashes (std::process::abort)");
    let task_pid = exec.spawn((), |(): ()| std::process::id()).join()?;
    let in_this_process = task_pid == std::process::id();
    // (On the cluster backend, a worker process of a worker host.)
    if in_this_process && !really_crash {
        println!("   tasks of the {backend} backend run in this process (pid {task_pid}),");
        println!("   so an abort would end the whole program, every other task with it.");
        println!("   skipped: pass --really-crash to see it happen");
        if Backend::from_name("subprocess").is_ok() {
            println!("   or --backend subprocess to see a crash contained.");
        } else {
            println!("   or build with --features subprocess to see a crash contained.");
        }
    } else {
        if in_this_process {
            println!("   tasks run in this process: the program is about to die (SIGABRT)");
        } else {
            println!(
                "   tasks run in worker process {task_pid}, not in this one ({})",
                { std::process::id() }
            );
        }
        let crash = exec.spawn((), |(): ()| std::process::abort());
        match crash.join() {
            Err(e) => println!("   the handle says: {e}"),
            Ok(()) => println!("   unexpected: the task returned"),
        }
        let pid = exec.spawn((), |(): ()| std::process::id()).join()?;
        println!("   the executor goes on: the next task ran in process {pid}");
    }

    // 3. Timeouts: stop waiting, then stop the task.
    println!("\n3. a task takes too long");
    let mut slow = exec.spawn_async(5_000u64, |ms: u64| async move {
        polyexec::sleep(Duration::from_millis(ms)).await;
        String::from("finished") // outputs are owned: `&str` cannot be deserialized
    });
    let limit = Duration::from_millis(if args.quick { 100 } else { 300 });
    let start = Instant::now();
    match slow.join_timeout(limit) {
        None => println!(
            "   join_timeout({limit:?}) returned None after {:.0} ms: still running, handle still valid",
            start.elapsed().as_secs_f64() * 1e3
        ),
        Some(result) => println!("   unexpected: {result:?}"),
    }
    let cancelled = slow.cancel();
    println!(
        "   cancel() = {cancelled}; the handle now says: {:?}",
        slow.join()
    );
    println!("   (an async task is dropped at its next .await, on every backend)");
    if in_this_process {
        println!(
            "   a running *blocking* task cannot be stopped here: a thread cannot be killed, so \
             it runs on and its result is discarded"
        );
    } else {
        println!("   a running *blocking* task is stopped by killing its worker process");
    }
    per_task_timeout(exec.backend(), args.quick)?;

    // 4. Cancelling a task that has not started.
    println!("\n4. a queued task is cancelled");
    let busy_ms = if args.quick { 150 } else { 400 };
    let workers = exec.workers();
    // Keep every worker busy, so that the next task waits in the queue.
    let busy = exec.spawn_all((0..workers).map(|_| busy_ms), |ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
    });
    let queued = exec.spawn(21u32, |x: u32| x * 2);
    let cancelled = queued.cancel();
    println!(
        "   {workers} worker(s) busy for {busy_ms} ms; cancel() on the queued task = {cancelled}"
    );
    println!("   its handle says: {:?}", queued.join());
    let busy_ok = polyexec::join_all(busy)
        .iter()
        .filter(|r| r.is_ok())
        .count();
    println!("   the {busy_ok} busy task(s) finished normally");
    Ok(())
}

/// A time limit the executor enforces on each task, which only a backend that can kill a task
/// offers: the subprocess pool kills the worker process and resolves the task with `TimedOut`.
fn per_task_timeout(backend: Backend, quick: bool) -> common::Res {
    let limit = Duration::from_millis(if quick { 100 } else { 300 });
    match backend {
        #[cfg(feature = "subprocess")]
        Backend::Subprocess => {
            let pool = polyexec::subprocess::ProcessPool::builder()
                .workers(1)
                .task_timeout(limit)
                .build()?;
            let stuck = pool.spawn(60_000u64, |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms)); // blocks: nothing to await
            });
            let start = Instant::now();
            let result = stuck.join();
            println!(
                "   with ProcessPoolBuilder::task_timeout({limit:?}), a task stuck in a blocking \
                 call got, after {:.0} ms: {result:?}",
                start.elapsed().as_secs_f64() * 1e3
            );
            let next = pool.spawn(1u8, |x: u8| x + 1).join()?;
            println!("   the pool replaced the killed worker: the next task returned {next}");
        }
        #[cfg(feature = "cluster")]
        Backend::Cluster => {
            // One host with one slot: the next task can run only once the stuck one is stopped.
            let pool = polyexec::cluster::ClusterPool::builder()
                .local_workers(1)
                .slots_per_worker(1)
                .build()?;
            let limited = polyexec::SpawnOptions::new().timeout(limit);
            let stuck = pool.spawn_with(
                60_000u64,
                |ms: u64| std::thread::sleep(Duration::from_millis(ms)),
                limited,
            );
            let start = Instant::now();
            let result = stuck.join();
            println!(
                "   with SpawnOptions::timeout({limit:?}), a task stuck in a blocking call got, \
                 after {:.0} ms: {result:?}",
                start.elapsed().as_secs_f64() * 1e3
            );
            let next = pool.spawn(1u8, |x: u8| x + 1).join()?;
            println!(
                "   its host ended the worker process running it: the next task on the same \
                 slot returned {next}"
            );
        }
        other => println!(
            "   no per-task time limit (such as {limit:?}) on the {other} backend: its tasks \
             cannot be killed; use join_timeout + cancel as above, or the subprocess backend"
        ),
    }
    Ok(())
}
