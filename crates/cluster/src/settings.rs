//! Configuration shared by pools and worker hosts, and how it travels: from the builder, from
//! `POLYEXEC_CLUSTER_*` environment variables, and to the local workers a pool starts.

use std::path::PathBuf;
use std::time::Duration;

use crate::addr::Kind;
use crate::build_id::BuildId;
use crate::frame::Key;

/// Environment variables (the worker host reads them; the pool writes them for local workers).
pub(crate) mod env {
    pub(crate) const URL: &str = "POLYEXEC_CLUSTER_URL";
    pub(crate) const KEY: &str = "POLYEXEC_CLUSTER_KEY";
    pub(crate) const PREFIX: &str = "POLYEXEC_CLUSTER_PREFIX";
    pub(crate) const QUEUE: &str = "POLYEXEC_CLUSTER_QUEUE";
    pub(crate) const ACK_WAIT_MS: &str = "POLYEXEC_CLUSTER_ACK_WAIT_MS";
    pub(crate) const MAX_DELIVER: &str = "POLYEXEC_CLUSTER_MAX_DELIVER";
    pub(crate) const MAX_AGE_S: &str = "POLYEXEC_CLUSTER_MAX_AGE_S";
    pub(crate) const SLOTS: &str = "POLYEXEC_CLUSTER_SLOTS";
    pub(crate) const CREDS: &str = "POLYEXEC_CLUSTER_CREDS";
    pub(crate) const USER: &str = "POLYEXEC_CLUSTER_USER";
    pub(crate) const PASSWORD: &str = "POLYEXEC_CLUSTER_PASSWORD";
    pub(crate) const TOKEN: &str = "POLYEXEC_CLUSTER_TOKEN";
    pub(crate) const TLS_CA: &str = "POLYEXEC_CLUSTER_TLS_CA";
    pub(crate) const TLS_REQUIRED: &str = "POLYEXEC_CLUSTER_TLS";
    /// Set on a worker host: `parent:PID` for a local worker of pool process PID, `1` otherwise.
    pub(crate) const WORKER: &str = "POLYEXEC_CLUSTER_WORKER";
}

/// Everything a pool or a host needs to find the others.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) key: Key,
    pub(crate) prefix: String,
    pub(crate) queue: String,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: u32,
    pub(crate) max_age: Duration,
    pub(crate) slots: u32,
    pub(crate) auth: Auth,
}

/// How to authenticate to NATS (and whether to use TLS).
#[derive(Debug, Clone, Default)]
pub(crate) struct Auth {
    pub(crate) creds: Option<PathBuf>,
    pub(crate) user: Option<(String, String)>,
    pub(crate) token: Option<String>,
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) tls_required: bool,
}

pub(crate) const DEFAULT_PREFIX: &str = "polyexec";
pub(crate) const DEFAULT_QUEUE: &str = "default";
pub(crate) const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_MAX_DELIVER: u32 = 5;
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    match var(name) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={text:?} is not a valid number")),
    }
}

impl Auth {
    pub(crate) fn from_env() -> Auth {
        Auth {
            creds: var(env::CREDS).map(PathBuf::from),
            user: var(env::USER).map(|user| (user, var(env::PASSWORD).unwrap_or_default())),
            token: var(env::TOKEN),
            tls_ca: var(env::TLS_CA).map(PathBuf::from),
            tls_required: var(env::TLS_REQUIRED).is_some_and(|v| v != "0"),
        }
    }
}

impl Settings {
    /// A worker host's settings, from the environment.
    pub(crate) fn from_env() -> Result<Settings, String> {
        let url = var(env::URL).ok_or_else(|| {
            format!(
                "a cluster worker needs {} (for example nats://host:4222)",
                env::URL
            )
        })?;
        let key = var(env::KEY).ok_or_else(|| {
            format!(
                "a cluster worker needs {}: the same 64 hex digits as the pools it serves",
                env::KEY
            )
        })?;
        let settings = Settings {
            url,
            key: Key::from_hex(&key)?,
            prefix: var(env::PREFIX).unwrap_or_else(|| DEFAULT_PREFIX.into()),
            queue: var(env::QUEUE).unwrap_or_else(|| DEFAULT_QUEUE.into()),
            ack_wait: parsed::<u64>(env::ACK_WAIT_MS)?
                .map_or(DEFAULT_ACK_WAIT, Duration::from_millis),
            max_deliver: parsed(env::MAX_DELIVER)?.unwrap_or(DEFAULT_MAX_DELIVER),
            max_age: parsed::<u64>(env::MAX_AGE_S)?.map_or(DEFAULT_MAX_AGE, Duration::from_secs),
            slots: parsed(env::SLOTS)?.unwrap_or_else(default_slots),
            auth: Auth::from_env(),
        };
        settings.check()?;
        Ok(settings)
    }

