//! What can go wrong with a task, in words a user can act on.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a task produced no value.
///
/// Every submitted task resolves exactly once: with its value, or with one of these. The variants
/// say what happened and what to do about it; the predicates (`is_panic()`, `is_cancelled()`, ...)
/// let code branch on the kind without matching every field.
///
/// A `TaskError` is 24 bytes: the variants that carry text keep it behind one pointer, so that
/// `Result<T, TaskError>`, which every task's output slot and every handle holds, stays small
/// and cheap to move on the path of every task that succeeds.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::TaskError;
///
/// let err = TaskError::panicked("boom", None);
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// assert_eq!(err.to_string(), "task panicked: boom");
/// match &err {
///     TaskError::Panicked(panic) => assert_eq!(panic.message, "boom"),
///     _ => unreachable!(),
/// }
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked. The worker that ran it survived and keeps serving.
    #[error("task panicked{}: {}", .0.location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default(), .0.message)]
    Panicked(Box<Panic>),
    /// The worker process running the task died (abort, segfault, signal, `exit`). Only the tasks
    /// that worker held are affected; the worker is replaced.
    #[error("worker process died while running the task ({0})")]
    WorkerLost(WorkerExit),
    /// The task was cancelled through its handle before it produced a value.
    #[error("task was cancelled")]
    Cancelled,
    /// The task ran longer than the executor's per-task time limit.
    #[error("task timed out after {0:?}")]
    TimedOut(Duration),
    /// The executor was shut down before the task could run (or, for an immediate shutdown, while
    /// it was waiting).
    #[error("executor was shut down before the task finished")]
    ShutDown,
    /// The task's input or output could not be encoded or decoded.
    #[error("could not {}: {}", .0.stage, .0.message)]
    Codec(Box<CodecError>),
    /// Talking to a worker failed for a reason other than its death (a broken channel, a refused
    /// frame, a worker that could not be started).
    #[error("transport failure: {0}")]
    Transport(Box<str>),
}

/// What [`TaskError::Panicked`] carries: the panic's message, where it happened, and the
/// backtrace when one was asked for.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{Panic, TaskError};
///
/// let err = TaskError::panicked("bad input", Some("src/main.rs:3:5".into()));
/// if let TaskError::Panicked(panic) = &err {
///     let Panic { message, location, .. } = &**panic;
///     assert_eq!(message, "bad input");
///     assert_eq!(location.as_deref(), Some("src/main.rs:3:5"));
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Panic {
    /// The panic message, or a placeholder when the payload was not a string.
    pub message: String,
    /// `file:line:column` of the panic, when the panic hook could record it.
    pub location: Option<String>,
    /// The stack at the panic, as text, when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) asked
    /// for backtraces in the process that ran the task: a worker process captures its own and
    /// sends it back with the error. `None` otherwise.
    #[serde(default)]
    pub backtrace: Option<String>,
}

/// What [`TaskError::Codec`] carries: which conversion failed, and the codec's explanation.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::{CodecStage, TaskError};
///
/// let err = TaskError::codec(CodecStage::DecodeOutput, "unexpected end of input");
/// if let TaskError::Codec(codec) = &err {
///     assert_eq!(codec.stage, CodecStage::DecodeOutput);
///     assert_eq!(codec.message, "unexpected end of input");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CodecError {
    /// Which of the four conversions failed.
    pub stage: CodecStage,
    /// The codec's explanation.
    pub message: String,
}

impl TaskError {
    /// A [`TaskError::Panicked`] with this message and location.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let err = polyexec::TaskError::panicked("boom", Some("src/lib.rs:1:1".into()));
    /// assert_eq!(err.panic_location(), Some("src/lib.rs:1:1"));
    /// ```
    pub fn panicked(message: impl Into<String>, location: Option<String>) -> Self {
        TaskError::Panicked(Box::new(Panic {
            message: message.into(),
            location,
            backtrace: None,
        }))
    }

