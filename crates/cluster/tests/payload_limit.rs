//! An input or output larger than the NATS server's `max_payload` (1 MiB by default) fails its
//! own task at once with a codec error naming the limit; the connection stays up, so the other
//! tasks in flight and later ones are served.

polyexec_cluster::test_hook!();

mod common;

use polyexec_core::{CodecStage, Executor, TaskError};

const TOO_LARGE: usize = 2 << 20;

#[test]
fn payloads_over_max_payload_fail_alone_with_a_codec_error() {
    let pool = common::pool(1);
    let before: Vec<_> = (0..100u64).map(|i| pool.spawn(i, |x: u64| x * 2)).collect();

    let big_input = pool.spawn(vec![7u8; TOO_LARGE], |v: Vec<u8>| v.len());
    let err = big_input.join().unwrap_err();
    let TaskError::Codec(codec) = &err else {
        panic!("expected a codec error, got {err:?}");
    };
    assert_eq!(codec.stage, CodecStage::EncodeInput);
    assert!(err.to_string().contains("max_payload"), "{err}");

    let big_output = pool.spawn(TOO_LARGE, |n: usize| vec![1u8; n]);
    let err = big_output.join().unwrap_err();
    let TaskError::Codec(codec) = &err else {
        panic!("expected a codec error, got {err:?}");
    };
    assert_eq!(codec.stage, CodecStage::EncodeOutput);
    assert!(err.to_string().contains("max_payload"), "{err}");

    for (i, handle) in before.into_iter().enumerate() {
        assert_eq!(handle.join(), Ok(i as u64 * 2));
    }
    assert_eq!(
        pool.spawn(vec![1u8; 1000], |v: Vec<u8>| v.len()).join(),
        Ok(1000)
    );
    let metrics = pool.metrics();
    assert_eq!(metrics.failed_other(), 2, "{metrics:?}");
}
