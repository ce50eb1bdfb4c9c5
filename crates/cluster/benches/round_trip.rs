//! A trivial task's round trip on the cluster backend (one local worker host, one slot) beside
//! two baselines in the same run: a raw core-NATS request/reply to a responder on the same
//! server, the least any NATS round trip costs; and the same through a JetStream work queue
//! with nothing of polyexec (publish to a file-backed work-queue stream, a responder pulling
//! from a durable consumer, replying over core NATS and acking), the least a round trip costs
//! with the persistence and redelivery the backend stands on. Needs `POLYEXEC_CLUSTER_URL` (for example from
//! `source scripts/nats.sh && nats_start`); without it the bench says so and measures nothing.
//!
//! `POLYEXEC_CLUSTER_URL=nats://127.0.0.1:PORT cargo bench -p polyexec-cluster --bench round_trip`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use polyexec_cluster::ClusterPool;
use polyexec_core::Executor;

// The local worker host is this bench binary started again: the hook makes it serve.
polyexec_cluster::test_hook!();

fn round_trip(c: &mut Criterion) {
    let Ok(url) = std::env::var("POLYEXEC_CLUSTER_URL") else {
        eprintln!("round_trip: POLYEXEC_CLUSTER_URL is not set; nothing measured");
        return;
    };
    let mut group = c.benchmark_group("round_trip");

    // Baseline: request/reply over core NATS, the responder on its own connection.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (client, responder) = runtime.block_on(async {
        let responder = async_nats::connect(url.as_str()).await.expect("connect");
        let mut requests = responder
            .subscribe("polyexec.bench.echo")
            .await
            .expect("subscribe");
        let echo = responder.clone();
        let task = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = echo.publish(reply, request.payload).await;
                }
            }
        });
        responder.flush().await.expect("flush");
        let client = async_nats::connect(url.as_str()).await.expect("connect");
        (client, task)
    });
    group.bench_function("raw core-NATS request/reply", |b| {
        b.iter(|| {
            runtime.block_on(async {
                client
                    .request("polyexec.bench.echo", vec![1u8; 8].into())
                    .await
                    .expect("a reply")
            })
        });
    });

    // Baseline: a JetStream work queue, raw.
    let (js_client, puller) = runtime.block_on(async {
        use async_nats::jetstream::{self, consumer, stream};
        let responder = async_nats::connect(url.as_str()).await.expect("connect");
        let js = jetstream::new(responder.clone());
        let _ = js.delete_stream("POLYEXEC_BENCH_RAW").await;
        let queue = js
            .create_stream(stream::Config {
                name: "POLYEXEC_BENCH_RAW".into(),
                subjects: vec!["polyexec_bench_raw.q".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .expect("a stream");
        let consumer = queue
            .create_consumer(consumer::pull::Config {
                durable_name: Some("raw".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .expect("a consumer");
        let task = tokio::spawn(async move {
            let mut messages = consumer.messages().await.expect("pull");
            while let Some(Ok(message)) = messages.next().await {
                // The payload is the subject to answer on.
                let reply = String::from_utf8_lossy(&message.payload).into_owned();
                let _ = responder.publish(reply, message.payload.clone()).await;
                let _ = message.ack().await;
            }
        });
        let client = async_nats::connect(url.as_str()).await.expect("connect");
        (client, task)
    });
    let js = runtime.block_on(async { async_nats::jetstream::new(js_client.clone()) });
    let inbox = js_client.new_inbox();
    let mut answers = runtime
        .block_on(js_client.subscribe(inbox.clone()))
        .expect("subscribe");
    group.bench_function(
        "raw JetStream work queue, publish + pull + reply + ack",
        |b| {
            b.iter(|| {
                runtime.block_on(async {
                    js.publish("polyexec_bench_raw.q", inbox.clone().into())
                        .await
                        .expect("publish");
                    answers.next().await.expect("an answer")
                })
            });
        },
    );
    puller.abort();
    let _ = runtime.block_on(js.delete_stream("POLYEXEC_BENCH_RAW"));
    {
        // A subscriber unsubscribes from a task of the runtime.
        let _enter = runtime.enter();
        drop(answers);
    }

    let pool = ClusterPool::builder()
        .url(&url)
        .local_workers(1)
        .slots_per_worker(1)
        .build()
        .expect("a cluster pool");
    group.bench_function("cluster spawn + join (1 host)", |b| {
        b.iter(|| pool.spawn(7u64, |x: u64| x + 1).join().expect("a value"));
    });
    group.finish();
    pool.shutdown();
    responder.abort();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = round_trip
}
criterion_main!(benches);
