//! The subprocess backend beside a raw ipc-channel round trip between two processes (the
//! baseline) and procspawn's process pool (a peer), measured in the same run.
//!
//! ```text
//! cargo bench --bench subprocess --features subprocess
//! ```
//!
//! Shapes: a warm round trip of a trivial task (lockstep); trivial tasks submitted all at once,
//! then joined; `map` with batching on two workers; byte payloads of 64 B, 64 KiB, 1 MiB and
//! 16 MiB there and back (`serde_bytes::ByteBuf`; from 1 MiB also a plain `Vec<u8>`, and one in
//! a struct field), beside in-process round trips that copy the
//! payload twice, into warm buffers (the memory-speed floor) and into fresh ones; worker start; a CPU kernel's speedup over
//! serial on two workers. After criterion's groups, the three round trips are measured again in
//! alternating batches (each batch sees the same machine load) and written to
//! `target/polyexec-bench/subprocess_interleaved.json` for `scripts/bench.sh`; so are the 1 MiB
//! and 16 MiB payloads, beside raw ipc-channel and the warm two-copy floor, both sustained and
//! in the first calls after each switch between contenders
//! (`subprocess_payload_interleaved.json`).
//!
//! This binary is four programs: the bench, polyexec's workers (`polyexec::init()`), procspawn's
//! workers (`procspawn::init()`, which serves and exits when procspawn started this process) and
//! the raw ipc-channel echo peer (`POLYEXEC_BENCH_IPC_ECHO`). Each hook returns at once in a
//! process that is not its own, so their order does not matter; each re-executes this binary.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender,
};
use polyexec::subprocess::ProcessPool;
use polyexec::{Executor, MapOptions};
use serde_bytes::ByteBuf;

/// Set in the baseline's echo process: the name of the parent's one-shot server.
const ECHO_ENV: &str = "POLYEXEC_BENCH_IPC_ECHO";

/// Requests in flight in the pipelined raw baseline: polyexec's default pipeline depth.
const WINDOW: usize = 32;

/// The payload sizes of the payload shape.
const PAYLOADS: [(&str, usize); 4] = [
    ("64B", 64),
    ("64KiB", 64 << 10),
    ("1MiB", 1 << 20),
    ("16MiB", 16 << 20),
];

type Bootstrap = (
    IpcSender<u64>,
    IpcReceiver<u64>,
    IpcBytesSender,
    IpcBytesReceiver,
);

/// The baseline's other process: echoes every number and every byte message back, until the
/// parent goes away.
fn ipc_echo(server: String) -> ! {
    let to_parent: IpcSender<Bootstrap> = IpcSender::connect(server).expect("connect");
    let (request_tx, request_rx) = ipc::channel::<u64>().expect("channel");
    let (reply_tx, reply_rx) = ipc::channel::<u64>().expect("channel");
    let (bytes_tx, bytes_rx) = ipc::bytes_channel().expect("channel");
    let (bytes_reply_tx, bytes_reply_rx) = ipc::bytes_channel().expect("channel");
    to_parent
        .send((request_tx, reply_rx, bytes_tx, bytes_reply_rx))
        .expect("bootstrap");
    std::thread::spawn(move || {
        while let Ok(bytes) = bytes_rx.recv() {
            if bytes_reply_tx.send(&bytes).is_err() {
                break;
            }
        }
    });
    while let Ok(x) = request_rx.recv() {
        if reply_tx.send(x).is_err() {
            break;
        }
    }
    std::process::exit(0)
}

/// A warm ipc-channel peer process.
struct IpcPeer {
    child: std::process::Child,
    tx: IpcSender<u64>,
    rx: IpcReceiver<u64>,
    bytes_tx: IpcBytesSender,
    bytes_rx: IpcBytesReceiver,
}

