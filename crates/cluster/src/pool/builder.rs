//! [`ClusterPoolBuilder`]: a cluster pool's settings.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use polyexec_core::{BuildError, Counters};
use tokio::sync::mpsc;

use super::io::{Io, Roll, roll_call};
use super::local::LocalWorkers;
use super::{ClusterPool, Inner, Shared, State, Stop};
use crate::build_id::BuildId;
use crate::frame::Key;
use crate::settings::{self, Auth, Settings, env};

/// How long [`ClusterPoolBuilder::build`] waits for worker hosts of this build, by default.
const DEFAULT_WORKER_WAIT: Duration = Duration::from_secs(30);

/// Settings of a [`ClusterPool`]; [`build`](Self::build) connects and starts it.
///
/// Every setting left alone is read from its `POLYEXEC_CLUSTER_*` environment variable, else its
/// default: `URL` (required), `KEY` (64 hex digits; a random one if unset, which only local
/// workers then share), `PREFIX` (`polyexec`), `QUEUE` (`default`; with neither a key nor a
/// queue configured, a queue of the pool's own, deleted when it stops), `ACK_WAIT_MS` (30 s),
/// `MAX_DELIVER` (5), `MAX_AGE_S` (one day), `SLOTS` (per local worker: the processors),
/// `CREDS`, `USER` and `PASSWORD`, `TOKEN`, `TLS` and `TLS_CA`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use polyexec_cluster::ClusterPool;
///
/// polyexec_cluster::init();
/// let pool = ClusterPool::builder()
///     .url("nats://127.0.0.1:4222")
///     .queue("reports")
///     .ack_wait(Duration::from_secs(10))
///     .max_deliver(3)
///     .local_workers(2)
///     .build()?;
/// # Ok::<(), polyexec_core::BuildError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClusterPoolBuilder {
    url: Option<String>,
    key: Option<String>,
    prefix: Option<String>,
    queue: Option<String>,
    ack_wait: Option<Duration>,
    max_deliver: Option<u32>,
    max_age: Option<Duration>,
    slots: Option<u32>,
    local_workers: usize,
    worker_wait: Option<Duration>,
    time_limit: Option<Duration>,
    creds: Option<PathBuf>,
    user: Option<(String, String)>,
    token: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_required: Option<bool>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $field:ident $conv:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                let conv: fn($ty) -> _ = $conv;
                self.$field = Some(conv(value));
                self
            }
        )*
    };
}

