//! The same closure literal runs unchanged on the thread backend and the subprocess backend.

polyexec_subprocess::test_hook!();

use polyexec_core::{Executor, TaskError};

fn run_everywhere<E: Executor>(exec: &E) -> (String, Vec<u64>, Result<u8, TaskError>) {
    let describe =
        |(name, n): (String, u32)| format!("{name} has {} letters", name.len() + n as usize);
    let text = exec
        .spawn(("polyexec".to_string(), 0), describe)
        .join()
        .unwrap();
    let squares = exec
        .map(1..=5u64, |x: u64| x * x)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let failed = exec
        .spawn(0u8, |x: u8| {
            assert!(x > 0, "x must be positive");
            x
        })
        .join();
    (text, squares, failed)
}

#[test]
fn same_results_on_threads_and_processes() {
    let threads = polyexec_thread::ThreadPool::builder()
        .workers(2)
        .build()
        .unwrap();
    let processes = polyexec_subprocess::ProcessPool::builder()
        .workers(2)
        .build()
        .unwrap();
    let (a_text, a_squares, a_failed) = run_everywhere(&threads);
    let (b_text, b_squares, b_failed) = run_everywhere(&processes);
    assert_eq!(a_text, b_text);
    assert_eq!(a_squares, b_squares);
    assert_eq!(
        a_failed.unwrap_err().panic_message(),
        b_failed.unwrap_err().panic_message()
    );
    // And it did cross a process boundary.
    let pid = processes.spawn((), |()| std::process::id()).join().unwrap();
    assert_ne!(pid, std::process::id());
}