impl IpcPeer {
    fn start() -> IpcPeer {
        let (server, name) = IpcOneShotServer::<Bootstrap>::new().expect("server");
        let child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .env(ECHO_ENV, name)
            .spawn()
            .expect("start the echo process");
        let (_, (tx, rx, bytes_tx, bytes_rx)) = server.accept().expect("accept");
        IpcPeer {
            child,
            tx,
            rx,
            bytes_tx,
            bytes_rx,
        }
    }

    fn round_trip(&self, x: u64) -> u64 {
        self.tx.send(x).expect("send");
        self.rx.recv().expect("recv")
    }

    /// `n` numbers through the echo with up to [`WINDOW`] in flight.
    fn pipelined(&self, n: u64) -> u64 {
        let mut sum = 0;
        let mut sent = 0;
        let mut received = 0;
        while received < n {
            while sent < n && sent - received < WINDOW as u64 {
                self.tx.send(sent).expect("send");
                sent += 1;
            }
            sum += self.rx.recv().expect("recv");
            received += 1;
        }
        sum
    }

    fn bytes_round_trip(&self, bytes: &[u8]) -> usize {
        self.bytes_tx.send(bytes).expect("send");
        self.bytes_rx.recv().expect("recv").len()
    }
}

impl Drop for IpcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pool(workers: usize) -> ProcessPool {
    ProcessPool::builder()
        .workers(workers)
        .build()
        .expect("build a pool")
}

fn procspawn_pool(workers: usize) -> procspawn::Pool {
    procspawn::Pool::new(workers).expect("build a procspawn pool")
}

struct Contenders {
    peer: IpcPeer,
    one: ProcessPool,
    two: ProcessPool,
    ps_one: procspawn::Pool,
    ps_two: procspawn::Pool,
}

fn round_trips(c: &mut Criterion, k: &Contenders) {
    let mut group = c.benchmark_group("subprocess/round_trip");
    group.bench_function("ipc_channel_raw", |b| {
        b.iter(|| k.peer.round_trip(black_box(7)));
    });
    group.bench_function("polyexec", |b| {
        b.iter(|| k.one.spawn(black_box(7u64), |x: u64| x + 1).join().unwrap());
    });
    group.bench_function("procspawn_pool", |b| {
        b.iter(|| {
            k.ps_one
                .spawn(black_box(7u64), |x: u64| x + 1)
                .join()
                .unwrap()
        });
    });
    group.finish();
}

fn submit_all(c: &mut Criterion, k: &Contenders) {
    const TASKS: u64 = 20_000;
    // procspawn makes two channels (four descriptors) per task and is ~100x slower per task:
    // fewer tasks, the same per-task figure.
    const PROCSPAWN_TASKS: u64 = 200;
    let mut group = c.benchmark_group("subprocess/submit_all");
    group.sample_size(20);
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function(BenchmarkId::new("ipc_channel_raw_pipelined", TASKS), |b| {
        b.iter(|| black_box(k.peer.pipelined(TASKS)));
    });
    group.bench_function(BenchmarkId::new("polyexec", TASKS), |b| {
        b.iter(|| {
            let handles = k.one.spawn_all(0..TASKS, |x: u64| x + 1);
            for h in handles {
                black_box(h.join().unwrap());
            }
        });
    });
    group.throughput(Throughput::Elements(PROCSPAWN_TASKS));
    group.bench_function(BenchmarkId::new("procspawn_pool", PROCSPAWN_TASKS), |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..PROCSPAWN_TASKS)
                .map(|i| k.ps_one.spawn(i, |x: u64| x + 1))
                .collect();
            for h in handles {
                black_box(h.join().unwrap());
            }
        });
    });
    group.finish();
}

