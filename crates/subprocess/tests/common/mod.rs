//! Helpers shared by the subprocess backend's integration tests.
#![allow(dead_code, unreachable_pub)]

pub use polyexec_core::conformance::{open_fds, thread_count};
use polyexec_subprocess::ProcessPool;

/// A pool of `workers` processes, failing the test if it cannot start.
pub fn pool(workers: usize) -> ProcessPool {
    ProcessPool::builder()
        .workers(workers)
        .build()
        .expect("build a pool")
}

/// A pool of `workers` processes that print no backtraces (`RUST_BACKTRACE=0`), for tests that
/// make many tasks panic or crash: symbolizing a backtrace of a debug build takes a while.
pub fn quiet_pool(workers: usize) -> ProcessPool {
    ProcessPool::builder()
        .workers(workers)
        .env("RUST_BACKTRACE", "0")
        .build()
        .expect("build a pool")
}

/// The pids of this process's children, zombies included: every `/proc/<pid>/stat` whose parent
/// field is our pid.
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let _state = fields.next();
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(me) {
            found.push(pid);
        }
    }
    found
}

/// Whether a process with this pid exists (zombies included).
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Longest a fault-injection test waits for a handle: only a hang reaches it. Never used to wait
/// for something to happen, only to turn "never" into a failure.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(120);

/// Joins `handle`, failing the test if it has not resolved after [`HANG`].
#[track_caller]
pub fn join<T>(mut handle: polyexec_core::TaskHandle<T>) -> Result<T, polyexec_core::TaskError> {
    handle
        .join_timeout(HANG)
        .expect("a task hung: its handle never resolved")
}

/// `true` in a worker process (the pool puts `POLYEXEC_WORKER` in its workers' environment; the
/// test process itself is started without it).
pub fn in_worker() -> bool {
    std::env::var_os("POLYEXEC_WORKER").is_some()
}

/// Healthy blocking tasks submitted around a faulty one, to show that the fault touches no other
/// task. Blocking on purpose: a worker runs one blocking task at a time and flushes its result
/// before it starts the next, so a healthy blocking task is never lost with another task's
/// worker (async tasks running on a worker that dies are lost with it, by design).
pub struct Bystanders {
    handles: Vec<(u64, polyexec_core::TaskHandle<u64>)>,
}

impl Bystanders {
    /// Submits `n` healthy tasks, numbered from `first`.
    pub fn submit(pool: &ProcessPool, first: u64, n: u64) -> Bystanders {
        use polyexec_core::Executor;
        let handles = (first..first + n)
            .map(|x| (x, pool.spawn(x, |x: u64| x.wrapping_mul(7) + 1)))
            .collect();
        Bystanders { handles }
    }

    /// Every bystander returned its own value.
    #[track_caller]
    pub fn check(self) {
        for (x, handle) in self.handles {
            assert_eq!(join(handle), Ok(x * 7 + 1), "bystander {x} was affected");
        }
    }
}

/// Runs the faulty task that `fault` submits between two batches of [`Bystanders`] (so it shares
/// its worker's pipeline with healthy tasks ahead of it and behind it), checks every bystander,
/// checks that the pool still serves, and returns the faulty task's result.
#[track_caller]
pub fn alongside<T>(
    pool: &ProcessPool,
    fault: impl FnOnce(&ProcessPool) -> polyexec_core::TaskHandle<T>,
) -> Result<T, polyexec_core::TaskError> {
    let before = Bystanders::submit(pool, 0, 40);
    let handle = fault(pool);
    let after = Bystanders::submit(pool, 1000, 40);
    let result = join(handle);
    before.check();
    after.check();
    assert_serves(pool);
    result
}

/// The pool runs blocking and async tasks on every worker, with the right values.
#[track_caller]
pub fn assert_serves(pool: &ProcessPool) {
    use polyexec_core::{Executor, MapOptions};
    // Chunks of one, many in flight: every worker gets some.
    let got: Vec<u64> = pool
        .map_with(0..200u64, |x: u64| x + 1, MapOptions::new().chunk_size(1))
        .collect::<Result<_, _>>()
        .expect("the pool stopped serving");
    assert_eq!(got, (1..=200).collect::<Vec<u64>>());
    let async_value = join(pool.spawn_async(5u64, |x: u64| async move { x * 2 }));
    assert_eq!(async_value, Ok(10));
}

/// This thread's id (the kernel's tid), from `/proc/thread-self`.
pub fn current_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    // `<pid>/task/<tid>`
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .expect("a tid")
}

/// `true` while thread `tid` of process `pid` is blocked in a system call that sends on a
/// socket (`sendmsg` or `sendto`), read from `/proc/<pid>/task/<tid>/syscall`.
pub fn blocked_sending(pid: u32, tid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")) else {
        return false;
    };
    let number = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    number == Some(libc::SYS_sendmsg) || number == Some(libc::SYS_sendto)
}

