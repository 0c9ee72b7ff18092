//! A `helix` process timed as a person at its terminal feels it: from its start to its first
//! stdout byte and to the end of its output, with what it said on stderr (where it reports
//! the route it connected on, and each change of route).

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{io::AsyncReadExt, process::Command};

/// One process run to its end.
#[derive(Debug)]
pub struct TimedRun {
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// From its start to its first stdout byte (to the end of its output if it printed none).
    pub first_byte: Duration,
    /// From its start to the end of its stdout.
    pub output_ended: Duration,
    /// From its start to its exit.
    pub exited: Duration,
}

impl TimedRun {
    /// From the first stdout byte to the last.
    pub fn span(&self) -> Duration {
        self.output_ended.saturating_sub(self.first_byte)
    }

    /// The route it said it connected on (`connected to hub … (route R…)`), and whether the
    /// keeper's warm connection carried it; `unknown` when it said neither.
    pub fn connected_route(&self) -> (&str, bool) {
        let Some(line) = self.stderr.lines().find(|l| l.contains("connected to hub")) else {
            return ("unknown", false);
        };
        let route = line
            .split_once("(route ")
            .and_then(|(_, rest)| rest.split([',', ')']).next())
            .unwrap_or("unknown");
        (route, line.contains("kept warm"))
    }

    /// The route it ended on: `direct` once it said it moved there
    /// (`route iroh-relay → direct after 0.4 s`), else the route it connected on.
    pub fn final_route(&self) -> &str {
        if self.stderr.contains("→ direct") {
            "direct"
        } else {
            self.connected_route().0
        }
    }
}

/// Runs `cmd` (stdout and stderr piped here) to its end, within `limit`: a process still
/// running then is killed, and the error carries what it said on stderr.
pub async fn timed(mut cmd: Command, limit: Duration) -> std::io::Result<TimedRun> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().ok_or_else(no_pipe)?;
    let mut stderr = child.stderr.take().ok_or_else(no_pipe)?;
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.map(|_| text)
    });
    let run = async {
        let (mut output, mut first_byte) = (Vec::new(), None);
        let mut buf = [0u8; 16_384];
        loop {
            let n = stdout.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            first_byte.get_or_insert_with(|| started.elapsed());
            output.extend_from_slice(&buf[..n]);
        }
        let output_ended = started.elapsed();
        let status = child.wait().await?;
        std::io::Result::Ok((output, first_byte, output_ended, status))
    };
    let finished = tokio::time::timeout(limit, run).await;
    let exited = started.elapsed();
    let Ok(finished) = finished else {
        let _ = child.start_kill();
        // Killed, it closes its stderr (a child of its own holding it gets a moment).
        let said = tokio::time::timeout(Duration::from_secs(1), errors)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(Result::ok)
            .unwrap_or_default();
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("did not finish in {limit:?}; it said: {said}"),
        ));
    };
    let (output, first_byte, output_ended, status) = finished?;
    let stderr = errors.await.map_err(std::io::Error::other)??;
    Ok(TimedRun {
        code: status.code(),
        stdout: String::from_utf8_lossy(&output).into_owned(),
        stderr,
        first_byte: first_byte.unwrap_or(output_ended),
        output_ended,
        exited,
    })
}

fn no_pipe() -> std::io::Error {
    std::io::Error::other("the child's output was not piped")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(stderr: &str) -> TimedRun {
        TimedRun {
            code: Some(0),
            stdout: String::new(),
            stderr: stderr.to_owned(),
            first_byte: Duration::from_millis(10),
            output_ended: Duration::from_millis(30),
            exited: Duration::from_millis(31),
        }
    }

    #[test]
    fn the_route_is_read_from_what_helix_said() {
        let warm = said("connected to hub desk (route direct, kept warm)\n");
        assert_eq!(warm.connected_route(), ("direct", true));
        assert_eq!(warm.final_route(), "direct");
        let upgraded = said(
            "connected to hub desk (route iroh-relay)\nroute iroh-relay → direct after 0.4 s\n",
        );
        assert_eq!(upgraded.connected_route(), ("iroh-relay", false));
        assert_eq!(upgraded.final_route(), "direct");
        assert_eq!(said("error: no hub\n").final_route(), "unknown");
        assert_eq!(warm.span(), Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_process_is_timed_to_its_output_and_a_hung_one_is_killed_with_what_it_said() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo route >&2; sleep 0.05; printf hello; exit 3"]);
        let run = timed(cmd, Duration::from_secs(10)).await.unwrap();
        assert_eq!(run.code, Some(3));
        assert_eq!(run.stdout, "hello");
        assert_eq!(run.stderr, "route\n");
        assert!(run.first_byte >= Duration::from_millis(50), "{run:?}");
        assert!(run.output_ended >= run.first_byte && run.exited >= run.output_ended);

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo stuck >&2; exec sleep 30"]);
        let started = Instant::now();
        let error = timed(cmd, Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("stuck"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