fn map(c: &mut Criterion, k: &Contenders) {
    const MAPPED: u64 = 1_000_000;
    let mut group = c.benchmark_group("subprocess/map");
    group.sample_size(20);
    group.throughput(Throughput::Elements(MAPPED));
    for chunk in [16usize, 128] {
        group.bench_function(BenchmarkId::new("polyexec_2_workers_chunk", chunk), |b| {
            b.iter(|| {
                let options = MapOptions::new().chunk_size(chunk);
                let sum: u64 = k
                    .two
                    .map_with(0..MAPPED, |x: u64| x ^ 1, options)
                    .map(Result::unwrap)
                    .sum();
                black_box(sum)
            });
        });
    }
    group.finish();
}

/// Bytes in a struct field without `serde_bytes`: serde encodes them element by element.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wrapped(Vec<u8>);

fn payloads(c: &mut Criterion, k: &Contenders) {
    let mut group = c.benchmark_group("subprocess/payload");
    for (name, size) in PAYLOADS {
        let payload = ByteBuf::from(vec![0xA5u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("ipc_channel_raw", name), |b| {
            b.iter(|| black_box(k.peer.bytes_round_trip(&payload)));
        });
        // The memory-speed floor: an in-process round trip that copies the payload twice, there
        // and back, into buffers that are already warm (no allocation, no page fault).
        let mut there = vec![0u8; size];
        let mut back = vec![0u8; size];
        group.bench_function(BenchmarkId::new("memcpy_twice", name), |b| {
            b.iter(|| {
                there.copy_from_slice(black_box(&payload));
                back.copy_from_slice(black_box(&there));
                black_box(back[size - 1])
            });
        });
        // The same two copies into fresh buffers, as a transport that allocates its results
        // must make them (page faults included, where the allocator hands out fresh pages).
        group.bench_function(BenchmarkId::new("alloc_copy_twice", name), |b| {
            b.iter(|| {
                let there = black_box(payload.to_vec());
                let back = black_box(there.to_vec());
                drop(there);
                black_box(back.len())
            });
        });
        group.bench_function(BenchmarkId::new("polyexec", name), |b| {
            b.iter(|| {
                let back = k.one.spawn(payload.clone(), |b: ByteBuf| b).join().unwrap();
                black_box(back.len())
            });
        });
        // The same, without the benchmark's own copy: the bytes that came back are moved in again,
        // as the raw baseline sends a borrowed slice and copies nothing itself.
        let mut bytes = Some(payload.clone());
        group.bench_function(BenchmarkId::new("polyexec_moved", name), |b| {
            b.iter(|| {
                let input = bytes.take().expect("put back below");
                let back = k.one.spawn(input, |b: ByteBuf| b).join().unwrap();
                black_box(back.len());
                bytes = Some(back);
            });
        });
        if size >= 1 << 20 {
            // A plain `Vec<u8>` as the whole input and output (encoded as bytes, as `ByteBuf`),
            // and the same bytes inside a struct, which serde encodes element by element.
            let mut vec = Some(payload.to_vec());
            group.bench_function(BenchmarkId::new("polyexec_vec_moved", name), |b| {
                b.iter(|| {
                    let input = vec.take().expect("put back below");
                    let back = k.one.spawn(input, |v: Vec<u8>| v).join().unwrap();
                    black_box(back.len());
                    vec = Some(back);
                });
            });
            let mut wrapped = Some(Wrapped(payload.to_vec()));
            group.bench_function(BenchmarkId::new("polyexec_vec_field_moved", name), |b| {
                b.iter(|| {
                    let input = wrapped.take().expect("put back below");
                    let back = k.one.spawn(input, |w: Wrapped| w).join().unwrap();
                    black_box(back.0.len());
                    wrapped = Some(back);
                });
            });
        }
        group.bench_function(BenchmarkId::new("procspawn_pool", name), |b| {
            b.iter(|| {
                let back = k
                    .ps_one
                    .spawn(payload.clone(), |b: ByteBuf| b)
                    .join()
                    .unwrap();
                black_box(back.len())
            });
        });
    }
    group.finish();
}

fn worker_start(c: &mut Criterion) {
    let mut group = c.benchmark_group("subprocess/worker_start");
    group.sample_size(20);
    // Each timed start excludes the previous pool's shutdown (dropped outside the clock).
    let timed = |iters: u64, start: &dyn Fn() -> Box<dyn std::any::Any>| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let begin = Instant::now();
            let pool = start();
            total += begin.elapsed();
            drop(pool);
        }
        total
    };
    group.bench_function("polyexec_build", |b| {
        b.iter_custom(|iters| timed(iters, &|| Box::new(pool(1))));
    });
    group.bench_function("polyexec_first_task", |b| {
        b.iter_custom(|iters| {
            timed(iters, &|| {
                let p = pool(1);
                black_box(p.spawn(1u64, |x: u64| x + 1).join().unwrap());
                Box::new(p)
            })
        });
    });
    group.bench_function("procspawn_first_task", |b| {
        b.iter_custom(|iters| {
            timed(iters, &|| {
                let p = procspawn_pool(1);
                black_box(p.spawn(1u64, |x: u64| x + 1).join().unwrap());
                Box::new(p)
            })
        });
    });
    group.finish();
}

