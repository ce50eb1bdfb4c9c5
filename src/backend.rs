//! Choosing a backend at run time among those compiled in.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use polyexec_core::{AsyncTask, BlockingTask, BuildError, Executor, Portable, TaskHandle};

/// A backend compiled into this build, chosen at run time.
///
/// Only the backends whose cargo feature is enabled exist as variants.
///
/// # Examples
///
/// ```
/// use polyexec::Backend;
///
/// let name = Backend::all()[0].name(); // "thread" in a default build
/// let backend: Backend = name.parse()?;
/// assert_eq!(backend.name(), name);
/// assert!(Backend::all().contains(&backend));
/// assert!("fibers".parse::<Backend>().is_err());
/// # Ok::<(), polyexec::UnknownBackend>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// A pool of OS threads ([`crate::thread::ThreadPool`]).
    #[cfg(feature = "thread")]
    #[cfg_attr(docsrs, doc(cfg(feature = "thread")))]
    Thread,
    /// An event loop ([`crate::coroutine::EventLoop`]).
    #[cfg(feature = "coroutine")]
    #[cfg_attr(docsrs, doc(cfg(feature = "coroutine")))]
    Coroutine,
    /// A pool of worker processes ([`crate::subprocess::ProcessPool`]).
    #[cfg(feature = "subprocess")]
    #[cfg_attr(docsrs, doc(cfg(feature = "subprocess")))]
    Subprocess,
    /// Worker hosts on many machines through NATS JetStream
    /// ([`ClusterPool`](crate::cluster::ClusterPool)); built from `POLYEXEC_CLUSTER_URL` with
    /// local worker hosts of this executable.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    Cluster,
}

/// Every backend polyexec has, compiled in or not, in default-priority order.
const KNOWN: &[&str] = &["thread", "coroutine", "subprocess", "cluster"];

