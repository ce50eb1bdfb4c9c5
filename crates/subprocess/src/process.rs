//! Starting worker processes, the handshake, build identity, and reaping.

use std::ffi::OsString;
use std::hash::Hasher;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use polyexec_core::WorkerExit;
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal};
use siphasher::sip::SipHasher24;

use crate::entry::{self, TaskAddr};
use crate::error::StartError;
use crate::protocol::{self, FrameReader, Hello, PROTOCOL_VERSION, Ready};

/// The one argument a worker is started with. A libtest harness that was not told about workers
/// (no `test_hook!`) rejects it and exits at once, which the handshake reports.
pub(crate) const WORKER_ARG: &str = "--polyexec-worker";
/// Set to the parent's pid in a worker's environment.
pub(crate) const WORKER_ENV: &str = "POLYEXEC_WORKER";

/// Exit code of a worker that is not the same build as its parent.
pub(crate) const EXIT_MISMATCH: i32 = 97;
/// Exit code of a worker whose initializer failed.
pub(crate) const EXIT_INIT_FAILED: i32 = 98;
/// Exit code of a worker that could not set itself up or lost its parent.
pub(crate) const EXIT_SETUP_FAILED: i32 = 99;
/// Longest frame the parent accepts during the handshake.
const HANDSHAKE_FRAME_LIMIT: usize = 64 << 10;

/// What this process is started as, decided once.
pub(crate) fn worker_parent() -> Option<Pid> {
    static PARENT: OnceLock<Option<Pid>> = OnceLock::new();
    *PARENT.get_or_init(|| {
        let value = std::env::var_os(WORKER_ENV)?;
        let pid: i32 = value.to_str()?.parse().ok()?;
        let pid = Pid::from_raw(pid)?;
        // A grandchild started by a task inherits the variable, but its parent is the worker,
        // not the pool: it is not a worker.
        (rustix::process::getppid() == Some(pid)).then_some(pid)
    })
}

/// Identifies this build of this executable, cheaply: the file's identity and modification time,
/// the crate and protocol versions, and where a few functions sit relative to the task anchor
/// (which differs between builds even when the file metadata happens to match).
pub(crate) fn fingerprint() -> u64 {
    static FINGERPRINT: OnceLock<u64> = OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        let mut hasher = SipHasher24::new_with_keys(0x706f_6c79_6578_6563, 0x6275_696c_6420_6964);
        // `/proc/self/exe` names the running file even after it was replaced or deleted.
        match std::fs::metadata("/proc/self/exe") {
            Ok(meta) => {
                hasher.write_u64(meta.dev());
                hasher.write_u64(meta.ino());
                hasher.write_u64(meta.size());
                hasher.write_i64(meta.mtime());
                hasher.write_i64(meta.mtime_nsec());
            }
            Err(_) => hasher.write_u8(0),
        }
        hasher.write(env!("CARGO_PKG_VERSION").as_bytes());
        hasher.write_u32(PROTOCOL_VERSION);
        let fingerprint_fn: fn() -> u64 = fingerprint;
        let serve_fn: fn() -> ! = crate::worker::serve_current;
        let spawn_fn: fn(&SpawnConfig, u32) -> Result<Spawned, StartError> = spawn;
        hasher.write_i64(entry::distance(fingerprint_fn as *const ()));
        hasher.write_i64(entry::distance(serve_fn as *const ()));
        hasher.write_i64(entry::distance(spawn_fn as *const ()));
        // Unit-test builds only (never in the library as others build it): lets a test start a
        // worker that computes another fingerprint, as a worker of a different build would
        // (`security_tests::a_worker_of_another_build_is_refused`).
        #[cfg(test)]
        if let Some(salt) = std::env::var_os("POLYEXEC_TEST_FINGERPRINT_SALT") {
            hasher.write(salt.as_encoded_bytes());
        }
        hasher.finish()
    })
}

/// Everything needed to start and greet one worker.
#[derive(Debug, Clone)]
pub(crate) struct SpawnConfig {
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) key: [u8; 16],
    pub(crate) timeout: Option<Duration>,
    pub(crate) init: Option<TaskAddr>,
    /// Large payloads may travel through shared-memory regions.
    pub(crate) shared_memory: bool,
    pub(crate) init_arg: Vec<u8>,
}

/// A worker that has been started and greeted.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) pidfd: OwnedFd,
    pub(crate) stream: UnixStream,
    pub(crate) pid: u32,
}

/// Starts worker `index` and sends its `Hello`; [`greet`] then waits for its answer.
///
/// Must run on the pool's supervisor thread: the worker's parent-death signal fires when the
/// thread that started it exits.
pub(crate) fn start(config: &SpawnConfig, index: u32) -> Result<Started, StartError> {
    let (ours, theirs) = UnixStream::pair().map_err(StartError::Os)?;
    // The worker's end becomes its stdin: inherited by that child alone (std duplicates it onto
    // fd 0 in the child; the original descriptor is close-on-exec), reachable by no name.
    let mut command = Command::new("/proc/self/exe");
    command
        .arg(WORKER_ARG)
        .env(WORKER_ENV, std::process::id().to_string())
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    if let Some(name) = std::env::args_os().next() {
        // Shown by `ps`; the file run is /proc/self/exe whatever this says.
        command.arg0(name);
    }
    let child = command.spawn().map_err(StartError::Os)?;
    // Drop our copy of the worker's end now, or its death would never read as end of stream.
    drop(command);
    let pid = child.id();
    let pidfd = match Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::other("invalid pid"))
        .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).map_err(Into::into))
    {
        Ok(fd) => fd,
        Err(err) => {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Os(err));
        }
    };
    let started = Started {
        spawned: Spawned {
            child,
            pidfd,
            stream: ours,
            pid,
        },
        deadline: Instant::now() + config.handshake_timeout,
    };
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        fingerprint: fingerprint(),
        index,
        key: config.key,
        timeout: config.timeout,
        init: config.init,
        shared_memory: config.shared_memory,
        init_arg: config.init_arg.clone(),
    };
    let mut frame = Vec::with_capacity(64);
    protocol::push_message(&mut frame, protocol::HELLO, &hello);
    if let Err(err) = protocol::send_all(started.spawned.stream.as_fd(), &[&frame], None) {
        // The worker is already gone: report how it ended.
        let status = started.abandon(Duration::from_millis(500));
        return Err(early_exit(status, Some(err)));
    }
    Ok(started)
}

