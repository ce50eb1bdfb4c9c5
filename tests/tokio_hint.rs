//! Without the feature `tokio`, a task that uses a tokio type fails with a `Panicked` whose
//! message says which feature to enable, on every backend.
#![cfg(not(feature = "tokio"))]

use std::time::Duration;

use polyexec::{Backend, Executor};

// This test binary is also the subprocess backend's worker executable.
polyexec::test_hook!();

#[test]
fn no_reactor_panics_advise_the_tokio_feature() {
    for &backend in Backend::all() {
        let exec = backend.build_with_workers(Some(1)).expect("build");
        let err = exec
            .spawn_async(1u64, |ms: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            })
            .join()
            .unwrap_err();
        let message = err.panic_message().expect("a panic");
        assert!(
            message.contains("there is no reactor running"),
            "{backend}: {message}"
        );
        assert!(
            message.contains("enable polyexec's `tokio` feature"),
            "{backend}: {message}"
        );
    }
}
