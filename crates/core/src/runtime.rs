//! The tokio runtime behind portable tasks (feature `tokio`).
//!
//! Libraries built on tokio (tokio's timer, net, fs and process types; hyper, reqwest, tonic,
//! sqlx) look up the *current* runtime when a resource is made, and need that runtime's drivers
//! (I/O, time) to be driven while the resource waits. They do not need tokio's scheduler: a
//! future that holds a tokio resource may be polled by any executor, as long as the thread that
//! makes the resource has the runtime's context entered. So every backend keeps its own
//! scheduler and holds a [`TokioRuntime`]: the threads that poll tasks enter its context for
//! their whole life ([`enter_tokio`]), and one tokio worker thread, owned by the runtime, drives its drivers
//! (and runs whatever a task hands to `tokio::spawn`).

use std::cell::Cell;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use tokio::runtime::{EnterGuard, Handle, Runtime, RuntimeFlavor};

use crate::BuildError;

thread_local! {
    /// How many [`TokioContext`] guards are alive on this thread: the runtime context this
    /// thread sees was entered by a polyexec backend, not by a runtime running here.
    static POLYEXEC_CONTEXT_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// The tokio runtime an executor runs portable tasks in: its own, or one the caller passed in.
///
/// For backend implementors; users choose with the backends' `tokio_handle` builder options.
/// The threads that poll tasks enter its context with [`enter_tokio`] on a [`Handle`] of their
/// own, so that the runtime's resources (its driver's descriptors) go with
/// [`shutdown`](Self::shutdown) even while something else keeps the executor's state alive.
///
/// # Examples
///
/// ```
/// let runtime = polyexec_core::TokioRuntime::new("polyexec-tokio")?;
/// let handle = runtime.handle().expect("running");
/// let _context = polyexec_core::enter_tokio(&handle);
/// // Tokio resources can be made here; the runtime's own thread drives their I/O and timers.
/// let sleep = tokio::time::sleep(std::time::Duration::from_millis(1));
/// polyexec_core::block_on(sleep);
/// # Ok::<(), polyexec_core::BuildError>(())
/// ```
pub struct TokioRuntime {
    /// `None` once shut down.
    state: Mutex<Option<State>>,
    is_owned: bool,
}

struct State {
    handle: Handle,
    /// The runtime, when it is the executor's own; `None` when the caller's is used (the caller
    /// keeps it running).
    runtime: Option<Runtime>,
}

impl TokioRuntime {
    /// A runtime of the executor's own: one tokio worker thread named `thread_name`, which
    /// parks in the I/O and time drivers and so drives them, with every driver enabled.
    ///
    /// # Errors
    ///
    /// [`BuildError::Start`] if the runtime's thread or driver cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let runtime = polyexec_core::TokioRuntime::new("polyexec-tokio")?;
    /// assert!(runtime.is_owned());
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn new(thread_name: &str) -> Result<Self, BuildError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map_err(|err| BuildError::Start(format!("could not start a tokio runtime: {err}")))?;
        Ok(TokioRuntime {
            state: Mutex::new(Some(State {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
            })),
            is_owned: true,
        })
    }

    /// The caller's runtime, by its handle. Its drivers must be driven by the caller: a
    /// multi-thread runtime drives them on its own threads; a current-thread runtime only while
    /// some thread runs its `block_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// let runtime = polyexec_core::TokioRuntime::from_handle(rt.handle().clone());
    /// assert!(!runtime.is_owned());
    /// ```
    pub fn from_handle(handle: Handle) -> Self {
        TokioRuntime {
            state: Mutex::new(Some(State {
                handle,
                runtime: None,
            })),
            is_owned: false,
        }
    }

    /// A handle of the runtime; `None` after [`shutdown`](Self::shutdown).
    ///
    /// # Examples
    ///
    /// ```
    /// let runtime = polyexec_core::TokioRuntime::new("polyexec-tokio")?;
    /// let answer = runtime.handle().unwrap().spawn(async { 42 });
    /// assert_eq!(polyexec_core::block_on(answer).unwrap(), 42);
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn handle(&self) -> Option<Handle> {
        self.lock().as_ref().map(|state| state.handle.clone())
    }

    /// `true` if the executor started this runtime (and stops it at shutdown).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(polyexec_core::TokioRuntime::new("rt")?.is_owned());
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn is_owned(&self) -> bool {
        self.is_owned
    }

    /// Lets go of the runtime: the executor's own is stopped (what tasks handed to
    /// `tokio::spawn` is dropped, its thread joined); the caller's is left running.
    ///
    /// For an executor's shutdown, once no task of its own can run any more. Tokio resources
    /// still alive then report that the runtime is gone when next used.
    ///
    /// # Examples
    ///
    /// ```
    /// let runtime = polyexec_core::TokioRuntime::new("rt")?;
    /// runtime.shutdown();
    /// assert!(runtime.handle().is_none());
    /// runtime.shutdown(); // once is enough; again does nothing
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn shutdown(&self) {
        let state = self.lock().take();
        if let Some(runtime) = state.and_then(|state| state.runtime) {
            if Handle::try_current().is_ok() {
                // Dropping a runtime waits for its threads, which tokio forbids (with a panic)
                // inside a runtime's async context, and which would never end on the runtime's
                // own thread. Its thread stops on its own.
                runtime.shutdown_background();
            } else {
                drop(runtime);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TokioRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for TokioRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioRuntime")
            .field("owned", &self.is_owned)
            .field("running", &self.lock().is_some())
            .finish()
    }
}

/// Enters the context of `handle`'s runtime on this thread for as long as the guard lives.
///
/// A thread that polls portable tasks holds one, so tasks make their tokio resources in that
/// runtime. Blocking waits stay allowed on such a thread: the runtime does not run here, so
/// waiting cannot stall it (see [`block_on`](crate::block_on)).
///
/// # Examples
///
/// ```
/// let runtime = polyexec_core::TokioRuntime::new("rt")?;
/// let handle = runtime.handle().unwrap();
/// let context = polyexec_core::enter_tokio(&handle);
/// assert!(tokio::runtime::Handle::try_current().is_ok());
/// drop(context);
/// assert!(tokio::runtime::Handle::try_current().is_err());
/// # Ok::<(), polyexec_core::BuildError>(())
/// ```
pub fn enter_tokio(handle: &Handle) -> TokioContext<'_> {
    let guard = handle.enter();
    POLYEXEC_CONTEXT_DEPTH.with(|depth| depth.set(depth.get() + 1));
    TokioContext { _guard: guard }
}

/// Guard returned by [`enter_tokio`]: the runtime's context stays entered while it
/// lives. It stays on the thread that made it.
///
/// # Examples
///
/// ```
/// let runtime = polyexec_core::TokioRuntime::new("rt")?;
/// let handle = runtime.handle().unwrap();
/// println!("{:?}", polyexec_core::enter_tokio(&handle));
/// # Ok::<(), polyexec_core::BuildError>(())
/// ```
#[must_use = "the context is entered only while the guard lives"]
pub struct TokioContext<'a> {
    _guard: EnterGuard<'a>,
}

impl Drop for TokioContext<'_> {
    fn drop(&mut self) {
        let _ = POLYEXEC_CONTEXT_DEPTH.try_with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

impl fmt::Debug for TokioContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioContext").finish_non_exhaustive()
    }
}

/// `true` if a blocking wait here would stall a current-thread tokio runtime: the thread is in
/// the context of one (inside its `block_on`, or a `#[tokio::main(flavor = "current_thread")]`
/// body), and that context was not entered by a polyexec backend.
///
/// A multi-thread runtime is not counted: blocking one of its threads stalls only the tasks on
/// that thread (and `tokio::task::block_in_place` hands them to another thread first).
pub(crate) fn on_current_thread_runtime() -> bool {
    if POLYEXEC_CONTEXT_DEPTH
        .try_with(|depth| depth.get() > 0)
        .unwrap_or(false)
    {
        return false;
    }
    Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::CurrentThread)
}
