//! `soak`: a bounded run of a mixed workload with injected failures, reporting tasks/s and the
//! outcomes by kind — the reliability claims of `docs/reliability.md`, under load.
//!
//! Two threads keep submitting portable tasks for a fixed time, each with a window of 512 in
//! flight — blocking computations, async waits, panics, cancellations and, where the backend can
//! stop them, tasks that run past the per-task time limit. On the subprocess backend it also injects **crashes** (`abort`,
//! `exit(3)`, a null-pointer read): each kills a worker process, which the pool replaces. Crashes
//! are injected on that backend only: elsewhere they would end this program.
//!
//! Every handle is checked against what its task allows (a computation returns its own value, a
//! crash is `WorkerLost`, ...), and successes plus errors must equal submissions; the program
//! exits with an error otherwise.
//!
//! ```text
//! cargo run --release --all-features --example soak -- --backend subprocess          # 60 s
//! cargo run --release --all-features --example soak -- --backend subprocess --seconds 120
//! cargo run --release --all-features --example soak -- --backend thread --quick     # 5 s
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use polyexec::{AnyExecutor, Executor, TaskError, TaskHandle};

mod common;

const USAGE: &str = "\
usage: soak [options]

Runs a mixed workload with injected failures for a bounded time and reports tasks/s and the
outcomes by kind; crashes are injected on the subprocess backend only.

options:
  --seconds N   how long to submit (default 60, --quick 5; at most 120)";

/// The per-task time limit, on the backends that can stop a task over it: far above what the
/// other tasks take (microseconds to milliseconds), even on a loaded machine.
#[cfg(any(feature = "subprocess", feature = "coroutine"))]
const LIMIT: Duration = Duration::from_millis(250);
/// Tasks each submitting thread keeps in flight.
const WINDOW: usize = 512;
const SUBMITTERS: u64 = 2;
/// Only a hang waits this long for one handle.
const HANG: Duration = Duration::from_secs(120);

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A blocking computation that returns its result.
    Compute,
    /// An async task that waits a millisecond or two, then returns.
    Io,
    /// Panics.
    Panic,
    /// A slow async task, cancelled right after submission.
    Cancel,
    /// Runs far past the time limit.
    Hang,
    /// Kills its worker process (subprocess only).
    Crash,
}

/// What the executor can take: which failures are injected.
#[derive(Debug, Clone, Copy)]
struct Injection {
    crashes: bool,
    /// The time limit, and whether it stops blocking tasks (else only async ones).
    timeout: Option<(Duration, bool)>,
}

