//! The machine gauge: how many CPUs this program may use, and how busy the machine was before
//! and after the run (Linux `/proc` and cgroup files; elsewhere the fields are empty).
//!
//! The load average lags by a minute and counts this program's own work, so the gauge also
//! watches the CPU counters of `/proc/stat` for a moment while this program is idle: whatever
//! CPU time is used then belongs to other programs.

use std::time::Duration;

use serde::Serialize;

use crate::verdict::{Busy, busy_reason};

/// How long each idle window lasts.
const WINDOW: Duration = Duration::from_millis(250);

#[derive(Debug, Serialize)]
pub(crate) struct Gauge {
    /// CPUs this process may run on (its affinity mask), if known.
    pub(crate) affinity_cpus: Option<usize>,
    /// The cgroup CPU quota (`cpu.max`) in CPUs, if there is one.
    pub(crate) cgroup_cpus: Option<f64>,
    /// The smaller of the two (else the count the standard library sees).
    pub(crate) cpus_available: f64,
    /// 1-minute load average when the run began and when it ended.
    pub(crate) load_before: Option<f64>,
    pub(crate) load_after: Option<f64>,
    /// CPUs' worth of time other programs used in an idle moment before and after the run.
    pub(crate) others_cpus_before: Option<f64>,
    pub(crate) others_cpus_after: Option<f64>,
    /// Share of CPU time stolen by the hypervisor over the whole run.
    pub(crate) steal: Option<f64>,
    /// Why the timings of this run are not to be trusted, if they are not.
    pub(crate) busy: Option<String>,
}

/// What the gauge read when the run began.
#[derive(Debug)]
pub(crate) struct Start {
    affinity_cpus: Option<usize>,
    cgroup_cpus: Option<f64>,
    /// CPUs this process may use.
    pub(crate) cpus: f64,
    load: Option<f64>,
    others: Option<f64>,
    stat: Option<CpuTimes>,
}

/// Reads the machine before the run: load, an idle window, the steal counter.
pub(crate) fn start() -> Start {
    let load = load_average();
    let (others, stat) = idle_window();
    let affinity_cpus = affinity_cpus();
    let cgroup_cpus = cgroup_cpus();
    let std_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpus = [affinity_cpus.map(|n| n as f64), cgroup_cpus]
        .into_iter()
        .flatten()
        .reduce(f64::min)
        .unwrap_or(std_cpus);
    Start {
        affinity_cpus,
        cgroup_cpus,
        cpus,
        load,
        others,
        stat,
    }
}

/// Reads the machine again after the run, and puts both readings together.
pub(crate) fn finish(start: Start) -> Gauge {
    let (others_after, stat) = idle_window();
    let steal = match (start.stat, stat) {
        (Some(a), Some(b)) if b.total > a.total => {
            Some((b.steal - a.steal) as f64 / (b.total - a.total) as f64)
        }
        _ => None,
    };
    let cpus_available = start.cpus;
    let others_cpus = match (start.others, others_after) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let busy = busy_reason(&Busy {
        others_cpus,
        steal,
        load_before: start.load,
        cpus: cpus_available,
    });
    Gauge {
        affinity_cpus: start.affinity_cpus,
        cgroup_cpus: start.cgroup_cpus,
        cpus_available,
        load_before: start.load,
        load_after: load_average(),
        others_cpus_before: start.others,
        others_cpus_after: others_after,
        steal,
        busy,
    }
}

/// The cumulative CPU counters of all CPUs (`/proc/stat`, first line), in clock ticks.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    total: u64,
    idle: u64,
    steal: u64,
    cpus: usize,
}

fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
    let fields: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 8 {
        return None;
    }
    let cpus = lines
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some(CpuTimes {
        // guest time is already counted in user time.
        total: fields[..8].iter().sum(),
        idle: fields[3] + fields[4],
        steal: fields[7],
        cpus,
    })
}

/// Sleeps for [`WINDOW`] and returns how many CPUs' worth of time were busy meanwhile (this
/// program being idle, that is other programs), with the counters at the end.
fn idle_window() -> (Option<f64>, Option<CpuTimes>) {
    let Some(a) = cpu_times() else {
        std::thread::sleep(WINDOW);
        return (None, None);
    };
    std::thread::sleep(WINDOW);
    let Some(b) = cpu_times() else {
        return (None, None);
    };
    let total = b.total.saturating_sub(a.total);
    if total == 0 {
        return (None, Some(b));
    }
    let busy = total.saturating_sub(b.idle.saturating_sub(a.idle));
    (Some(busy as f64 / total as f64 * b.cpus as f64), Some(b))
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The CPUs in this process's affinity mask, from `Cpus_allowed_list` ("0-3,6").
fn affinity_cpus() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut count = 0;
    for part in list.split(',') {
        count += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()? - a.parse::<usize>().ok()? + 1,
            None => part.parse::<usize>().map(|_| 1).ok()?,
        };
    }
    Some(count)
}

/// The cgroup v2 CPU quota of this process ("200000 100000" in `cpu.max` is 2 CPUs), walking
/// up the hierarchy, since a parent's limit applies too.
fn cgroup_cpus() -> Option<f64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let mut limit: Option<f64> = None;
    loop {
        if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
            let mut words = max.split_whitespace();
            if let (Some(quota), Some(period)) = (words.next(), words.next())
                && let (Ok(q), Ok(p)) = (quota.parse::<f64>(), period.parse::<f64>())
                && p > 0.0
            {
                limit = Some(limit.map_or(q / p, |l| l.min(q / p)));
            }
        }
        if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
            break;
        }
    }
    limit
}