fn cpu(c: &mut Criterion, k: &Contenders) {
    let (mut group, chunks) = common::cpu_group(c, "subprocess/cpu");
    common::bench_map(&mut group, "polyexec_2_workers", &k.two, &chunks);
    group.bench_function("procspawn_pool_2_workers", |b| {
        b.iter(|| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|&c| k.ps_two.spawn(c, common::count_primes))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
    });
    group.finish();
}

/// CPU time (user + system) this process has used so far, in seconds; `/proc/self/stat`
/// counts in clock ticks (usually 10 ms), so only sums over many batches mean anything.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Per-call times of each contender, measured in alternating batches so that all see the same
/// machine load: `times[k][batch]`; and this process's CPU seconds per call for each.
fn interleaved(
    batches: usize,
    n: u32,
    contenders: &mut [&mut dyn FnMut()],
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut times = vec![Vec::with_capacity(batches); contenders.len()];
    let mut cpu = vec![0.0; contenders.len()];
    for _ in 0..batches {
        for (k, f) in contenders.iter_mut().enumerate() {
            let cpu_start = cpu_seconds();
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            times[k].push(start.elapsed().as_secs_f64() / f64::from(n));
            cpu[k] += cpu_seconds() - cpu_start;
        }
    }
    let calls = batches as f64 * f64::from(n);
    (times, cpu.into_iter().map(|c| c / calls).collect())
}

fn interleaved_round_trips(k: &Contenders) {
    let (batches, n) = if common::quick() {
        (15, 200)
    } else {
        (41, 500)
    };
    for _ in 0..n {
        k.peer.round_trip(1);
        k.one.spawn(1u64, |x: u64| x + 1).join().unwrap();
        k.ps_one.spawn(1u64, |x: u64| x + 1).join().unwrap();
    }
    let (times, cpu) = interleaved(
        batches,
        n,
        &mut [
            &mut || {
                black_box(k.peer.round_trip(1));
            },
            &mut || {
                black_box(k.one.spawn(1u64, |x: u64| x + 1).join().unwrap());
            },
            &mut || {
                black_box(k.ps_one.spawn(1u64, |x: u64| x + 1).join().unwrap());
            },
        ],
    );
    let names = ["ipc_channel_raw", "polyexec", "procspawn_pool"];
    let mut out = serde_json::Map::new();
    let mut line = String::from("summary: round trip, alternating batches:");
    for ((name, t), cpu) in names.iter().zip(&times).zip(&cpu) {
        let mut ratios: Vec<f64> = t.iter().zip(&times[0]).map(|(a, b)| a / b).collect();
        let (ratio, q1, q3) = common::median_quartiles(&mut ratios);
        let mut sorted = t.clone();
        let (median, _, _) = common::median_quartiles(&mut sorted);
        line += &format!(
            " {name} {:.2} us ({ratio:.2}x, this process's CPU {:.1} us per call);",
            median * 1e6,
            cpu * 1e6
        );
        out.insert(
            (*name).into(),
            serde_json::json!({
                "median_s": median,
                "min_s": sorted[0],
                "ratio_median": ratio,
                "ratio_q1": q1,
                "ratio_q3": q3,
                "parent_cpu_s_per_call": cpu,
            }),
        );
    }
    println!("{line}");
    common::write_json(
        "subprocess_interleaved",
        &serde_json::json!({ "batches": batches, "per_batch": n, "contenders": out }),
    );
}

