//! A worker host in a network namespace of its own, reached only through a veth pair: tasks
//! from a pool in the root namespace run there (their results say so), and a partition of that
//! link while tasks run, longer than `ack_wait`, loses none: every handle resolves once, with
//! its value, whether it was delivered again or not. A task whose lease lapsed during the cut
//! is delivered again to the same host while the host still holds it, and still resolves.
//!
//! It needs root, `ip`, and a kernel that lets `ip netns add` work. Where it cannot run it says
//! why and passes without running, unless `POLYEXEC_REQUIRE_NETNS=1`, which makes that a
//! failure. Everything it makes (namespace, veth pair, nats-server and its store, host) is
//! removed on every path, a failing one included, by guards dropped in reverse order.

polyexec_cluster::test_hook!();

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::hosts::{Host, PoolGuard, host_env, join_within, random_key};
use polyexec_cluster::ClusterPool;
use polyexec_core::Executor;

/// Longest wait for something that must happen; only a broken backend (or network) hits it.
const HANG: Duration = Duration::from_secs(120);

/// Short, so that the partition below outlasts it.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// How long the host is cut off: well past `ACK_WAIT`, so JetStream gives up on the running
/// tasks' leases and delivers them again. This is the fault's length, not a synchronisation:
/// every assertion holds whatever it is (a shorter cut may merely cause no redelivery).
const PARTITION: Duration = Duration::from_secs(6);

/// Passes without running (printing why), or fails where the test is required to run.
fn skip(reason: &str) {
    if std::env::var("POLYEXEC_REQUIRE_NETNS").is_ok_and(|v| v == "1") {
        panic!("POLYEXEC_REQUIRE_NETNS=1 but the network namespace test cannot run: {reason}");
    }
    eprintln!("skipping the network namespace test: {reason}");
}

/// Runs `ip` with `args`; the error says which command failed and why.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` ({e})"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A network namespace joined to the root namespace by a veth pair with a private /30 (both
/// names and the subnet derived from this process's pid, so concurrent runs do not collide).
/// Dropped, it deletes the namespace, which destroys the pair with it.
struct Netns {
    name: String,
    root_veth: String,
    root_addr: Ipv4Addr,
    /// The inode of the namespace, as `/proc/<pid>/ns/net` of a process in it names it.
    inode: u64,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        if !is_root() {
            return Err("it needs root (to make a network namespace)".into());
        }
        let pid = std::process::id();
        let name = format!("pxns{pid}");
        ip(&["netns", "add", &name])?;
        // Made: from here on, the guard removes it whatever fails.
        let mut netns = Netns {
            name,
            root_veth: format!("pxr{pid}"),
            root_addr: Ipv4Addr::UNSPECIFIED,
            inode: 0,
        };
        let ns_veth = format!("pxn{pid}");
        let subnet = [
            10,
            200 + ((pid >> 14) % 50) as u8,
            ((pid >> 6) & 0xff) as u8,
            ((pid & 0x3f) * 4) as u8,
        ];
        netns.root_addr = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], subnet[3] + 1);
        let ns_addr = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], subnet[3] + 2);
        let (root, ns) = (netns.root_veth.as_str(), netns.name.as_str());
        ip(&[
            "link", "add", root, "type", "veth", "peer", "name", &ns_veth,
        ])?;
        ip(&["link", "set", &ns_veth, "netns", ns])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", netns.root_addr),
            "dev",
            root,
        ])?;
        ip(&["link", "set", root, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{ns_addr}/30"), "dev", &ns_veth])?;
        inside(&["link", "set", &ns_veth, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        netns.inode = std::fs::metadata(format!("/run/netns/{ns}"))
            .map_err(|e| format!("cannot read /run/netns/{ns}: {e}"))?
            .ino();
        Ok(netns)
    }

    /// Cuts (or restores) the link: the root side of the pair goes down (or up).
    fn set_link(&self, up: bool) {
        ip(&[
            "link",
            "set",
            &self.root_veth,
            if up { "up" } else { "down" },
        ])
        .expect("set the veth link");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            eprintln!("{err}");
        }
        // Gone with the namespace already, unless moving its peer there failed.
        let _ = ip(&["link", "del", &self.root_veth]);
    }
}

/// The network namespace of the process that runs it, e.g. `net:[4026532174]`.
fn netns_here() -> String {
    match std::fs::read_link("/proc/self/ns/net") {
        Ok(link) => link.display().to_string(),
        Err(err) => format!("unknown ({err})"),
    }
}

/// A quick task: its value, and where it ran.
fn quick(tag: u32) -> (u32, String) {
    (tag * 3, netns_here())
}

/// A task that tells the test (at `test`, across the link) it started, then waits for its word.
fn held((test, tag): (String, u32)) -> (u32, String) {
    let mut stream = TcpStream::connect(&test).expect("connect to the test");
    stream
        .write_all(&tag.to_le_bytes())
        .expect("tell the test the task started");
    let mut go = [0u8];
    stream.read_exact(&mut go).expect("the test's word");
    (tag * 3, netns_here())
}

/// Where `held` tasks report: counts each task's starts and holds them until it is opened.
struct Gate {
    address: String,
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    open: bool,
    /// Tasks whose runs go on at once, those held now and any later one.
    released: Vec<u32>,
    held: Vec<(u32, TcpStream)>,
    starts: HashMap<u32, u32>,
}

impl Gate {
    fn listen(address: Ipv4Addr) -> Arc<Gate> {
        let listener = TcpListener::bind((address, 0)).expect("bind on the veth address");
        let gate = Arc::new(Gate {
            address: listener.local_addr().unwrap().to_string(),
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
        });
        let weak = Arc::downgrade(&gate);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut tag = [0u8; 4];
                if stream.read_exact(&mut tag).is_err() {
                    continue;
                }
                let Some(gate) = weak.upgrade() else { return };
                let mut state = gate.lock();
                let tag = u32::from_le_bytes(tag);
                *state.starts.entry(tag).or_default() += 1;
                if state.open || state.released.contains(&tag) {
                    let _ = stream.write_all(b"g");
                } else {
                    state.held.push((tag, stream));
                }
                gate.changed.notify_all();
            }
        });
        gate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits at most `limit` until each of `tags` started `times` times.
    fn wait_started(&self, tags: &[u32], times: u32, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while !tags
            .iter()
            .all(|tag| state.starts.get(tag).is_some_and(|n| *n >= times))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "tasks {tags:?} did not all start {times} times within {limit:?}: {:?}",
                state.starts
            );
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Lets the runs of task `tag` go on: those held now and any later one.
    fn release(&self, tag: u32) {
        let mut state = self.lock();
        state.released.push(tag);
        for (_, stream) in state.held.iter_mut().filter(|(t, _)| *t == tag) {
            let _ = stream.write_all(b"g");
        }
        state.held.retain(|(t, _)| *t != tag);
    }

    /// Lets every held task go on, and every later one at once.
    fn open(&self) {
        let mut state = self.lock();
        state.open = true;
        for (_, mut stream) in state.held.drain(..) {
            // A task whose connection broke fails on its host; its handle says so below.
            let _ = stream.write_all(b"g");
        }
    }

    fn starts(&self) -> HashMap<u32, u32> {
        self.lock().starts.clone()
    }
}