impl ClusterPoolBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    setters! {
        /// The NATS server, e.g. `nats://10.0.0.5:4222` (else `POLYEXEC_CLUSTER_URL`).
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().url("nats://127.0.0.1:4222");
        /// # let _ = b;
        /// ```
        url: &str => url |s| s.to_owned();
        /// The cluster key, 64 hex digits, that authenticates frames between pools and hosts
        /// (else `POLYEXEC_CLUSTER_KEY`; a random key if neither, which only local workers get).
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().key(&"0f".repeat(32));
        /// # let _ = b;
        /// ```
        key: &str => key |s| s.to_owned();
        /// The subject prefix (and stream name stem) of this cluster: `polyexec` by default.
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().subject_prefix("acme");
        /// # let _ = b;
        /// ```
        subject_prefix: &str => prefix |s| s.to_owned();
        /// The queue within the build: hosts serve one queue (`POLYEXEC_CLUSTER_QUEUE`), so
        /// named queues keep kinds of work, or tenants, apart. `default` by default.
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().queue("nightly");
        /// # let _ = b;
        /// ```
        queue: &str => queue |s| s.to_owned();
        /// How long a host may hold a task without confirming progress before JetStream gives
        /// it to another host (30 s by default; hosts confirm every third of it while a task
        /// runs, so only a lost host lets it pass).
        ///
        /// # Examples
        ///
        /// ```
        /// # use std::time::Duration;
        /// let b = polyexec_cluster::ClusterPool::builder().ack_wait(Duration::from_secs(5));
        /// # let _ = b;
        /// ```
        ack_wait: Duration => ack_wait |d| d;
        /// How many times a task is delivered before the pool gives up on it with
        /// `TaskError::WorkerLost(WorkerExit::Deliveries(n))` (5 by default).
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().max_deliver(3);
        /// # let _ = b;
        /// ```
        max_deliver: u32 => max_deliver |n| n;
        /// How long a queued task is kept at most (one day by default): a pool that dies
        /// leaves nothing that grows forever.
        ///
        /// # Examples
        ///
        /// ```
        /// # use std::time::Duration;
        /// let b = polyexec_cluster::ClusterPool::builder().max_age(Duration::from_secs(3600));
        /// # let _ = b;
        /// ```
        max_age: Duration => max_age |d| d;
        /// Tasks each local worker runs at a time (the processors, by default).
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().slots_per_worker(4);
        /// # let _ = b;
        /// ```
        slots_per_worker: u32 => slots |n| n;
        /// How long `build` waits for worker hosts of this build to answer (30 s by default).
        ///
        /// # Examples
        ///
        /// ```
        /// # use std::time::Duration;
        /// let b = polyexec_cluster::ClusterPool::builder().worker_wait(Duration::from_secs(5));
        /// # let _ = b;
        /// ```
        worker_wait: Duration => worker_wait |d| d;
        /// A time limit for every task, counted from submission: `TaskError::TimedOut` after it.
        ///
        /// # Examples
        ///
        /// ```
        /// # use std::time::Duration;
        /// let b = polyexec_cluster::ClusterPool::builder().time_limit(Duration::from_secs(60));
        /// # let _ = b;
        /// ```
        time_limit: Duration => time_limit |d| d;
        /// A NATS credentials file (`.creds`, JWT and nkey seed).
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().credentials_file("/etc/app/nats.creds");
        /// # let _ = b;
        /// ```
        credentials_file: &str => creds |s| PathBuf::from(s);
        /// A NATS token.
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().token("s3cret");
        /// # let _ = b;
        /// ```
        token: &str => token |s| s.to_owned();
        /// A PEM file of root certificates to trust for TLS (implies TLS).
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().tls_root_certificates("/etc/app/ca.pem");
        /// # let _ = b;
        /// ```
        tls_root_certificates: &str => tls_ca |s| PathBuf::from(s);
        /// Whether TLS is required.
        ///
        /// # Examples
        ///
        /// ```
        /// let b = polyexec_cluster::ClusterPool::builder().require_tls(true);
        /// # let _ = b;
        /// ```
        require_tls: bool => tls_required |b| b;
    }

    /// A NATS user name and password.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = polyexec_cluster::ClusterPool::builder().user_and_password("app", "s3cret");
    /// # let _ = b;
    /// ```
    pub fn user_and_password(mut self, user: &str, password: &str) -> Self {
        self.user = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Starts `n` worker hosts of this executable on this machine, kept running (restarted if
    /// one dies) until the pool shuts down; `build` waits until they answer.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = polyexec_cluster::ClusterPool::builder().local_workers(2);
    /// # let _ = b;
    /// ```
    pub fn local_workers(mut self, n: usize) -> Self {
        self.local_workers = n;
        self
    }

    /// The settings, and whether the queue is this pool's alone (deleted when it stops).
    fn settings(&self, pool_id: u64) -> Result<(Settings, bool), String> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let url = self
            .url
            .clone()
            .or_else(|| from_env(env::URL))
            .ok_or_else(|| {
                format!(
                    "no NATS server given: set {} (for example nats://127.0.0.1:4222) or call \
                     ClusterPoolBuilder::url",
                    env::URL
                )
            })?;
        let configured_key = self.key.clone().or_else(|| from_env(env::KEY));
        let configured_queue = self.queue.clone().or_else(|| from_env(env::QUEUE));
        // A random key is known to this pool's local hosts only, and hosts of another key on
        // the same queue would refuse its tasks: such a pool gets a queue of its own.
        let private = configured_key.is_none() && configured_queue.is_none();
        let key = match configured_key {
            Some(hex) => Key::from_hex(&hex)?,
            None => Key::random()?,
        };
        let number = |name: &str| -> Result<Option<u64>, String> {
            from_env(name)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| format!("{name}={v:?} is not a valid number"))
                })
                .transpose()
        };
        let mut auth = Auth::from_env();
        if let Some(path) = &self.creds {
            auth.creds = Some(path.clone());
        }
        if let Some(user) = &self.user {
            auth.user = Some(user.clone());
        }
        if let Some(token) = &self.token {
            auth.token = Some(token.clone());
        }
        if let Some(path) = &self.tls_ca {
            auth.tls_ca = Some(path.clone());
            auth.tls_required = true;
        }
        if let Some(required) = self.tls_required {
            auth.tls_required = required;
        }
        let settings = Settings {
            url,
            key,
            prefix: self
                .prefix
                .clone()
                .or_else(|| from_env(env::PREFIX))
                .unwrap_or_else(|| settings::DEFAULT_PREFIX.into()),
            queue: match configured_queue {
                Some(queue) => queue,
                None if private => format!("p{pool_id:016x}"),
                None => settings::DEFAULT_QUEUE.into(),
            },
            ack_wait: match self.ack_wait {
                Some(d) => d,
                None => number(env::ACK_WAIT_MS)?
                    .map_or(settings::DEFAULT_ACK_WAIT, Duration::from_millis),
            },
            max_deliver: match self.max_deliver {
                Some(n) => n,
                None => number(env::MAX_DELIVER)?.map_or(settings::DEFAULT_MAX_DELIVER, |n| {
                    n.try_into().unwrap_or(u32::MAX)
                }),
            },
            max_age: match self.max_age {
                Some(d) => d,
                None => {
                    number(env::MAX_AGE_S)?.map_or(settings::DEFAULT_MAX_AGE, Duration::from_secs)
                }
            },
            slots: match self.slots {
                Some(n) => n,
                None => number(env::SLOTS)?.map_or_else(settings::default_slots, |n| {
                    n.try_into().unwrap_or(u32::MAX)
                }),
            },
            auth,
        };
        settings.check()?;
        Ok((settings, private))
    }

    /// Connects, starts the local workers and calls the roll, inside the runtime's context
    /// (the NATS client's types must be dropped there, also on the error paths).
    fn start(
        &self,
        runtime: &tokio::runtime::Runtime,
        settings: &Settings,
        build: BuildId,
        reply_to: &str,
    ) -> Result<(Io, Option<LocalWorkers>, Roll), BuildError> {
        let _context = runtime.enter();
        let io = runtime
            .block_on(Io::connect(settings, build, reply_to))
            .map_err(BuildError::Start)?;
        let client = io.client.clone();
        let local = if self.local_workers > 0 {
            Some(LocalWorkers::start(self.local_workers, settings).map_err(BuildError::Start)?)
        } else {
            None
        };
        let wait = self.worker_wait.unwrap_or(DEFAULT_WORKER_WAIT);
        let wanted = self.local_workers.max(1);
        let roll = runtime
            .block_on(roll_call(&client, settings, build, wait, |roll| {
                roll.ours.len() >= wanted || local.as_ref().is_some_and(|l| l.failure().is_some())
            }))
            .map_err(BuildError::Start)?;
        if let Some(failure) = local.as_ref().and_then(LocalWorkers::failure) {
            return Err(BuildError::Start(failure));
        }
        if roll.ours.len() < wanted {
            let others = if roll.others.is_empty() {
                "no worker host of any build answered".to_owned()
            } else {
                let mut builds: Vec<_> = roll.others.iter().cloned().collect();
                builds.sort();
                format!(
                    "hosts of other builds answered ({}): every machine must run the same \
                     executable file",
                    builds.join(", ")
                )
            };
            return Err(BuildError::Start(format!(
                "{} of {wanted} worker hosts of this build ({build:?}, queue `{}`) answered at \
                 {} within {wait:?}; {others}",
                roll.ours.len(),
                settings.queue,
                settings.url
            )));
        }
        Ok((io, local, roll))
    }

    /// Connects to NATS, starts the local workers (if any), and waits until worker hosts of
    /// this build answer: the local ones, or, without local workers, at least one anywhere.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidConfig`] for a bad setting or a missing URL; [`BuildError::Start`]
    /// if NATS cannot be reached, a local worker cannot be started, or no worker host of this
    /// build answers within the wait (the error names the builds that did answer).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// polyexec_cluster::init();
    /// let pool = polyexec_cluster::ClusterPool::builder().local_workers(1).build()?;
    /// # Ok::<(), polyexec_core::BuildError>(())
    /// ```
    pub fn build(self) -> Result<ClusterPool, BuildError> {
        if crate::worker::is_worker() {
            // A worker host that reaches this point was started by a pool but never entered
            // worker mode: starting pools (and workers) from it would multiply processes.
            return Err(BuildError::Start(
                "this process was started as a cluster worker host but did not serve: call \
                 polyexec::init() first thing in main (or put polyexec::test_hook!() in the test \
                 file) so that it does"
                    .into(),
            ));
        }
        let pool_id = {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| BuildError::Start(e.to_string()))?;
            u64::from_le_bytes(bytes)
        };
        let (settings, private_queue) =
            self.settings(pool_id).map_err(BuildError::InvalidConfig)?;
        let build = BuildId::current().map_err(BuildError::Start)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("polyexec-cluster-pool")
            .enable_all()
            .build()
            .map_err(|e| BuildError::Start(format!("cannot start a tokio runtime: {e}")))?;
        let reply_to = format!("{}.result.{pool_id:016x}", settings.prefix);
        // On a thread of its own: `block_on` refuses to run on a thread that drives another
        // tokio runtime, and a pool may well be built from inside one.
        let (io, local, roll) = std::thread::scope(|scope| {
            scope
                .spawn(|| self.start(&runtime, &settings, build, &reply_to))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        let slots = if self.local_workers > 0 {
            self.local_workers * settings.slots as usize
        } else {
            roll.slots()
        };
        let counters = Counters::new(slots);
        for _ in 0..slots {
            counters.worker_started();
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            settings,
            private_queue,
            build,
            reply_to,
            state: Mutex::new(State::default()),
            drained: Condvar::new(),
            next_id: AtomicU64::new(0),
            max_payload: io.client.server_info().max_payload,
            commands: commands.clone(),
            counters,
        });
        {
            let _guard = runtime.enter();
            io.run(&shared, receiver, commands);
        }
        Ok(ClusterPool {
            inner: Arc::new(Inner {
                shared,
                slots,
                time_limit: self.time_limit,
                stop: Mutex::new(Stop {
                    runtime: Some(runtime),
                    local,
                }),
            }),
        })
    }
}
