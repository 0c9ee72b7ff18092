//! The spoke's side of the cloud route v2, end to end: the real `helix` binary against real
//! PostgreSQL behind postrust, with the test playing the hub itself through the v2 contract
//! (`hub`: claim token, claims, prompts and content keys, events sealed with envelope v2).
//!
//! - `devices`: a command sent through the cloud prints exactly its output; a second device
//!   attaches to it, and to one the hub mirrored from iroh, byte for byte; a device without a
//!   key is told why.
//! - `refusals`: events spliced from another command, reordered, missing, forged, of the wrong
//!   kind or lying about their seq, and a forged content key, are refused by seq with nothing of
//!   them printed.
//! - `endings`: rows that end before the hub publishes print their reason; Ctrl-C cancels
//!   through `cancel_cloud_command`; a hub that never registered is named with what to do.
//! - `wakeups`: while Realtime is joined a following device reads when its row changes, and
//!   otherwise only every safety poll.
//! - `presence`: `helix hubs` lists from `online_cloud_hubs`; the address lookup reads
//!   `cloud_presence`.

mod devices;
mod endings;
mod hub;
mod presence;
mod refusals;
mod wakeups;

use tokio::{
    io::AsyncReadExt,
    process::{Child, ChildStderr, ChildStdout, Command},
};

use crate::support::{TEST_TIMEOUT, bins::Finished};

/// A `helix` process whose stdout the test reads while it runs.
pub struct Live {
    child: Child,
    stdout: ChildStdout,
    stderr: ChildStderr,
    seen: Vec<u8>,
}

impl Live {
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        Self {
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits until stdout has said `text`.
    pub async fn until(&mut self, text: &str) {
        let mut buf = [0u8; 4096];
        tokio::time::timeout(TEST_TIMEOUT, async {
            while !String::from_utf8_lossy(&self.seen).contains(text) {
                let n = self.stdout.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "stdout ended before {text:?}: {:?}",
                    String::from_utf8_lossy(&self.seen)
                );
                self.seen.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("helix never printed {text:?}"));
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        // SAFETY: kill(2) on the child this test started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id().unwrap() as i32, libc::SIGINT);
        }
    }

    /// Waits for the process to end; everything it printed.
    pub async fn finish(mut self) -> Finished {
        tokio::time::timeout(TEST_TIMEOUT, async {
            let mut stderr = Vec::new();
            let (out, err) = tokio::join!(
                self.stdout.read_to_end(&mut self.seen),
                self.stderr.read_to_end(&mut stderr)
            );
            out.unwrap();
            err.unwrap();
            let status = self.child.wait().await.unwrap();
            Finished {
                code: status.code(),
                stdout: String::from_utf8_lossy(&self.seen).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            }
        })
        .await
        .expect("helix did not finish in time")
    }
}