    /// The environment a local worker host of these settings is started with.
    pub(crate) fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            (env::URL, self.url.clone()),
            (env::KEY, self.key.hex()),
            (env::PREFIX, self.prefix.clone()),
            (env::QUEUE, self.queue.clone()),
            (
                env::ACK_WAIT_MS,
                crate::frame::millis(self.ack_wait).to_string(),
            ),
            (env::MAX_DELIVER, self.max_deliver.to_string()),
            (env::MAX_AGE_S, self.max_age.as_secs().to_string()),
            (env::SLOTS, self.slots.to_string()),
            (
                env::TLS_REQUIRED,
                u8::from(self.auth.tls_required).to_string(),
            ),
        ];
        if let Some(path) = &self.auth.creds {
            vars.push((env::CREDS, path.display().to_string()));
        }
        if let Some((user, password)) = &self.auth.user {
            vars.push((env::USER, user.clone()));
            vars.push((env::PASSWORD, password.clone()));
        }
        if let Some(token) = &self.auth.token {
            vars.push((env::TOKEN, token.clone()));
        }
        if let Some(path) = &self.auth.tls_ca {
            vars.push((env::TLS_CA, path.display().to_string()));
        }
        vars
    }

    /// Refuses settings NATS would refuse later, with the reason.
    pub(crate) fn check(&self) -> Result<(), String> {
        let token = |what: &str, text: &str| {
            if text.is_empty()
                || !text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                Err(format!(
                    "the {what} {text:?} must be non-empty ASCII letters, digits, `-` or `_`"
                ))
            } else {
                Ok(())
            }
        };
        token("subject prefix", &self.prefix)?;
        token("queue name", &self.queue)?;
        if self.ack_wait < Duration::from_millis(300) {
            return Err(
                "ack_wait must be at least 300 ms (hosts confirm progress every third of it)"
                    .into(),
            );
        }
        if self.max_deliver == 0 {
            return Err("max_deliver must be at least 1".into());
        }
        if self.slots == 0 {
            return Err("a worker host needs at least 1 slot".into());
        }
        if self.max_age < Duration::from_secs(1) {
            return Err("max_age must be at least 1 s".into());
        }
        Ok(())
    }

    /// The JetStream stream holding every queued task of this prefix.
    pub(crate) fn stream_name(&self) -> String {
        format!(
            "{}_TASKS",
            self.prefix.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// The subject a task of `build` and `kind` on this queue is published on. Blocking and
    /// async tasks have subjects (and consumers) of their own: a host runs `slots` blocking
    /// tasks at a time but many more async ones, which mostly wait.
    pub(crate) fn task_subject(&self, build: BuildId, kind: Kind) -> String {
        format!(
            "{}.task.{}.{}.{}",
            self.prefix,
            build.hex(),
            self.queue,
            kind_tag(kind)
        )
    }

    /// The durable consumer all hosts of `build` on this queue share for tasks of `kind`.
    pub(crate) fn consumer_name(&self, build: BuildId, kind: Kind) -> String {
        format!("w_{}_{}_{}", build.hex(), self.queue, kind_tag(kind))
    }

    /// Where cancel notices for tasks of `build` go.
    pub(crate) fn cancel_subject(&self, build: BuildId) -> String {
        format!("{}.cancel.{}", self.prefix, build.hex())
    }

    /// Where pools call the roll of hosts (of every build: a pool reports the builds it found).
    pub(crate) fn hello_subject(&self) -> String {
        format!("{}.hello", self.prefix)
    }

    /// The advisories JetStream sends when a task of this stream ran out of deliveries (a pool
    /// picks its own tasks out by their stream sequence).
    pub(crate) fn max_deliveries_advisories(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
            self.stream_name()
        )
    }
}

fn kind_tag(kind: Kind) -> &'static str {
    match kind {
        Kind::Blocking => "b",
        Kind::Async => "a",
    }
}

/// Slots of a host when none is configured: one per available processor.
pub(crate) fn default_slots() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().try_into().unwrap_or(u32::MAX))
}

/// Connects to NATS with these settings; fails within the connection timeout.
pub(crate) async fn connect(settings: &Settings, name: &str) -> Result<async_nats::Client, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .require_tls(settings.auth.tls_required);
    if let Some(path) = &settings.auth.creds {
        options = options.credentials_file(path).await.map_err(|e| {
            format!(
                "cannot read the NATS credentials file {}: {e}",
                path.display()
            )
        })?;
    }
    if let Some((user, password)) = &settings.auth.user {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &settings.auth.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &settings.auth.tls_ca {
        options = options.add_root_certificates(path.clone());
    }
    options
        .connect(settings.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to the NATS server at {}: {e}", settings.url))
}

/// Makes sure the task stream and this build's consumer exist, with these settings.
pub(crate) async fn ensure_consumer(
    js: &async_nats::jetstream::Context,
    settings: &Settings,
    build: BuildId,
    kind: Kind,
) -> Result<async_nats::jetstream::consumer::PullConsumer, String> {
    use async_nats::jetstream::{consumer, stream};
    let stream = js
        .get_or_create_stream(stream::Config {
            name: settings.stream_name(),
            subjects: vec![format!("{}.task.>", settings.prefix)],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            max_age: settings.max_age,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            format!(
                "cannot create the JetStream stream {}: {e}",
                settings.stream_name()
            )
        })?;
    let name = settings.consumer_name(build, kind);
    stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: settings.task_subject(build, kind),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                max_deliver: settings.max_deliver.into(),
                // A consumer nobody pulls from for as long as tasks are kept goes away.
                inactive_threshold: settings.max_age,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot create the JetStream consumer {name}: {e}"))
}
