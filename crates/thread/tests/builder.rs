//! The thread pool's builder: worker count, names, stack size, initializer.

use std::sync::Mutex;

use polyexec_core::{BuildError, Executor};
use polyexec_thread::ThreadPool;

#[test]
fn zero_workers_is_refused() {
    let err = ThreadPool::builder().workers(0).build().unwrap_err();
    assert!(matches!(err, BuildError::InvalidConfig(_)), "{err:?}");
    assert!(err.to_string().contains("at least 1"), "{err}");
}

#[test]
fn default_is_available_parallelism() {
    let pool = ThreadPool::new().expect("pool");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(pool.workers(), cpus);
    assert_eq!(pool.backend_name(), "thread");
}

#[test]
fn threads_are_named_with_the_prefix() {
    let pool = ThreadPool::builder()
        .workers(2)
        .thread_name("crunch")
        .build()
        .expect("pool");
    let name = pool
        .spawn_capturing(|| std::thread::current().name().map(str::to_owned))
        .join()
        .expect("task");
    let name = name.expect("worker threads are named");
    assert!(
        name == "crunch-0" || name == "crunch-1",
        "unexpected name {name}"
    );
}

#[test]
fn stack_size_is_applied() {
    // A recursion that needs far more than the default 2 MiB of stack, but fits in 64 MiB.
    fn depth(n: u64) -> u64 {
        let pad = std::hint::black_box([0u8; 1024]);
        if n == 0 {
            u64::from(pad[0])
        } else {
            depth(n - 1) + 1
        }
    }
    let pool = ThreadPool::builder()
        .workers(1)
        .stack_size(64 << 20)
        .build()
        .expect("pool");
    assert_eq!(pool.spawn(20_000u64, depth).join(), Ok(20_000));
}

#[test]
fn initializer_runs_once_per_worker_before_any_task() {
    static SEEN: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    let pool = ThreadPool::builder()
        .workers(3)
        .on_worker_start(|index| SEEN.lock().unwrap().push(index))
        .build()
        .expect("pool");
    let mut seen = SEEN.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
    drop(pool);
}

#[test]
fn panicking_initializer_fails_the_build() {
    let err = ThreadPool::builder()
        .workers(2)
        .on_worker_start(|index| {
            if index == 1 {
                panic!("no GPU on worker {index}");
            }
        })
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Start(_)), "{err:?}");
    assert!(err.to_string().contains("no GPU on worker 1"), "{err}");
}

#[test]
fn capturing_closures_and_futures_run() {
    let pool = ThreadPool::builder().workers(2).build().expect("pool");
    let words = ["a".to_string(), "bc".to_string()];
    let total = pool
        .spawn_capturing(move || words.iter().map(String::len).sum::<usize>())
        .join();
    assert_eq!(total, Ok(3));
    let not_serializable = std::rc::Rc::new(5);
    let value = *not_serializable;
    let doubled = pool
        .spawn_capturing_async(async move {
            polyexec_core::sleep(std::time::Duration::from_millis(1)).await;
            value * 2
        })
        .join();
    assert_eq!(doubled, Ok(10));
    let err = pool
        .spawn_capturing(|| -> u8 { panic!("captured boom") })
        .join()
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("captured boom"));
}
