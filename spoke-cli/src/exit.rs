//! Exit codes and the error type that carries one.

use std::fmt;

/// What `helix` exits with. Documented in `helix --help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command completed (or the request succeeded).
    Ok = 0,
    /// The command failed on the hub.
    Failed = 1,
    /// Bad command line (clap's own code).
    Usage = 2,
    /// The hub could not be reached, or the connection was lost for good.
    Unreachable = 3,
    /// The command was cancelled.
    Cancelled = 4,
    /// The command expired before it could start.
    Expired = 5,
    /// The hub refused the request (invalid, unknown id, not authorized, queue full…).
    Refused = 6,
    /// Ctrl-C: the command was cancelled on the hub.
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An error for the person at the terminal, with the exit code it means.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// A gRPC status from the hub, with what to do about it where we know.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let exit = match status.code() {
            Code::Unavailable | Code::Unknown | Code::DeadlineExceeded => Exit::Unreachable,
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::OutOfRange => Exit::Refused,
            _ => Exit::Failed,
        };
        let mut message = status.message().to_owned();
        if message.is_empty() {
            message = format!("{:?}", status.code());
        }
        Self { exit, message }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}
