//! A `main` returning `Result<(), Box<dyn Error>>` prints its error with `Debug`: every public
//! error of polyexec must read as its `Display` sentence there, not as a struct.

use std::error::Error;

use polyexec::{Backend, BuildError, CodecStage, TaskError, WorkerExit};

polyexec::test_hook!();

/// What `main` would print after `Error: `.
fn as_main_prints(err: Box<dyn Error>) -> (String, String) {
    (format!("{err:?}"), err.to_string())
}

#[test]
fn unknown_backend_prints_its_sentence() {
    let err = "fibers".parse::<Backend>().unwrap_err();
    let (debug, display) = as_main_prints(err.into());
    assert_eq!(debug, display);
    assert!(
        debug.starts_with("unknown backend `fibers`; available: "),
        "{debug}"
    );
}

#[test]
fn task_errors_print_their_sentences() {
    let errors = [
        TaskError::panicked("boom", Some("src/main.rs:3:5".into())),
        TaskError::WorkerLost(WorkerExit::Signal(9)),
        TaskError::Cancelled,
        TaskError::TimedOut(std::time::Duration::from_millis(5)),
        TaskError::ShutDown,
        TaskError::codec(CodecStage::DecodeOutput, "unexpected end of input"),
        TaskError::transport("broken pipe"),
    ];
    for err in errors {
        let (debug, display) = as_main_prints(err.into());
        assert_eq!(debug, display);
    }
    let (debug, _) = as_main_prints(TaskError::panicked("boom", None).into());
    assert_eq!(debug, "task panicked: boom");
}

#[test]
fn build_errors_print_their_sentences() {
    let err = BuildError::InvalidConfig("workers must be at least 1".into());
    let (debug, display) = as_main_prints(err.into());
    assert_eq!(debug, display);
    assert_eq!(
        debug,
        "invalid executor configuration: workers must be at least 1"
    );
    // A real one, from a builder.
    let err = Backend::default().build_with_workers(Some(0)).unwrap_err();
    let (debug, display) = as_main_prints(err.into());
    assert_eq!(debug, display);
    assert!(
        debug.starts_with("invalid executor configuration: "),
        "{debug}"
    );
}
