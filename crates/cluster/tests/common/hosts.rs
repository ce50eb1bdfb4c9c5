//! Worker hosts that a test starts itself, as children of the test binary in worker mode (the
//! way an operator starts one), so the test can signal them and read their exit status.
//!
//! A [`Host`] reads the host's stderr on a thread of its own and hands the lines over, so a test
//! can wait (bounded) for what the host says: that it serves, that it got SIGTERM. Dropped, it
//! kills and reaps the host, so a failing test leaves no process behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Joins `handle`, waiting at most `limit`; panics naming `what` if it does not resolve.
pub(crate) fn join_within<T>(
    mut handle: polyexec_core::TaskHandle<T>,
    limit: Duration,
    what: &str,
) -> Result<T, polyexec_core::TaskError> {
    handle
        .join_timeout(limit)
        .unwrap_or_else(|| panic!("{what} did not resolve within {limit:?}"))
}

/// A random cluster key (64 hex digits), shared by a test's pool and the hosts it starts.
pub(crate) fn random_key() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The environment of a host of `queue` with `slots` slots on the server at `url`.
pub(crate) fn host_env(
    url: &str,
    key: &str,
    queue: &str,
    slots: u32,
    ack_wait: Duration,
) -> Vec<(&'static str, String)> {
    vec![
        ("POLYEXEC_CLUSTER_WORKER", "1".into()),
        ("POLYEXEC_CLUSTER_URL", url.into()),
        ("POLYEXEC_CLUSTER_KEY", key.into()),
        ("POLYEXEC_CLUSTER_QUEUE", queue.into()),
        ("POLYEXEC_CLUSTER_SLOTS", slots.to_string()),
        (
            "POLYEXEC_CLUSTER_ACK_WAIT_MS",
            ack_wait.as_millis().to_string(),
        ),
    ]
}

/// A worker host started by the test.
pub(crate) struct Host {
    child: Option<Child>,
    pid: u32,
    lines: mpsc::Receiver<String>,
}

impl Host {
    /// Starts this test executable in worker mode with `env`, directly.
    pub(crate) fn start(env: &[(&'static str, String)]) -> Host {
        let exe = std::env::current_exe().expect("the test executable");
        let mut command = Command::new(exe);
        command.arg("--polyexec-cluster-worker");
        Host::spawn(command, env)
    }

    /// Starts `command` (which must end up running this executable in worker mode, for
    /// example through `ip netns exec`, which executes it in place) with `env`.
    pub(crate) fn spawn(mut command: Command, env: &[(&'static str, String)]) -> Host {
        command
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start a worker host");
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped");
        let (line, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for text in BufReader::new(stderr).lines() {
                let Ok(text) = text else { break };
                eprintln!("[host {pid}] {text}");
                if line.send(text).is_err() {
                    break;
                }
            }
        });
        Host {
            child: Some(child),
            pid,
            lines,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits at most `limit` for a line of the host's stderr containing `needle`; panics with
    /// what it said instead.
    pub(crate) fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => said.push(line),
                Err(_) => panic!(
                    "host {} did not say {needle:?} within {limit:?}; it said:\n{}",
                    self.pid,
                    said.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM (through `kill(1)`: the host is this process's child and not yet reaped,
    /// so its pid cannot have been reused).
    pub(crate) fn sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits at most `limit` for the host to exit, reaps it, and returns its status.
    ///
    /// The host's stderr closes when it exits: that is the event waited for; the poll after it
    /// covers only the moment between the closing and the kernel marking the process exited.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("host {} did not exit within {limit:?}", self.pid)
                }
            }
        }
        let child = self.child.as_mut().expect("not reaped yet");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the host") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "host {} closed its stderr but did not exit within {limit:?}",
                self.pid
            );
            // Only the instant between the stderr closing and the exit is polled.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A pool that, dropped by a failing test, shuts down at once instead of waiting for its
/// pending tasks (whose hosts a failing test may never let finish).
pub(crate) struct PoolGuard(pub(crate) polyexec_cluster::ClusterPool);

impl std::ops::Deref for PoolGuard {
    type Target = polyexec_cluster::ClusterPool;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            polyexec_core::Executor::shutdown_now(&self.0);
        }
    }
}
