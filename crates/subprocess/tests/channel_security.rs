//! Security of the worker channel, from outside: nobody but a worker and its parent holds the
//! channel, which has no name anyone could connect to; workers inherit nothing else of the
//! parent's; and a worker started by hand — not by a pool — refuses to serve.
//!
//! (A worker of another build, forged frames and random frames after a real handshake are tested
//! inside the crate, in `src/security_tests.rs`, where the protocol types are at hand.)

polyexec_subprocess::test_hook!();

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitStatus, Stdio};

/// Every process that holds each of these socket inodes, found by scanning `/proc/*/fd`.
fn holders(inodes: &HashSet<u64>) -> HashMap<u64, HashSet<u32>> {
    let mut found: HashMap<u64, HashSet<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        for (_, target) in common::fd_targets(pid) {
            let inode = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(inode) = inode.filter(|i| inodes.contains(i)) {
                found.entry(inode).or_default().insert(pid);
            }
        }
    }
    found
}

fn socket_inodes(pid: u32) -> HashSet<u64> {
    common::fd_targets(pid)
        .into_iter()
        .filter_map(|(_, t)| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect()
}

/// The tests of this file open sockets in this process: one at a time, so each counts its own.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn the_channel_has_no_name_and_no_other_holder() {
    let _serial = one_at_a_time();
    // Things of the parent's that no worker may get: a listening socket and an open file.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (_dir, path) = polyexec_core::conformance::scratch_file("secret");
    let secret = std::fs::File::create(&path).unwrap();
    let ours_before = socket_inodes(std::process::id());

    let pool = common::pool(3);
    let ours_after = socket_inodes(std::process::id());
    let parent_ends: HashSet<u64> = ours_after.difference(&ours_before).copied().collect();
    assert_eq!(
        parent_ends.len(),
        3,
        "one channel end per worker in the parent"
    );
    let unix = common::unix_sockets();
    for inode in &parent_ends {
        assert_eq!(
            unix.get(inode),
            Some(&(None, false)),
            "unnamed, not listening"
        );
    }

    let mut worker_ends = HashMap::new();
    for pid in pool.worker_pids() {
        // No file, no named or listening socket, nothing but the channel, /dev/null, the
        // reactor's descriptors and what this process passes to any child.
        let unnamed = common::assert_worker_holds_no_names(pid);
        // Its channel; and, in a build where tokio's `signal` feature is compiled in (the
        // cluster crate turns it on), the three sockets every tokio runtime's signal driver
        // keeps: a socket pair and a clone of its receiving end. All are checked below to be
        // held by this worker alone, so none of them can reach the parent or another worker.
        assert!(
            matches!(unnamed.len(), 1 | 4),
            "worker {pid}: its channel (and tokio's signal sockets) only, found {} sockets",
            unnamed.len()
        );
        for inode in unnamed {
            worker_ends.insert(inode, pid);
        }
        let theirs = common::fd_targets(pid);
        assert!(
            !theirs.iter().any(|(_, t)| *t == path.display().to_string()),
            "worker {pid} inherited the parent's open file"
        );
        assert!(
            !socket_inodes(pid).iter().any(|i| ours_before.contains(i)),
            "worker {pid} inherited one of the parent's sockets"
        );
    }

    // Each worker's end is held by that worker alone; the parent's ends by the parent alone (no
    // worker holds another worker's channel).
    let all: HashSet<u64> = parent_ends
        .iter()
        .chain(worker_ends.keys())
        .copied()
        .collect();
    let held = holders(&all);
    for (inode, pid) in &worker_ends {
        assert_eq!(held[inode], HashSet::from([*pid]), "worker end {inode}");
    }
    for inode in &parent_ends {
        assert_eq!(
            held[inode],
            HashSet::from([std::process::id()]),
            "parent end {inode}"
        );
    }
    drop((listener, secret));
}

/// Starts this test binary as a worker by hand: the worker argument and variable, stdin as
/// given; `parent` is what the variable names (the real parent is this process).
fn start_by_hand(parent: u32, stdin: Stdio) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("--polyexec-worker")
        .env("POLYEXEC_WORKER", parent.to_string())
        .env("RUST_BACKTRACE", "0")
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for the child (only a hang reaches the bound, which kills it).
fn finish(mut child: std::process::Child) -> ExitStatus {
    let pid = child.id();
    let deadline = std::time::Instant::now() + common::HANG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("hand-started process {pid} did not exit");
        }
        std::thread::yield_now();
    }
}

/// The exit code of a worker that could not set itself up or was not greeted properly.
const EXIT_SETUP_FAILED: i32 = 99;

#[test]
fn a_worker_started_by_hand_refuses_to_serve() {
    let _serial = one_at_a_time();
    let me = std::process::id();

    // No channel at all (stdin is /dev/null): nothing to greet it.
    let status = finish(start_by_hand(me, Stdio::null()));
    assert_eq!(status.code(), Some(EXIT_SETUP_FAILED), "stdin /dev/null");

    // A channel nobody speaks on.
    let (ours, theirs) = UnixStream::pair().unwrap();
    let child = start_by_hand(me, Stdio::from(OwnedFd::from(theirs)));
    drop(ours);
    assert_eq!(
        finish(child).code(),
        Some(EXIT_SETUP_FAILED),
        "silent channel"
    );

    // Work sent without a greeting: a RUN frame, then noise, then a HELLO it cannot decode.
    let mut run = vec![33, 0, 0, 0, 2];
    run.extend_from_slice(&[0u8; 32]);
    let mut bad_hello = vec![9, 0, 0, 0, 1];
    bad_hello.extend_from_slice(&[0xFF; 8]);
    for (what, bytes) in [
        ("a RUN frame first", run),
        ("noise", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("an undecodable HELLO", bad_hello),
    ] {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let child = start_by_hand(me, Stdio::from(OwnedFd::from(theirs)));
        let _ = ours.write_all(&bytes);
        let status = finish(child);
        assert_eq!(status.code(), Some(EXIT_SETUP_FAILED), "{what}");
        // It answered nothing: no READY, no result.
        ours.set_nonblocking(true).unwrap();
        let mut answer = [0u8; 64];
        assert!(
            matches!(ours.read(&mut answer), Ok(0) | Err(_)),
            "{what}: the worker wrote to the channel"
        );
    }

    // The variable names a process that is not its parent (init), or it was started through
    // another process (a shell): it is no worker at all, just this test harness, which rejects
    // the worker argument (exit 101) — and it never reads or writes the socket it was given.
    for via_shell in [false, true] {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut command = if via_shell {
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg("\"$0\" --polyexec-worker; exit $?")
                .arg(&exe)
                .env("POLYEXEC_WORKER", me.to_string());
            c
        } else {
            let mut c = Command::new(&exe);
            c.arg("--polyexec-worker").env("POLYEXEC_WORKER", "1");
            c
        };
        let child = command
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ours.write_all(b"untouched").unwrap();
        let status = finish(child);
        assert_eq!(status.code(), Some(101), "via shell: {via_shell}");
        ours.set_nonblocking(true).unwrap();
        let mut answer = [0u8; 64];
        assert!(
            matches!(ours.read(&mut answer), Ok(0) | Err(_)),
            "via shell {via_shell}: it wrote to the channel"
        );
    }
}
