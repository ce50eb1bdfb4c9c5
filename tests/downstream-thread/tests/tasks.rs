//! An integration test of a crate that depends on polyexec.

use polyexec::{Backend, Executor, TaskError};

#[test]
fn runs_portable_tasks_on_every_backend() {
    for &backend in Backend::all() {
        let exec = backend.build_with_workers(Some(2)).expect("build");
        let task = |(a, b): (String, usize)| a.repeat(b);
        assert_eq!(exec.spawn(("ab".to_string(), 3), task).join(), Ok("ababab".to_string()));
        let err = exec.spawn(0u8, |x: u8| -> u8 { panic!("downstream {x}") }).join();
        assert_eq!(err.unwrap_err().panic_message(), Some("downstream 0"));
        exec.shutdown();
        assert_eq!(exec.spawn(1u8, |x: u8| x).join(), Err(TaskError::ShutDown));
    }
}
