//! `tracing`: what the `tracing` feature reports, printed by `tracing-subscriber`.
//!
//! A few tasks run, one panics, and on the subprocess backend one crashes its worker: the output
//! shows the task spans (at `DEBUG`), the workers starting, the crashed one exiting and its
//! replacement starting, and the shutdown phases. Build with the feature:
//!
//! ```text
//! cargo run --example tracing --features tracing
//! cargo run --example tracing --all-features -- --backend subprocess
//! ```

use polyexec::Executor;
use tracing_subscriber::fmt::format::FmtSpan;

mod common;

const USAGE: &str = "\
usage: tracing [options]

Runs a few tasks and prints the spans and events of the `tracing` feature.";

fn main() -> common::Res {
    polyexec::init(); // first: a worker process serves here and never returns
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        // A line as each task's span closes: its fields and how long it was busy.
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .with_ansi(false)
        .init();
    let args = common::Common::parse(USAGE)?;
    args.finish()?;
    let exec = args.build()?;

    let squares: Vec<u64> = exec
        .map(1..=3u64, |x: u64| x * x)
        .collect::<Result<_, _>>()?;
    tracing::info!(?squares, "map finished");
    let err = exec.spawn(0u8, |x: u8| 10 / x).join().unwrap_err();
    tracing::info!(%err, "a task panicked, as expected");
    if exec.backend_name() == "subprocess" {
        // Only a worker process can die alone: on the other backends this would end the program.
        let err = exec
            .spawn((), |()| -> u8 { std::process::abort() })
            .join()
            .unwrap_err();
        tracing::info!(%err, "a worker crashed, as expected");
        assert_eq!(exec.spawn(2u8, |x: u8| x + 1).join(), Ok(3));
    }
    exec.shutdown();
    tracing::info!(metrics = ?exec.metrics(), "done");
    Ok(())
}
