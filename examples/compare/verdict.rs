//! The rules that turn measurements into a pick, on plain numbers (no I/O, no executors), so
//! that they are unit-tested on synthetic inputs (`tests/compare_verdict.rs` runs the tests
//! below).
//!
//! A timed value is a [`Spread`]: the median of several rounds and the quartiles around it.
//! Contenders whose spreads overlap are tied; a row where every contender is tied, or where a
//! value could not physically be true, has no clear winner, and says so rather than pick.

use serde::Serialize;

/// Values within this factor of the best count as a tie even when their spreads do not
/// overlap: a difference this small does not decide a choice of model.
pub(crate) const TIE: f64 = 1.15;

/// Tolerance above a physical bound before a value counts as impossible: timer resolution and
/// clock-frequency changes between the two runs of a pair move a ratio by a few percent.
pub(crate) const SLACK: f64 = 1.10;

/// The median of several measurements, and the quartiles around it (minimum and maximum for
/// fewer than four).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) samples: usize,
}

impl Spread {
    /// The spread of `values`, ignoring values that are not finite; `None` if none is.
    pub(crate) fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let q = if n >= 4 { n / 4 } else { 0 };
        Some(Spread {
            median,
            lo: v[q],
            hi: v[n - 1 - q],
            samples: n,
        })
    }

    /// One exact value (a count, a size): a spread of width zero.
    pub(crate) fn exact(value: f64) -> Spread {
        Spread {
            median: value,
            lo: value,
            hi: value,
            samples: 1,
        }
    }

    /// The two ranges share a point.
    pub(crate) fn overlaps(&self, other: &Spread) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }
}

/// One backend's value in a row.
#[derive(Debug, Clone)]
pub(crate) struct Contender {
    pub(crate) name: String,
    /// Workers of the backend (threads, loop threads or processes).
    pub(crate) workers: usize,
    /// `None`: not measured (failed).
    pub(crate) value: Option<Spread>,
    /// Why the value cannot be true, if it cannot; such a value is shown but never used.
    pub(crate) impossible: Option<String>,
}

/// What a row concludes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// These backends measured best, clearly apart from the rest.
    Pick(Vec<String>),
    /// No backend is clearly best; the reason says why.
    NoClearWinner(String),
}

/// Picks the best of `contenders` by median: it and every contender tied with it (spreads
/// overlapping, or within [`TIE`]). When that is everyone, or fewer than two usable values are
/// left, there is no clear winner.
pub(crate) fn judge(contenders: &[Contender], higher_is_better: bool) -> Outcome {
    let usable: Vec<(&str, Spread)> = contenders
        .iter()
        .filter(|c| c.impossible.is_none())
        .filter_map(|c| c.value.map(|v| (c.name.as_str(), v)))
        .collect();
    let set_aside = contenders.len() - usable.len();
    if usable.len() < 2 {
        return Outcome::NoClearWinner(format!(
            "{set_aside} of {} values were impossible or failed, too few are left to compare",
            contenders.len()
        ));
    }
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    let best = usable
        .iter()
        .map(|&(_, v)| v)
        .reduce(|a, b| if better(b.median, a.median) { b } else { a })
        .expect("two usable values");
    let tied = |v: &Spread| {
        let close = if higher_is_better {
            v.median >= best.median / TIE
        } else {
            v.median <= best.median * TIE
        };
        close || v.overlaps(&best)
    };
    let picks: Vec<String> = usable
        .iter()
        .filter(|(_, v)| tied(v))
        .map(|&(name, _)| name.to_owned())
        .collect();
    // The picks must stand apart from every other contender, not only from the best: with
    // noisy ranges, a contender can overlap the best but not a third one, which is then no
    // clearer a loser than the second.
    let apart = usable
        .iter()
        .filter(|(name, _)| !picks.iter().any(|p| p == name))
        .all(|(_, other)| {
            usable
                .iter()
                .filter(|(name, _)| picks.iter().any(|p| p == name))
                .all(|(_, picked)| !picked.overlaps(other))
        });
    if !apart {
        return Outcome::NoClearWinner("the measured ranges overlap".into());
    }
    if picks.len() == usable.len() {
        return Outcome::NoClearWinner(if usable.iter().all(|(_, v)| v.overlaps(&best)) {
            "the measured ranges overlap".into()
        } else {
            format!("all within {:.0} % of each other", (TIE - 1.0) * 100.0)
        });
    }
    Outcome::Pick(picks)
}

