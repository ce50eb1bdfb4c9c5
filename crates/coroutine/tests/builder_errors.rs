//! The builder refuses configurations it cannot run, with `BuildError::InvalidConfig`.

use std::time::Duration;

use polyexec_core::{BuildError, Executor};
use polyexec_coroutine::EventLoop;

#[test]
fn zero_threads_is_invalid() {
    let err = EventLoop::builder().threads(0).build().unwrap_err();
    assert!(matches!(err, BuildError::InvalidConfig(_)), "{err:?}");
    assert!(err.to_string().contains("at least 1 thread"), "{err}");
}

#[test]
fn a_zero_time_limit_is_invalid() {
    let err = EventLoop::builder()
        .task_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidConfig(_)), "{err:?}");
    assert!(err.to_string().contains("task_timeout"), "{err}");
}

#[test]
fn defaults_build() {
    let event_loop = EventLoop::new().expect("build with defaults");
    assert_eq!(event_loop.workers(), 1);
    assert_eq!(event_loop.backend_name(), "coroutine");
    let text = format!("{event_loop:?}");
    assert!(text.contains("threads: 1"), "{text}");
}
