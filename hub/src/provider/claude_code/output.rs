//! Claude Code's output while it runs: stdout split into lines (each at most
//! [`MAX_LINE_BYTES`], with an idle timeout), the end of stderr kept to explain a failure.

use std::{process::ExitStatus, time::Duration};

use tokio::{
    io::AsyncReadExt,
    process::{ChildStderr, ChildStdout},
    time::error::Elapsed,
};

use super::failure;
use crate::{
    provider::{ErrorKind, ProviderError},
    sse::MAX_LINE_BYTES,
};

/// How much of the child's stderr is kept to explain a failure.
const STDERR_TAIL_BYTES: usize = 4096;
/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The child's output as it arrives: stdout in lines, with the end of stderr kept to explain
/// a failure.
pub(super) struct ChildOutput {
    stdout: ChildStdout,
    stderr: ChildStderr,
    stderr_open: bool,
    /// Longest silence on stdout (output on stderr starts it again).
    idle_timeout: Duration,
    buf: Vec<u8>,
    err_buf: Vec<u8>,
    /// The last [`STDERR_TAIL_BYTES`] of stderr.
    pub(super) err_tail: Vec<u8>,
    /// Stdout read but not returned yet: from `start`, whole lines, then part of one.
    pending: Vec<u8>,
    start: usize,
}

impl ChildOutput {
    pub(super) fn new(stdout: ChildStdout, stderr: ChildStderr, idle_timeout: Duration) -> Self {
        Self {
            stdout,
            stderr,
            stderr_open: true,
            idle_timeout,
            buf: vec![0u8; READ_CHUNK],
            err_buf: vec![0u8; READ_CHUNK],
            err_tail: Vec::new(),
            pending: Vec::new(),
            start: 0,
        }
    }

    /// The next stdout line, without its newline; `None` when stdout ends (an unfinished last
    /// line is dropped).
    pub(super) async fn next_line(&mut self) -> Result<Option<&[u8]>, ProviderError> {
        loop {
            if let Some(pos) = self.pending[self.start..].iter().position(|b| *b == b'\n') {
                let line = self.start..self.start + pos;
                self.start += pos + 1;
                return Ok(Some(&self.pending[line]));
            }
            self.pending.drain(..self.start);
            self.start = 0;
            if self.pending.len() > MAX_LINE_BYTES {
                return Err(failure(
                    ErrorKind::Api,
                    "anthropic (claude code): an output line is too long".into(),
                ));
            }
            let n = self.read().await?;
            if n == 0 {
                return Ok(None);
            }
            self.pending.extend_from_slice(&self.buf[..n]);
        }
    }

    /// Reads the next chunk of stdout into `buf` (`0`: stdout ended), keeping what stderr says
    /// meanwhile.
    async fn read(&mut self) -> Result<usize, ProviderError> {
        loop {
            let read = tokio::select! {
                r = tokio::time::timeout(self.idle_timeout, self.stdout.read(&mut self.buf)) => r,
                r = self.stderr.read(&mut self.err_buf), if self.stderr_open => {
                    match r {
                        Ok(0) | Err(_) => self.stderr_open = false,
                        Ok(n) => {
                            self.err_tail.extend_from_slice(&self.err_buf[..n]);
                            let excess = self.err_tail.len().saturating_sub(STDERR_TAIL_BYTES);
                            self.err_tail.drain(..excess);
                        }
                    }
                    continue;
                }
            };
            return match read {
                Err(_) => Err(failure(
                    ErrorKind::Timeout,
                    format!(
                        "anthropic (claude code): no output for {}",
                        humantime::format_duration(self.idle_timeout)
                    ),
                )),
                Ok(Err(e)) => Err(failure(
                    ErrorKind::Connection,
                    format!("anthropic (claude code): reading its output: {e}"),
                )),
                Ok(Ok(n)) => Ok(n),
            };
        }
    }
}

/// Why a child that ended without a `result` line failed: its exit status and the end of its
/// stderr (scrubbed by the caller).
pub(super) fn without_result(
    status: Result<std::io::Result<ExitStatus>, Elapsed>,
    tail: &str,
) -> ProviderError {
    let status = match status {
        Ok(Ok(s)) => s.to_string(),
        _ => "no exit status".to_owned(),
    };
    failure(
        ErrorKind::Api,
        format!(
            "anthropic (claude code): it ended ({status}) without a result{}{tail}",
            if tail.is_empty() { "" } else { ": " }
        ),
    )
}