/// The CPU-bound row: [`judge`] on speedups, plus what physics says. A backend with one worker
/// cannot beat serial, so a verdict that picks it, or cannot tell it from a backend with more
/// workers, means that the other cores were busy during the run.
pub(crate) fn judge_cpu(contenders: &[Contender]) -> Outcome {
    let outcome = judge(contenders, true);
    let Outcome::Pick(picks) = &outcome else {
        return outcome;
    };
    let workers = |name: &String| {
        contenders
            .iter()
            .find(|c| &c.name == name)
            .map_or(1, |c| c.workers)
    };
    let parallel_exists = contenders
        .iter()
        .any(|c| c.workers > 1 && c.value.is_some());
    if parallel_exists && picks.iter().any(|p| workers(p) <= 1) {
        return Outcome::NoClearWinner(
            "a one-worker backend measured as fast as a parallel one, so the other cores \
             were busy"
                .into(),
        );
    }
    outcome
}

/// A timed row on a busy machine: no pick at all. Load does not slow every backend alike (a
/// one-thread event loop loses more to a busy core than a two-thread pool), so even ranges
/// that stand apart may show the load rather than the backend; `busy` says why.
pub(crate) fn unless_busy(outcome: Outcome, busy: Option<&str>) -> Outcome {
    match (outcome, busy) {
        (Outcome::Pick(_), Some(why)) => {
            Outcome::NoClearWinner(format!("timings on a busy machine decide nothing ({why})"))
        }
        (outcome, _) => outcome,
    }
}

/// A speedup over serial above what the workers and the CPUs available allow, or `None`.
pub(crate) fn impossible_speedup(speedup: f64, workers: usize, cpus: f64) -> Option<String> {
    let bound = (workers.max(1) as f64).min(cpus.max(1.0));
    (speedup > bound * SLACK).then(|| {
        format!("a {speedup:.2}× speedup is above the {bound:.0}× that the workers and CPUs allow")
    })
}

/// A round trip that moved the buffer (no copy) measured slower than one that copied it: one
/// of the two timings is noise. Returns why, or `None`.
pub(crate) fn impossible_move(moved_us: &Spread, copied_us: &Spread) -> Option<String> {
    (moved_us.lo > copied_us.hi).then(|| {
        format!(
            "moving the buffer measured slower ({:.1} µs) than copying it ({:.1} µs)",
            moved_us.median, copied_us.median
        )
    })
}

/// The machine state that makes timings untrustworthy, from the gauge's numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Busy {
    /// CPUs' worth of time other programs used while this one was idle (before and after).
    pub(crate) others_cpus: Option<f64>,
    /// The share of CPU time the hypervisor gave to other machines during the run.
    pub(crate) steal: Option<f64>,
    /// The 1-minute load average when the run began.
    pub(crate) load_before: Option<f64>,
    /// CPUs this process may use (affinity and cgroup quota).
    pub(crate) cpus: f64,
}

