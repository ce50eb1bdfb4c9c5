//! A test binary WITHOUT `test_hook!()`: its workers (this binary, started with
//! `--polyexec-worker`) run the test harness, which rejects the argument and exits. Building a
//! pool must fail with an error that says what to do, promptly, leaving no process behind.

mod common;

use std::sync::Mutex;

use polyexec_core::BuildError;
use polyexec_subprocess::ProcessPool;

/// Serializes the tests that start children, so each can count them.
static CHILDREN: Mutex<()> = Mutex::new(());

#[test]
fn build_fails_with_a_clear_error() {
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    let err = ProcessPool::builder().workers(2).build().unwrap_err();
    let BuildError::Start(message) = &err else {
        panic!("unexpected error: {err:?}");
    };
    assert!(
        message.contains("worker exited before the handshake"),
        "{message}"
    );
    assert!(message.contains("polyexec::init()"), "{message}");
    assert!(message.contains("test_hook!()"), "{message}");
    assert!(common::children().is_empty(), "a worker was left behind");
}

/// Run by `worker_mode_program_without_hook_is_refused` in a child that looks like a worker
/// (its parent's pid in `POLYEXEC_WORKER`) but never entered worker mode, as a program whose
/// `main` forgot the hook: building a pool there must be refused, never start workers.
#[test]
fn build_in_unhooked_worker_is_refused() {
    if std::env::var_os("POLYEXEC_WORKER").is_none() {
        return; // only meaningful in the child started below
    }
    let err = ProcessPool::builder().workers(1).build().unwrap_err();
    assert!(
        err.to_string().contains("started as a polyexec worker"),
        "{err}"
    );
    assert!(err.to_string().contains("polyexec::init()"), "{err}");
    assert!(common::children().is_empty());
}

#[test]
fn worker_mode_program_without_hook_is_refused() {
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "build_in_unhooked_worker_is_refused",
            "--test-threads=1",
        ])
        .env("POLYEXEC_WORKER", std::process::id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "the child test failed: {status}");
}
