//! `#[tokio::main]` with polyexec's `tokio` feature: one portable task that uses a tokio timer and
//! a `tokio::net::TcpStream` runs on every backend, its handles awaited on the caller's runtime.

use std::time::Duration;

use polyexec::{Backend, Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The portable task: a tokio timer, then one line echoed by the loopback server at `port`.
async fn echo_through_tokio((port, line): (u16, String)) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
    let mut echoed = String::new();
    stream
        .read_to_string(&mut echoed)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(echoed)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A worker process never returns from here: it serves tasks in a runtime of its own.
    polyexec::init();

    // An echo server on this program's runtime: each connection gets back what it sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if stream.read_to_end(&mut buf).await.is_ok() {
                    let _ = stream.write_all(&buf).await;
                }
            });
        }
    });

    let mut ran_on = Vec::new();
    for &backend in Backend::all() {
        let exec = backend.build_with_workers(Some(2))?;
        let handles: Vec<_> = (0..4)
            .map(|i| exec.spawn_async((port, format!("{backend} #{i}")), echo_through_tokio))
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            // Awaited: a blocking `join` here would hold one of this runtime's threads.
            let echoed = handle.await??;
            if echoed != format!("{backend} #{i}") {
                return Err(format!("{backend}: task {i} echoed {echoed:?}").into());
            }
        }
        // A graceful shutdown waits: on a multi-thread runtime, in `block_in_place`.
        tokio::task::block_in_place(|| exec.shutdown());
        ran_on.push(backend.name());
    }
    println!(
        "downstream-tokio: a task on tokio::net ran from #[tokio::main] on {}",
        ran_on.join(", ")
    );
    Ok(())
}