/// Per-call times of each contender in two phases of every turn it gets in alternating batches:
/// the first `early` calls after the switch to it, and, after `settle` more (not timed), `steady`
/// calls. `(early[k][batch], steady[k][batch])`.
///
/// Why two phases: which cores the kernel gives the processes of a round trip settles only
/// some tens of milliseconds after the work changes. Until then a contender runs under the
/// placement the previous one left behind, which can make it much faster or slower than in a
/// sustained loop (docs/benchmarks-notes.md, "Payloads: the first calls after a switch").
fn interleaved_phases(
    batches: usize,
    (early, settle, steady): (u32, u32, u32),
    contenders: &mut [&mut dyn FnMut()],
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut first = vec![Vec::with_capacity(batches); contenders.len()];
    let mut sustained = vec![Vec::with_capacity(batches); contenders.len()];
    for _ in 0..batches {
        for (k, f) in contenders.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..early {
                f();
            }
            first[k].push(start.elapsed().as_secs_f64() / f64::from(early));
            for _ in 0..settle {
                f();
            }
            let start = Instant::now();
            for _ in 0..steady {
                f();
            }
            sustained[k].push(start.elapsed().as_secs_f64() / f64::from(steady));
        }
    }
    (first, sustained)
}

/// The payload round trips of 1 MiB and 16 MiB measured again in alternating batches (each batch
/// sees the same machine load), as ratios to raw ipc-channel and to the warm two-copy floor (and
/// a plain `Vec<u8>` beside the same bytes in a struct field): both sustained (after each
/// contender's placement settled) and in the first calls after each switch; printed and written
/// to `target/polyexec-bench/subprocess_payload_interleaved.json`.
fn interleaved_payloads(k: &Contenders) {
    let batches = if common::quick() { 7 } else { 15 };
    let mut out = serde_json::Map::new();
    // Calls per phase: early (as the earlier 40-call batches measured), settling, sustained.
    for (name, size, phases) in [
        ("1MiB", 1usize << 20, (40u32, 80u32, 200u32)),
        ("16MiB", 16 << 20, (4, 8, 16)),
    ] {
        let payload = ByteBuf::from(vec![0xA5u8; size]);
        let mut there = vec![0u8; size];
        let mut back = vec![0u8; size];
        for _ in 0..3 {
            k.peer.bytes_round_trip(&payload);
            k.one.spawn(payload.clone(), |b: ByteBuf| b).join().unwrap();
        }
        let mut bytes = Some(payload.clone());
        let mut vec = Some(payload.to_vec());
        let mut wrapped = Some(Wrapped(payload.to_vec()));
        let (early, sustained) = interleaved_phases(
            batches,
            phases,
            &mut [
                &mut || {
                    black_box(k.peer.bytes_round_trip(&payload));
                },
                &mut || {
                    let echoed = k.one.spawn(payload.clone(), |b: ByteBuf| b).join().unwrap();
                    black_box(echoed.len());
                },
                &mut || {
                    let input = bytes.take().expect("put back below");
                    let echoed = k.one.spawn(input, |b: ByteBuf| b).join().unwrap();
                    black_box(echoed.len());
                    bytes = Some(echoed);
                },
                &mut || {
                    there.copy_from_slice(black_box(&payload));
                    back.copy_from_slice(black_box(&there));
                    black_box(back[size - 1]);
                },
                &mut || {
                    let input = vec.take().expect("put back below");
                    let echoed = k.one.spawn(input, |v: Vec<u8>| v).join().unwrap();
                    black_box(echoed.len());
                    vec = Some(echoed);
                },
                &mut || {
                    let input = wrapped.take().expect("put back below");
                    let echoed = k.one.spawn(input, |w: Wrapped| w).join().unwrap();
                    black_box(echoed.0.len());
                    wrapped = Some(echoed);
                },
            ],
        );
        let mut phases_json = serde_json::Map::new();
        for (phase, times) in [("sustained", &sustained), ("after_switch", &early)] {
            let ratio = |a: usize, b: usize| {
                let mut r: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect();
                common::median_quartiles(&mut r)
            };
            let median = |i: usize| common::median_quartiles(&mut times[i].clone()).0;
            let mut line = format!(
                "summary: payload {name} ({}), alternating batches: ipc_channel_raw {:.3} ms, \
                 polyexec {:.3} ms, polyexec_moved {:.3} ms, memcpy_twice {:.3} ms, \
                 polyexec_vec_moved {:.3} ms, polyexec_vec_field_moved {:.3} ms;",
                phase.replace('_', " "),
                median(0) * 1e3,
                median(1) * 1e3,
                median(2) * 1e3,
                median(3) * 1e3,
                median(4) * 1e3,
                median(5) * 1e3,
            );
            let mut ratios = serde_json::Map::new();
            for (label, a, b) in [
                ("polyexec / ipc_channel_raw", 1, 0),
                ("polyexec_moved / ipc_channel_raw", 2, 0),
                ("polyexec / memcpy_twice", 1, 3),
                ("polyexec_moved / memcpy_twice", 2, 3),
                ("polyexec_vec_moved / ipc_channel_raw", 4, 0),
                ("polyexec_vec_field_moved / polyexec_vec_moved", 5, 4),
            ] {
                let (r, q1, q3) = ratio(a, b);
                line += &format!(" {label} {r:.2}x ({q1:.2}-{q3:.2});");
                ratios.insert(label.into(), serde_json::json!([q1, r, q3]));
            }
            println!("{line}");
            phases_json.insert(
                phase.into(),
                serde_json::json!({
                    "ipc_channel_raw_median_s": median(0),
                    "polyexec_median_s": median(1),
                    "polyexec_moved_median_s": median(2),
                    "memcpy_twice_median_s": median(3),
                    "polyexec_vec_moved_median_s": median(4),
                    "polyexec_vec_field_moved_median_s": median(5),
                    "ratios_q1_median_q3": ratios,
                }),
            );
        }
        out.insert(
            name.into(),
            serde_json::json!({
                "calls_early_settle_sustained": [phases.0, phases.1, phases.2],
                "phases": phases_json,
            }),
        );
    }
    common::write_json(
        "subprocess_payload_interleaved",
        &serde_json::json!({ "batches": batches, "sizes": out }),
    );
}

fn main() {
    if let Ok(server) = std::env::var(ECHO_ENV) {
        ipc_echo(server);
    }
    // Workers are this benchmark binary started again: hand over before anything else.
    polyexec::init();
    procspawn::init();

    let contenders = Contenders {
        peer: IpcPeer::start(),
        one: pool(1),
        two: pool(2),
        ps_one: procspawn_pool(1),
        ps_two: procspawn_pool(2),
    };
    let mut c = Criterion::default().configure_from_args();
    round_trips(&mut c, &contenders);
    submit_all(&mut c, &contenders);
    map(&mut c, &contenders);
    payloads(&mut c, &contenders);
    worker_start(&mut c);
    cpu(&mut c, &contenders);
    c.final_summary();

    // The ratio the issue asks for, measured in alternating batches (criterion measures each
    // alone, minutes apart, which on a shared machine can compare different loads).
    interleaved_round_trips(&contenders);
    interleaved_payloads(&contenders);
}