/// A worker started, whose answer to `Hello` is awaited.
#[derive(Debug)]
pub(crate) struct Started {
    spawned: Spawned,
    deadline: Instant,
}

impl Started {
    /// Kills (after `grace` for it to exit on its own) and reaps the worker.
    pub(crate) fn abandon(mut self, grace: Duration) -> WorkerExit {
        reap(&mut self.spawned.child, &self.spawned.pidfd, grace)
    }

    /// Waits (until the handshake deadline) for the worker's answer.
    pub(crate) fn greet(mut self) -> Result<Spawned, StartError> {
        // `READY` and `REFUSED` are small; a longer frame is refused at its header, so the
        // deadline below is checked between reads that each wait at most until it.
        let mut reader = FrameReader::with_limit(HANDSHAKE_FRAME_LIMIT);
        let reply = loop {
            match reader.next_frame() {
                Ok(Some(frame)) => break Ok(frame),
                Ok(None) => {}
                Err(err) => break Err(StartError::Protocol(err.to_string())),
            }
            let now = Instant::now();
            if now >= self.deadline {
                let status = self.abandon(Duration::ZERO);
                return Err(StartError::HandshakeTimeout(status));
            }
            let stream = &mut self.spawned.stream;
            if let Err(err) = stream.set_read_timeout(Some(self.deadline - now)) {
                break Err(StartError::Os(err));
            }
            match reader.fill(stream) {
                Ok(true) => {}
                Ok(false) => {
                    let status = self.abandon(Duration::from_secs(2));
                    return Err(early_exit(status, None));
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let status = self.abandon(Duration::from_secs(2));
                    return Err(early_exit(status, Some(err)));
                }
            }
        };
        let result = reply.and_then(|frame| {
            let body = reader.body(&frame);
            match frame.tag {
                protocol::READY => {
                    let ready: Ready = protocol::decode(body)
                        .map_err(|e| StartError::Protocol(format!("bad READY frame: {e}")))?;
                    if ready.protocol != PROTOCOL_VERSION
                        || ready.fingerprint != fingerprint()
                        || ready.pid != self.spawned.pid
                    {
                        return Err(StartError::Protocol(
                            "the worker's answer does not match this build".into(),
                        ));
                    }
                    Ok(())
                }
                protocol::REFUSED => {
                    let reason: String = protocol::decode(body)
                        .unwrap_or_else(|e| format!("(unreadable reason: {e})"));
                    Err(StartError::Refused(reason))
                }
                tag => Err(StartError::Protocol(format!(
                    "unexpected frame {tag:#x} in the handshake"
                ))),
            }
        });
        match result {
            Ok(()) => {
                if let Err(err) = self.spawned.stream.set_read_timeout(None) {
                    self.abandon(Duration::ZERO);
                    return Err(StartError::Os(err));
                }
                Ok(self.spawned)
            }
            Err(err) => {
                self.abandon(Duration::from_secs(2));
                Err(err)
            }
        }
    }
}

/// Starts a worker and waits for its handshake.
pub(crate) fn spawn(config: &SpawnConfig, index: u32) -> Result<Spawned, StartError> {
    start(config, index)?.greet()
}

fn early_exit(status: WorkerExit, err: Option<io::Error>) -> StartError {
    StartError::ExitedEarly {
        status,
        detail: err.map(|e| e.to_string()),
    }
}

/// Waits up to `grace` for the worker to exit on its own, then kills it, and reaps it.
pub(crate) fn reap(child: &mut Child, pidfd: &OwnedFd, grace: Duration) -> WorkerExit {
    if grace.is_zero() || !wait_exit(pidfd, grace) {
        let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
    }
    loop {
        match child.wait() {
            Ok(status) => return exit_of(status),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return WorkerExit::Unknown,
        }
    }
}

/// `true` once the process behind `pidfd` has exited, waiting at most `timeout`.
pub(crate) fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        let spec = rustix::event::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&spec)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) if Instant::now() < deadline => {}
            Err(_) => return false,
        }
    }
}

/// Sends `SIGKILL` to the worker behind `pidfd`; harmless if it is already gone (a pidfd never
/// names a recycled pid).
pub(crate) fn kill(pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
}

/// An exit status in the portable form.
pub(crate) fn exit_of(status: ExitStatus) -> WorkerExit {
    if let Some(code) = status.code() {
        WorkerExit::Code(code)
    } else if let Some(signal) = status.signal() {
        WorkerExit::Signal(signal)
    } else {
        WorkerExit::Unknown
    }
}

/// Reads exactly one frame from a blocking stream (the worker's side of the handshake).
pub(crate) fn read_one_frame(stream: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; protocol::HEADER];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > 1 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad handshake frame",
        ));
    }
    let mut body = vec![0u8; len - 1];
    stream.read_exact(&mut body)?;
    Ok((header[4], body))
}