/// Waits until `condition` holds; only a hang reaches the bound. For conditions that must come
/// true on their own (a process dying, a thread blocking), never as a stand-in for one.
#[track_caller]
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + HANG;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "hung waiting for {what}"
        );
        std::thread::yield_now();
    }
}

/// `true` once process `pid` has exited (a zombie not yet reaped, or gone).
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Names in `/tmp` and `/dev/shm` that look like this project's (contain "polyexec", any case).
pub fn polyexec_temp_entries() -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["/tmp", "/dev/shm"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.to_ascii_lowercase().contains("polyexec") {
                found.push(format!("{dir}/{name}"));
            }
        }
    }
    found.sort();
    found
}

/// What this process holds that a pool could leak: children, descriptors, threads, temp files.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdings {
    pub children: Vec<u32>,
    pub fds: Vec<String>,
    pub threads: usize,
    pub temp_entries: Vec<String>,
}

impl Holdings {
    pub fn now() -> Holdings {
        Holdings {
            children: children(),
            fds: open_fds(),
            threads: thread_count(),
            temp_entries: polyexec_temp_entries(),
        }
    }

    /// Waits until this process holds what it held at `before`. Children are reaped and threads
    /// joined before a pool's shutdown returns, but a joined thread leaves `/proc/self/task` a
    /// moment after `join` returns (the kernel wakes the joiner before it finishes tearing the
    /// thread down), so the state is polled; the bound only turns a real leak into a failure.
    #[track_caller]
    pub fn assert_back_to(before: &Holdings, context: &str) -> Holdings {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let now = Holdings::now();
            if now == *before {
                return now;
            }
            if std::time::Instant::now() >= deadline {
                assert_eq!(now.children, before.children, "{context}: children");
                assert_eq!(now.fds, before.fds, "{context}: open descriptors");
                assert_eq!(now.threads, before.threads, "{context}: threads");
                assert_eq!(
                    now.temp_entries, before.temp_entries,
                    "{context}: temp files"
                );
            }
            std::thread::yield_now();
        }
    }
}

/// What one descriptor of process `pid` is: the target of `/proc/<pid>/fd/<fd>`.
pub fn fd_targets(pid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut targets: Vec<(u32, String)> = entries
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect();
    targets.sort();
    targets
}

/// Unix sockets of this machine by inode: (path, listening) from `/proc/net/unix`, whose rows
/// are `Num RefCount Protocol Flags Type St Inode [Path]`; flag `0x10000` is `__SO_ACCEPTCON`,
/// a listening socket.
pub fn unix_sockets() -> std::collections::HashMap<u64, (Option<String>, bool)> {
    let table = std::fs::read_to_string("/proc/net/unix").expect("read /proc/net/unix");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let inode = fields.get(6)?.parse().ok()?;
            let path = fields.get(7).map(|p| (*p).to_owned());
            Some((inode, (path, flags & 0x10000 != 0)))
        })
        .collect()
}

/// This process's descriptors that any child inherits: those without close-on-exec (`flags` in
/// `/proc/self/fdinfo/<fd>` lacks `O_CLOEXEC`, octal 02000000). A pool opens none of them: they
/// are the standard streams and whatever this process itself inherited that way (a jobserver
/// pipe from make or cargo, say), which every child passes on, workers included.
pub fn inheritable_fds() -> std::collections::HashMap<u32, String> {
    fd_targets(std::process::id())
        .into_iter()
        .filter(|(fd, _)| {
            let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
                return false;
            };
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .is_some_and(|flags| flags & 0o2000000 == 0)
        })
        .collect()
}

/// Checks that worker `pid` holds nothing a pool should not give it: no file (temp or other) but
/// `/dev/null` and what it inherits from this process like any child ([`inheritable_fds`]), and
/// no socket but unnamed, non-listening Unix sockets. The channel to the parent is such a socket.
/// Returns the inodes of those sockets.
#[track_caller]
pub fn assert_worker_holds_no_names(pid: u32) -> Vec<u64> {
    let inherited = inheritable_fds();
    let sockets = unix_sockets();
    let mut unnamed = Vec::new();
    for (fd, target) in fd_targets(pid) {
        if inherited.get(&fd) == Some(&target) {
            // Passed on by this process, as to any child.
            continue;
        }
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            let inode: u64 = inode.parse().unwrap();
            match sockets.get(&inode) {
                Some((None, false)) => unnamed.push(inode),
                Some((path, listening)) => panic!(
                    "worker {pid} fd {fd}: a unix socket with path {path:?}, listening: {listening}"
                ),
                None => panic!("worker {pid} fd {fd}: a socket that is not a unix socket"),
            }
        } else if target.starts_with("anon_inode:") || target == "/dev/null" {
            // epoll and eventfd of the async reactor; stdin.
        } else {
            panic!("worker {pid} fd {fd}: opened {target}");
        }
    }
    unnamed
}