    /// This error with `backtrace` attached, if it is a [`TaskError::Panicked`]; other errors
    /// are returned unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::TaskError;
    /// let err = TaskError::panicked("boom", None).with_backtrace("0: main".into());
    /// assert_eq!(err.panic_backtrace(), Some("0: main"));
    /// ```
    pub fn with_backtrace(mut self, backtrace: String) -> Self {
        if let TaskError::Panicked(panic) = &mut self {
            panic.backtrace = Some(backtrace);
        }
        self
    }

    /// A [`TaskError::Codec`] for this stage, with the codec's explanation.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{CodecStage, TaskError};
    /// let err = TaskError::codec(CodecStage::EncodeInput, "no");
    /// assert_eq!(err.to_string(), "could not encode the task input: no");
    /// ```
    pub fn codec(stage: CodecStage, message: impl Into<String>) -> Self {
        TaskError::Codec(Box::new(CodecError {
            stage,
            message: message.into(),
        }))
    }

    /// A [`TaskError::Transport`] with this explanation.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// let err = polyexec::TaskError::transport("broken pipe");
    /// assert_eq!(err.to_string(), "transport failure: broken pipe");
    /// ```
    pub fn transport(message: impl Into<String>) -> Self {
        TaskError::Transport(message.into().into_boxed_str())
    }

    /// `true` if the task panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::TaskError;
    /// assert!(!TaskError::Cancelled.is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }

    /// `true` if the task was cancelled through its handle.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::TaskError;
    /// assert!(TaskError::Cancelled.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// `true` if the task exceeded the executor's per-task time limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use std::time::Duration;
    /// use polyexec::TaskError;
    /// assert!(TaskError::TimedOut(Duration::from_secs(1)).is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, TaskError::TimedOut(_))
    }

    /// `true` if the worker process running the task died.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{TaskError, WorkerExit};
    /// assert!(TaskError::WorkerLost(WorkerExit::Signal(9)).is_worker_lost());
    /// ```
    pub fn is_worker_lost(&self) -> bool {
        matches!(self, TaskError::WorkerLost(_))
    }

    /// `true` if the executor shut down before the task finished.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::TaskError;
    /// assert!(TaskError::ShutDown.is_shutdown());
    /// ```
    pub fn is_shutdown(&self) -> bool {
        matches!(self, TaskError::ShutDown)
    }

    /// `true` if the input or output could not be encoded or decoded.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::{CodecStage, TaskError};
    /// let err = TaskError::codec(CodecStage::EncodeInput, "no");
    /// assert!(err.is_codec());
    /// ```
    pub fn is_codec(&self) -> bool {
        matches!(self, TaskError::Codec(_))
    }

    /// `true` for a transport failure between the executor and a worker.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::TaskError;
    /// assert!(TaskError::transport("broken pipe").is_transport());
    /// ```
    pub fn is_transport(&self) -> bool {
        matches!(self, TaskError::Transport(_))
    }

    /// The panic message, if the task panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::TaskError;
    /// let err = TaskError::panicked("index out of bounds", None);
    /// assert_eq!(err.panic_message(), Some("index out of bounds"));
    /// assert_eq!(TaskError::Cancelled.panic_message(), None);
    /// ```
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskError::Panicked(panic) => Some(&panic.message),
            _ => None,
        }
    }

    /// Where the task panicked (`file:line:column`), if it panicked and the location is known.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::TaskError;
    /// assert_eq!(TaskError::panicked("boom", None).panic_location(), None);
    /// assert_eq!(TaskError::Cancelled.panic_location(), None);
    /// ```
    pub fn panic_location(&self) -> Option<&str> {
        match self {
            TaskError::Panicked(panic) => panic.location.as_deref(),
            _ => None,
        }
    }

    /// The backtrace of the panic, if the task panicked and a backtrace was captured: with
    /// `RUST_BACKTRACE=1` (or `full`, or `RUST_LIB_BACKTRACE`) set for the process that ran the
    /// task, a worker process included. Not part of the error's `Display`.
    ///
    /// # Examples
    ///
    /// ```
    /// # extern crate polyexec_core as polyexec;
    /// use polyexec::TaskError;
    /// assert_eq!(TaskError::panicked("boom", None).panic_backtrace(), None);
    /// assert_eq!(TaskError::Cancelled.panic_backtrace(), None);
    /// ```
    pub fn panic_backtrace(&self) -> Option<&str> {
        match self {
            TaskError::Panicked(panic) => panic.backtrace.as_deref(),
            _ => None,
        }
    }
}

