//! The backend conformance suite run through the facade: every compiled-in backend, chosen at run
//! time as an `AnyExecutor`.

#[cfg(feature = "thread")]
mod thread {
    polyexec_core::conformance_suite!(|| polyexec::Backend::Thread
        .build_with_workers(Some(2))
        .expect("build the thread backend"));
}
