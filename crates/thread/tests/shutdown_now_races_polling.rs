//! `shutdown_now` while a worker is about to poll an async task for the first time: the task
//! must still be dropped (its handle resolves with `ShutDown`) and the shutdown must return.
//! The race is between a worker taking the task from the queue and the shutdown waking every
//! waiting task: a wake-up that comes while the task is taken but not yet polled is lost, and
//! the task must notice the shutdown itself. The window is a few instructions wide, so this is
//! repeated; the pool is shut down from another thread with a time limit, which only turns a
//! hang into a failure.

use std::sync::mpsc;
use std::time::Duration;

use polyexec_core::Executor;
use polyexec_thread::ThreadPool;

#[test]
fn shutdown_now_while_a_task_is_being_polled() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for round in 0..2_000u64 {
            let pool = ThreadPool::builder().workers(2).build().expect("pool");
            let sleepers: Vec<_> = (0..4)
                .map(|i| {
                    pool.spawn_async(round + i, |r: u64| async move {
                        polyexec_core::sleep(Duration::from_secs(3600)).await;
                        r
                    })
                })
                .collect();
            pool.shutdown_now();
            for sleeper in sleepers {
                assert!(
                    sleeper.join().unwrap_err().is_shutdown(),
                    "round {round}: a sleeping task must be dropped"
                );
            }
        }
        done_tx.send(()).expect("report");
    });
    done_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the rounds did not finish: shutdown_now hung, or an assertion above failed");
}
