//! The verdict lines of a report: each row's numbers put through the rules of [`verdict`].

use crate::render::{bytes, fmt_num, micros};
use crate::report::{BackendReport, Measured, Memory, Verdict};
use crate::verdict::{self, Contender, Outcome, Spread};

/// Flags a moved buffer's round trip that measured slower than another backend's copying one.
pub(crate) fn flag_impossible_moves(reports: &mut [BackendReport]) {
    let copied: Vec<Spread> = reports
        .iter()
        .filter_map(|r| r.data.ok())
        .filter(|d| !d.same_buffer)
        .map(|d| d.round_trip_us)
        .collect();
    for r in reports.iter_mut() {
        if let Measured::Ok(d) = &mut r.data
            && d.same_buffer
        {
            d.impossible = copied
                .iter()
                .find_map(|c| verdict::impossible_move(&d.round_trip_us, c));
        }
    }
}

/// Whether any timed value of the report was impossible.
pub(crate) fn any_impossible(reports: &[BackendReport]) -> bool {
    reports.iter().any(|r| {
        r.cpu.ok().is_some_and(|c| c.impossible.is_some())
            || r.data.ok().is_some_and(|d| d.impossible.is_some())
    })
}

/// The contenders of one row: `metric` gives a backend's value and, if so, why it is impossible.
fn contenders(
    reports: &[BackendReport],
    metric: impl Fn(&BackendReport) -> Option<(Spread, Option<String>)>,
) -> Vec<Contender> {
    reports
        .iter()
        .map(|r| {
            let m = metric(r);
            Contender {
                name: r.backend.clone(),
                workers: r.workers,
                value: m.as_ref().map(|(v, _)| *v),
                impossible: m.and_then(|(_, why)| why),
            }
        })
        .collect()
}

/// "thread 0.25, subprocess 9.1": every backend's value, for the reasons line.
fn all_values(
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

/// A verdict line from an outcome; on a noisy run, a row without a clear winner says to rerun.
fn line(when: &str, outcome: Outcome, why: String, noisy: bool) -> Verdict {
    let (pick, no_clear_winner) = match outcome {
        Outcome::Pick(pick) => (pick, None),
        Outcome::NoClearWinner(reason) => {
            let rerun = if noisy {
                "; rerun on a quiet machine"
            } else {
                ""
            };
            (Vec::new(), Some(format!("{reason}{rerun}")))
        }
    };
    Verdict {
        when: when.to_owned(),
        pick,
        no_clear_winner,
        why,
    }
}

/// Every backend for which `has` holds; the verdict says so when none does.
fn all_with(
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
        no_clear_winner: None,
        why,
    }
}

/// The verdict of every row, in table order.
///
/// `busy` (the gauge's reason, if the machine was busy) withholds the picks of the timed rows:
/// overhead, I/O, blocking and CPU.
pub(crate) fn verdict(reports: &[BackendReport], busy: Option<&str>, noisy: bool) -> Vec<Verdict> {
    let timed = |outcome| verdict::unless_busy(outcome, busy);
    let exact = |v: Option<f64>| v.map(|v| (Spread::exact(v), None));
    let mut out = Vec::new();

    out.push(line(
        "many small tasks (lowest overhead per task)",
        timed(verdict::judge(
            &contenders(reports, |r| r.overhead.ok().map(|o| (o.us_per_task, None))),
            false,
        )),
        format!(
            "µs per task: {}",
            all_values(reports, |r| r
                .overhead
                .ok()
                .map(|o| fmt_num(o.us_per_task.median)))
        ),
        noisy,
    ));
    out.push(line(
        "thousands of tasks waiting at once (least memory per pending task)",
        verdict::judge(
            &contenders(reports, |r| {
                exact(r.memory.ok().map(Memory::total_per_task))
            }),
            false,
        ),
        format!(
            "bytes per pending task, workers included: {}",
            all_values(reports, |r| r
                .memory
                .ok()
                .map(|m| bytes(m.total_per_task())))
        ),
        noisy,
    ));
    out.push(line(
        "I/O-bound async work (wall time closest to one wait)",
        timed(verdict::judge(
            &contenders(reports, |r| exact(r.io.ok().map(|w| w.ratio))),
            false,
        )),
        format!(
            "wall ÷ ideal: {}",
            all_values(reports, |r| r.io.ok().map(|w| format!("{:.2}×", w.ratio)))
        ),
        noisy,
    ));
    out.push(line(
        "blocking calls that cannot be made async",
        timed(verdict::judge(
            &contenders(reports, |r| exact(r.blocking.ok().map(|w| w.ratio))),
            false,
        )),
        format!(
            "wall ÷ ideal: {}",
            all_values(reports, |r| r
                .blocking
                .ok()
                .map(|w| format!("{:.1}×", w.ratio)))
        ),
        noisy,
    ));
    out.push(line(
        "CPU-bound work (best speedup over serial)",
        timed(verdict::judge_cpu(&contenders(reports, |r| {
            r.cpu.ok().map(|c| (c.speedup, c.impossible.clone()))
        }))),
        format!(
            "speedup (median of pairs, quartiles): {}",
            all_values(reports, |r| {
                r.cpu.ok().map(|c| {
                    let s = c.speedup;
                    let flag = if c.impossible.is_some() {
                        " impossible, not used"
                    } else {
                        ""
                    };
                    format!("{:.2}× ({:.2}–{:.2}){flag}", s.median, s.lo, s.hi)
                })
            })
        ),
        noisy,
    ));
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
    out.push(line(
        "large inputs and outputs (fewest copies of the data)",
        // Whole copies, counted, not timed: a few hundred bytes of bookkeeping per round trip
        // are not a copy.
        verdict::judge(
            &contenders(reports, |r| {
                exact(r.data.ok().map(|d| d.copies_in_this_process.round()))
            }),
            false,
        ),
        format!(
            "round trip: {}",
            all_values(reports, |r| {
                r.data.ok().map(|d| {
                    let flag = if d.impossible.is_some() {
                        ", time impossible"
                    } else {
                        ""
                    };
                    format!(
                        "{} ({:.0} copies{flag})",
                        micros(d.round_trip_us.median),
                        d.copies_in_this_process
                    )
                })
            })
        ),
        noisy,
    ));
    out
}
