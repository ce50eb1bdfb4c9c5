//! The table.

use std::fmt::Write as _;

use crate::common::thousands;
use crate::report::{BackendReport, Measured, Report};

pub(crate) fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 10.0 * 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{} B", thousands(b.round().max(0.0) as u64))
    }
}

pub(crate) fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{} µs", fmt_num(us))
    }
}

/// A cell: the value, or `failed` (the reason goes in the notes).
pub(crate) fn cell<T>(
    m: &Measured<T>,
    f: impl Fn(&T) -> String,
    notes: &mut Vec<String>,
    who: &str,
) -> String {
    match m {
        Measured::Ok(v) => f(v),
        Measured::Failed { error } => {
            let note = format!("{who}: {error}");
            if !notes.contains(&note) {
                notes.push(note);
            }
            "failed (see notes)".into()
        }
    }
}

pub(crate) fn table(report: &Report) -> String {
    let s = &report.settings;
    let r = &report.results;
    let mut notes = Vec::new();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: String, f: &dyn Fn(&BackendReport, &mut Vec<String>) -> String| {
        let cells = r.iter().map(|b| f(b, &mut notes)).collect();
        rows.push((label, cells));
    };

    row("workers".into(), &|b, _| b.workers.to_string());
    row("start: build + first task".into(), &|b, n| {
        cell(&b.start_ms, |v| format!("{v:.1} ms"), n, &b.backend)
    });
    row(
        format!("overhead: µs/task ({} trivial)", thousands(s.tasks)),
        &|b, n| {
            cell(
                &b.overhead,
                |o| {
                    let v = o.us_per_task;
                    format!(
                        "{} ({}–{})",
                        fmt_num(v.median),
                        fmt_num(v.lo),
                        fmt_num(v.hi)
                    )
                },
                n,
                &b.backend,
            )
        },
    );
    row(
        format!("memory per pending task ({})", thousands(s.mem_tasks)),
        &|b, n| {
            cell(
                &b.memory,
                |m| {
                    if m.worker_processes > 0 {
                        format!("{} here", bytes(m.bytes_per_task))
                    } else {
                        bytes(m.bytes_per_task)
                    }
                },
                n,
                &b.backend,
            )
        },
    );
    row("  + in worker processes".into(), &|b, n| {
        cell(
            &b.memory,
            |m| match (m.worker_processes, m.worker_rss_bytes_per_task) {
                (0, _) => "none".into(),
                (_, Some(rss)) => format!("{} (RSS)", bytes(rss)),
                (_, None) => "n/a: no /proc".into(),
            },
            n,
            &b.backend,
        )
    });
    row(
        format!(
            "I/O: {} × {} ms async wait, wall ÷ ideal",
            thousands(s.io_tasks),
            s.io_ms
        ),
        &|b, n| {
            cell(
                &b.io,
                |w| format!("{:.2}× ({:.0} ms)", w.ratio, w.wall_ms),
                n,
                &b.backend,
            )
        },
    );
    row(
        format!(
            "HTTP: {} GETs, {} in flight, {} ms server, wall ÷ ideal",
            thousands(s.http_requests),
            s.http_limit,
            s.http_ms
        ),
        &|b, n| {
            cell(
                &b.http,
                |h| {
                    let failed = if h.failed > 0 {
                        format!(", {} failed", h.failed)
                    } else {
                        String::new()
                    };
                    format!("{:.2}× ({:.0} req/s{failed})", h.ratio, h.requests_per_sec)
                },
                n,
                &b.backend,
            )
        },
    );
    row(
        format!(
            "blocking: {} × {} ms sleep, wall ÷ ideal",
            s.blocking_tasks, s.blocking_ms
        ),
        &|b, n| cell(&b.blocking, |w| format!("{:.1}×", w.ratio), n, &b.backend),
    );
    row(
        format!(
            "CPU: primes < {}, speedup",
            thousands(report.serial.primes_below)
        ),
        &|b, n| {
            cell(
                &b.cpu,
                |c| {
                    let v = c.speedup;
                    match c.impossible {
                        Some(_) => format!("{:.2}×: impossible", v.median),
                        None => format!("{:.2}× ({:.2}–{:.2})", v.median, v.lo, v.hi),
                    }
                },
                n,
                &b.backend,
            )
        },
    );
    row(
        format!("panic in 1 of {} tasks: others ok", s.panic_tasks),
        &|b, n| {
            cell(
                &b.panic,
                |p| {
                    let after = if p.executor_ok_after {
                        ""
                    } else {
                        ", then broken"
                    };
                    format!("{}/{}{after}", p.others_ok, p.tasks - 1)
                },
                n,
                &b.backend,
            )
        },
    );
    row("  the panicking task got".into(), &|b, n| {
        cell(&b.panic, |p| p.error.clone(), n, &b.backend)
    });
    row(
        format!("crash (abort) in 1 of {} tasks", s.crash_tasks),
        &|b, n| {
            cell(
                &b.crash,
                |c| {
                    if c.contained {
                        "program survives".into()
                    } else {
                        "program dies".into()
                    }
                },
                n,
                &b.backend,
            )
        },
    );
    row("  the crashing task got".into(), &|b, n| {
        cell(
            &b.crash,
            |c| match &c.error {
                Some(e) => e.split(' ').next().unwrap_or(e).to_owned(),
                None => "nothing: all gone".into(),
            },
            n,
            &b.backend,
        )
    });
    row("  others ok (+ failed)".into(), &|b, n| {
        cell(
            &b.crash,
            |c| {
                let failed = if c.others_failed > 0 {
                    format!(" + {} lost", c.others_failed)
                } else {
                    String::new()
                };
                format!("{}/{}{failed}", c.others_ok, c.tasks - 1)
            },
            n,
            &b.backend,
        )
    });
    row("  workers restarted (metrics)".into(), &|b, n| {
        cell(
            &b.crash,
            |c| match c.worker_restarts {
                Some(restarts) => restarts.to_string(),
                None => "-".into(),
            },
            n,
            &b.backend,
        )
    });
    row(
        format!("cancel tasks stuck for {} ms: next task", s.stuck_ms),
        &|b, n| {
            cell(
                &b.cancel,
                |c| {
                    let verb = if c.stopped { "stopped" } else { "ran on" };
                    format!("{verb}, {:.0} ms", c.next_task_ms)
                },
                n,
                &b.backend,
            )
        },
    );
    row(
        format!(
            "data: {} round trip",
            bytes(s.payload_bytes as f64).replace(".0 ", " ")
        ),
        &|b, n| {
            cell(
                &b.data,
                |d| {
                    let v = d.round_trip_us;
                    let flag = if d.impossible.is_some() { " noise" } else { "" };
                    format!(
                        "{} ({}–{}){flag}",
                        micros(v.median),
                        fmt_num(v.lo),
                        fmt_num(v.hi)
                    )
                },
                n,
                &b.backend,
            )
        },
    );
    row("  how it travels".into(), &|b, n| {
        cell(
            &b.data,
            |d| {
                if d.same_buffer {
                    "moved, 0 copies".into()
                } else if d.crosses_processes {
                    format!("serialized, {:.1} copies", d.copies_in_this_process)
                } else {
                    format!("copied, {:.1} copies", d.copies_in_this_process)
                }
            },
            n,
            &b.backend,
        )
    });

    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..r.len())
        .map(|i| {
            rows.iter()
                .map(|(_, cells)| cells[i].chars().count())
                .chain([r[i].backend.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "polyexec compare: {} cores, {}/{}, {} build{}",
        m.cores,
        m.os,
        m.arch,
        if m.optimized {
            "release"
        } else {
            "debug (use --release for real numbers)"
        },
        if s.quick { ", --quick sizes" } else { "" }
    );
    out.push_str(&gauge_lines(report));
    let _ = writeln!(
        out,
        "serial baseline: {} primes below {} in {:.0} ms on one thread (median)\n",
        thousands(report.serial.primes),
        thousands(report.serial.primes_below),
        report.serial.wall_ms
    );
    let pad = |text: &str, width: usize| {
        let fill = width.saturating_sub(text.chars().count());
        format!("{text}{}", " ".repeat(fill))
    };
    let mut header = pad("", label_width);
    for (b, &w) in r.iter().zip(&widths) {
        header.push_str("  ");
        header.push_str(&pad(&b.backend, w));
    }
    let _ = writeln!(out, "{}", header.trim_end());
    let _ = writeln!(
        out,
        "{}",
        "-".repeat(label_width + widths.iter().map(|w| w + 2).sum::<usize>())
    );
    for (label, cells) in &rows {
        let mut line = pad(label, label_width);
        for (c, &w) in cells.iter().zip(&widths) {
            line.push_str("  ");
            line.push_str(&pad(c, w));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }

    let _ = write!(
        out,
        "
how to read it:
  memory   bytes allocated by this process and not yet freed while {n} async tasks
           sleep, / {n} (their handles included); worker processes: the growth of
           their resident memory (RSS, page-granular) over the same time
  HTTP     real requests: hyper's client on tokio::net inside each portable task, to a
           hyper server in this program that answers after the delay shown; ideal =
           ceil(requests / in flight) × delay (needs the `tokio` feature)
  crash    measured in a child process (this program re-run), so that a crash that
           takes a whole process down is observed, not suffered; \"lost\" tasks were
           in the same worker process as the crashing one
  cancel   one blocking task per worker that would block for the time shown, each
           cancelled once running; then the time until the next task is done
  data     copies = bytes allocated here per round trip / payload size;
           \"moved\" = the very buffer that was sent came back
  (a–b)    overhead, CPU and data run every backend in interleaved rounds (CPU:
           serial and parallel back to back): the median and the quartiles of the
           rounds; rows whose ranges overlap have no clear winner
",
        n = thousands(s.mem_tasks)
    );
    for note in &notes {
        let _ = writeln!(out, "  failed: {note}");
    }

    let _ = writeln!(out, "\nverdict (from the numbers above):");
    if let [only] = r.as_slice() {
        let _ = writeln!(
            out,
            "  only {} was measured, so there is nothing to compare it with: build with \
             --all-features\n  (or name several backends with --backend) to see the others.",
            only.backend
        );
        return out;
    }
    for v in &report.verdict {
        let head = match (&v.no_clear_winner, v.pick.as_slice()) {
            (Some(reason), _) => format!("no clear winner for {}: {reason}", v.when),
            (None, []) => format!("use none of these for {}", v.when),
            (None, pick) => format!("use {} for {}", pick.join(" or "), v.when),
        };
        let _ = writeln!(out, "  {head}\n      {}", v.why);
    }
    out
}

/// The gauge, two lines: what the machine offered, and whether it was busy.
fn gauge_lines(report: &Report) -> String {
    let g = &report.gauge;
    let opt = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "?".into(),
    };
    let cgroup = match g.cgroup_cpus {
        Some(q) => format!("cgroup quota {q:.1}"),
        None => "no cgroup quota".into(),
    };
    let affinity = g.affinity_cpus.map_or("?".into(), |n| n.to_string());
    let mut out = format!(
        "machine: {:.0} CPUs available (affinity {affinity}, {cgroup}); load {} → {}; \
         other programs used {} CPUs before, {} after; steal {} %\n",
        g.cpus_available,
        opt(g.load_before, 1),
        opt(g.load_after, 1),
        opt(g.others_cpus_before, 1),
        opt(g.others_cpus_after, 1),
        opt(g.steal.map(|s| s * 100.0), 1),
    );
    match &g.busy {
        Some(why) => {
            let _ = writeln!(
                out,
                "  busy: {why}; timings are noisy,\n        so the rows judged on timings give no verdict"
            );
        }
        None if report.noisy => {
            out.push_str("  some timings were impossible (marked), so the run was noisy\n");
        }
        None => out.push_str("  quiet: timings can be compared\n"),
    }
    out
}
