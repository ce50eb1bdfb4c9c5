//! Crashes, watched from outside: the crash row runs in a child process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use polyexec::{Backend, Executor};

use crate::common::Res;
use crate::measure::short_error;
use crate::report::Crash;

/// The crash test's task: the task `crash` aborts after 20 ms, while the others are still
/// waiting; the others return after 300 ms. An `async fn` item is a portable task too.
pub(crate) async fn probe_task((i, crash): (u32, u32)) -> u32 {
    if i == crash {
        polyexec::sleep(Duration::from_millis(20)).await;
        std::process::abort();
    }
    polyexec::sleep(Duration::from_millis(300)).await;
    i
}

/// Runs in the child: the crash test, one line per result on stdout as it arrives.
///
/// On a backend whose tasks run in this process, the abort ends this process, and the parent
/// sees how it died and which lines made it out before.
pub(crate) fn probe_child(backend: Backend, workers: Option<usize>, tasks: u32) -> Res {
    let exec = backend.build_with_workers(workers)?;
    exec.spawn(0u8, |x: u8| x).join()?; // the workers are up
    let crash = tasks / 2;
    println!("crash {crash}");
    let handles: Vec<_> = (0..tasks)
        .map(|i| exec.spawn_async((i, crash), probe_task))
        .collect();
    // `println!` flushes each line, so the parent gets every line written before a crash.
    for (i, result) in polyexec::as_completed(handles) {
        match result {
            Ok(_) => println!("ok {i}"),
            Err(e) => println!("err {i} {}", short_error(&e)),
        }
    }
    let after = exec.spawn(1u8, |x: u8| x + 1).join() == Ok(2);
    println!("after {}", if after { "ok" } else { "failed" });
    println!("restarts {}", exec.metrics().worker_restarts());
    Ok(())
}

/// Runs the crash test in a child process (this program, re-run with `--crash-probe`), so that
/// a crash that takes its whole process down is observed rather than suffered.
pub(crate) fn measure(backend: Backend, workers: usize, tasks: u32) -> Result<Crash, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Through `sh`, to switch core dumps off first: the crash is on purpose, and a core file
    // left in the current directory would be litter.
    let mut command = if cfg!(unix) {
        let mut sh = Command::new("sh");
        sh.args(["-c", "ulimit -c 0 2>/dev/null; exec \"$0\" \"$@\""])
            .arg(exe);
        sh
    } else {
        Command::new(exe)
    };
    if backend.name() == "cluster" {
        // A crash in an async task takes its worker host down; JetStream delivers the task
        // again once `ack_wait` passes without news, up to `max_deliver` times. Short values
        // keep the row to seconds (the defaults are 30 s and 5).
        command
            .env("POLYEXEC_CLUSTER_ACK_WAIT_MS", "1000")
            .env("POLYEXEC_CLUSTER_MAX_DELIVER", "2");
    }
    let mut child = command
        .args(["--crash-probe", backend.name()])
        .args(["--crash-tasks", &tasks.to_string()])
        .args(["--workers", &workers.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not re-run this program: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the crash probe did not finish in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let lines = reader.join().map_err(|_| "reader thread panicked")?;

    let mut crash_index = None;
    let (mut others_ok, mut others_failed, mut error, mut after) = (0, 0, None, false);
    let mut worker_restarts = None;
    for line in &lines {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("crash"), Some(i), _) => crash_index = i.parse::<u32>().ok(),
            (Some("ok"), Some(_), _) => others_ok += 1,
            (Some("err"), Some(i), rest) if i.parse::<u32>().ok() == crash_index => {
                error = rest.map(str::to_owned);
            }
            (Some("err"), Some(_), _) => others_failed += 1,
            (Some("after"), Some(word), _) => after = word == "ok",
            (Some("restarts"), Some(n), _) => worker_restarts = n.parse().ok(),
            _ => {}
        }
    }
    if crash_index.is_none() {
        return Err(format!(
            "the crash probe failed to start ({})",
            exit_text(&status)
        ));
    }
    Ok(Crash {
        tasks,
        contained: status.success() && error.is_some(),
        program_exit: exit_text(&status),
        others_ok,
        others_failed,
        error,
        executor_ok_after: after,
        worker_restarts,
    })
}

pub(crate) fn exit_text(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "ended".into(),
    }
}
