//! The crash-loop limit counts workers that die *in a row* before serving. A worker that served
//! tasks and then dies while idle (killed from outside: an operator, the OOM killer) is no crash
//! loop, however many times that happens over the life of a pool — also when every task it ran
//! was a lone task, which runs without a `STARTED` frame.

polyexec_subprocess::test_hook!();

mod common;

use polyexec_core::{Executor, TaskError};
use polyexec_subprocess::ProcessPool;
use rustix::process::{Pid, Signal};

#[test]
fn idle_deaths_of_workers_that_served_are_no_crash_loop() {
    let pool = ProcessPool::builder()
        .workers(1)
        .crash_loop_limit(2)
        .build()
        .expect("build a pool");
    for round in 0..6u32 {
        // One task at a time: each is a lone task on an idle worker.
        let pid = common::join(pool.spawn((), |()| std::process::id())).unwrap();
        assert_eq!(
            common::join(pool.spawn(round, |x: u32| x + 1)),
            Ok(round + 1)
        );
        // The worker is idle: kill it, and wait for the pool to notice (it reaps its workers).
        rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
        common::wait_for("the pool to reap the killed worker", || {
            !common::process_exists(pid)
        });
    }
    let last = common::join(pool.spawn(1u8, |x: u8| x));
    assert!(
        !matches!(&last, Err(TaskError::Transport(m)) if m.contains("stopped taking tasks")),
        "idle deaths of workers that had served were taken for a crash loop: {last:?}"
    );
    assert_eq!(last, Ok(1));
}
