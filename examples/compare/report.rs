//! What a run found: one report per backend, each row a measurement or why there is none.

use serde::Serialize;

use crate::Settings;
use crate::gauge::Gauge;
use crate::verdict::Spread;

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) gauge: Gauge,
    /// The timings may be noise: the machine was busy, or a value was impossible.
    pub(crate) noisy: bool,
    pub(crate) settings: Settings,
    pub(crate) serial: Serial,
    /// The backends measured, in column order.
    pub(crate) backends: Vec<String>,
    pub(crate) results: Vec<BackendReport>,
    pub(crate) verdict: Vec<Verdict>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) os: &'static str,
    pub(crate) arch: &'static str,
    pub(crate) optimized: bool,
}

impl Machine {
    pub(crate) fn here() -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            optimized: !cfg!(debug_assertions),
        }
    }
}

/// A measurement, or why there is none.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Measured<T> {
    Ok(T),
    Failed { error: String },
}

impl<T> Measured<T> {
    pub(crate) fn from_result(result: Result<T, String>) -> Self {
        match result {
            Ok(value) => Measured::Ok(value),
            Err(error) => Measured::Failed { error },
        }
    }

    pub(crate) fn ok(&self) -> Option<&T> {
        match self {
            Measured::Ok(value) => Some(value),
            Measured::Failed { .. } => None,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct BackendReport {
    pub(crate) backend: String,
    pub(crate) workers: usize,
    /// Building the executor and running its first task.
    pub(crate) start_ms: Measured<f64>,
    pub(crate) overhead: Measured<Overhead>,
    pub(crate) memory: Measured<Memory>,
    pub(crate) io: Measured<Waiting>,
    /// Real HTTP GETs to a local server from portable tasks (feature `tokio`).
    pub(crate) http: Measured<Http>,
    pub(crate) blocking: Measured<Waiting>,
    pub(crate) cpu: Measured<Cpu>,
    pub(crate) panic: Measured<Panic>,
    pub(crate) cancel: Measured<CancelStuck>,
    pub(crate) crash: Measured<Crash>,
    pub(crate) data: Measured<Data>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Overhead {
    pub(crate) tasks: u64,
    /// Per round (backends interleaved round by round).
    pub(crate) us_per_task: Spread,
    /// From the median.
    pub(crate) tasks_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Memory {
    pub(crate) pending_tasks: u64,
    /// Bytes this process allocated and had not freed while the tasks were pending, per task
    /// (the task's handle included).
    pub(crate) bytes_per_task: f64,
    /// Worker processes (children of this process) seen while the tasks were pending.
    pub(crate) worker_processes: usize,
    /// Growth of the worker processes' resident memory per pending task, if there are any.
    pub(crate) worker_rss_bytes_per_task: Option<f64>,
}

impl Memory {
    /// This process's bytes plus the workers' growth: the whole cost of a pending task.
    pub(crate) fn total_per_task(&self) -> f64 {
        self.bytes_per_task + self.worker_rss_bytes_per_task.unwrap_or(0.0)
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Waiting {
    pub(crate) tasks: u64,
    pub(crate) wait_ms: u64,
    pub(crate) wall_ms: f64,
    /// Wall time ÷ the wait of one task: 1.0 if every wait overlapped perfectly.
    pub(crate) ratio: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Http {
    pub(crate) requests: u64,
    /// At most this many in flight.
    pub(crate) limit: usize,
    /// How long the server takes to answer each request.
    pub(crate) latency_ms: u64,
    pub(crate) wall_ms: f64,
    /// Wall time ÷ `ceil(requests / limit) × latency`: 1.0 if the waits overlapped perfectly.
    pub(crate) ratio: f64,
    pub(crate) requests_per_sec: f64,
    /// Requests that failed (connection refused, reset, a status other than 200).
    pub(crate) failed: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Serial {
    pub(crate) primes_below: u64,
    pub(crate) primes: u64,
    /// The median of every serial run (one per pair).
    pub(crate) wall_ms: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Cpu {
    pub(crate) chunks: u64,
    /// Median wall time of the parallel runs.
    pub(crate) wall_ms: f64,
    /// Median of the serial runs paired with them.
    pub(crate) serial_ms: f64,
    /// Per pair: serial wall time ÷ this backend's wall time, timed back to back.
    pub(crate) speedup: Spread,
    /// Pairs whose ratio exceeded what the workers and CPUs allow (left out of `speedup`).
    pub(crate) impossible_pairs: usize,
    /// Why the speedup cannot be true, if it cannot: then it is shown but not used.
    pub(crate) impossible: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Panic {
    pub(crate) tasks: u32,
    /// Of the tasks that did not panic, how many returned their value.
    pub(crate) others_ok: u32,
    /// What the panicking task's handle said.
    pub(crate) error: String,
    /// Whether the executor still ran a task afterwards.
    pub(crate) executor_ok_after: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Crash {
    pub(crate) tasks: u32,
    /// Did the program that ran the tasks survive the crash?
    pub(crate) contained: bool,
    /// How the probe program ended ("exited with code 0", "killed by signal 6 (SIGABRT)").
    pub(crate) program_exit: String,
    /// Of the other tasks, how many returned their value...
    pub(crate) others_ok: u32,
    /// ... and how many failed (for example lost with the same worker process).
    pub(crate) others_failed: u32,
    /// What the crashing task's handle said, if the program lived to tell.
    pub(crate) error: Option<String>,
    /// Whether the executor still ran a task afterwards.
    pub(crate) executor_ok_after: bool,
    /// Workers the executor started to replace dead ones, from its `metrics()` after the
    /// test; `None` when the program did not live to tell.
    pub(crate) worker_restarts: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CancelStuck {
    /// How long each stuck task would block its worker.
    pub(crate) stuck_ms: u64,
    /// After cancelling one stuck task per worker, how long the next task took to finish.
    pub(crate) next_task_ms: f64,
    /// The cancel freed the workers (the next task finished in under half the stuck time).
    pub(crate) stopped: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Data {
    pub(crate) payload_bytes: usize,
    /// Round trips, backends interleaved round by round.
    pub(crate) round_trip_us: Spread,
    /// Why the round trip time cannot be true, if it cannot: then it is not used.
    pub(crate) impossible: Option<String>,
    /// Bytes allocated in this process for one round trip, ÷ the payload size.
    pub(crate) copies_in_this_process: f64,
    /// The output came back in the very buffer that was sent.
    pub(crate) same_buffer: bool,
    /// Worker processes exist, so the payload left this process.
    pub(crate) crosses_processes: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Verdict {
    /// The kind of work.
    pub(crate) when: String,
    /// The backends that measured best for it (more than one when tied); empty when there is
    /// no clear winner.
    pub(crate) pick: Vec<String>,
    /// Why no backend is picked, when none is ("rerun on a quiet machine" if it was busy).
    pub(crate) no_clear_winner: Option<String>,
    /// The numbers behind the pick.
    pub(crate) why: String,
}
