//! The seed scenario: two tasks started together, "Task 1" sleeping 2 s and "Task 2" sleeping 1 s,
//! written once as a portable async task and run on the backend of your choice.
//!
//! On every backend Task 2 finishes first and the whole run takes about 2 s, because the two
//! sleeps overlap.
//!
//! ```text
//! cargo run --release --example seed                      # the default backend
//! cargo run --release --example seed -- --backend thread  # any backend compiled in
//! POLYEXEC_BACKEND=thread cargo run --release --example seed
//! ```

use std::time::{Duration, Instant};

use polyexec::Executor;

mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    polyexec::init();
    // `--quick` is accepted and ignored: the scenario takes 2 s by definition.
    let args = common::Common::parse("usage: seed [options]")?;
    args.finish()?;
    let exec = args.build()?;
    println!("backend: {}", exec.backend_name());

    // The task captures nothing: its name and duration travel in the input.
    let task = |(name, secs): (String, u64)| async move {
        println!("{name} started");
        polyexec::sleep(Duration::from_secs(secs)).await;
        println!("{name} finished");
        name
    };

    let start = Instant::now();
    let task1 = exec.spawn_async(("Task 1".to_string(), 2), task);
    let task2 = exec.spawn_async(("Task 2".to_string(), 1), task);
    for result in polyexec::join_all([task1, task2]) {
        result?;
    }
    println!("total: {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}
