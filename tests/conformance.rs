//! The backend conformance suite run through the facade: every compiled-in backend, chosen at run
//! time as an `AnyExecutor`.

// This test binary is also the subprocess backend's worker executable.
polyexec::test_hook!();

#[cfg(feature = "thread")]
mod thread {
    polyexec_core::conformance_suite!(|| polyexec::Backend::Thread
        .build_with_workers(Some(2))
        .expect("build the thread backend"));
}

#[cfg(feature = "coroutine")]
mod coroutine_one_thread {
    polyexec_core::conformance_suite!(|| polyexec::Backend::Coroutine
        .build_with_workers(Some(1))
        .expect("build the coroutine backend"));
}

#[cfg(feature = "coroutine")]
mod coroutine_two_threads {
    polyexec_core::conformance_suite!(|| polyexec::Backend::Coroutine
        .build_with_workers(Some(2))
        .expect("build the coroutine backend"));
}

#[cfg(feature = "subprocess")]
mod subprocess {
    polyexec_core::conformance_suite!(|| polyexec::Backend::Subprocess
        .build_with_workers(Some(2))
        .expect("build the subprocess backend"));
}
