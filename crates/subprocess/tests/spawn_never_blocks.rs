//! `spawn` returns at once even when the workers are busy and the inputs are large: frames that
//! do not fit in a worker's channel wait in the pool's queue, not in a blocked write.

polyexec_subprocess::test_hook!();

mod common;

use std::sync::mpsc;
use std::time::Duration;

use polyexec_core::Executor;
use polyexec_core::conformance::{Gate, gated};
use serde_bytes::ByteBuf;

#[test]
fn large_inputs_behind_a_busy_worker_do_not_block_spawn() {
    let pool = common::pool(1);
    let mut gate = Gate::new();
    let blocker = pool.spawn(gate.port(), gated);
    gate.wait_started(1);
    let (done_tx, done_rx) = mpsc::channel();
    let handles = std::thread::scope(|scope| {
        let submitter = scope.spawn(|| {
            let handles: Vec<_> = (0..20u8)
                .map(|i| pool.spawn(ByteBuf::from(vec![i; 1 << 20]), |b: ByteBuf| b[0]))
                .collect();
            done_tx.send(()).unwrap();
            handles
        });
        // 20 MiB cannot fit in the channel while the worker is held: if `spawn` wrote them
        // itself it would block here until the gate opens, which only happens below.
        let spawned = done_rx.recv_timeout(Duration::from_secs(120));
        gate.release();
        assert!(spawned.is_ok(), "spawn blocked behind a busy worker");
        submitter.join().unwrap()
    });
    assert_eq!(blocker.join(), Ok(gate.port()));
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i as u8));
    }
}