/// How a worker process ended.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::WorkerExit;
/// assert_eq!(WorkerExit::Signal(9).to_string(), "killed by signal 9 (SIGKILL)");
/// assert_eq!(WorkerExit::Code(3).to_string(), "exited with code 3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WorkerExit {
    /// The process exited with this status code.
    Code(i32),
    /// The process was killed by this signal.
    Signal(i32),
    /// The process is gone but its status could not be read.
    Unknown,
    /// The cluster backend gave up on the task after it was delivered this many times and the
    /// worker host running it was lost every time (it died, hung or was cut off).
    Deliveries(u32),
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WorkerExit::Code(code) => write!(f, "exited with code {code}"),
            WorkerExit::Signal(sig) => match signal_name(sig) {
                Some(name) => write!(f, "killed by signal {sig} ({name})"),
                None => write!(f, "killed by signal {sig}"),
            },
            WorkerExit::Unknown => f.write_str("exit status unknown"),
            WorkerExit::Deliveries(n) => write!(
                f,
                "the worker host running it was lost on each of its {n} deliveries"
            ),
        }
    }
}

/// Names of the signals a crashed task usually dies of (Linux numbering).
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        _ => return None,
    })
}

/// Which conversion of a task's data failed.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::CodecStage;
/// assert_eq!(CodecStage::DecodeOutput.to_string(), "decode the task output");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CodecStage {
    /// Encoding the input, in the submitting process.
    EncodeInput,
    /// Decoding the input, in the worker.
    DecodeInput,
    /// Encoding the output, in the worker.
    EncodeOutput,
    /// Decoding the output, in the submitting process.
    DecodeOutput,
}

impl fmt::Display for CodecStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecStage::EncodeInput => "encode the task input",
            CodecStage::DecodeInput => "decode the task input",
            CodecStage::EncodeOutput => "encode the task output",
            CodecStage::DecodeOutput => "decode the task output",
        })
    }
}

/// A builder was given a configuration it cannot run.
///
/// Returned by every backend's `build()`; the message names the setting and the reason.
///
/// # Examples
///
/// ```
/// # extern crate polyexec_core as polyexec;
/// use polyexec::BuildError;
/// let err = BuildError::InvalidConfig("workers must be at least 1".into());
/// assert_eq!(err.to_string(), "invalid executor configuration: workers must be at least 1");
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of range or contradicts another.
    #[error("invalid executor configuration: {0}")]
    InvalidConfig(String),
    /// The operating system refused a resource the executor needs (a thread, a process, a pipe).
    #[error("could not start the executor: {0}")]
    Start(String),
}

/// `Debug` prints the `Display` sentence: a `main` returning `Result<(), Box<dyn Error>>` prints
/// its error with `Debug`, and a user should read what happened, not a struct. (The sentences
/// differ per variant, so nothing is lost for debugging.)
impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `Debug` prints the `Display` sentence, as for [`TaskError`].
impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_sentence() {
        let err = TaskError::panicked("boom", None);
        assert_eq!(format!("{err:?}"), err.to_string());
        let err = BuildError::InvalidConfig("workers must be at least 1".into());
        assert_eq!(format!("{err:?}"), err.to_string());
    }

    /// The size is part of the per-task cost of every backend: every task's output slot holds a
    /// `Result<T, TaskError>`, and so does every handle.
    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<TaskError>() <= 24);
        assert!(std::mem::size_of::<Result<u64, TaskError>>() <= 24);
    }
}
