//! A timer that works inside async tasks on every backend.

use std::time::Duration;

/// Waits for `duration` without blocking the thread: the twin of Python's `asyncio.sleep`.
///
/// Works in async tasks on every backend (the event loop, thread-pool workers and worker
/// processes alike), and from any other async runtime, because the timer runs on `async-io`'s
/// reactor, which drives itself when no one else does.
///
/// In a *blocking* task, use [`std::thread::sleep`] instead.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// polyexec::block_on(polyexec::sleep(Duration::from_millis(5)));
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// ```
pub async fn sleep(duration: Duration) {
    async_io::Timer::after(duration).await;
}
