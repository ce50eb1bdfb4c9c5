//! What running blocking tasks in a host's worker processes costs: a trivial blocking task's
//! round trip (host → its worker process → host) beside a trivial async task's (run on the host
//! itself), in the same run, on one local worker host with one slot. Needs
//! `POLYEXEC_CLUSTER_URL` (for example from `source scripts/nats.sh && nats_start`); without it
//! the bench says so and measures nothing.
//!
//! `POLYEXEC_CLUSTER_URL=nats://127.0.0.1:PORT cargo bench -p polyexec-cluster --bench host_hop`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use polyexec_cluster::ClusterPool;
use polyexec_core::Executor;

// The local worker host and its worker processes are this bench binary started again.
polyexec_cluster::test_hook!();

fn host_hop(c: &mut Criterion) {
    let Ok(url) = std::env::var("POLYEXEC_CLUSTER_URL") else {
        eprintln!("host_hop: POLYEXEC_CLUSTER_URL is not set; nothing measured");
        return;
    };
    let pool = ClusterPool::builder()
        .url(&url)
        .local_workers(1)
        .slots_per_worker(1)
        .build()
        .expect("a cluster pool");
    let mut group = c.benchmark_group("host_hop");
    group.bench_function("async task, run on the host", |b| {
        b.iter(|| {
            pool.spawn_async(7u64, |x: u64| async move { x + 1 })
                .join()
                .expect("a value")
        });
    });
    group.bench_function("blocking task, run in the host's worker process", |b| {
        b.iter(|| pool.spawn(7u64, |x: u64| x + 1).join().expect("a value"));
    });
    group.finish();
    pool.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = host_hop
}
criterion_main!(benches);
