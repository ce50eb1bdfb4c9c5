//! Choosing a backend at run time: by name, from the environment, and the default.

use polyexec::{Backend, Executor};

// This test binary is also the subprocess backend's worker executable.
polyexec::test_hook!();

mod common;

#[test]
fn every_compiled_backend_is_found_by_its_name() {
    assert!(!Backend::all().is_empty());
    for &backend in Backend::all() {
        assert_eq!(Backend::from_name(backend.name()), Ok(backend));
        assert_eq!(
            Backend::from_name(&backend.name().to_uppercase()),
            Ok(backend)
        );
        assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        assert_eq!(backend.to_string(), backend.name());
    }
}

#[test]
fn default_is_the_first_in_priority_order() {
    assert_eq!(Backend::default(), Backend::all()[0]);
    #[cfg(feature = "thread")]
    assert_eq!(Backend::default(), Backend::Thread);
}

#[test]
fn unknown_names_are_explained() {
    let err = Backend::from_name("fibers").unwrap_err();
    assert_eq!(err.name(), "fibers");
    let text = err.to_string();
    assert!(text.contains("unknown backend `fibers`"), "{text}");
    for backend in Backend::all() {
        assert!(text.contains(backend.name()), "{text}");
    }
}

#[test]
fn known_but_missing_backends_name_their_feature() {
    for name in ["thread", "coroutine", "subprocess"] {
        if Backend::all().iter().any(|b| b.name() == name) {
            continue;
        }
        let text = Backend::from_name(name).unwrap_err().to_string();
        assert!(
            text.contains(&format!("enable the cargo feature `{name}`")),
            "{text}"
        );
    }
}

#[test]
fn every_backend_builds_and_runs_the_same_closure() {
    let task = |(a, b): (u32, u32)| a * b;
    for backend in common::buildable_backends() {
        let exec = backend.build_with_workers(Some(1)).expect("build");
        assert_eq!(exec.backend(), backend);
        assert_eq!(exec.backend_name(), backend.name());
        assert_eq!(exec.workers(), 1);
        assert_eq!(exec.spawn((6, 7), task).join(), Ok(42));
        exec.shutdown();
    }
}

#[test]
fn zero_workers_is_a_configuration_error() {
    for &backend in Backend::all() {
        let err = backend.build_with_workers(Some(0)).unwrap_err();
        assert!(
            matches!(err, polyexec::BuildError::InvalidConfig(_)),
            "{backend}: {err:?}"
        );
    }
}

/// `from_env` is tested in a child process, so that setting the variable cannot race with other
/// tests reading the environment of this one.
#[test]
fn from_env_reads_polyexec_backend() {
    if let Ok(expected) = std::env::var("POLYEXEC_TEST_EXPECT_BACKEND") {
        let got = Backend::from_env().map(|b| b.map(Backend::name));
        match expected.as_str() {
            "none" => assert_eq!(got, Ok(None)),
            "error" => assert!(got.is_err()),
            name => assert_eq!(got, Ok(Some(name))),
        }
        return;
    }
    let me = std::env::current_exe().expect("test binary path");
    let first = Backend::all()[0].name();
    for (value, expect) in [
        (Some(first), first),
        (Some(""), "none"),
        (None, "none"),
        (Some("no-such-backend"), "error"),
    ] {
        let mut cmd = std::process::Command::new(&me);
        cmd.args(["--exact", "from_env_reads_polyexec_backend", "--quiet"])
            .env("POLYEXEC_TEST_EXPECT_BACKEND", expect)
            .env_remove("POLYEXEC_BACKEND");
        if let Some(value) = value {
            cmd.env("POLYEXEC_BACKEND", value);
        }
        let status = cmd.status().expect("run the test binary");
        assert!(status.success(), "POLYEXEC_BACKEND={value:?}: child failed");
    }
}