/// A deterministic mix: 0.2% crashes (subprocess), 0.005% hangs (where a time limit applies: each
/// holds a worker for the whole limit), 2% panics, 3% cancellations, 35% async waits, the rest
/// computations.
fn kind_of(id: u64, injection: Injection) -> Kind {
    let r = splitmix(id) % 100_000;
    match r {
        0..200 if injection.crashes => Kind::Crash,
        200..205 if injection.timeout.is_some() => Kind::Hang,
        1_000..3_000 => Kind::Panic,
        3_000..6_000 => Kind::Cancel,
        6_000..41_000 => Kind::Io,
        _ => Kind::Compute,
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The computation: a sum of squares over a few hundred numbers.
fn compute(id: u64) -> u64 {
    (0..200 + id % 800).map(|i| i * i).sum::<u64>() ^ id
}

fn submit(exec: &AnyExecutor, id: u64, kind: Kind, injection: Injection) -> TaskHandle<u64> {
    match kind {
        Kind::Compute => exec.spawn(id, compute),
        Kind::Io => exec.spawn_async(id, |id: u64| async move {
            polyexec::sleep(Duration::from_millis(1 + id % 2)).await;
            id
        }),
        Kind::Panic => exec.spawn(id, |id: u64| -> u64 { panic!("soak: injected panic {id}") }),
        Kind::Cancel => {
            let handle = exec.spawn_async(id, |id: u64| async move {
                polyexec::sleep(Duration::from_millis(50)).await;
                id
            });
            handle.cancel();
            handle
        }
        Kind::Hang => match injection.timeout {
            // The subprocess pool kills a blocking task over the limit with its worker.
            Some((_, true)) => exec.spawn(id, |id: u64| {
                std::thread::sleep(Duration::from_secs(3600));
                id
            }),
            // The event loop drops an async task over the limit.
            _ => exec.spawn_async(id, |id: u64| async move {
                polyexec::sleep(Duration::from_secs(3600)).await;
                id
            }),
        },
        Kind::Crash => exec.spawn(id, |id: u64| -> u64 {
            match id % 3 {
                0 => std::process::abort(),
                1 => std::process::exit(3),
                _ => {
                    // SAFETY: none; this is the injected crash. A volatile read of address 0
                    // is not optimized away, and the kernel answers it with SIGSEGV.
                    let byte = unsafe { std::ptr::read_volatile(std::ptr::null::<u8>()) };
                    u64::from(byte)
                }
            }
        }),
    }
}

/// The outcome's name for the report, or `Err` if the task was not allowed to end that way.
fn classify(
    id: u64,
    kind: Kind,
    result: &Result<u64, TaskError>,
    injection: Injection,
) -> Result<String, String> {
    let unexpected = || Err(format!("task {id} ({kind:?}) ended with {result:?}"));
    Ok(match (kind, result) {
        (Kind::Compute, Ok(v)) if *v == compute(id) => "ok".into(),
        (Kind::Io | Kind::Cancel, Ok(v)) if *v == id => "ok".into(),
        (Kind::Panic, Err(TaskError::Panicked(panic)))
            if panic.message == format!("soak: injected panic {id}") =>
        {
            "panicked".into()
        }
        (Kind::Cancel, Err(TaskError::Cancelled)) => "cancelled".into(),
        (Kind::Hang, Err(TaskError::TimedOut(limit)))
            if Some(*limit) == injection.timeout.map(|t| t.0) =>
        {
            "timed out".into()
        }
        (Kind::Crash, Err(TaskError::WorkerLost(exit))) => format!("worker lost ({exit})"),
        // An async task running in a worker that a crash or a time limit killed is lost with
        // it (blocking tasks never are: a worker runs one at a time).
        (Kind::Io | Kind::Hang, Err(TaskError::WorkerLost(_))) if injection.crashes => {
            "worker lost (beside a crash or a kill)".into()
        }
        _ => return unexpected(),
    })
}

/// Builds the executor, with the time limit where the backend enforces one.
fn build(args: &common::Common) -> common::Res<(AnyExecutor, Injection)> {
    let backend = args.backend()?;
    #[allow(unused_mut)]
    let mut injection = Injection {
        crashes: false,
        timeout: None,
    };
    let exec = match backend {
        #[cfg(feature = "subprocess")]
        polyexec::Backend::Subprocess => {
            injection = Injection {
                crashes: true,
                timeout: Some((LIMIT, true)),
            };
            let mut builder = polyexec::subprocess::ProcessPool::builder().task_timeout(LIMIT);
            if let Some(workers) = args.workers {
                builder = builder.workers(workers);
            }
            AnyExecutor::Subprocess(builder.build()?)
        }
        #[cfg(feature = "coroutine")]
        polyexec::Backend::Coroutine => {
            injection.timeout = Some((LIMIT, false));
            let mut builder = polyexec::coroutine::EventLoop::builder().task_timeout(LIMIT);
            if let Some(threads) = args.workers {
                builder = builder.threads(threads);
            }
            AnyExecutor::Coroutine(builder.build()?)
        }
        other => other.build_with_workers(args.workers)?,
    };
    Ok((exec, injection))
}

/// What one submitting thread saw.
#[derive(Debug, Default)]
struct Tally {
    submitted: u64,
    successes: u64,
    errors: u64,
    outcomes: BTreeMap<(Kind, String), u64>,
    unexpected: Vec<String>,
}

impl Tally {
    fn record(
        &mut self,
        id: u64,
        kind: Kind,
        result: &Result<u64, TaskError>,
        injection: Injection,
    ) {
        if result.is_ok() {
            self.successes += 1;
        } else {
            self.errors += 1;
        }
        match classify(id, kind, result, injection) {
            Ok(outcome) => *self.outcomes.entry((kind, outcome)).or_default() += 1,
            Err(message) => self.unexpected.push(message),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.submitted += other.submitted;
        self.successes += other.successes;
        self.errors += other.errors;
        for (key, n) in other.outcomes {
            *self.outcomes.entry(key).or_default() += n;
        }
        self.unexpected.extend(other.unexpected);
    }
}

fn submitter(exec: &AnyExecutor, thread: u64, until: Instant, injection: Injection) -> Tally {
    let mut tally = Tally::default();
    // A window of tasks in flight, refilled as they resolve (in any order: a task past the
    // time limit does not hold up the others).
    let mut window: VecDeque<(u64, Kind, Instant, TaskHandle<u64>)> = VecDeque::new();
    let mut next = 0u64;
    loop {
        while window.len() < WINDOW && Instant::now() < until {
            let id = next * SUBMITTERS + thread;
            next += 1;
            let kind = kind_of(id, injection);
            window.push_back((id, kind, Instant::now(), submit(exec, id, kind, injection)));
            tally.submitted += 1;
        }
        if window.is_empty() {
            return tally;
        }
        let before = window.len();
        window.retain_mut(|(id, kind, _, handle)| {
            if !handle.is_finished() {
                return true;
            }
            let result = handle
                .join_timeout(Duration::ZERO)
                .expect("a finished handle has its result");
            tally.record(*id, *kind, &result, injection);
            false
        });
        if window.len() < before {
            continue;
        }
        // Nothing resolved since the last look: wait a little for the oldest.
        let (id, kind, submitted, handle) = window.front_mut().expect("not empty");
        if let Some(result) = handle.join_timeout(Duration::from_millis(1)) {
            let (id, kind) = (*id, *kind);
            window.pop_front();
            tally.record(id, kind, &result, injection);
        } else if submitted.elapsed() > HANG {
            tally.unexpected.push(format!("task {id} ({kind:?}) hung"));
            window.pop_front();
        }
    }
}

/// Quiets the panics this program injects (thousands of them); any other panic is reported as
/// usual. Set before `polyexec::init()`, so that worker processes have it too.
fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied());
        if !message.is_some_and(|m| m.starts_with("soak: injected")) {
            default(info);
        }
    }));
}

