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

use polyexec::{Backend, Executor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    polyexec::init();
    let backend = backend_from_args()?;
    let exec = backend.build()?;
    println!("backend: {backend}");

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

/// `--backend NAME` (or `--backend=NAME`), else `POLYEXEC_BACKEND`, else the default.
fn backend_from_args() -> Result<Backend, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    // Every branch returns: there is at most one argument to look at.
    if let Some(arg) = args.next() {
        if arg == "--backend" {
            let name = args.next().ok_or("--backend needs a name")?;
            return Ok(Backend::from_name(&name)?);
        } else if let Some(name) = arg.strip_prefix("--backend=") {
            return Ok(Backend::from_name(name)?);
        } else if arg == "--help" || arg == "-h" {
            let names: Vec<&str> = Backend::all().iter().map(|b| b.name()).collect();
            println!("usage: seed [--backend {}]", names.join("|"));
            std::process::exit(0);
        } else {
            return Err(format!("unexpected argument `{arg}` (try --help)").into());
        }
    }
    Ok(Backend::from_env()?.unwrap_or_default())
}
