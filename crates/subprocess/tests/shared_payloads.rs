//! Large inputs and outputs go through shared memory and come back intact: byte buffers
//! (`serde_bytes`), plain `Vec<u8>` (encoded as bytes when it is the whole input or output,
//! element by element inside another type), structs that mix them with
//! other fields, async tasks' outputs, payloads that make the regions grow, and the same
//! payloads with shared memory turned off.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::Executor;
use polyexec_subprocess::ProcessPool;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Lines of `/proc/<pid>/maps` that map a payload region.
fn region_mappings(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("read maps")
        .lines()
        .filter(|line| line.contains("memfd:polyexec-payload"))
        .count()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Mixed {
    name: String,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    plain: Vec<u8>,
    tail: u64,
}

/// One test, so that no other pool of this process maps regions meanwhile.
#[test]
fn large_payloads_round_trip() {
    byte_payloads_round_trip_through_the_regions();
    structs_vectors_and_async_outputs_round_trip();
    without_shared_memory_payloads_take_the_socket();
    // Every region is unmapped once its pool is gone.
    assert_eq!(region_mappings(std::process::id()), 0);
}

fn byte_payloads_round_trip_through_the_regions() {
    let pool = common::pool(1);
    let worker = pool.worker_pids()[0];
    assert_eq!(region_mappings(std::process::id()), 0);
    // Growing sizes: each region is replaced by a larger one while nothing is in it.
    for (i, len) in [64 << 10, 1 << 20, 3 << 20, 16 << 20, 1 << 20, 70_000]
        .into_iter()
        .enumerate()
    {
        let input = ByteBuf::from(pattern(len, i as u8));
        let back = common::join(pool.spawn(input.clone(), |mut b: ByteBuf| {
            b.reverse();
            b
        }))
        .unwrap();
        let mut expected = input.into_vec();
        expected.reverse();
        assert!(
            back.into_vec() == expected,
            "payload of {len} bytes differs"
        );
    }
    // The pool's input region, the worker's output region (mapped on both sides).
    assert_eq!(region_mappings(std::process::id()), 2);
    assert_eq!(region_mappings(worker), 2);
}

fn structs_vectors_and_async_outputs_round_trip() {
    let pool = common::pool(2);
    let mixed = Mixed {
        name: "payload".into(),
        data: pattern(2 << 20, 3),
        plain: pattern(300 << 10, 5),
        tail: 77,
    };
    let back = common::join(pool.spawn(mixed.clone(), |mut m: Mixed| {
        m.tail += 1;
        m
    }))
    .unwrap();
    assert_eq!(back.tail, 78);
    assert_eq!(Mixed { tail: 77, ..back }, mixed);

    // A whole input or output that is a plain `Vec<u8>`, large (through the regions) and small
    // (through the socket), from blocking and async tasks.
    for len in [3 << 20, 100] {
        let back = common::join(pool.spawn(pattern(len, 9), |mut v: Vec<u8>| {
            v.reverse();
            v
        }))
        .unwrap();
        let mut expected = pattern(len, 9);
        expected.reverse();
        assert!(back == expected, "a Vec<u8> of {len} bytes differs");
        let len = u32::try_from(len).unwrap();
        let back =
            common::join(pool.spawn_async(len, |n: u32| async move { pattern(n as usize, 11) }))
                .unwrap();
        assert!(back == pattern(len as usize, 11));
    }

    let async_back = common::join(pool.spawn_async(1u8 << 4, |n: u8| async move {
        ByteBuf::from(pattern(usize::from(n) << 16, n))
    }))
    .unwrap();
    assert!(async_back.into_vec() == pattern(16 << 16, 16));
    // An async task's large input, read from the pool's region.
    let input = ByteBuf::from(pattern(3 << 20, 7));
    let sum = common::join(pool.spawn_async(input.clone(), |b: ByteBuf| async move {
        b.iter().map(|&x| u64::from(x)).sum::<u64>()
    }));
    assert_eq!(sum, Ok(input.iter().map(|&x| u64::from(x)).sum::<u64>()));

    // Many in flight at once, more than one region holds: the rest take the socket.
    let handles: Vec<_> = (0..24u8)
        .map(|i| {
            let input = ByteBuf::from(pattern(512 << 10, i));
            pool.spawn(input, |b: ByteBuf| {
                b.iter().map(|&x| u64::from(x)).sum::<u64>()
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let expected: u64 = pattern(512 << 10, i as u8)
            .iter()
            .map(|&x| u64::from(x))
            .sum();
        assert_eq!(common::join(handle), Ok(expected));
    }
}

fn without_shared_memory_payloads_take_the_socket() {
    let pool = ProcessPool::builder()
        .workers(1)
        .shared_memory(false)
        .build()
        .expect("build a pool");
    let input = ByteBuf::from(pattern(5 << 20, 9));
    let back = common::join(pool.spawn(input.clone(), |b: ByteBuf| b)).unwrap();
    assert!(back == input);
    assert_eq!(region_mappings(std::process::id()), 0);
    assert_eq!(region_mappings(pool.worker_pids()[0]), 0);
}