/// Why the machine was too busy for timings to be trusted, or `None` when it was quiet.
pub(crate) fn busy_reason(b: &Busy) -> Option<String> {
    let mut reasons = Vec::new();
    if let Some(others) = b.others_cpus.filter(|&o| o >= 0.5) {
        reasons.push(format!(
            "other programs used {others:.1} of {:.0} CPUs",
            b.cpus
        ));
    }
    if let Some(steal) = b.steal.filter(|&s| s >= 0.05) {
        reasons.push(format!(
            "the hypervisor took {:.0} % of CPU time",
            steal * 100.0
        ));
    }
    if let Some(load) = b.load_before.filter(|&l| l > b.cpus + 0.5) {
        reasons.push(format!(
            "the load average was {load:.1} on {:.0} CPUs",
            b.cpus
        ));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, workers: usize, values: &[f64]) -> Contender {
        Contender {
            name: name.into(),
            workers,
            value: Spread::of(values),
            impossible: None,
        }
    }

    fn pick(names: &[&str]) -> Outcome {
        Outcome::Pick(names.iter().map(|&n| n.to_owned()).collect())
    }

    #[test]
    fn spread_is_median_and_quartiles() {
        let s = Spread::of(&[5.0, 1.0, 3.0, 2.0, 4.0, f64::NAN]).unwrap();
        assert_eq!((s.median, s.lo, s.hi, s.samples), (3.0, 2.0, 4.0, 5));
        let s = Spread::of(&[2.0, 1.0]).unwrap();
        assert_eq!((s.median, s.lo, s.hi), (1.5, 1.0, 2.0));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn clear_winner_is_picked() {
        let rows = [
            c("thread", 2, &[1.95, 1.97, 1.96, 1.94, 1.98]),
            c("coroutine", 1, &[1.0, 0.99, 1.01, 1.0, 1.0]),
            c("subprocess", 2, &[1.90, 1.93, 1.92, 1.91, 1.94]),
        ];
        // thread and subprocess are within TIE of each other: both are picked.
        assert_eq!(judge_cpu(&rows), pick(&["thread", "subprocess"]));
        assert_eq!(judge(&rows[..2], true), pick(&["thread"]));
    }

    #[test]
    fn lower_is_better_picks_the_smallest() {
        let rows = [
            c("thread", 2, &[0.13, 0.12, 0.14]),
            c("coroutine", 1, &[0.13, 0.13, 0.13]),
            c("subprocess", 2, &[1.7, 1.6, 1.8]),
        ];
        assert_eq!(judge(&rows, false), pick(&["thread", "coroutine"]));
    }

    #[test]
    fn tie_has_no_clear_winner() {
        let rows = [
            c("a", 2, &[1.0, 1.01, 1.02]),
            c("b", 2, &[1.05, 1.06, 1.07]),
        ];
        assert!(matches!(judge(&rows, true), Outcome::NoClearWinner(_)));
    }

    #[test]
    fn overlapping_noisy_spreads_have_no_clear_winner() {
        // Medians 40 % apart, but the ranges overlap: noise could have made the difference.
        let rows = [
            c("thread", 2, &[44.0, 13.0, 60.0, 20.0, 50.0]),
            c("coroutine", 1, &[21.0, 85.0, 30.0, 90.0, 25.0]),
        ];
        assert_eq!(
            judge(&rows, false),
            Outcome::NoClearWinner("the measured ranges overlap".into())
        );
    }

    #[test]
    fn one_worker_tied_with_parallel_is_no_verdict_for_cpu() {
        // One core busy: the parallel backends gain nothing over the one-worker one.
        let rows = [
            c("thread", 2, &[1.15, 1.0, 1.3]),
            c("coroutine", 1, &[0.98, 0.97, 1.0]),
            c("subprocess", 2, &[0.5, 0.55, 0.6]),
        ];
        assert!(matches!(judge(&rows, true), Outcome::Pick(_)));
        assert!(matches!(judge_cpu(&rows), Outcome::NoClearWinner(_)));
    }

    #[test]
    fn picks_must_stand_apart_from_every_other_contender() {
        // b overlaps the best (a) and is picked with it; c overlaps b, so it is no clearer a
        // loser than b.
        let rows = [
            c("a", 2, &[2.0, 2.3, 3.4]),
            c("b", 2, &[2.6, 4.7, 10.0]),
            c("c", 1, &[3.6, 4.6, 7.6]),
        ];
        assert!(matches!(judge(&rows, false), Outcome::NoClearWinner(_)));
    }

    #[test]
    fn busy_machine_withholds_timed_picks() {
        let picked = pick(&["thread"]);
        assert_eq!(unless_busy(picked.clone(), None), picked);
        assert!(matches!(
            unless_busy(picked, Some("other programs used 1.0 of 2 CPUs")),
            Outcome::NoClearWinner(why) if why.contains("1.0 of 2")
        ));
    }

    #[test]
    fn impossible_value_is_flagged_and_not_used() {
        assert!(impossible_speedup(1.58, 1, 2.0).is_some());
        assert!(impossible_speedup(2.5, 4, 2.0).is_some());
        assert!(impossible_speedup(1.96, 2, 2.0).is_none());
        assert!(impossible_speedup(1.05, 1, 2.0).is_none());

        let mut rows = [
            c("thread", 2, &[1.15, 1.1, 1.2]),
            c("coroutine", 1, &[1.58, 1.5, 1.6]),
        ];
        rows[1].impossible = impossible_speedup(1.58, 1, 2.0);
        // Without the flag, the one-worker backend would win; with it, one value is left.
        assert!(matches!(judge_cpu(&rows), Outcome::NoClearWinner(_)));

        let moved = Spread::of(&[44.0, 40.0, 48.0]).unwrap();
        let copied = Spread::of(&[21.0, 20.0, 22.0]).unwrap();
        assert!(impossible_move(&moved, &copied).is_some());
        assert!(impossible_move(&copied, &moved).is_none());
    }

    #[test]
    fn busy_machine_is_recognised() {
        let quiet = Busy {
            others_cpus: Some(0.1),
            steal: Some(0.0),
            load_before: Some(0.3),
            cpus: 2.0,
        };
        assert_eq!(busy_reason(&quiet), None);
        let loop_on_one_core = Busy {
            others_cpus: Some(1.0),
            ..quiet
        };
        assert!(busy_reason(&loop_on_one_core).unwrap().contains("1.0 of 2"));
        let stolen = Busy {
            steal: Some(0.2),
            ..quiet
        };
        assert!(busy_reason(&stolen).is_some());
    }
}