impl Backend {
    /// The backends compiled into this build, in default-priority order.
    ///
    /// # Examples
    ///
    /// ```
    /// for backend in polyexec::Backend::all() {
    ///     println!("{}", backend.name());
    /// }
    /// ```
    pub fn all() -> &'static [Backend] {
        &[
            #[cfg(feature = "thread")]
            Backend::Thread,
            #[cfg(feature = "coroutine")]
            Backend::Coroutine,
            #[cfg(feature = "subprocess")]
            Backend::Subprocess,
            #[cfg(feature = "cluster")]
            Backend::Cluster,
        ]
    }

    /// The backend's name: `"thread"`, `"coroutine"`, `"subprocess"` or `"cluster"`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(polyexec::Backend::default().name(), polyexec::Backend::all()[0].name());
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "thread")]
            Backend::Thread => "thread",
            #[cfg(feature = "coroutine")]
            Backend::Coroutine => "coroutine",
            #[cfg(feature = "subprocess")]
            Backend::Subprocess => "subprocess",
            #[cfg(feature = "cluster")]
            Backend::Cluster => "cluster",
        }
    }

    /// Looks a backend up by name (case-insensitive).
    ///
    /// # Errors
    ///
    /// [`UnknownBackend`] if no compiled-in backend has that name; its message lists the ones
    /// that are, and says which feature to enable when the name is a backend of polyexec that
    /// this build left out.
    ///
    /// # Examples
    ///
    /// ```
    /// let name = polyexec::Backend::default().name();
    /// assert_eq!(polyexec::Backend::from_name(&name.to_uppercase())?.name(), name);
    /// # Ok::<(), polyexec::UnknownBackend>(())
    /// ```
    pub fn from_name(name: &str) -> Result<Backend, UnknownBackend> {
        let wanted = name.trim().to_ascii_lowercase();
        Backend::all()
            .iter()
            .copied()
            .find(|b| b.name() == wanted)
            .ok_or_else(|| UnknownBackend {
                name: name.to_owned(),
                known_but_not_compiled: KNOWN.contains(&wanted.as_str()),
            })
    }

    /// The backend named by the `POLYEXEC_BACKEND` environment variable, or `None` if it is
    /// unset or empty.
    ///
    /// # Errors
    ///
    /// [`UnknownBackend`] if the variable names no compiled-in backend.
    ///
    /// # Examples
    ///
    /// ```
    /// let backend = polyexec::Backend::from_env()?.unwrap_or_default();
    /// # Ok::<(), polyexec::UnknownBackend>(())
    /// ```
    pub fn from_env() -> Result<Option<Backend>, UnknownBackend> {
        match std::env::var("POLYEXEC_BACKEND") {
            Ok(name) if !name.trim().is_empty() => Backend::from_name(&name).map(Some),
            _ => Ok(None),
        }
    }

    /// Starts an executor of this backend with its default settings.
    ///
    /// # Errors
    ///
    /// The backend's [`BuildError`].
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec::Executor;
    /// polyexec::init(); // needed by the subprocess backend; harmless otherwise
    /// polyexec::init();
    /// let exec = polyexec::Backend::default().build()?;
    /// assert_eq!(exec.spawn(2u8, |x: u8| x * 2).join()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<AnyExecutor, BuildError> {
        self.build_with_workers(None)
    }

    /// Starts an executor of this backend with `workers` workers (threads, loop threads or
    /// processes), or the backend's default for `None`.
    ///
    /// # Errors
    ///
    /// The backend's [`BuildError`], for example for zero workers.
    ///
    /// # Examples
    ///
    /// ```
    /// use polyexec::Executor;
    /// polyexec::init();
    /// let exec = polyexec::Backend::default().build_with_workers(Some(2))?;
    /// assert_eq!(exec.workers(), 2);
    /// # Ok::<(), polyexec::BuildError>(())
    /// ```
    pub fn build_with_workers(self, workers: Option<usize>) -> Result<AnyExecutor, BuildError> {
        match self {
            #[cfg(feature = "thread")]
            Backend::Thread => {
                let mut builder = polyexec_thread::ThreadPool::builder();
                if let Some(n) = workers {
                    builder = builder.workers(n);
                }
                builder.build().map(AnyExecutor::Thread)
            }
            #[cfg(feature = "coroutine")]
            Backend::Coroutine => {
                let mut builder = polyexec_coroutine::EventLoop::builder();
                if let Some(n) = workers {
                    builder = builder.threads(n);
                }
                builder.build().map(AnyExecutor::Coroutine)
            }
            #[cfg(feature = "subprocess")]
            Backend::Subprocess => {
                let mut builder = polyexec_subprocess::ProcessPool::builder();
                if let Some(n) = workers {
                    builder = builder.workers(n);
                }
                builder.build().map(AnyExecutor::Subprocess)
            }
            #[cfg(feature = "cluster")]
            Backend::Cluster => {
                // Local worker hosts of this executable, so that a program run with
                // `--backend cluster` needs only a NATS server; hosts elsewhere join in.
                if workers == Some(0) {
                    return Err(BuildError::InvalidConfig(
                        "workers (local worker hosts) must be at least 1".into(),
                    ));
                }
                // One slot per host, as the subprocess backend has one task per process, so
                // `workers` counts tasks at a time there and here.
                let hosts = workers.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                });
                polyexec_cluster::ClusterPool::builder()
                    .local_workers(hosts)
                    .slots_per_worker(1)
                    .build()
                    .map(AnyExecutor::Cluster)
            }
        }
    }
}

impl Default for Backend {
    /// The first compiled-in backend of `thread`, `coroutine`, `subprocess`, `cluster`.
    fn default() -> Self {
        Backend::all()[0]
    }
}

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::from_name(s)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// No compiled-in backend has the requested name.
///
/// # Examples
///
/// ```
/// let err = polyexec::Backend::from_name("green-threads").unwrap_err();
/// assert!(err.to_string().contains("green-threads"));
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct UnknownBackend {
    name: String,
    known_but_not_compiled: bool,
}

impl UnknownBackend {
    /// The name that was asked for.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        let available: Vec<&str> = Backend::all().iter().map(|b| b.name()).collect();
        if self.known_but_not_compiled {
            format!(
                "backend `{}` is not compiled in (enable the cargo feature `{}`); available: {}",
                self.name,
                self.name.trim().to_ascii_lowercase(),
                available.join(", ")
            )
        } else {
            format!(
                "unknown backend `{}`; available: {}",
                self.name,
                available.join(", ")
            )
        }
    }
}

