//! [`unblock`]: blocking code called from an async task, off the task's thread.

/// Runs the blocking closure `f` on a thread pool made for blocking calls and waits for its
/// result without blocking the calling thread: the twin of Python's `asyncio.to_thread` and
/// tokio's `spawn_blocking`.
///
/// Call it from an async task that must do something blocking (a file read, a synchronous
/// client, a CPU-heavy step): on the event loop, the loop keeps running other tasks meanwhile;
/// on a pool thread or in a worker process, that thread is free for other async tasks. It works
/// on every backend and under any async runtime. The threads are the `blocking` crate's: started
/// on demand, at most 500 by default (`BLOCKING_MAX_THREADS`), ended after half a second idle.
/// A panic in `f` is the awaiting task's panic.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::Executor;
/// # let exec = polyexec_core::Inline;
/// let len = exec.spawn_async("Cargo.toml".to_string(), |path: String| async move {
///     polyexec::unblock(move || std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)).await
/// });
/// assert!(len.join()? > 0);
/// # Ok::<(), polyexec::TaskError>(())
/// ```
pub async fn unblock<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    blocking::unblock(f).await
}
