//! Tasks per second on the cluster backend, two local worker hosts, beside a baseline in the
//! same run: the same number of core-NATS requests in flight at once to two responders (no
//! JetStream, no acks), the most a NATS round trip per task can give on this machine.
//!
//! - `spawn all, join all`: 10,000 trivial tasks submitted at once, then joined (blocking tasks
//!   run in a host's worker processes; `spawn_async` ones on the host itself);
//! - `map`: 1,000,000 trivial inputs through `Executor::map`, which sends them in chunks.
//!
//! Needs `POLYEXEC_CLUSTER_URL` (for example from `source scripts/nats.sh && nats_start`).
//!
//! `cargo bench -p polyexec-cluster --bench throughput`

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use polyexec_cluster::ClusterPool;
use polyexec_core::Executor;

polyexec_cluster::test_hook!();

const TASKS: u64 = 10_000;
const MAP_INPUTS: u64 = 1_000_000;

fn throughput(c: &mut Criterion) {
    let Ok(url) = std::env::var("POLYEXEC_CLUSTER_URL") else {
        eprintln!("throughput: POLYEXEC_CLUSTER_URL is not set; nothing measured");
        return;
    };
    let mut group = c.benchmark_group("throughput");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TASKS));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (client, responders) = runtime.block_on(async {
        let mut responders = Vec::new();
        for _ in 0..2 {
            let responder = async_nats::connect(url.as_str()).await.expect("connect");
            let mut requests = responder
                .queue_subscribe("polyexec.bench.work", "responders".into())
                .await
                .expect("subscribe");
            let echo = responder.clone();
            responders.push(tokio::spawn(async move {
                while let Some(request) = requests.next().await {
                    if let Some(reply) = request.reply {
                        let _ = echo.publish(reply, request.payload).await;
                    }
                }
            }));
            responder.flush().await.expect("flush");
        }
        let client = async_nats::connect(url.as_str()).await.expect("connect");
        (client, responders)
    });
    group.bench_function(
        "raw core-NATS requests, all in flight (2 responders)",
        |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    runtime.block_on(async {
                        let mut replies: FuturesUnordered<_> = (0..TASKS)
                            .map(|i| {
                                client
                                    .request("polyexec.bench.work", i.to_le_bytes().to_vec().into())
                            })
                            .collect();
                        while let Some(reply) = replies.next().await {
                            reply.expect("a reply");
                        }
                    });
                }
                start.elapsed()
            });
        },
    );

    let pool = ClusterPool::builder()
        .url(&url)
        .local_workers(2)
        .build()
        .expect("a cluster pool");
    group.bench_function("cluster spawn all, join all (2 hosts)", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let handles: Vec<_> = (0..TASKS).map(|i| pool.spawn(i, |x: u64| x + 1)).collect();
                for handle in handles {
                    handle.join().expect("a value");
                }
            }
            start.elapsed()
        });
    });
    group.bench_function("cluster spawn_async all, join all (2 hosts)", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let handles: Vec<_> = (0..TASKS)
                    .map(|i| pool.spawn_async(i, |x: u64| async move { x + 1 }))
                    .collect();
                for handle in handles {
                    handle.join().expect("a value");
                }
            }
            start.elapsed()
        });
    });
    group.throughput(Throughput::Elements(MAP_INPUTS));
    group.bench_function("cluster map (2 hosts)", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut sum = 0u64;
                for value in pool.map(0..MAP_INPUTS, |x: u64| x + 1) {
                    sum += value.expect("a value");
                }
                assert_eq!(sum, MAP_INPUTS * (MAP_INPUTS + 1) / 2);
            }
            start.elapsed()
        });
    });
    group.finish();
    pool.shutdown();
    for responder in responders {
        responder.abort();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    targets = throughput
}
criterion_main!(benches);
