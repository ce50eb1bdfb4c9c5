//! A worker host killed with SIGKILL in the middle of a task: JetStream delivers the task again
//! after `ack_wait`, another host runs it, and the handle resolves once, with its value.

polyexec_cluster::test_hook!();

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use polyexec_core::Executor;

/// Longest wait for something that must happen; only a broken backend hits it.
const HANG: Duration = Duration::from_secs(120);

/// Connects to the test, sends the pid of the host it runs on, and waits for the test's word.
/// (A blocking task runs in a worker process of its host, which dies with the host.)
fn report_and_wait(port: u16) -> u32 {
    let host = std::os::unix::process::parent_id();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the test");
    stream.write_all(&host.to_le_bytes()).expect("send the pid");
    let mut go = [0u8];
    stream.read_exact(&mut go).expect("the test's word");
    host
}

#[test]
fn a_task_whose_host_is_killed_runs_again_on_another_host() {
    let pool = common::builder(2)
        .ack_wait(Duration::from_secs(1))
        .build()
        .expect("build a cluster pool");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().unwrap().port();
    let (arrived, arrivals) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut pid = [0u8; 4];
            if stream.read_exact(&mut pid).is_ok()
                && arrived.send((u32::from_le_bytes(pid), stream)).is_err()
            {
                return;
            }
        }
    });

    let handle = pool.spawn(port, report_and_wait);
    let (first_pid, first) = arrivals.recv_timeout(HANG).expect("the task started");
    assert!(pool.local_worker_pids().contains(&first_pid));
    let killed = std::process::Command::new("kill")
        .args(["-9", &first_pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    drop(first);

    let (second_pid, mut second) = arrivals
        .recv_timeout(HANG)
        .expect("the task was delivered again");
    assert_ne!(second_pid, first_pid, "the dead host ran it again");
    second.write_all(b"g").expect("release the task");
    assert_eq!(handle.join(), Ok(second_pid));
    pool.shutdown();
    // The pool replaced the killed host while it ran, and reaped every host when it stopped.
    assert!(pool.local_worker_pids().is_empty());
}
