//! Tasks that tell the test, over loopback TCP, which process runs them and then block until
//! that process ends or their future is dropped: the test learns that a task started without
//! guessing a delay, and that it was stopped by reading end-of-stream on its connection (the
//! kernel closes it when the process holding it dies, or when the future owning it is dropped).

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// Longest wait for something that must happen; only a broken backend hits it.
pub(crate) const HANG: Duration = Duration::from_secs(120);

/// Where tasks report to.
pub(crate) struct Reports {
    pub(crate) port: u16,
    arrivals: mpsc::Receiver<Report>,
}

/// A task that has started: the process running it, that process's parent, and its connection.
pub(crate) struct Report {
    pub(crate) pid: u32,
    pub(crate) parent: u32,
    stream: TcpStream,
}

impl Reports {
    /// Listens on a free loopback port; a thread accepts the tasks' connections.
    pub(crate) fn listen() -> Reports {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let (arrived, arrivals) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut ids = [0u8; 8];
                if stream.read_exact(&mut ids).is_err() {
                    continue;
                }
                let report = Report {
                    pid: u32::from_le_bytes(ids[..4].try_into().unwrap()),
                    parent: u32::from_le_bytes(ids[4..].try_into().unwrap()),
                    stream,
                };
                if arrived.send(report).is_err() {
                    return;
                }
            }
        });
        Reports { port, arrivals }
    }

    /// The next task that started.
    pub(crate) fn next(&self) -> Report {
        self.arrivals
            .recv_timeout(HANG)
            .expect("a task reported that it started")
    }
}

impl Report {
    /// Waits until the task's end of the connection is closed: its process ended, or its
    /// future was dropped. Panics if that does not happen within [`HANG`].
    pub(crate) fn wait_until_stopped(mut self) {
        self.stream
            .set_read_timeout(Some(HANG))
            .expect("set a read timeout");
        let mut byte = [0u8];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("the task was not stopped: {other:?}"),
        }
    }
}

fn report(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the test");
    let mut ids = [0u8; 8];
    ids[..4].copy_from_slice(&std::process::id().to_le_bytes());
    ids[4..].copy_from_slice(&std::os::unix::process::parent_id().to_le_bytes());
    stream.write_all(&ids).expect("send the pids");
    stream
}

/// A blocking task: reports, then waits for a byte the test never sends (it returns only if
/// the test lets go of the connection). Returns its pid.
pub(crate) fn report_and_block(port: u16) -> u32 {
    let mut stream = report(port);
    let _ = stream.read(&mut [0u8]);
    std::process::id()
}

/// An async task: reports, then waits forever, holding its connection.
pub(crate) async fn report_and_pend(port: u16) -> u32 {
    let _stream = report(port);
    std::future::pending::<()>().await;
    std::process::id()
}
