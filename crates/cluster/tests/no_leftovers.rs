//! After a pool with local worker hosts shuts down (gracefully, immediately, or by drop), none
//! of its hosts is left: no process of this executable remains a child of this one.

polyexec_cluster::test_hook!();

mod common;

use polyexec_core::Executor;

/// The children of this process that run this same executable (the private nats-server's
/// shell is a child too, but of another executable).
fn host_children() -> Vec<u32> {
    let me = std::process::id();
    let exe = std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command name, which may itself hold spaces and parentheses.
        let Some(after) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let ppid = after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        let same_exe = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe);
        if ppid == Some(me) && same_exe {
            found.push(pid);
        }
    }
    found
}

#[test]
fn no_host_outlives_its_pool() {
    common::url();
    for how in ["shutdown", "shutdown_now", "drop"] {
        let pool = common::pool(2);
        assert_eq!(pool.spawn(2u8, |x: u8| x * 2).join(), Ok(4));
        assert_eq!(host_children().len(), 2, "{how}: the two hosts run");
        match how {
            "shutdown" => pool.shutdown(),
            "shutdown_now" => pool.shutdown_now(),
            _ => {}
        }
        drop(pool);
        // The pool reaps its hosts before shutdown (or drop) returns.
        assert_eq!(
            host_children(),
            Vec::<u32>::new(),
            "{how}: a host outlived its pool"
        );
    }
}
