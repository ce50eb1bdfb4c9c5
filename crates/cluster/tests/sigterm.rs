//! A worker host that gets SIGTERM while it runs tasks leaves cleanly: it pulls nothing more
//! (not even for a slot that frees meanwhile), finishes the tasks it runs (whose handles resolve
//! with that host's results, once each), the tasks queued behind go to another host, and it
//! exits with status 0. From the SIGTERM on, it answers no roll call.
//!
//! The hosts are children of the test started the way an operator starts one
//! (`--polyexec-cluster-worker` and the settings in the environment), so the test can signal
//! them and reap them itself. Every step waits for an event (a task reporting over a loopback
//! socket, a host's line on stderr, a handle), each bounded by `HANG`.

polyexec_cluster::test_hook!();

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::hosts::{Host, PoolGuard, host_env, join_within, random_key};
use polyexec_cluster::ClusterPool;
use polyexec_core::Executor;

/// Longest wait for something that must happen; only a broken backend hits it.
const HANG: Duration = Duration::from_secs(120);

/// Long enough that no task is delivered twice during the test: a stopping host must hand its
/// work over by itself, not by JetStream giving up on it.
const ACK_WAIT: Duration = Duration::from_secs(300);

/// The pid of the host running the task: a host runs blocking tasks in worker processes of
/// its own, its children.
fn host_pid() -> u32 {
    std::os::unix::process::parent_id()
}

/// Connects to the test, sends the host's pid and the task's tag, waits for the test's word,
/// and returns the host's pid.
fn report_and_wait((port, tag): (u16, u32)) -> u32 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the test");
    let mut report = host_pid().to_le_bytes().to_vec();
    report.extend_from_slice(&tag.to_le_bytes());
    stream.write_all(&report).expect("send the pid and tag");
    let mut go = [0u8];
    stream.read_exact(&mut go).expect("the test's word");
    host_pid()
}

/// The pid of the host that runs it.
fn which_host((): ()) -> u32 {
    host_pid()
}

/// Accepts the connections of `report_and_wait` tasks and hands them over with their pid and
/// tag.
fn listen() -> (u16, mpsc::Receiver<(u32, u32, TcpStream)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().unwrap().port();
    let (arrived, arrivals) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut report = [0u8; 8];
            if stream.read_exact(&mut report).is_err() {
                continue;
            }
            let word = |at: usize| u32::from_le_bytes(report[at..at + 4].try_into().unwrap());
            if arrived.send((word(0), word(4), stream)).is_err() {
                return;
            }
        }
    });
    (port, arrivals)
}

#[test]
fn a_host_given_sigterm_finishes_its_tasks_leaves_the_queue_to_others_and_exits_0() {
    let url = common::url();
    let key = random_key();
    let queue = common::unique_queue();
    // Two slots, both taken by tasks that wait for the test: the tasks queued behind them stay
    // in the stream (a host pulls only for free slots).
    let mut first = Host::start(&host_env(&url, &key, &queue, 2, ACK_WAIT));
    first.wait_for("serving", HANG);
    let pool = PoolGuard(
        ClusterPool::builder()
            .url(&url)
            .key(&key)
            .queue(&queue)
            .ack_wait(ACK_WAIT)
            .build()
            .expect("build a cluster pool on the test's host"),
    );
    let (port, arrivals) = listen();

    let mut running = Vec::new();
    for _ in 0..2 {
        running.push(pool.spawn((port, running.len() as u32), report_and_wait));
    }
    // By tag: the two start in either order.
    let mut started = HashMap::new();
    for _ in 0..2 {
        let (pid, tag, stream) = arrivals.recv_timeout(HANG).expect("a task started");
        assert_eq!(pid, first.pid(), "the only host runs the task");
        started.insert(tag, stream);
    }
    assert_eq!(started.len(), 2, "a task started twice");
    let queued: Vec<_> = (0..4).map(|_| pool.spawn((), which_host)).collect();

    first.sigterm();
    first.wait_for("SIGTERM", HANG);
    // A stopping host no longer answers the roll call: a pool built now does not count on it.
    let late = ClusterPool::builder()
        .url(&url)
        .key(&key)
        .queue(&queue)
        .ack_wait(ACK_WAIT)
        .worker_wait(Duration::from_secs(1))
        .build();
    let err = late.expect_err("a pool built after the SIGTERM counted the stopping host");
    assert!(err.to_string().contains("0 of 1 worker hosts"), "{err}");
    // One task finishes on the stopping host: its result reaches the pool, and the slot it
    // frees pulls nothing (a host that still pulled would take queued tasks now).
    let mut release = |tag: u32| {
        started
            .remove(&tag)
            .expect("started")
            .write_all(b"g")
            .expect("release a task");
    };
    release(0);
    let one = running.remove(0);
    assert_eq!(
        join_within(one, HANG, "the first task"),
        Ok(first.pid()),
        "a task's result comes from the host it ran on"
    );
    // The tasks queued behind go to a host that can take them, while the first host still runs
    // its other task.
    let mut second = Host::start(&host_env(&url, &key, &queue, 1, ACK_WAIT));
    for handle in queued {
        assert_eq!(
            join_within(handle, HANG, "a queued task"),
            Ok(second.pid()),
            "a queued task ran on the stopping host"
        );
    }
    let other = running.remove(0);
    assert!(!other.is_finished(), "a task resolved before it was let go");
    release(1);
    assert_eq!(join_within(other, HANG, "the second task"), Ok(first.pid()));

    let status = first.wait_exit(HANG);
    assert_eq!(
        status.code(),
        Some(0),
        "the stopping host exited with {status}"
    );
    // Each ran once: no second delivery of either reached a host.
    assert!(
        arrivals.try_recv().is_err(),
        "a running task was started again"
    );
    let metrics = pool.metrics();
    assert_eq!(metrics.succeeded(), 6, "{metrics:?}");
    assert_eq!(metrics.running(), 0, "{metrics:?}");
    pool.shutdown();

    second.sigterm();
    let status = second.wait_exit(HANG);
    assert_eq!(status.code(), Some(0), "the idle host exited with {status}");
}
