//! Cancelling through `&self` and through an [`AbortHandle`](crate::AbortHandle) held elsewhere.

use std::path::Path;

use super::{Gate, mark, marker, occupy_all, temp_dir};
use crate::{Executor, TaskError};

/// An [`AbortHandle`](crate::AbortHandle) sent to another thread cancels a queued task, which
/// then never runs; a second abort, and a cancel, report that nothing was left to cancel; an
/// abort after the result was delivered changes nothing.
pub fn abort_from_another_thread<E: Executor + 'static>(make: &dyn Fn() -> E) {
    let exec = make();
    let dir = temp_dir();
    let mut gate = Gate::new();
    let blockers = occupy_all(&exec, &mut gate);
    let path = marker(dir.path(), "aborted");
    let victim = exec.spawn(path.clone(), mark);
    let abort = victim.abort_handle();
    let elsewhere = abort.clone();
    assert!(
        std::thread::spawn(move || elsewhere.abort())
            .join()
            .unwrap()
    );
    assert!(victim.is_finished());
    assert!(
        !abort.abort(),
        "a second abort must report nothing left to cancel"
    );
    assert!(!victim.cancel());
    assert_eq!(victim.join(), Err(TaskError::Cancelled));
    // Cancelled through a shared reference, as from a collection.
    let shared_path = marker(dir.path(), "shared");
    let shared = exec.spawn(shared_path.clone(), mark);
    let by_ref = &shared;
    assert!(by_ref.cancel());
    drop(shared);
    gate.release();
    for b in blockers {
        assert_eq!(b.join(), Ok(gate.port()));
    }
    // Delivered first: the abort finds nothing to cancel.
    let done = exec.spawn(4u8, |x: u8| x + 1);
    let late = done.abort_handle();
    assert_eq!(done.join(), Ok(5));
    assert!(!late.abort());
    exec.shutdown();
    assert!(!Path::new(&path).exists(), "an aborted queued task ran");
    assert!(
        !Path::new(&shared_path).exists(),
        "a queued task cancelled through `&` ran"
    );
}