fn main() -> common::Res {
    quiet_injected_panics();
    polyexec::init();
    let mut args = common::Common::parse(USAGE)?;
    let seconds: u64 = args.value("--seconds")?.unwrap_or(args.size(60, 5));
    args.finish()?;
    if seconds > 120 {
        return Err("--seconds: at most 120 (a soak run is bounded)".into());
    }
    let (exec, injection) = build(&args)?;
    println!(
        "soak: backend {} (workers: {}), {seconds} s, {SUBMITTERS} submitting threads, {WINDOW} tasks \
         in flight each; crashes injected: {}; time limit: {}",
        exec.backend_name(),
        exec.workers(),
        if injection.crashes { "yes" } else { "no" },
        match injection.timeout {
            Some((limit, true)) => format!("{limit:?} (blocking and async tasks)"),
            Some((limit, false)) => format!("{limit:?} (async tasks)"),
            None => "none (tasks cannot be stopped here)".into(),
        }
    );

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tally = Tally::default();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..SUBMITTERS)
            .map(|t| {
                let exec = &exec;
                scope.spawn(move || submitter(exec, t, until, injection))
            })
            .collect();
        for thread in threads {
            tally.merge(thread.join().expect("a submitting thread panicked"));
        }
    });
    let elapsed = started.elapsed();
    exec.shutdown();

    println!(
        "\n{} tasks in {:.1} s: {} tasks/s",
        common::thousands(tally.submitted),
        elapsed.as_secs_f64(),
        common::thousands((tally.submitted as f64 / elapsed.as_secs_f64()) as u64)
    );
    println!("\n  {:<8} {:<44} {:>10}", "kind", "outcome", "tasks");
    for ((kind, outcome), n) in &tally.outcomes {
        println!(
            "  {:<8} {outcome:<44} {:>10}",
            format!("{kind:?}").to_lowercase(),
            common::thousands(*n)
        );
    }
    let mut by_error: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, outcome), n) in &tally.outcomes {
        let error = match outcome.as_str() {
            "ok" => continue,
            "panicked" => "Panicked",
            "cancelled" => "Cancelled",
            "timed out" => "TimedOut",
            _ => "WorkerLost",
        };
        *by_error.entry(error).or_default() += n;
    }
    let errors: Vec<String> = by_error
        .iter()
        .map(|(e, n)| format!("{e} {}", common::thousands(*n)))
        .collect();
    println!("\nerrors by kind: {}", errors.join(", "));
    let count = |kind: Kind, prefix: &str| -> u64 {
        tally
            .outcomes
            .iter()
            .filter(|((k, o), _)| *k == kind && o.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    let deaths = count(Kind::Crash, "worker lost") + count(Kind::Hang, "timed out");
    let beside = count(Kind::Io, "worker lost") + count(Kind::Hang, "worker lost");
    if injection.crashes && deaths > 0 {
        println!(
            "worker processes killed by their own task (crash or time limit): {}; async tasks \
             lost with them: {} ({:.1} per death; blocking tasks lost: none)",
            common::thousands(deaths),
            common::thousands(beside),
            beside as f64 / deaths as f64
        );
    }
    for message in tally.unexpected.iter().take(10) {
        eprintln!("unexpected: {message}");
    }
    let balanced = tally.successes + tally.errors == tally.submitted;
    println!(
        "check: successes {} + errors {} {} submissions {}",
        common::thousands(tally.successes),
        common::thousands(tally.errors),
        if balanced { "==" } else { "!=" },
        common::thousands(tally.submitted)
    );
    if !balanced || !tally.unexpected.is_empty() {
        return Err(format!(
            "{} unexpected outcome(s); successes + errors {} submissions",
            tally.unexpected.len(),
            if balanced { "==" } else { "!=" }
        )
        .into());
    }
    println!("every task resolved once, as its kind allows");
    Ok(())
}
