//! Exit codes. Which error means which is decided in one place: `Error::exit` in `error.rs`.

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
