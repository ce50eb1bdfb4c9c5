//! Why a worker could not be started, in words that say what to do.

use polyexec_core::{BuildError, WorkerExit};

/// The advice for the most common cause of a failed handshake.
pub(crate) const HOOK_ADVICE: &str = "call polyexec::init() first in main (or \
     polyexec::test_hook!() in test files; polyexec_subprocess::init() and \
     polyexec_subprocess::test_hook!() when using the crate directly)";

/// A worker could not be started or greeted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("the operating system refused to start a worker: {0}")]
    Os(std::io::Error),
    #[error(
        "worker exited before the handshake ({status}{}): {HOOK_ADVICE}",
        detail.as_deref().map(|d| format!("; {d}")).unwrap_or_default()
    )]
    ExitedEarly {
        status: WorkerExit,
        detail: Option<String>,
    },
    #[error(
        "worker did not answer the handshake in time (then {0}): is the machine \
         overloaded (raise handshake_timeout), or does main run before the hook? {HOOK_ADVICE}"
    )]
    HandshakeTimeout(WorkerExit),
    #[error("worker refused to serve: {0}")]
    Refused(String),
    #[error("worker broke the protocol during the handshake: {0}")]
    Protocol(String),
}

impl From<StartError> for BuildError {
    fn from(err: StartError) -> Self {
        BuildError::Start(err.to_string())
    }
}
