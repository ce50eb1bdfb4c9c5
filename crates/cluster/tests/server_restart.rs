//! The NATS server killed with SIGKILL and started again on the same file store while tasks
//! run: nothing is lost. Every handle resolves exactly once with its own value (tasks the
//! server had stored are delivered again; results offered while the pool was reconnecting are
//! offered again until it confirms them), and the pool serves new tasks afterwards.

polyexec_cluster::test_hook!();

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use polyexec_core::Executor;

/// The longest a server may take to say it is ready; only a broken setup hits it.
const READY: Duration = Duration::from_secs(60);

/// Far longer than a redelivery (`ack_wait` is 2 s) or a reconnection takes: a task without an
/// outcome by then was lost.
const LOST: Duration = Duration::from_secs(120);

/// A nats-server on a fixed port and store, which the test can kill and start again.
struct Server {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    fn start(binary: PathBuf) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let store = tempfile::tempdir().expect("a temporary store");
        let mut server = Server {
            binary,
            port,
            store,
            child: None,
        };
        server.child = Some(spawn(&server.binary, port, server.store.path()));
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(&self.binary, self.port, self.store.path()));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a server and waits until it says it is ready (JetStream recovered from the store).
fn spawn(binary: &Path, port: u16, store: &Path) -> Child {
    let mut child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nats-server");
    // nats-server logs to stderr.
    let log = child.stderr.take().expect("piped");
    let (ready, is_ready) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(log).lines() {
            let Ok(line) = line else { break };
            if line.contains("Server is ready") {
                let _ = ready.send(Ok(()));
                // Keep draining, so the server never blocks on a full pipe.
                lines.clear();
                continue;
            }
            lines.push(line);
        }
        let _ = ready.send(Err(lines.join("\n")));
    });
    match is_ready.recv_timeout(READY) {
        Ok(Ok(())) => child,
        Ok(Err(log)) => panic!("nats-server did not start:\n{log}"),
        Err(_) => panic!("nats-server did not say it was ready within {READY:?}"),
    }
}

/// A file whose existence lets the gated tasks finish.
struct Gate(tempfile::TempDir);

impl Gate {
    fn path(&self) -> String {
        self.0.path().join("open").display().to_string()
    }

    fn open(&self) {
        std::fs::write(self.path(), b"").expect("open the gate");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path(), b"");
    }
}

#[test]
fn a_server_killed_and_restarted_on_its_store_loses_no_task() {
    let Some(binary) = common::find_server() else {
        // `common::url` prints why and skips (or fails, where a server is required).
        common::url();
        return;
    };
    let mut server = Server::start(binary);
    let pool = polyexec_cluster::ClusterPool::builder()
        .url(&server.url())
        .queue(&common::unique_queue())
        .slots_per_worker(1)
        .local_workers(2)
        .ack_wait(Duration::from_secs(2))
        .build()
        .expect("build a cluster pool");

    const TASKS: u64 = 400;
    const BEFORE: u64 = TASKS / 10;
    // A first tenth runs to the end before the others are submitted: the others wait for the
    // gate, and a task of the first tenth must never find every slot held by one of them (the
    // stream's order need not be the submission order: a publish the server did not confirm in
    // time is published again, behind later ones).
    for i in 0..BEFORE {
        let outcome = pool
            .spawn(i, |i: u64| i * 7)
            .join_timeout(LOST)
            .unwrap_or_else(|| panic!("task {i} was lost: no outcome within {LOST:?}"));
        assert_eq!(outcome, Ok(i * 7), "task {i}");
    }
    // The rest wait for this file, so the server goes down while they are stored or held by
    // hosts, whatever the machine's speed. Made on every path out of the test (a guard dropped
    // before the pool), so no host waits forever.
    let gate = Gate(tempfile::tempdir().expect("a temporary directory"));
    let open = gate.path();
    let handles: Vec<_> = (BEFORE..TASKS)
        .map(|i| {
            pool.spawn((i, open.clone()), |(i, open): (u64, String)| {
                while !Path::new(&open).exists() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                i * 7
            })
        })
        .collect();
    assert_eq!(pool.metrics().succeeded(), BEFORE);
    server.restart();
    gate.open();
    for (i, mut handle) in (BEFORE..TASKS).zip(handles) {
        // Bounded: a lost task shows as a failure, not as a test that never ends.
        let outcome = handle
            .join_timeout(LOST)
            .unwrap_or_else(|| panic!("task {i} was lost: no outcome within {LOST:?}"));
        assert_eq!(outcome, Ok(i * 7), "task {i}");
    }
    assert_eq!(pool.metrics().succeeded(), TASKS);
    assert_eq!(
        pool.spawn(6u64, |x: u64| x + 1).join_timeout(LOST),
        Some(Ok(7))
    );
    pool.shutdown();
}
