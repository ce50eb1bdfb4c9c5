//! A panicking task resolves with `Panicked` (message and location); its worker keeps serving.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::Executor;

#[test]
fn panic_gives_message_and_location_and_the_worker_survives() {
    let pool = common::pool(1);
    let before = pool.spawn((), |()| std::process::id()).join().unwrap();
    let err = pool
        .spawn(7u32, |x: u32| -> u32 { panic!("task {x} failed") })
        .join()
        .unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    assert_eq!(err.panic_message(), Some("task 7 failed"));
    match &err {
        polyexec_core::TaskError::Panicked(panic) => {
            let location = panic.location.as_deref().expect("a location");
            assert!(location.contains("tests/panic.rs:"), "{location}");
        }
        other => panic!("not a panic: {other:?}"),
    }
    // Same process: the worker was not replaced.
    let after = pool.spawn((), |()| std::process::id()).join().unwrap();
    assert_eq!(before, after);
    // Non-string payloads, and async tasks, too.
    let err = pool
        .spawn((), |()| -> u8 { std::panic::panic_any(42u8) })
        .join()
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("<non-string panic payload>"));
    let err = pool
        .spawn_async(1u8, |x: u8| async move {
            assert_eq!(x, 2, "async assertion");
            x
        })
        .join()
        .unwrap_err();
    assert!(
        err.panic_message().unwrap().contains("async assertion"),
        "{err}"
    );
    assert_eq!(pool.spawn((), |()| std::process::id()).join(), Ok(before));
}

/// Fault injection, during the task: a panic fails that task alone; healthy tasks ahead of it and
/// behind it on the same worker are unaffected.
#[test]
fn panic_alongside_healthy_tasks() {
    let pool = common::pool(2);
    let err = common::alongside(&pool, |pool| {
        pool.spawn(7u32, |x: u32| -> u32 { panic!("task {x} failed") })
    })
    .unwrap_err();
    assert_eq!(err.panic_message(), Some("task 7 failed"));
}
