//! The backend conformance suite, run against the process pool with one and with two workers.

// Workers are this test binary started again: the hook makes them serve instead of running tests.
polyexec_subprocess::test_hook!();

mod two_workers {
    polyexec_core::conformance_suite!(|| polyexec_subprocess::ProcessPool::builder()
        .workers(2)
        .build()
        .expect("build a pool"));
}

mod one_worker {
    polyexec_core::conformance_suite!(|| polyexec_subprocess::ProcessPool::builder()
        .workers(1)
        .build()
        .expect("build a pool"));
}
