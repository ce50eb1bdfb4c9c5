//! The verdict: computed from the numbers.

use crate::render::{bytes, fmt_num, micros};
use crate::report::{BackendReport, Memory, Verdict};

/// Timings within this factor of the best count as a tie: on a shared machine, smaller
/// differences are often noise.
pub(crate) const TIE: f64 = 1.15;

/// The backends whose `metric` is best, with the others within [`TIE`] of it.
pub(crate) fn best_by(
    reports: &[BackendReport],
    metric: impl Fn(&BackendReport) -> Option<f64>,
    higher_is_better: bool,
) -> Option<(Vec<String>, f64)> {
    let values: Vec<(&str, f64)> = reports
        .iter()
        .filter_map(|r| metric(r).map(|v| (r.backend.as_str(), v)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let best = values
        .iter()
        .map(|&(_, v)| v)
        .reduce(|a, b| if (b > a) == higher_is_better { b } else { a })?;
    let close = |v: f64| {
        if higher_is_better {
            v >= best / TIE
        } else {
            v <= best * TIE
        }
    };
    let picks = values
        .iter()
        .filter(|&&(_, v)| close(v))
        .map(|&(name, _)| name.to_owned())
        .collect();
    Some((picks, best))
}

/// "thread 0.25, subprocess 9.1": every backend's value, for the reasons line.
pub(crate) fn all_values(
    reports: &[BackendReport],
    metric: impl Fn(&BackendReport) -> Option<String>,
) -> String {
    reports
        .iter()
        .map(|r| {
            let value = metric(r).unwrap_or_else(|| "n/a".into());
            format!("{} {value}", r.backend)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every backend for which `has` holds; the verdict says so when none does.
pub(crate) fn all_with(
    reports: &[BackendReport],
    when: &str,
    has: impl Fn(&BackendReport) -> bool,
    numbers: String,
) -> Verdict {
    let pick: Vec<String> = reports
        .iter()
        .filter(|r| has(r))
        .map(|r| r.backend.clone())
        .collect();
    let why = if pick.is_empty() {
        format!("none of the backends measured can: {numbers}")
    } else {
        numbers
    };
    Verdict {
        when: when.to_owned(),
        pick,
        why,
    }
}

pub(crate) fn verdict(reports: &[BackendReport]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Verdict>, when: &str, pick: Option<(Vec<String>, f64)>, why| {
        if let Some((pick, _)) = pick {
            out.push(Verdict {
                when: when.to_owned(),
                pick,
                why,
            });
        }
    };

    push(
        &mut out,
        "many small tasks (lowest overhead per task)",
        best_by(reports, |r| r.overhead.ok().map(|o| o.us_per_task), false),
        format!(
            "µs per task: {}",
            all_values(reports, |r| r.overhead.ok().map(|o| fmt_num(o.us_per_task)))
        ),
    );
    push(
        &mut out,
        "thousands of tasks waiting at once (least memory per pending task)",
        best_by(
            reports,
            |r| r.memory.ok().map(Memory::total_per_task),
            false,
        ),
        format!(
            "bytes per pending task, workers included: {}",
            all_values(reports, |r| r
                .memory
                .ok()
                .map(|m| bytes(m.total_per_task())))
        ),
    );
    push(
        &mut out,
        "I/O-bound async work (wall time closest to one wait)",
        best_by(reports, |r| r.io.ok().map(|w| w.ratio), false),
        format!(
            "wall ÷ ideal: {}",
            all_values(reports, |r| r.io.ok().map(|w| format!("{:.2}×", w.ratio)))
        ),
    );
    push(
        &mut out,
        "blocking calls that cannot be made async",
        best_by(reports, |r| r.blocking.ok().map(|w| w.ratio), false),
        format!(
            "wall ÷ ideal: {}",
            all_values(reports, |r| r
                .blocking
                .ok()
                .map(|w| format!("{:.1}×", w.ratio)))
        ),
    );
    push(
        &mut out,
        "CPU-bound work (best speedup over serial)",
        best_by(reports, |r| r.cpu.ok().map(|c| c.speedup), true),
        format!(
            "speedup: {}",
            all_values(reports, |r| r
                .cpu
                .ok()
                .map(|c| format!("{:.2}×", c.speedup)))
        ),
    );
    // Yes-or-no properties: every backend that has it is picked, or none.
    let crash_why = all_values(reports, |r| {
        r.crash.ok().map(|c| {
            if c.contained {
                "survived".to_owned()
            } else {
                format!("program {}", c.program_exit)
            }
        })
    });
    out.push(all_with(
        reports,
        "tasks that may crash (abort, segfault in FFI code)",
        |r| r.crash.ok().is_some_and(|c| c.contained),
        format!("after an abort: {crash_why}"),
    ));
    let cancel_why = all_values(reports, |r| {
        r.cancel.ok().map(|c| {
            let verb = if c.stopped { "stopped" } else { "ran on" };
            format!("{verb} (next task after {:.0} ms)", c.next_task_ms)
        })
    });
    out.push(all_with(
        reports,
        "tasks that may hang (timeouts that stop the work)",
        |r| r.cancel.ok().is_some_and(|c| c.stopped),
        format!("cancelled stuck tasks: {cancel_why}"),
    ));
    push(
        &mut out,
        "large inputs and outputs (fewest copies of the data)",
        // Whole copies: a few hundred bytes of bookkeeping per round trip are not a copy.
        best_by(
            reports,
            |r| r.data.ok().map(|d| d.copies_in_this_process.round()),
            false,
        ),
        format!(
            "round trip: {}",
            all_values(reports, |r| {
                r.data.ok().map(|d| {
                    format!(
                        "{} ({:.0} copies)",
                        micros(d.round_trip_us),
                        d.copies_in_this_process
                    )
                })
            })
        ),
    );
    out
}
