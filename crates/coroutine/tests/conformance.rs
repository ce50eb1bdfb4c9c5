//! The backend conformance suite, run against the event loop with one and with two threads.

mod one_thread {
    polyexec_core::conformance_suite!(|| polyexec_coroutine::EventLoop::builder()
        .threads(1)
        .build()
        .expect("build an event loop"));
}

mod two_threads {
    polyexec_core::conformance_suite!(|| polyexec_coroutine::EventLoop::builder()
        .threads(2)
        .build()
        .expect("build an event loop"));
}