#[test]
fn tasks_on_a_host_behind_a_veth_survive_a_partition_longer_than_ack_wait() {
    let Some(server_binary) = common::find_server() else {
        skip("no nats-server on PATH or in target/nats-venv");
        return;
    };
    let netns = match Netns::create() {
        Ok(netns) => netns,
        Err(reason) => {
            skip(&reason);
            return;
        }
    };
    // The server listens on the root side of the pair only: the host reaches it across the
    // link, the pool (in this namespace) directly.
    let server = common::Server::start(&server_binary, IpAddr::V4(netns.root_addr));
    let key = random_key();
    let queue = common::unique_queue();
    let mut in_netns = Command::new("ip");
    in_netns
        .args(["netns", "exec", &netns.name])
        .arg(std::env::current_exe().expect("the test executable"))
        .arg("--polyexec-cluster-worker");
    let mut host = Host::spawn(in_netns, &host_env(server.url(), &key, &queue, 2, ACK_WAIT));
    host.wait_for("serving", HANG);
    let pool = PoolGuard(
        ClusterPool::builder()
            .url(server.url())
            .key(&key)
            .queue(&queue)
            .ack_wait(ACK_WAIT)
            .build()
            .expect("build a cluster pool whose only host is in the namespace"),
    );
    let there = format!("net:[{}]", netns.inode);
    assert_ne!(netns_here(), there, "the test runs outside the namespace");

    // Every task runs on the host behind the link.
    let results: Vec<(u32, String)> = pool
        .map(0..20u32, quick)
        .collect::<Result<_, _>>()
        .expect("tasks across the link");
    for (tag, result) in (0..20u32).zip(results) {
        assert_eq!(result, (tag * 3, there.clone()));
    }

    // Two tasks run on the host when the link goes down; five more are submitted while it is
    // down. The running ones outlive their lease meanwhile.
    let gate = Gate::listen(netns.root_addr);
    let before = pool.metrics();
    let running: Vec<_> = [100u32, 101]
        .into_iter()
        .map(|tag| (tag, pool.spawn((gate.address.clone(), tag), held)))
        .collect();
    gate.wait_started(&[100, 101], 1, HANG);
    netns.set_link(false);
    let queued: Vec<_> = (200u32..205)
        .map(|tag| (tag, pool.spawn(tag, quick)))
        .collect();
    std::thread::sleep(PARTITION);
    netns.set_link(true);
    // Task 100 goes on (and so does a second delivery of it); 101 stays held. Its lease lapsed
    // during the cut, so once 100 is done and a slot is free, the host takes 101 again while it
    // still holds the first delivery: it holds one task twice, and both runs must go on (the
    // first result wins).
    let mut running = running.into_iter();
    let (tag, first) = running.next().expect("two tasks");
    gate.release(tag);
    assert_eq!(
        join_within(first, HANG, "task 100"),
        Ok((tag * 3, there.clone()))
    );
    gate.wait_started(&[101], 2, HANG);
    gate.open();

    for (tag, handle) in running.chain(queued) {
        let what = format!("task {tag} (starts so far: {:?})", gate.starts());
        assert_eq!(
            join_within(handle, HANG, &what),
            Ok((tag * 3, there.clone())),
            "task {tag} after the partition"
        );
    }
    // Once each, however many times they ran.
    let metrics = pool.metrics();
    assert_eq!(metrics.submitted(), before.submitted() + 7, "{metrics:?}");
    assert_eq!(metrics.succeeded(), before.succeeded() + 7, "{metrics:?}");
    assert_eq!(metrics.running(), 0, "{metrics:?}");
    eprintln!(
        "starts of the tasks running during the partition: {:?}",
        gate.starts()
    );
    pool.shutdown();

    host.sigterm();
    let status = host.wait_exit(HANG);
    assert_eq!(status.code(), Some(0), "the host exited with {status}");
}
