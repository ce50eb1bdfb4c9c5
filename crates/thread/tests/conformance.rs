//! The backend conformance suite, run against the thread pool with one and with four workers.

mod two_workers {
    polyexec_core::conformance_suite!(|| polyexec_thread::ThreadPool::builder()
        .workers(2)
        .build()
        .expect("build a pool"));
}

mod one_worker {
    polyexec_core::conformance_suite!(|| polyexec_thread::ThreadPool::builder()
        .workers(1)
        .build()
        .expect("build a pool"));
}