/// `Debug` prints the `Display` sentence, so that a `main` returning `Box<dyn Error>` shows it.
impl fmt::Debug for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// An executor of whichever backend was chosen at run time; implements [`Executor`].
///
/// # Examples
///
/// ```
/// use polyexec::{AnyExecutor, Backend, Executor};
/// polyexec::init();
/// let name = Backend::default().name(); // "thread" in a default build
/// let exec: AnyExecutor = Backend::from_name(name)?.build()?;
/// assert_eq!(exec.backend_name(), name);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyExecutor {
    /// A [`ThreadPool`](crate::thread::ThreadPool).
    #[cfg(feature = "thread")]
    #[cfg_attr(docsrs, doc(cfg(feature = "thread")))]
    Thread(polyexec_thread::ThreadPool),
    /// An [`EventLoop`](crate::coroutine::EventLoop).
    #[cfg(feature = "coroutine")]
    #[cfg_attr(docsrs, doc(cfg(feature = "coroutine")))]
    Coroutine(polyexec_coroutine::EventLoop),
    /// A [`ProcessPool`](crate::subprocess::ProcessPool).
    #[cfg(feature = "subprocess")]
    #[cfg_attr(docsrs, doc(cfg(feature = "subprocess")))]
    Subprocess(polyexec_subprocess::ProcessPool),
    /// The cluster backend.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    Cluster(polyexec_cluster::ClusterPool),
}

impl AnyExecutor {
    /// Which backend this is.
    ///
    /// # Examples
    ///
    /// ```
    /// polyexec::init();
    /// let exec = polyexec::Backend::default().build()?;
    /// assert_eq!(exec.backend(), polyexec::Backend::default());
    /// # Ok::<(), polyexec::BuildError>(())
    /// ```
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "thread")]
            AnyExecutor::Thread(_) => Backend::Thread,
            #[cfg(feature = "coroutine")]
            AnyExecutor::Coroutine(_) => Backend::Coroutine,
            #[cfg(feature = "subprocess")]
            AnyExecutor::Subprocess(_) => Backend::Subprocess,
            #[cfg(feature = "cluster")]
            AnyExecutor::Cluster(_) => Backend::Cluster,
        }
    }
}

/// Forwards a call to whichever backend `$self` holds.
macro_rules! delegate {
    ($self:ident, $exec:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "thread")]
            AnyExecutor::Thread($exec) => $call,
            #[cfg(feature = "coroutine")]
            AnyExecutor::Coroutine($exec) => $call,
            #[cfg(feature = "subprocess")]
            AnyExecutor::Subprocess($exec) => $call,
            #[cfg(feature = "cluster")]
            AnyExecutor::Cluster($exec) => $call,
        }
    };
}

impl Executor for AnyExecutor {
    #[inline]
    fn spawn<F, In, Out>(&self, input: In, task: F) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        delegate!(self, e => e.spawn(input, task))
    }

    #[inline]
    fn spawn_async<F, In, Fut>(&self, input: In, task: F) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable,
    {
        delegate!(self, e => e.spawn_async(input, task))
    }

    // Forwarded, not left to the default: a backend's own `spawn_with` counts a task past its
    // limit as timed out.
    #[inline]
    fn spawn_with<F, In, Out>(
        &self,
        input: In,
        task: F,
        options: polyexec_core::SpawnOptions,
    ) -> TaskHandle<Out>
    where
        F: BlockingTask<In, Out>,
        In: Portable,
        Out: Portable,
    {
        delegate!(self, e => e.spawn_with(input, task, options))
    }

    #[inline]
    fn spawn_async_with<F, In, Fut>(
        &self,
        input: In,
        task: F,
        options: polyexec_core::SpawnOptions,
    ) -> TaskHandle<Fut::Output>
    where
        F: AsyncTask<In, Fut>,
        In: Portable,
        Fut: Future + Send + 'static,
        Fut::Output: Portable,
    {
        delegate!(self, e => e.spawn_async_with(input, task, options))
    }

    fn workers(&self) -> usize {
        delegate!(self, e => e.workers())
    }

    fn metrics(&self) -> polyexec_core::Metrics {
        delegate!(self, e => e.metrics())
    }

    fn backend_name(&self) -> &'static str {
        delegate!(self, e => e.backend_name())
    }

    fn preferred_chunk_size(&self) -> usize {
        delegate!(self, e => e.preferred_chunk_size())
    }

    fn adapts_chunk_size(&self) -> bool {
        delegate!(self, e => e.adapts_chunk_size())
    }

    fn shutdown(&self) {
        delegate!(self, e => e.shutdown())
    }

    fn shutdown_now(&self) {
        delegate!(self, e => e.shutdown_now())
    }

    fn shutdown_timeout(&self, limit: std::time::Duration) -> bool {
        delegate!(self, e => e.shutdown_timeout(limit))
    }
}
