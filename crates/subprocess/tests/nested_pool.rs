//! A worker never starts workers: building a pool inside a task is refused.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::Executor;

#[test]
fn pool_inside_a_worker_is_refused() {
    let pool = common::pool(1);
    let message = pool
        .spawn((), |()| {
            match polyexec_subprocess::ProcessPool::builder()
                .workers(1)
                .build()
            {
                Ok(_) => "built a pool inside a worker".to_owned(),
                Err(err) => err.to_string(),
            }
        })
        .join()
        .unwrap();
    assert!(message.contains("never starts workers"), "{message}");
    // A process that a task starts is not a worker, even though it inherits the environment.
    let status = pool
        .spawn((), |()| {
            std::process::Command::new("/bin/sh")
                .args(["-c", "test -n \"$POLYEXEC_WORKER\""])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
        .join()
        .unwrap();
    assert!(
        status,
        "the worker's environment is inherited by its children"
    );
}
